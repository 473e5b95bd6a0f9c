/**
 * Issue 12, the auditor's view of one subscription's life, built through the built-in emulator: purchase,
 * activation, a customer plan change, a publisher seat change by a named operator, suspension, reinstatement,
 * renewal, cancellation. After each step the test records what the `subscriptions` read model showed and when;
 * then `state --at` at each of those moments equals it, `history` names every event's source, and `export`
 * round-trips (every event of the store, nothing extra, in JSON Lines and CSV), with the raw notifications.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { detailsFromMicrosoft } from '../../src/application/subscription-details.js';
import { csvRowRecord, parseCsv, parseJsonlRecord, toExportRecord } from '../../src/application/event-export.js';
import type { ExportRecord } from '../../src/application/event-export.js';
import type { HistoryEntry } from '../../src/application/audit-history.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { subscriptionStream } from '../../src/domain/subscription/index.js';
import { sqliteDbOf } from '../../src/projections/sqlite.target.js';
import { startSandbox } from '../support/sandbox.js';
import { waitFor } from '../support/wait.js';
import { cli, jsonOf } from './helpers.js';

type Sandbox = Awaited<ReturnType<typeof startSandbox>>;
const TOKEN = 'test-operator-token-0123456789';
/** A named operator's token (OPERATOR_TOKENS): history names her as the one who asked. */
const DANA = 'dana-operator-token-0123456789';
type Moment = { step: string; at: string; row: { status: string; plan_id: string; quantity: number | null; stream_revision: number } };

async function settled(s: Sandbox, id: string, check: (state: Record<string, unknown>) => boolean, what: string) {
  await waitFor(`${id}: ${what}`, async () => {
    const { state } = await s.ledger.load(id);
    return state.status !== 'Initial' && check(state as unknown as Record<string, unknown>);
  });
  await waitFor(`Microsoft to unlock ${id}`, () => !s.emulator.state.isLocked(id));
}

/** What the read model shows now, and the time: taken once every event recorded up to that time is in the row. */
async function moment(s: Sandbox, id: string, step: string): Promise<Moment> {
  const live = s.projections();
  if (!live) throw new Error('no projections');
  for (;;) {
    await s.processes()?.idle();
    await live.idle();
    const at = new Date().toISOString();
    const row = sqliteDbOf(live.target).prepare('SELECT status, plan_id, quantity, stream_revision FROM subscriptions WHERE subscription_id = ?').get(id) as Moment['row'];
    const recorded = (await s.ledger.store.readStream(subscriptionStream(id))).filter((e) => e.recordedAt <= at);
    const last = recorded[recorded.length - 1];
    await waitFor('the clock to move on', () => new Date().toISOString() > at, 1000, 1); // the next step's events come later
    if (last && Number(last.revision) === row.stream_revision) return { step, at, row };
  }
}

function sameEvent(r: ExportRecord, e: RecordedEvent): boolean {
  const x = toExportRecord(e);
  return JSON.stringify(r) === JSON.stringify(x);
}

