/**
 * The whole service as `npm start` runs it (runtime + built-in emulator + SQLite file), its
 * projections running live: customers buy (direct, CSP, free trial, test, auto-activated),
 * activate, change plans and seats (their side and ours, through the operator API), get refused by
 * policy, are suspended, reinstated, renewed and cancelled. Then the read models are rebuilt from the
 * same events into a fresh file: every table must be identical, and agree with the ledger. On both read-model
 * targets: the SQLite file, and PostgreSQL (READMODELS_URL; the rebuild into a database of its own).
 */
import { join } from 'node:path';
import type { Test } from 'tap';
import { allProjections } from '../../src/projections/views/index.js';
import { detailsFromMicrosoft } from '../../src/application/subscription-details.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { createLogger } from '../../src/logger.js';
import type { PurchaseInput } from '../../src/emulator/state.js';
import { openReadModelTarget, rebuildProjections, startProjections } from '../../src/projections/index.js';
import type { ReadModelTarget } from '../../src/projections/index.js';
import { openPostgresTarget } from '../../src/projections/postgres.target.js';
import { openSqliteTarget } from '../../src/projections/sqlite.target.js';
import { freshDatabase } from '../support/postgres.js';
import { startSandbox } from '../support/sandbox.js';
import { waitFor } from '../support/wait.js';
import { dump, forEachTarget, rowCount, sqliteOf } from './helpers.js';

type Sandbox = Awaited<ReturnType<typeof startSandbox>>;
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const TOKEN = 'test-operator-token-0123456789';

async function bought(s: Sandbox, input: PurchaseInput, activate = true): Promise<string> {
  const purchase = s.emulator.marketplace.purchase(input);
  const resolved = await s.marketplace.resolve(purchase.token);
  const sub = resolved.subscription ?? (await s.marketplace.getSubscription(resolved.id));
  await s.ledger.execute(
    resolved.id,
    { type: 'RecordPurchase', now: new Date().toISOString(), source: 'landing', subscription: detailsFromMicrosoft(sub), microsoftStatus: sub.saasSubscriptionStatus ?? 'PendingFulfillmentStart' },
    { actor: 'customer:test' },
  );
  if (!activate) return resolved.id;
  await s.ledger.execute(resolved.id, { type: 'RequestActivation', now: new Date().toISOString(), source: 'landing', contact: { email: `it@${resolved.id.slice(0, 8)}.example`, name: 'IT' } }, { actor: 'customer:test' });
  await status(s, resolved.id, 'Subscribed');
  return resolved.id;
}

async function status(s: Sandbox, id: string, expected: string, what = expected) {
  await waitFor(`${id} ${what}`, async () => {
    const { state } = await s.ledger.load(id);
    return state.status === expected;
  });
}

async function settled(s: Sandbox, id: string, check: (state: Record<string, unknown>) => boolean, what: string) {
  await waitFor(`${id}: ${what}`, async () => {
    const { state } = await s.ledger.load(id);
    return state.status !== 'Initial' && check(state as unknown as Record<string, unknown>);
  });
}

/** Microsoft has nothing pending for the subscription (the next change would be refused as locked). */
async function unlocked(s: Sandbox, id: string) {
  await waitFor(`Microsoft to unlock ${id}`, () => !s.emulator.state.isLocked(id));
}

