/**
 * Metered billing end to end: the whole service (runtime, SQLite file, processes, read models) against the
 * emulator. Usage for several subscriptions, dimensions and hours ends as exactly one accepted event per
 * subscription, dimension and hour at Microsoft, with the sums that were reported; repeats record nothing; late
 * usage is reported and never billed; usage too old is refused, and usage Microsoft finds expired is reported
 * as rejected — nothing lost, nothing counted twice.
 */
import { missingProvenance } from '../support/provenance.js';
import t from 'tap';
import type { Test } from 'tap';
import { detailsFromMicrosoft } from '../../src/application/subscription-details.js';
import { startSandbox } from '../support/sandbox.js';
import { prng } from '../support/prng.js';
import { waitFor } from '../support/wait.js';
import { HOUR_MS, inHour, meteredCatalogue, postUsage } from '../support/metering-world.js';
import type { UsageBody } from '../support/metering-world.js';

async function meteredSandbox(t: Test, env: Record<string, string> = {}) {
  const s = await startSandbox(t, { METERING_SUBMIT_DELAY_MS: '0', ...env }, { emulator: { catalogue: meteredCatalogue } });
  const subscribe = async (): Promise<string> => {
    const bought = s.emulator.marketplace.purchase({ planId: 'basic' });
    const id = bought.subscription.id;
    const sub = await s.marketplace.getSubscription(id);
    const now = new Date().toISOString();
    await s.ledger.execute(id, { type: 'RecordPurchase', now, source: 'landing', subscription: detailsFromMicrosoft(sub), microsoftStatus: 'PendingFulfillmentStart' }, { actor: 'test' });
    await s.ledger.execute(id, { type: 'RequestActivation', now, source: 'landing', contact: { email: 'buyer@contoso.example' } }, { actor: 'test' });
    await waitFor('activation', async () => (await s.ledger.load(id)).state.status === 'Subscribed', 20_000);
    return id;
  };
  const read = async (path: string) => {
    const res = await fetch(`${s.url}${path}`, { headers: { authorization: `Bearer ${s.operatorToken}` } });
    return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
  };
  return { s, subscribe, read };
}

t.test('several subscriptions, dimensions and hours: one accepted event per subscription, dimension and hour, with the right sums', async (t) => {
  const { s, subscribe, read } = await meteredSandbox(t);
  const subs = [await subscribe(), await subscribe(), await subscribe()];
  const random = prng(16);
  const records: UsageBody[] = [];
  const expected = new Map<string, number>();
  for (const subscriptionId of subs) {
    for (const dimension of ['api-calls', 'gb']) {
      for (const hoursAgo of [3, 2, 1]) {
        for (let i = 0; i < 4; i++) {
          const quantity = Math.round(random() * 1000) / 10 + 0.1;
          records.push({ subscriptionId, dimension, quantity, effectiveTime: inHour(hoursAgo, i * 13), idempotencyKey: `${subscriptionId}-${dimension}-${hoursAgo}-${i}` });
          const key = `${subscriptionId}|${dimension}|${inHour(hoursAgo, 0).slice(0, 13)}`;
          expected.set(key, Math.round(((expected.get(key) ?? 0) + quantity) * 1e6) / 1e6);
        }
      }
    }
  }
  const first = await postUsage(s.url, s.operatorToken, records);
  t.equal(first.status, 200, 'every record recorded');
  t.match(first.body, { recorded: records.length, refused: 0 });
  const again = await postUsage(s.url, s.operatorToken, records.slice(0, 10));
  t.equal(again.status, 200);
  t.match(again.body, { recorded: 0, duplicate: 10 }, 'a repeat records nothing');

  const accepted = await waitFor('Microsoft to accept every hour', () => {
    const list = s.emulator.meter.accepted();
    return list.length >= expected.size ? list : undefined;
  }, 60_000);
  t.equal(accepted.length, expected.size, `exactly ${expected.size} events: one per subscription, dimension and hour`);
  const billed = new Map(accepted.map((u) => [`${u.resourceId}|${u.dimension}|${u.effectiveStartTime.slice(0, 13)}`, u.quantity]));
  t.same(billed, expected, 'each with the sum of its hour');

  // The finance read model agrees, and exports as CSV.
  const rows = await waitFor('the read model to settle', async () => {
    const r = JSON.parse((await read('/api/read/usage?period=hour')).text) as { rows: Array<{ subscription_id: string; dimension: string; period: string; accepted: number; pending: number; submitted: number }> };
    return r.rows.length === expected.size && r.rows.every((row) => row.pending === 0) ? r.rows : undefined;
  }, 30_000);
  for (const row of rows) t.equal(row.accepted, expected.get(`${row.subscription_id}|${row.dimension}|${row.period}`), `read model: ${row.dimension} ${row.period}`);
  const csv = await read('/api/read/usage.csv?period=month');
  t.equal(csv.status, 200);
  t.match(csv.type, /text\/csv/);
  t.equal(csv.text.trim().split('\r\n').length, 1 + subs.length * 2, 'CSV: a header and one row per subscription and dimension for the month');
  const store = s.store();
  if (store) t.same(await missingProvenance(store, ['usage-', 'allowance-', 'checkpoint-', 'lease-']), [], 'every usage, allowance, checkpoint and lease event carries correlationId and causationId');

  // Late usage for a settled hour: reported, kept apart, never billed.
  const late = await postUsage(s.url, s.operatorToken, [{ subscriptionId: subs[0] ?? '', dimension: 'gb', quantity: 5, effectiveTime: inHour(2, 59), idempotencyKey: 'late-1' }]);
  t.equal(late.status, 200);
  t.match(late.body.results, [{ outcome: 'late' }], 'reported as late');
  await waitFor('the late usage in the read model', async () => {
    const r = JSON.parse((await read(`/api/read/usage?period=hour&subscriptionId=${subs[0]}&dimension=gb&from=${inHour(2, 0).slice(0, 13)}&to=${inHour(1, 0).slice(0, 13)}`)).text) as { rows: Array<{ late: number; accepted: number }> };
    return r.rows[0]?.late === 5 ? r.rows[0] : undefined;
  }, 20_000);
  t.equal(s.emulator.meter.accepted().length, expected.size, 'still one event per hour at Microsoft: late usage is never merged');
  const unsettled = JSON.parse((await read('/api/read/usage/unsettled')).text) as { items: unknown[] };
  t.same(unsettled.items, [], 'nothing waits for Microsoft');
});

