/**
 * The EventStoreDB adapter, through the REAL `@eventstore/db-client` over real gRPC, against the in-memory
 * STAND-IN in test/support/esdb-standin.ts (not EventStoreDB: it speaks enough of the protocol to exercise the
 * adapter). The real server is covered by esdb.contract.test.ts when EVENTSTORE_CONNECTION_STRING is set.
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import type { Test } from 'tap';
import { ConcurrencyError, StoreUnavailableError } from '../../src/eventstore/eventstore.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { openEsdbStore } from '../../src/eventstore/esdb.store.js';
import type { EsdbEventStore, PersistentDelivery, PersistentSubscriptionHandle } from '../../src/eventstore/esdb.store.js';
import { startEsdbStandIn } from '../support/esdb-standin.js';
import type { EsdbStandIn } from '../support/esdb-standin.js';
import { eventStoreContract } from './contract.js';

const standIn = await startEsdbStandIn();
t.teardown(() => standIn.stop());

const unique = (label: string) => `${label}${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const ev = (type: string, n: number) => ({ type, data: { n } });

async function openStore(t: Test, target: EsdbStandIn = standIn): Promise<EsdbEventStore> {
  const store = await openEsdbStore(target.connectionString, { pingTimeoutMs: 2_000 });
  t.teardown(() => store.close());
  return store;
}

async function collect(iterable: AsyncIterable<RecordedEvent>): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  for await (const e of iterable) out.push(e);
  return out;
}

eventStoreContract(t, 'eventstoredb adapter against the gRPC stand-in', () =>
  openEsdbStore(standIn.connectionString),
);

for (const batchAppend of [true, false]) {
  const call = batchAppend ? 'Streams.BatchAppend (servers since 21.10)' : 'Streams.Append (older servers)';
  t.test(`stand-in, ${call}: every kind of expected revision, and what a conflict reports`, async (t) => {
    const own = batchAppend ? standIn : await startEsdbStandIn({ batchAppend: false });
    if (own !== standIn) t.teardown(() => own.stop());
    await expectedRevisions(t, await openStore(t, own));
  });
}

async function expectedRevisions(t: Test, store: EsdbEventStore): Promise<void> {
  const s = unique('order-');

  const first = await store.appendToStream(s, [ev('A', 1)], { expectedRevision: 'no_stream' });
  t.equal(first.nextExpectedRevision, 0n);
  t.equal((await store.appendToStream(s, [ev('B', 2)], { expectedRevision: 0n })).nextExpectedRevision, 1n);
  t.equal((await store.appendToStream(s, [ev('C', 3)], { expectedRevision: 'any' })).nextExpectedRevision, 2n);
  const last = await store.appendToStream(s, [ev('D', 4)], { expectedRevision: 'stream_exists' });
  t.equal(last.nextExpectedRevision, 3n);
  t.ok(last.position > first.position, 'positions grow');

  const stale = await store.appendToStream(s, [ev('X', 0)], { expectedRevision: 1n }).catch((e: unknown) => e);
  t.type(stale, ConcurrencyError);
  t.match(stale, { streamId: s, expected: 1n, actual: 3n }, 'a stale revision reports the actual one');

  const exists = await store.appendToStream(s, [ev('X', 0)], { expectedRevision: 'no_stream' }).catch((e: unknown) => e);
  t.match(exists, { name: 'ConcurrencyError', expected: 'no_stream', actual: 3n });

  const missing = unique('order-');
  const absent = await store.appendToStream(missing, [ev('X', 0)], { expectedRevision: 'stream_exists' }).catch((e: unknown) => e);
  t.match(absent, { name: 'ConcurrencyError', expected: 'stream_exists', actual: -1n }, 'an absent stream is -1n');
  t.match((absent as Error).message, /absent/);

  t.same((await store.readStream(s)).map((e) => e.type), ['A', 'B', 'C', 'D'], 'conflicts wrote nothing');
  t.same(await store.readStream(missing), [], 'nor created the stream');

  t.same(await store.appendToStream(missing, [], { expectedRevision: 'no_stream' }), { nextExpectedRevision: -1n, position: last.position }, 'an empty append only checks (position: the last in the store)');
  t.equal((await store.appendToStream(s, [], { expectedRevision: 3n })).nextExpectedRevision, 3n);
  await t.rejects(store.appendToStream(s, [], { expectedRevision: 'no_stream' }), { name: 'ConcurrencyError', actual: 3n });
  await t.rejects(store.appendToStream(missing, [], { expectedRevision: 'stream_exists' }), { name: 'ConcurrencyError', actual: -1n });

  const ids = [randomUUID(), randomUUID()];
  const batch = ids.map((id, n) => ({ id, ...ev('Retried', n) }));
  const once = await store.appendToStream(s, batch, { expectedRevision: 3n });
  const twice = await store.appendToStream(s, batch, { expectedRevision: 3n });
  t.same(twice, once, 'a retried append with the same ids answers the same and writes nothing');
  t.equal((await store.readStream(s)).length, 6);
}

t.test('stand-in: ids, data, metadata and time survive the round trip', async (t) => {
  const store = await openStore(t);
  const s = unique('meta-');
  const id = randomUUID();
  const metadata = { actor: 'operator:1', correlationId: 'c-1', causationId: 'x', custom: { deep: [1, 2] } };
  const before = Date.now();
  await store.appendToStream(s, [
    { id, type: 'Purchased', data: { planId: 'gold', quantity: 3 }, metadata },
    { type: 'Activated', data: { at: '2024-01-01T00:00:00Z' } },
  ]);
  const [a, b] = await store.readStream(s);
  t.match(a, { id, streamId: s, revision: 0n, type: 'Purchased', data: { planId: 'gold', quantity: 3 }, metadata });
  t.match(b?.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a random v4 uuid when none is given');
  t.same(Object.keys(b?.metadata ?? {}), ['chainHash'], 'no metadata reads as only the chain hash the store adds');
  t.ok(Date.parse(a?.recordedAt ?? '') >= before - 1000, 'recordedAt is the time the event was stored');
  t.ok(b !== undefined && a !== undefined && b.position > a.position, 'single-stream reads carry positions');
});

t.test('stand-in: readStream paging and a missing stream', async (t) => {
  const store = await openStore(t);
  const s = unique('page-');
  await store.appendToStream(s, [1, 2, 3, 4, 5].map((n) => ev('E', n)));
  t.same((await store.readStream(s, { fromRevision: 3n })).map((e) => e.revision), [3n, 4n]);
  t.same((await store.readStream(s, { maxCount: 2 })).map((e) => e.revision), [0n, 1n]);
  t.same(await store.readStream(s, { maxCount: 0 }), []);
  t.same(await store.readStream(s, { fromRevision: 9n }), [], 'past the end');
  t.same(await store.readStream(unique('never-')), [], 'stream not found reads as empty');
});

t.test('stand-in: readAll keeps order, hides system events, and treats after as exclusive', async (t) => {
  const store = await openStore(t);
  const prefix = unique('ra');
  standIn.appendDirect(`$$${prefix}-1`, [{ type: '$metadata', data: { $maxCount: 1 } }]);
  const a = await store.appendToStream(`${prefix}-1`, [ev('One', 1)]);
  standIn.appendDirect(`$ce-${prefix}`, [{ type: '$>', data: '0@x' }]);
  await store.appendToStream(`${prefix}-2`, [ev('Two', 2)]);
  standIn.appendDirect(`${prefix}-3`, [{ type: '$system-type', data: {} }]);
  const c = await store.appendToStream(`${prefix}-1`, [ev('Three', 3)]);

  t.ok(standIn.events.some((e) => e.streamId.startsWith('$')), 'the stand-in log does hold system events');
  const everything = await collect(store.readAll());
  t.notOk(everything.some((e) => e.streamId.startsWith('$') || e.type.startsWith('$')), 'no system events');
  t.ok(everything.every((e, i) => i === 0 || e.position > everything[i - 1]!.position), 'strictly increasing');

  const mine = await collect(store.readAll({ streamPrefixes: [prefix] }));
  t.same(mine.map((e) => e.type), ['One', 'Two', 'Three']);
  t.same((await collect(store.readAll({ after: a.position, streamPrefixes: [prefix] }))).map((e) => e.type), ['Two', 'Three'], 'after an event position (the fast path)');
  t.same((await collect(store.readAll({ after: a.position - 1n, streamPrefixes: [prefix] }))).map((e) => e.type), ['One', 'Two', 'Three'], 'after a position inside a record (found by reading backwards)');
  t.same(await collect(store.readAll({ after: c.position, streamPrefixes: [prefix] })), [], 'after the last event');
  t.same((await collect(store.readAll({ streamPrefixes: [prefix], maxCount: 1 }))).map((e) => e.type), ['One'], 'maxCount counts our events only');
  t.same(await collect(store.readAll({ after: c.position + 10_000n })), [], 'after the end of the log');
});

t.test('stand-in: subscribeToAll catches up, goes live, resumes exclusively, and close() ends it', async (t) => {
  const store = await openStore(t);
  const prefix = unique('sub');
  const first = await store.appendToStream(`${prefix}-1`, [ev('E', 1), ev('E', 2)]);
  const sub = store.subscribeToAll({ streamPrefixes: [prefix] });
  const got: number[] = [];
  setTimeout(() => void store.appendToStream(`${prefix}-2`, [ev('E', 3)]), 50);
  for await (const e of sub) {
    got.push((e.data as { n: number }).n);
    if (got.length === 3) break;
  }
  t.same(got, [1, 2, 3], 'history, then a live event');

  const resumed = store.subscribeToAll({ after: first.position, streamPrefixes: [prefix] });
  const again: number[] = [];
  for await (const e of resumed) {
    again.push((e.data as { n: number }).n);
    if (again.length === 1) break;
  }
  t.same(again, [3], 'resuming after a checkpoint skips the checkpointed event');

  const unfiltered = store.subscribeToAll();
  const closer = setTimeout(() => void unfiltered.close(), 200);
  const seen = await collect(unfiltered);
  clearTimeout(closer);
  t.ok(seen.length > 0, 'without prefixes it delivers all our events');
  t.notOk(seen.some((e) => e.streamId.startsWith('$') || e.type.startsWith('$')), 'but never system events');
});

t.test('stand-in: persistent subscription to $all: competing consumers, ack, nack and redelivery', async (t) => {
  const store = await openStore(t);
  const prefix = unique('ps');
  const group = unique('group-');
  await store.appendToStream(`${prefix}-1`, [1, 2, 3, 4].map((n) => ev('E', n)));
  const a = store.persistentSubscription(group, { streamPrefixes: [prefix], bufferSize: 1 });
  const b = store.persistentSubscription(group, { streamPrefixes: [prefix], bufferSize: 1 });

  const handled: { consumer: string; n: number; retryCount: number }[] = [];
  let nacked = false;
  const done = new Promise<void>((resolve) => {
    const consume = async (name: string, sub: PersistentSubscriptionHandle) => {
      for await (const d of sub as AsyncIterable<PersistentDelivery>) {
        const n = (d.event.data as { n: number }).n;
        if (n === 2 && !nacked) {
          nacked = true;
          await d.nack('fails once on purpose');
          continue;
        }
        handled.push({ consumer: name, n, retryCount: d.retryCount });
        await d.ack();
        if (handled.length === 4) resolve();
      }
    };
    void consume('a', a);
    void consume('b', b);
  });
  const timeout = setTimeout(() => void Promise.all([a.close(), b.close()]), 5_000);
  await done;
  clearTimeout(timeout);
  await Promise.all([a.close(), b.close()]);

  t.same(handled.map((h) => h.n).sort(), [1, 2, 3, 4], 'every event handled once');
  t.equal(handled.find((h) => h.n === 2)?.retryCount, 1, 'the nacked event came back with retryCount 1');
  t.same(new Set(handled.map((h) => h.consumer)), new Set(['a', 'b']), 'both consumers got work');

  const again = store.persistentSubscription(group, { streamPrefixes: [prefix] });
  const closer = setTimeout(() => void again.close(), 200);
  const leftovers: unknown[] = [];
  for await (const d of again) leftovers.push(d.event.data);
  clearTimeout(closer);
  t.same(leftovers, [], 'a new consumer of the same group gets nothing already acked');
  await store.deletePersistentSubscription(group);
  await t.resolves(store.deletePersistentSubscription(group), 'deleting a missing group is a no-op');
});

t.test('stand-in: ping, and an unreachable server is StoreUnavailableError', async (t) => {
  const own = await startEsdbStandIn();
  const store = await openStore(t, own);
  await t.resolves(store.ping(), 'ping answers while the stand-in runs');
  await own.stop();
  await t.rejects(store.ping(), StoreUnavailableError);
  await t.rejects(store.appendToStream(unique('down-'), [ev('E', 1)]), StoreUnavailableError);
  await t.rejects(store.readStream(unique('down-')), StoreUnavailableError);
  await t.rejects(collect(store.readAll()), StoreUnavailableError);
});

t.test('stand-in: a subscription fails with StoreUnavailableError when the server goes away', async (t) => {
  const own = await startEsdbStandIn();
  const store = await openStore(t, own);
  const sub = store.subscribeToAll();
  setTimeout(() => void own.stop(), 100);
  await t.rejects(collect(sub), StoreUnavailableError);
});

t.test('a malformed connection string is an error that names EVENTSTORE_CONNECTION_STRING', async (t) => {
  for (const bad of ['', 'localhost:2113', 'esdb://localhost:port', 'esdb://localhost:2113?tls=maybe']) {
    await t.rejects(openEsdbStore(bad), { message: /EVENTSTORE_CONNECTION_STRING/ }, JSON.stringify(bad));
  }
  const err = await openEsdbStore('esdb://admin:s3cr3t-pw@localhost:2113?tls=nope').catch((e: unknown) => e);
  t.match(err, { message: /EVENTSTORE_CONNECTION_STRING/ });
  t.notMatch((err as Error).message, /s3cr3t-pw/, 'the password is not echoed');
  const partial = await openEsdbStore('esdb://admin:hunter2@localhost:2113?tls=hunter').catch((e: unknown) => e);
  t.match(partial, { message: /EVENTSTORE_CONNECTION_STRING.*"\*\*\*"/ });
  t.notMatch((partial as Error).message, /hunter/, 'with credentials present, no quoted fragment is echoed');
});

t.test("chain: several instances appending with expected revision 'any' to one stream keep one true chain", async (t) => {
  const { verifyChains } = await import('../../src/application/audit/verify-chains.js');
  const instances = [await openStore(t), await openStore(t), await openStore(t)];
  const s = unique('chain-any-');
  await instances[0]?.appendToStream(s, [ev('Start', 0)], { expectedRevision: 'no_stream' });
  // Every instance appends at once, several times: each append must name the event it really follows. Nine racing
  // appends: each loses at most eight times (every loss is another's win), within the adapter's ten attempts.
  await Promise.all(instances.flatMap((store, i) => [1, 2, 3].map((n) => store.appendToStream(s, [ev(`I${i}`, n)]))));
  const read = await instances[0]?.readStream(s);
  t.equal(read?.length, 10, 'every append landed once');
  const report = await verifyChains(instances[1] as EsdbEventStore, { streamId: s });
  t.ok(report.ok, 'the chain holds');
  t.equal(report.verified, 10);
  // An instance whose remembered head is stale (another appended since) still chains from the true last event.
  await instances[2]?.appendToStream(s, [ev('Exact', 1)], { expectedRevision: 9n });
  await instances[0]?.appendToStream(s, [ev('Exact', 2)], { expectedRevision: 10n });
  t.ok((await verifyChains(instances[1] as EsdbEventStore, { streamId: s })).ok, 'still whole after exact-revision appends by different instances');
});
