/**
 * The integrity chain over a real history: the whole service as `npm start` runs it (runtime + built-in emulator +
 * SQLite file) takes a customer through purchase, activation, plan changes (theirs and ours), suspension,
 * reinstatement, renewal and cancellation. Then:
 * - verifyChains passes over every stream, and every event carries correlationId and causationId;
 * - one event's data changed, one event deleted, one inserted, each DIRECTLY in a copy of the SQLite file
 *   (better-sqlite3 on the events table): verifyChains fails and names it.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import Database from 'better-sqlite3';
import { chainHeads, verifyChains } from '../../src/application/audit/verify-chains.js';
import type { ChainReport } from '../../src/application/audit/verify-chains.js';
import { detailsFromMicrosoft } from '../../src/application/subscription-details.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { PurchaseInput } from '../../src/emulator/state.js';
import { startSandbox } from '../support/sandbox.js';
import { waitFor } from '../support/wait.js';

type Sandbox = Awaited<ReturnType<typeof startSandbox>>;
const TOKEN = 'test-operator-token-0123456789';
/** A named operator (OPERATOR_TOKENS) beside OPERATOR_TOKEN: what she does is recorded as `operator:erin`. */
const ERIN = 'erin-token-0123456789abcdef';

async function bought(s: Sandbox, input: PurchaseInput): Promise<string> {
  const purchase = s.emulator.marketplace.purchase(input);
  const resolved = await s.marketplace.resolve(purchase.token);
  const sub = resolved.subscription ?? (await s.marketplace.getSubscription(resolved.id));
  const as = { actor: "customer:test", correlationId: randomUUID(), causationId: randomUUID() };
  await s.ledger.execute(
    resolved.id,
    { type: 'RecordPurchase', now: new Date().toISOString(), source: 'landing', subscription: detailsFromMicrosoft(sub), microsoftStatus: sub.saasSubscriptionStatus ?? 'PendingFulfillmentStart' },
    as,
  );
  await s.ledger.execute(resolved.id, { type: 'RequestActivation', now: new Date().toISOString(), source: 'landing', contact: { email: 'it@contoso.example', name: 'IT' } }, as);
  await status(s, resolved.id, 'Subscribed');
  return resolved.id;
}

async function status(s: Sandbox, id: string, expected: string, what = expected) {
  await waitFor(`${id} ${what}`, async () => (await s.ledger.load(id)).state.status === expected);
}

async function settled(s: Sandbox, id: string, check: (state: Record<string, unknown>) => boolean, what: string) {
  await waitFor(`${id}: ${what}`, async () => {
    const { state } = await s.ledger.load(id);
    return state.status !== 'Initial' && check(state as unknown as Record<string, unknown>);
  });
}

async function operator(s: Sandbox, id: string, path: string, body: unknown, token = TOKEN) {
  const res = await fetch(`${s.url}/api/subscriptions/${id}/${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-operator-id': 'mallory' },
    body: JSON.stringify(body),
  });
  if (res.status !== 202) throw new Error(`operator ${path}: ${res.status} ${await res.text()}`);
}

async function verifyOverHttp(s: Sandbox, query: string, token = TOKEN): Promise<{ status: number; body: ChainReport }> {
  const res = await fetch(`${s.url}/api/audit/verify${query}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as ChainReport };
}