t.test('state --at each moment = what the read model showed; history names the sources; export round-trips', async (t) => {
  const s = await startSandbox(t, { OPERATOR_TOKENS: `dana:${DANA}` });
  const dataDir = s.config.store.kind === 'sqlite' ? s.config.store.dataDir : '';
  const env = { DATA_DIR: dataDir };
  const moments: Moment[] = [];

  const purchase = s.emulator.marketplace.purchase({ planId: 'standard', quantity: 5 });
  const resolved = await s.marketplace.resolve(purchase.token);
  const id = resolved.id;
  const sub = resolved.subscription ?? (await s.marketplace.getSubscription(id));
  await s.ledger.execute(id, { type: 'RecordPurchase', now: new Date().toISOString(), source: 'landing', subscription: detailsFromMicrosoft(sub), microsoftStatus: 'PendingFulfillmentStart' }, { actor: 'customer:ada@fabrikam.example' });
  moments.push(await moment(s, id, 'purchased'));
  await s.ledger.execute(id, { type: 'RequestActivation', now: new Date().toISOString(), source: 'landing', contact: { email: 'ada@fabrikam.example', name: 'Ada' } }, { actor: 'customer:ada@fabrikam.example' });
  await settled(s, id, (st) => st.status === 'Subscribed', 'activated');
  moments.push(await moment(s, id, 'activated'));
  s.emulator.marketplace.changePlan(id, 'premium');
  await settled(s, id, (st) => st.planId === 'premium', 'customer plan change');
  moments.push(await moment(s, id, 'plan changed'));
  const patched = await fetch(`${s.url}/api/subscriptions/${id}/quantity`, { method: 'POST', headers: { authorization: `Bearer ${DANA}`, 'content-type': 'application/json' }, body: JSON.stringify({ quantity: 8 }) });
  t.equal(patched.status, 202, 'the operator asked for 8 seats');
  await settled(s, id, (st) => st.quantity === 8 && st.pendingChange === undefined, 'publisher seat change');
  moments.push(await moment(s, id, 'seats changed'));
  s.emulator.marketplace.suspend(id);
  await settled(s, id, (st) => st.status === 'Suspended', 'suspended');
  moments.push(await moment(s, id, 'suspended'));
  s.emulator.marketplace.reinstate(id);
  await settled(s, id, (st) => st.status === 'Subscribed', 'reinstated');
  await waitFor('Microsoft to reinstate', () => s.emulator.state.subscription(id).status === 'Subscribed');
  moments.push(await moment(s, id, 'reinstated'));
  s.emulator.marketplace.renew(id);
  await settled(s, id, (st) => st.lastRenewedAt !== undefined, 'renewed');
  moments.push(await moment(s, id, 'renewed'));
  s.emulator.marketplace.unsubscribe(id);
  await settled(s, id, (st) => st.status === 'Unsubscribed', 'cancelled');
  moments.push(await moment(s, id, 'cancelled'));

  const before = await cli(['state', id, '--at', '2000-01-01T00:00:00Z', '--json'], env);
  t.equal(before.code, 0);
  t.match(jsonOf(before), { events: 0, state: { status: 'Initial' } }, 'before the purchase: nothing yet');
  for (const m of moments) {
    const ran = await cli(['state', id, '--at', m.at, '--json'], env);
    t.equal(ran.code, 0, ran.err);
    const got = jsonOf(ran) as { revision: string; state: { status: string; planId: string; quantity?: number } };
    t.same(
      { status: got.state.status, plan_id: got.state.planId, quantity: got.state.quantity ?? null, stream_revision: Number(got.revision) },
      m.row,
      `state --at ${m.step} = the read model then`,
    );
    const http = await fetch(`${s.url}/api/subscriptions/${id}/state?at=${encodeURIComponent(m.at)}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    t.equal(http.status, 200);
    t.same(await http.json(), got, `GET /state?at= (${m.step}) = the CLI`);
  }
  t.equal((await fetch(`${s.url}/api/subscriptions/${id}/state?at=yesterday`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 400, 'a time that is not one: 400');
  t.equal((await fetch(`${s.url}/api/subscriptions/${id}/state?at=${encodeURIComponent(moments[0]?.at ?? '')}`)).status, 401, 'behind the operator token');

  await historyChecks(t, s, id, env);
  await exportChecks(t, s, id, env, dataDir);
});

async function historyChecks(t: Test, s: Sandbox, id: string, env: Record<string, string>): Promise<void> {
  const ran = await cli(['history', id, '--json'], env);
  t.equal(ran.code, 0, ran.err);
  const { events } = jsonOf(ran) as { events: HistoryEntry[] };
  const stream = await s.ledger.store.readStream(subscriptionStream(id));
  t.equal(events.length, stream.length, 'every event of the stream');
  const byType = (type: string) => events.filter((e) => e.type === type);
  t.match(byType('Purchased')[0], { source: { kind: 'landing', customer: 'ada@fabrikam.example' }, changes: [{ path: 'activation' }] });
  t.match(byType('Activated')[0], { source: { kind: 'process' }, changes: [{ path: 'activatedAt' }] });
  const plan = byType('PlanChanged')[0];
  t.match(plan, { source: { kind: 'webhook' } });
  t.ok(plan?.source.operationId && plan.source.notificationStream === `notification-${plan.source.operationId}`, 'a webhook change names its operation and notification stream');
  t.ok(plan?.changes.some((c) => c.path === 'planId' && c.before === 'standard' && c.after === 'premium'), 'the plan change, before and after');
  t.match(byType('QuantityChangeRequested')[0], { source: { kind: 'operator', operator: 'dana' } });
  for (const type of ['Suspended', 'Reinstated', 'Renewed', 'Unsubscribed']) t.match(byType(type)[0], { source: { kind: 'webhook' } }, `${type} from a webhook`);
  t.ok(byType('Suspended')[0]?.changes.some((c) => c.path === 'status' && c.after === 'Suspended'));
  const text = await cli(['history', id], env);
  t.match(text.out, /PlanChanged\s+webhook operation \S+ by microsoft/);
  t.match(text.out, /planId: "standard" -> "premium"/);

  const http = await fetch(`${s.url}/api/subscriptions/${id}/events`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const body = (await http.json()) as { events: Array<{ type: string; source?: unknown; changes?: unknown }> };
  t.same(body.events.map((e) => ({ type: e.type, source: e.source, changes: e.changes })), events.map((e) => ({ type: e.type, source: e.source, changes: e.changes })), 'GET /events carries the same provenance');
}

async function exportChecks(t: Test, s: Sandbox, id: string, env: Record<string, string>, dir: string): Promise<void> {
  await s.processes()?.idle();
  const all: RecordedEvent[] = [];
  for await (const e of s.ledger.store.readAll()) all.push(e);
  const jsonl = await cli(['export'], env);
  t.equal(jsonl.code, 0, jsonl.err);
  const lines = jsonl.stdout.split('\n').filter((l) => l.length > 0).map(parseJsonlRecord);
  const head = lines.filter((r) => BigInt(r.position) <= (all[all.length - 1]?.position ?? 0n)); // a process may append meanwhile
  t.equal(head.length, all.length, 'JSON Lines: as many events as the store');
  t.ok(all.every((e, i) => head[i] && sameEvent(head[i], e)), 'JSON Lines: every event as stored, in order');

  const csvPath = join(dir, 'export.csv');
  const csv = await cli(['export', '--format', 'csv', '--output', csvPath], env);
  t.equal(csv.code, 0, csv.err);
  const [header, ...rows] = parseCsv(readFileSync(csvPath, 'utf8'));
  t.same(header, ['position', 'recordedAt', 'streamId', 'revision', 'eventId', 'type', 'data', 'metadata', 'notificationStream']);
  const records = rows.map(csvRowRecord).filter((r) => BigInt(r.position) <= (all[all.length - 1]?.position ?? 0n));
  t.equal(records.length, all.length, 'CSV: as many events as the store');
  t.ok(all.every((e, i) => records[i] && sameEvent(records[i], e)), 'CSV: every event as stored, in order');

  const one = await cli(['export', '--subscription', id], env);
  const mine = one.stdout.split('\n').filter((l) => l.length > 0).map(parseJsonlRecord);
  const own = mine.filter((r) => r.streamId === subscriptionStream(id));
  t.equal(own.length, (await s.ledger.store.readStream(subscriptionStream(id))).length, 'the subscription: all its events');
  const linked = own.filter((r) => r.links);
  t.ok(linked.length >= 5, 'webhook changes link their notification stream');
  for (const r of linked) {
    const raw = mine.find((n) => n.streamId === r.links?.notificationStream && n.type === 'NotificationReceived');
    const body = raw && (JSON.parse(String((raw.data as { body: string }).body)) as { id: string });
    t.equal(body?.id, (r.data as { operationId: string }).operationId, `${r.type}: Microsoft's raw notification is in the export`);
  }
  t.ok(mine.every((r) => r.streamId === subscriptionStream(id) || r.streamId.startsWith('notification-')), 'nothing else');

  const later = await cli(['export', '--from', all[all.length - 1]?.recordedAt ?? '', '--to', '2100-01-01T00:00:00Z'], env);
  t.ok(later.stdout.split('\n').filter((l) => l).map(parseJsonlRecord).every((r) => r.recordedAt >= (all[all.length - 1]?.recordedAt ?? '')), 'a time range');
  const http = await fetch(`${s.url}/api/events/export`, { headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(http.headers.get('content-type'), 'application/x-ndjson');
  const served = (await http.text()).split('\n').filter((l) => l).map(parseJsonlRecord);
  t.ok(all.every((e, i) => served[i] && sameEvent(served[i], e)), 'GET /api/events/export: the same lines');
  t.equal((await cli(['export', '--from', '2026-02-01T00:00:00Z', '--to', '2026-01-01T00:00:00Z'], env)).code, 64, 'from after to: usage');
}