async function operator(s: Sandbox, id: string, path: string, body: unknown) {
  const res = await fetch(`${s.url}/api/subscriptions/${id}/${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status !== 202) throw new Error(`operator ${path}: ${res.status} ${await res.text()}`);
}

await forEachTarget('read models after a live sandbox run = read models rebuilt from the same events', async (t: Test, kind) => {
  const url = kind === 'postgres' ? await freshDatabase(t, 'live') : undefined;
  const s = await startSandbox(t, { POLICY_MAX_SEATS: '40', ...(url ? { READMODELS_URL: url } : {}) });
  const config = s.config.store;
  if (config.kind !== 'sqlite') throw new Error('the sandbox runs on SQLite');
  const livePath = join(config.dataDir, 'readmodels.db');
  const live = s.projections(); // the service's own projections, as wired in the runtime
  if (!live) throw new Error('the runtime runs no projections');
  if (kind === 'sqlite') t.equal(sqliteOf(live).name, livePath, 'the read models live in <DATA_DIR>/readmodels.db');
  else t.equal(live.target.dialect, 'postgres', 'the read models live in PostgreSQL');
  const read = () => live.target.read;

  // Purchases of every kind.
  const trial = await bought(s, { planId: 'standard', quantity: 5, freeTrial: true });
  const premium = await bought(s, { planId: 'premium', quantity: 10 });
  const basic = await bought(s, { planId: 'basic' });
  const csp = await bought(s, { planId: 'standard', quantity: 3, csp: true });
  const test = await bought(s, { planId: 'standard', quantity: 2, isTest: true });
  const pending = await bought(s, { planId: 'premium', quantity: 5 }, false);
  const auto = s.emulator.marketplace.purchase({ planId: 'instant' }).subscription.id; // a Subscribe webhook
  await status(s, auto, 'Subscribed', 'auto-activated through its Subscribe notification');

  // Customer-side changes (Azure), a refusal by policy, publisher-side changes (Partner) through the operator API.
  const final = (id: string) => waitFor(`Microsoft to settle ${id}`, () => ['Succeeded', 'Failed', 'Conflict'].includes(s.emulator.state.operationById(id)?.status ?? ''));
  await final(s.emulator.marketplace.changePlan(trial, 'premium').id);
  await settled(s, trial, (st) => st.planId === 'premium', 'customer plan change');
  await final(s.emulator.marketplace.changeQuantity(premium, 12).id);
  await settled(s, premium, (st) => st.quantity === 12, 'customer seat change');
  const refused = s.emulator.marketplace.changeQuantity(premium, 50);
  await final(refused.id);
  t.equal(s.emulator.state.operationById(refused.id)?.status, 'Failed', 'refused inside the window');
  await operator(s, premium, 'plan', { planId: 'standard' });
  await settled(s, premium, (st) => st.planId === 'standard' && st.pendingChange === undefined, 'publisher plan change');
  await unlocked(s, premium);
  await operator(s, basic, 'quantity', { quantity: 4 }).catch(() => undefined); // basic is not per seat: Microsoft refuses, or we do
  await settled(s, basic, (st) => st.pendingChange === undefined, 'the refused seat change settled');
  await operator(s, trial, 'quantity', { quantity: 7 });
  await settled(s, trial, (st) => st.quantity === 7 && st.pendingChange === undefined, 'publisher seat change');
  await unlocked(s, trial);

  // Suspend, reinstate, renew; suspend then cancel; publisher-side cancel; customer cancel.
  s.emulator.marketplace.suspend(trial);
  await status(s, trial, 'Suspended');
  await final(s.emulator.marketplace.reinstate(trial).id);
  await status(s, trial, 'Subscribed', 'reinstated');
  await waitFor('Microsoft to reinstate', () => s.emulator.state.subscription(trial).status === 'Subscribed');
  s.emulator.marketplace.renew(trial);
  await settled(s, trial, (st) => st.lastRenewedAt !== undefined, 'renewed');
  s.emulator.marketplace.suspend(basic);
  await status(s, basic, 'Suspended');
  s.emulator.marketplace.unsubscribe(basic);
  await status(s, basic, 'Unsubscribed');
  await operator(s, premium, 'cancel', { reason: 'customer asked by phone' });
  await status(s, premium, 'Unsubscribed', 'cancelled by the publisher');
  s.emulator.marketplace.unsubscribe(test);
  await status(s, test, 'Unsubscribed');

  await s.processes()?.idle();
  await live.idle();
  const api = await fetch(`${s.url}/api/read/subscriptions?limit=500`, { headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(api.status, 200, 'the service serves them under /api/read');
  t.equal(((await api.json()) as { total: number }).total, 7);

  // What the read models say agrees with the ledger.
  const ids = [trial, premium, basic, csp, test, pending, auto];
  for (const id of ids) {
    const { state, revision } = await s.ledger.load(id);
    if (state.status === 'Initial') throw new Error('unknown');
    const row = await read().get('SELECT * FROM subscriptions WHERE subscription_id = @id', { id });
    t.match(row, { status: state.status, plan_id: state.planId, quantity: state.quantity ?? null, stream_revision: Number(revision) }, `${id.slice(0, 8)}: row = ledger state`);
  }
  const q = async (sql: string, params?: Record<string, unknown>) => (await read().get(sql, params)) ?? {};
  // Counts and sums as numbers on both targets (PostgreSQL answers bigint and numeric as text).
  const n = async (sql: string) => Number((await q(sql)).n);
  t.match(await q('SELECT * FROM subscriptions WHERE subscription_id = @id', { id: trial }), { is_free_trial: 1, suspensions: 1, reinstatements: 1, renewals: 1, contact_name: 'IT' });
  t.match(await q('SELECT * FROM subscriptions WHERE subscription_id = @id', { id: csp }), { is_csp: 1 });
  t.match(await q('SELECT * FROM subscriptions WHERE subscription_id = @id', { id: auto }), { auto_activated: 1, status: 'Subscribed' });
  t.match(await q('SELECT * FROM subscriptions WHERE subscription_id = @id', { id: premium }), { cancel_source: 'webhook', status: 'Unsubscribed' });
  t.equal(await n("SELECT count(*) AS n FROM operations WHERE source = 'Partner' AND outcome = 'applied'"), 3, 'three publisher-side changes applied (plan, seats, cancel)');
  t.match(await q('SELECT * FROM operations WHERE operation_id = @id', { id: refused.id }), { outcome: 'rejected', action: 'ChangeQuantity', quantity: 50 });
  const acks = (await read().all("SELECT ack_latency_ms FROM operations WHERE action IN ('ChangePlan', 'ChangeQuantity') AND source = 'Azure' AND ack_status = 'Success'")).map((r) => Number(r.ack_latency_ms));
  t.ok(acks.length >= 2 && acks.every((ms) => ms < 1000), `customer changes acknowledged in ${acks.join(', ')} ms`);
  t.equal(await n("SELECT count(*) AS n FROM change_requests WHERE outcome = 'applied'"), 3);
  t.equal(await n('SELECT sum(active_subscriptions) AS n FROM metrics_active_by_plan WHERE is_test = 0'), 3, 'trial, csp, auto are active');
  const trials = await q('SELECT * FROM metrics_free_trials');
  t.same([Number(trials.trials), Number(trials.converted)], [1, 1], 'the trial converted at its renewal');

  // Stop the service; catch the live file up with whatever came last; rebuild into a fresh file; compare.
  await s.close();
  const reopened = openSqliteStore({ path: config.path });
  t.teardown(() => reopened.close());
  const catchUp = startProjections({ store: reopened, target: await openReadModelTarget({ path: livePath, ...(url ? { url } : {}) }, logger), ownsTarget: true, logger });
  await catchUp.idle();
  const liveDump = await dump(catchUp, allProjections);
  await catchUp.stop();
  const fresh: ReadModelTarget = url
    ? await openPostgresTarget({ url: await freshDatabase(t, 'rebuilt'), schema: 'rm_rebuilt' })
    : openSqliteTarget(join(config.dataDir, 'rebuilt.db'));
  t.teardown(() => fresh.close());
  const result = await rebuildProjections({ store: reopened, target: fresh, logger });
  const rebuilt = await dump(fresh, allProjections);
  t.same(Object.keys(rebuilt), Object.keys(liveDump));
  for (const table of Object.keys(liveDump)) t.same(rebuilt[table], liveDump[table], `${table}: rebuilt = live (${liveDump[table]?.length} rows)`);
  t.comment(`rebuilt from ${result.events} events; rows: ${JSON.stringify(rowCount(rebuilt))}`);
});