/** A lifecycle through the emulator; returns the SQLite file, closed, and the subscription id. */
async function history(t: Test): Promise<{ path: string; id: string }> {
  const s = await startSandbox(t, { OPERATOR_TOKENS: `erin:${ERIN}` });
  const config = s.config.store;
  if (config.kind !== 'sqlite') throw new Error('the sandbox runs on SQLite');
  const id = await bought(s, { planId: 'standard', quantity: 5 });
  const final = (op: string) => waitFor(`Microsoft to settle ${op}`, () => ['Succeeded', 'Failed', 'Conflict'].includes(s.emulator.state.operationById(op)?.status ?? ''));
  await final(s.emulator.marketplace.changePlan(id, 'premium').id);
  await settled(s, id, (st) => st.planId === 'premium', 'customer plan change');
  await operator(s, id, 'quantity', { quantity: 7 }, ERIN);
  await settled(s, id, (st) => st.quantity === 7 && st.pendingChange === undefined, 'publisher seat change');
  await waitFor('Microsoft to unlock', () => !s.emulator.state.isLocked(id));
  s.emulator.marketplace.suspend(id);
  await status(s, id, 'Suspended');
  await final(s.emulator.marketplace.reinstate(id).id);
  await status(s, id, 'Subscribed', 'reinstated');
  await waitFor('Microsoft to reinstate', () => s.emulator.state.subscription(id).status === 'Subscribed');
  s.emulator.marketplace.renew(id);
  await settled(s, id, (st) => st.lastRenewedAt !== undefined, 'renewed');
  s.emulator.marketplace.unsubscribe(id);
  await status(s, id, 'Unsubscribed');
  await s.processes()?.idle();
  const requested = (await s.ledger.load(id)).events.find((e) => e.type === 'QuantityChangeRequested');
  t.equal(requested?.metadata.actor, 'operator:erin', 'the named operator is the actor, not the x-operator-id header');

  const one = await verifyOverHttp(s, `?subscriptionId=${id}`, ERIN);
  t.equal(one.status, 200);
  t.match(one.body, { ok: true, streamId: `subscription-${id}`, streams: 1, problems: [] }, 'GET /api/audit/verify?subscriptionId=');
  const all = await verifyOverHttp(s, '');
  t.match(all.body, { ok: true, problems: [] }, 'GET /api/audit/verify: every stream');
  t.ok(all.body.streams > 1);
  t.equal((await verifyOverHttp(s, '?subscriptionId=not-a-guid')).status, 400);
  t.equal((await verifyOverHttp(s, '', 'wrong-token-0123456789abcdef')).status, 401, 'behind the operator token');
  t.equal((await fetch(`${s.url}/metrics`, { headers: { authorization: `Bearer ${ERIN}` } })).status, 200, "a named operator's token opens /metrics too");
  await s.close();
  return { path: config.path, id };
}

async function verifyFile(t: Test, path: string, streamId?: string): Promise<ChainReport> {
  const store = openSqliteStore({ path });
  try {
    return await verifyChains(store, streamId === undefined ? {} : { streamId });
  } finally {
    await store.close();
  }
}

async function allEvents(path: string): Promise<RecordedEvent[]> {
  const store = openSqliteStore({ path });
  try {
    const out: RecordedEvent[] = [];
    for await (const e of store.readAll()) out.push(e);
    return out;
  } finally {
    await store.close();
  }
}

/** A copy of the file to tamper with (VACUUM INTO: the WAL's content included). */
function copyOf(path: string, name: string): string {
  const to = join(path, '..', `${name}.db`);
  const raw = new Database(path);
  raw.exec(`VACUUM INTO '${to.replaceAll("'", "''")}'`);
  raw.close();
  return to;
}

type Row = { position: number; event_id: string; stream_id: string; revision: number; data: string; metadata: string };