t.test('refused records say why; usage Microsoft finds expired is reported as rejected, never billed', async (t) => {
  const { s, subscribe, read } = await meteredSandbox(t);
  const id = await subscribe();
  const pending = s.emulator.marketplace.purchase({ planId: 'basic' }).subscription.id;
  const refused = await postUsage(s.url, s.operatorToken, [
    { subscriptionId: id, dimension: 'api-calls', quantity: 1, effectiveTime: new Date(Date.now() - 25 * HOUR_MS).toISOString(), idempotencyKey: 'old' },
    { subscriptionId: id, dimension: 'no-such-meter', quantity: 1, effectiveTime: inHour(1, 5), idempotencyKey: 'dim' },
    { subscriptionId: id, dimension: 'api-calls', quantity: 0, effectiveTime: inHour(1, 5), idempotencyKey: 'zero' },
    { subscriptionId: pending, dimension: 'api-calls', quantity: 1, effectiveTime: inHour(1, 5), idempotencyKey: 'inactive' },
  ]);
  t.equal(refused.status, 422);
  t.same(refused.body.results.map((r) => r.reason), ['expired', 'unknown-dimension', 'invalid-quantity', 'not-active']);
  const noToken = await fetch(`${s.url}/api/usage`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  t.equal(noToken.status, 401, 'the intake needs a token');

  // Microsoft's calendar runs 23 hours ahead: usage from 2 hours ago is 25 hours old there.
  s.emulator.marketplace.advanceClock(23 * HOUR_MS);
  const ok = await postUsage(s.url, s.operatorToken, [{ subscriptionId: id, dimension: 'api-calls', quantity: 3, effectiveTime: inHour(2, 10), idempotencyKey: 'expires' }]);
  t.equal(ok.status, 200);
  const row = await waitFor('the hour to settle', async () => {
    const r = JSON.parse((await read(`/api/read/usage?period=hour&subscriptionId=${id}`)).text) as { rows: Array<{ recorded: number; rejected: number; expired: number; accepted: number; pending: number }> };
    return r.rows[0]?.pending === 0 ? r.rows[0] : undefined;
  }, 30_000);
  t.match(row, { recorded: 3, rejected: 3, expired: 3, accepted: 0 }, 'reported as expired: rejected, not billed, not lost');
  t.equal(s.emulator.meter.accepted().length, 0, 'Microsoft billed nothing');
});