t.test('a history through the emulator: the chain holds, and any edit of the file is named', async (t) => {
  const { path, id } = await history(t);
  const stream = `subscription-${id}`;
  const events = await allEvents(path);
  const types = events.filter((e) => e.streamId === stream).map((e) => e.type);
  t.ok(types.length >= 8, `the subscription stream holds its lifecycle: ${types.join(', ')}`);

  const clean = await verifyFile(t, path);
  t.ok(clean.ok, 'verifyChains passes over every stream');
  t.same(clean.problems, []);
  t.equal(clean.events, events.length, 'every event was checked');
  t.equal(clean.verified + clean.pruned, clean.events, 'every event verified, but the first kept event of each bounded stream');
  t.equal(clean.unchainedCount, 0);
  t.same(JSON.parse(JSON.stringify(clean)), clean, 'the report is plain JSON');

  const missing = events.filter((e) => typeof e.metadata.correlationId !== 'string' || typeof e.metadata.causationId !== 'string' || !e.metadata.correlationId || !e.metadata.causationId);
  t.same(missing.map((e) => `${e.streamId} ${e.revision} ${e.type} ${JSON.stringify(e.metadata)}`), [], 'every event carries correlationId and causationId');

  const heads = await (async () => {
    const store = openSqliteStore({ path });
    try {
      return await chainHeads(store);
    } finally {
      await store.close();
    }
  })();
  t.equal(heads.length, clean.streams, 'one head per stream');

  await t.test('one event altered', async (t) => {
    const file = copyOf(path, 'altered');
    const raw = new Database(file);
    const row = raw.prepare('SELECT * FROM events WHERE stream_id = ? AND revision = 2').get(stream) as Row;
    const data = JSON.parse(row.data) as Record<string, unknown>;
    raw.prepare('UPDATE events SET data = ? WHERE position = ?').run(JSON.stringify({ ...data, tampered: true }), row.position);
    raw.close();
    const report = await verifyFile(t, file);
    t.notOk(report.ok);
    t.same(report.problems.map((p) => [p.kind, p.streamId, p.revision, p.eventId]), [['altered', stream, '2', row.event_id]], 'named alone: the events after it still verify');
    t.notOk((await verifyFile(t, file, stream)).ok, 'and in a check of that stream only');
  });

  await t.test('one event deleted', async (t) => {
    const file = copyOf(path, 'deleted');
    const raw = new Database(file);
    const row = raw.prepare('SELECT * FROM events WHERE stream_id = ? AND revision = 3').get(stream) as Row;
    raw.prepare('DELETE FROM events WHERE position = ?').run(row.position);
    raw.close();
    const report = await verifyFile(t, file);
    t.same(report.problems.map((p) => [p.kind, p.streamId, p.revision]), [['removed', stream, '3']], 'the missing revision is named');
  });

  await t.test('one event deleted and the later ones renumbered to hide the gap', async (t) => {
    const file = copyOf(path, 'renumbered');
    const raw = new Database(file);
    raw.prepare('DELETE FROM events WHERE stream_id = ? AND revision = 3').run(stream);
    const later = raw.prepare('SELECT position, revision FROM events WHERE stream_id = ? AND revision > 3 ORDER BY revision').all(stream) as Row[];
    for (const r of later) raw.prepare('UPDATE events SET revision = ? WHERE position = ?').run(r.revision - 1, r.position);
    raw.close();
    const report = await verifyFile(t, file);
    t.notOk(report.ok);
    t.equal(report.problems[0]?.revision, '3', 'the first event after the removal fails');
    t.ok(report.problems.slice(1).every((p) => p.kind === 'renumbered'), 'the ones after it were moved');
  });

  await t.test('one event inserted', async (t) => {
    const file = copyOf(path, 'inserted');
    const raw = new Database(file);
    const last = raw.prepare('SELECT * FROM events WHERE stream_id = ? ORDER BY revision DESC LIMIT 1').get(stream) as Row;
    const forged = { ...(JSON.parse(last.metadata) as Record<string, unknown>), chainHash: 'a'.repeat(64) };
    raw.prepare("INSERT INTO events (event_id, stream_id, category, revision, type, data, metadata, recorded_at) VALUES ('11111111-1111-4111-8111-111111111111', ?, 'subscription-', ?, 'Reinstated', '{}', ?, ?)")
      .run(stream, last.revision + 1, JSON.stringify(forged), new Date().toISOString());
    raw.close();
    const report = await verifyFile(t, file);
    t.same(report.problems.map((p) => [p.kind, p.streamId, p.eventId]), [['altered', stream, '11111111-1111-4111-8111-111111111111']], 'the inserted event is named');
  });

  await t.test('one event inserted without a hash, in the middle, the rest renumbered', async (t) => {
    const file = copyOf(path, 'inserted-middle');
    const raw = new Database(file);
    const later = raw.prepare('SELECT position, revision FROM events WHERE stream_id = ? AND revision >= 2 ORDER BY revision DESC').all(stream) as Row[];
    for (const r of later) raw.prepare('UPDATE events SET revision = ? WHERE position = ?').run(r.revision + 1, r.position);
    raw.prepare("INSERT INTO events (event_id, stream_id, category, revision, type, data, metadata, recorded_at) VALUES ('22222222-2222-4222-8222-222222222222', ?, 'subscription-', 2, 'Suspended', '{}', '{}', ?)")
      .run(stream, new Date().toISOString());
    raw.close();
    const report = await verifyFile(t, file, stream);
    t.same(report.problems[0] && [report.problems[0].kind, report.problems[0].eventId], ['unchained', '22222222-2222-4222-8222-222222222222'], 'the inserted event is named');
    t.ok(report.problems.slice(1).every((p) => p.kind === 'renumbered' || p.kind === 'altered'), 'the moved ones fail too');
  });

  await t.test('anchored head hashes catch a truncated tail', async (t) => {
    const file = copyOf(path, 'truncated');
    const raw = new Database(file);
    const last = raw.prepare('SELECT * FROM events WHERE stream_id = ? ORDER BY revision DESC LIMIT 1').get(stream) as Row;
    raw.prepare('DELETE FROM events WHERE position = ?').run(last.position);
    raw.close();
    t.ok((await verifyFile(t, file)).ok, 'the chain alone cannot see the last event go');
    const store = openSqliteStore({ path: file });
    t.teardown(() => store.close());
    const report = await verifyChains(store, { anchors: heads });
    t.same(report.problems.map((p) => [p.kind, p.streamId, p.revision]), [['truncated', stream, String(last.revision)]], 'the anchor names it');
    t.equal(report.anchorsMatched, heads.length - 1);
  });
});
