/**
 * The event store contract: every adapter must pass exactly these tests.
 * Stream names carry a random suffix so the suite also runs against a long-lived server.
 */
import { randomUUID } from 'node:crypto';
import type { Test } from 'tap';
import { verifyChains } from '../../src/application/audit/verify-chains.js';
import { GENESIS_HASH, chainHash } from '../../src/eventstore/chain-hash.js';
import { ConcurrencyError } from '../../src/eventstore/eventstore.js';
import type { EventStore, RecordedEvent } from '../../src/eventstore/eventstore.js';

export type OpenStore = () => Promise<EventStore>;

const run = randomUUID().slice(0, 8);
let counter = 0;
const stream = (label: string): string => `contract${run}${++counter}${label}-${randomUUID()}`;

const ev = (type: string, n: number) => ({ type, data: { n }, metadata: { actor: 'contract-test' } });

async function collect(iterable: AsyncIterable<RecordedEvent>, limit = Number.POSITIVE_INFINITY): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  for await (const e of iterable) {
    out.push(e);
    if (out.length >= limit) break;
  }
  return out;
}

/** Read from a subscription until `count` events arrived or the deadline passed. */
async function take(store: EventStore, count: number, options: Parameters<EventStore['subscribeToAll']>[0], ms = 5000) {
  const sub = store.subscribeToAll(options);
  const got: RecordedEvent[] = [];
  const timer = setTimeout(() => void sub.close(), ms);
  try {
    for await (const e of sub) {
      got.push(e);
      if (got.length >= count) break;
    }
  } finally {
    clearTimeout(timer);
    await sub.close();
  }
  return got;
}

export function eventStoreContract(t: Test, name: string, open: OpenStore): void {
  t.test(`${name}: event store contract`, async (t) => {
    const store = await open();
    t.teardown(() => store.close());

    t.test('append to a new stream with no_stream, then read it back in order', async (t) => {
      const s = stream('a');
      const r = await store.appendToStream(s, [ev('A', 1), ev('B', 2), ev('C', 3)], { expectedRevision: 'no_stream' });
      t.equal(r.nextExpectedRevision, 2n, 'revision of the last event');
      const read = await store.readStream(s);
      t.same(read.map((e) => e.type), ['A', 'B', 'C']);
      t.same(read.map((e) => e.revision), [0n, 1n, 2n]);
      t.same(read.map((e) => e.data), [{ n: 1 }, { n: 2 }, { n: 3 }]);
      t.equal(read[0]?.metadata.actor, 'contract-test', 'metadata is kept');
      t.equal(read[0]?.streamId, s);
      t.ok(read.every((e, i) => i === 0 || e.position > (read[i - 1] as RecordedEvent).position), 'positions increase');
      t.equal(r.position, read[2]?.position, 'append result reports the last position');
      t.match(read[0]?.recordedAt, /^\d{4}-\d\d-\d\dT/, 'recordedAt is ISO-8601');
    });

    t.test('expected revisions: exact, any, stream_exists, no_stream', async (t) => {
      const s = stream('b');
      await t.rejects(store.appendToStream(s, [ev('X', 0)], { expectedRevision: 'stream_exists' }), ConcurrencyError);
      await t.rejects(store.appendToStream(s, [ev('X', 0)], { expectedRevision: 0n }), ConcurrencyError);
      await store.appendToStream(s, [ev('A', 1)], { expectedRevision: 'no_stream' });
      await t.rejects(store.appendToStream(s, [ev('X', 0)], { expectedRevision: 'no_stream' }), ConcurrencyError);
      const r1 = await store.appendToStream(s, [ev('B', 2)], { expectedRevision: 0n });
      t.equal(r1.nextExpectedRevision, 1n);
      const err = await store.appendToStream(s, [ev('X', 0)], { expectedRevision: 0n }).catch((e: unknown) => e);
      t.type(err, ConcurrencyError, 'a stale exact revision conflicts');
      t.match((err as Error).message, /expected revision 0/, 'the message says what was expected');
      const r2 = await store.appendToStream(s, [ev('C', 3)], { expectedRevision: 'stream_exists' });
      t.equal(r2.nextExpectedRevision, 2n);
      const r3 = await store.appendToStream(s, [ev('D', 4)], { expectedRevision: 'any' });
      t.equal(r3.nextExpectedRevision, 3n);
      t.same((await store.readStream(s)).map((e) => e.type), ['A', 'B', 'C', 'D'], 'rejected appends wrote nothing');
    });

    t.test('a missing stream reads as empty', async (t) => {
      t.same(await store.readStream(stream('missing')), []);
    });

    t.test('readStream from a revision with a max count', async (t) => {
      const s = stream('c');
      await store.appendToStream(s, [1, 2, 3, 4, 5].map((n) => ev('E', n)));
      const part = await store.readStream(s, { fromRevision: 1n, maxCount: 3 });
      t.same(part.map((e) => e.data), [{ n: 2 }, { n: 3 }, { n: 4 }]);
    });

    t.test('readLastEvent: the last event of a stream, undefined for a missing one', async (t) => {
      const s = stream('last');
      t.equal(await store.readLastEvent(s), undefined, 'a missing stream has no last event');
      await store.appendToStream(s, [1, 2, 3].map((n) => ev('E', n)));
      await store.appendToStream(s, [ev('Last', 4)]);
      const last = await store.readLastEvent(s);
      t.equal(last?.type, 'Last');
      t.same(last?.data, { n: 4 });
      t.equal(last?.revision, 3n, 'with its revision');
      t.equal(last?.streamId, s);
      t.equal(last?.metadata.actor, 'contract-test', 'and its metadata');
      t.same(last, (await store.readStream(s))[3], 'the same event a forward read returns');
    });

    t.test('keepLast bounds a stream to its last events; revisions and expected revisions carry on', async (t) => {
      const s = stream('bounded');
      await store.appendToStream(s, [1, 2, 3, 4].map((n) => ev('E', n)), { expectedRevision: 'no_stream' });
      t.equal((await store.readStream(s)).length, 4, 'unbounded so far');
      const r = await store.appendToStream(s, [ev('E', 5)], { expectedRevision: 3n, keepLast: 2 });
      t.equal(r.nextExpectedRevision, 4n, 'the revision counts every event ever appended');
      const kept = await store.readStream(s);
      t.same(kept.map((e) => e.data), [{ n: 4 }, { n: 5 }], 'only the last two remain');
      t.same(kept.map((e) => e.revision), [3n, 4n], 'at their own revisions');
      for (let n = 6; n <= 9; n++) await store.appendToStream(s, [ev('E', n)], { expectedRevision: BigInt(n - 2), keepLast: 2 });
      t.same((await store.readStream(s)).map((e) => e.data), [{ n: 8 }, { n: 9 }], 'still two after more appends');
      t.same((await store.readLastEvent(s))?.data, { n: 9 });
      t.same((await store.readStream(s, { fromRevision: 8n })).map((e) => e.revision), [8n], 'read from a kept revision');
      await t.rejects(store.appendToStream(s, [ev('X', 0)], { expectedRevision: 7n, keepLast: 2 }), ConcurrencyError, 'a stale revision still conflicts');
      await t.rejects(store.appendToStream(s, [ev('X', 0)], { expectedRevision: 'no_stream', keepLast: 2 }), ConcurrencyError, 'the stream still exists');
      const one = await store.appendToStream(s, [ev('E', 10)], { keepLast: 1 });
      t.equal(one.nextExpectedRevision, 9n);
      t.same((await store.readStream(s)).map((e) => e.data), [{ n: 10 }], 'keepLast 1: only the newest');
    });

    t.test('keepLast on a new stream, and on a batch longer than the bound', async (t) => {
      const s = stream('boundednew');
      await store.appendToStream(s, [1, 2, 3].map((n) => ev('E', n)), { expectedRevision: 'no_stream', keepLast: 1 });
      t.same((await store.readStream(s)).map((e) => [e.revision, e.data]), [[2n, { n: 3 }]], 'the last of the batch');
      t.same((await store.readLastEvent(s))?.data, { n: 3 });
      await t.rejects(store.appendToStream(s, [ev('X', 0)], { keepLast: 0 }), 'keepLast must be at least 1');
      t.same((await store.readStream(s)).map((e) => e.data), [{ n: 3 }], 'a refused bound writes nothing');
    });

    t.test('keepLast leaves other streams alone', async (t) => {
      const s = stream('boundedself');
      const other = stream('boundedother');
      await store.appendToStream(other, [1, 2, 3].map((n) => ev('O', n)));
      await store.appendToStream(s, [1, 2, 3].map((n) => ev('E', n)), { keepLast: 1 });
      t.equal((await store.readStream(other)).length, 3);
    });

    t.test('two writers racing on one stream: exactly one wins', async (t) => {
      const s = stream('race');
      await store.appendToStream(s, [ev('Start', 0)], { expectedRevision: 'no_stream' });
      const results = await Promise.allSettled([
        store.appendToStream(s, [ev('Writer', 1)], { expectedRevision: 0n }),
        store.appendToStream(s, [ev('Writer', 2)], { expectedRevision: 0n }),
      ]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      t.equal(won.length, 1, 'one writer wins');
      t.equal(lost.length, 1, 'the other gets a conflict');
      t.type((lost[0] as PromiseRejectedResult).reason, ConcurrencyError);
      t.equal((await store.readStream(s)).length, 2);
    });

    t.test('retrying an append with the same event ids does not duplicate', async (t) => {
      const s = stream('idem');
      const batch = [
        { id: randomUUID(), ...ev('A', 1) },
        { id: randomUUID(), ...ev('B', 2) },
      ];
      const first = await store.appendToStream(s, batch, { expectedRevision: 'no_stream' });
      const again = await store.appendToStream(s, batch, { expectedRevision: 'no_stream' });
      t.equal(again.nextExpectedRevision, first.nextExpectedRevision);
      t.equal((await store.readStream(s)).length, 2, 'still two events');
    });

    t.test('readAll returns events of all streams in global order, after a position, filtered by prefix', async (t) => {
      const prefix = `contract${run}all${randomUUID().slice(0, 8)}`;
      const s1 = `${prefix}x-1`;
      const s2 = `${prefix}y-2`;
      const a = await store.appendToStream(s1, [ev('One', 1)]);
      const beforeA = (await store.readStream(s1))[0]!.position - 1n;
      await store.appendToStream(s2, [ev('Two', 2)]);
      await store.appendToStream(s1, [ev('Three', 3)]);
      const all = await collect(store.readAll({ after: beforeA, streamPrefixes: [prefix] }));
      t.same(all.map((e) => e.type), ['One', 'Two', 'Three']);
      const after = await collect(store.readAll({ after: a.position, streamPrefixes: [prefix] }));
      t.same(after.map((e) => e.type), ['Two', 'Three'], 'after is exclusive');
      const onlyX = await collect(store.readAll({ after: beforeA, streamPrefixes: [`${prefix}x`] }));
      t.same(onlyX.map((e) => e.type), ['One', 'Three'], 'prefix filter');
      const limited = await collect(store.readAll({ after: beforeA, streamPrefixes: [prefix], maxCount: 2 }));
      t.equal(limited.length, 2, 'maxCount');
    });

    t.test('subscribe: catch up, then live events, in order', async (t) => {
      const prefix = `contract${run}sub${randomUUID().slice(0, 8)}`;
      const s = `${prefix}-1`;
      await store.appendToStream(s, [ev('Old', 1), ev('Old', 2)]);
      // Positions need not be contiguous (EventStoreDB's are log offsets): start just before the first event.
      const start = (await store.readStream(s))[0]!.position - 1n;
      const got = take(store, 4, { after: start, streamPrefixes: [prefix] });
      await new Promise((r) => setTimeout(r, 50));
      await store.appendToStream(s, [ev('New', 3)]);
      await store.appendToStream(`${prefix}-2`, [ev('New', 4)]);
      const events = await got;
      t.same(events.map((e) => e.data), [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }]);
    });

    t.test('a subscriber restarting from its checkpoint neither skips nor repeats an event', async (t) => {
      const prefix = `contract${run}ckpt${randomUUID().slice(0, 8)}`;
      const s = `${prefix}-1`;
      await store.appendToStream(s, [1, 2, 3, 4, 5].map((n) => ev('E', n)));
      const start = (await store.readStream(s))[0]!.position - 1n;
      // First run: handle 3 events, store the checkpoint of the last handled, stop.
      const run1 = await take(store, 3, { after: start, streamPrefixes: [prefix] });
      const checkpoint = (run1[run1.length - 1] as RecordedEvent).position;
      // Meanwhile more events arrive.
      await store.appendToStream(s, [6, 7].map((n) => ev('E', n)));
      // Second run resumes after the checkpoint.
      const run2 = await take(store, 4, { after: checkpoint, streamPrefixes: [prefix] });
      const seen = [...run1, ...run2].map((e) => (e.data as { n: number }).n);
      t.same(seen, [1, 2, 3, 4, 5, 6, 7], 'every event exactly once, in order');
    });

    t.test('close ends a live subscription', async (t) => {
      const sub = store.subscribeToAll({ streamPrefixes: [`nothing-here-${randomUUID()}`] });
      setTimeout(() => void sub.close(), 50);
      const started = Date.now();
      const got = await collect(sub);
      t.same(got, []);
      t.ok(Date.now() - started < 3000, 'the iteration ended promptly');
    });

    t.test('chain: every event carries the hash of its content and of the event before it', async (t) => {
      const s = stream('chain');
      await store.appendToStream(s, [ev('A', 1), ev('B', 2)], { expectedRevision: 'no_stream' });
      await store.appendToStream(s, [ev('C', 3)], { expectedRevision: 1n });
      await store.appendToStream(s, [{ ...ev('D', 4), metadata: { actor: 'contract-test', chainHash: 'f'.repeat(64) } }]);
      await store.appendToStream(s, [ev('E', 5)], { expectedRevision: 'stream_exists' });
      const read = await store.readStream(s);
      t.equal(read.length, 5);
      let previous = GENESIS_HASH;
      for (const e of read) {
        t.equal(e.metadata.chainHash, chainHash(previous, e), `revision ${e.revision}: recomputed from its content and the previous hash`);
        previous = String(e.metadata.chainHash);
      }
      t.not(read[3]?.metadata.chainHash, 'f'.repeat(64), "a caller's chainHash is replaced by the store's");
      t.equal(read[0]?.metadata.actor, 'contract-test', 'the rest of the metadata is kept');
      const report = await verifyChains(store, { streamId: s });
      t.ok(report.ok, 'verifyChains passes');
      t.equal(report.verified, 5);
      t.same(report.problems, []);
    });

    t.test('chain: an idempotent retry keeps the chain, and racing appends with expected revision any chain in order', async (t) => {
      const s = stream('chainany');
      const batch = [{ id: randomUUID(), ...ev('A', 1) }, { id: randomUUID(), ...ev('B', 2) }];
      await store.appendToStream(s, batch, { expectedRevision: 'no_stream' });
      await store.appendToStream(s, batch, { expectedRevision: 'no_stream' });
      const retried = { id: randomUUID(), ...ev('C', 3) };
      const once = await store.appendToStream(s, [retried]);
      const twice = await store.appendToStream(s, [retried]);
      t.equal(twice.nextExpectedRevision, once.nextExpectedRevision, "a retried 'any' append answers the same");
      await Promise.all([4, 5, 6, 7, 8, 9].map((n) => store.appendToStream(s, [ev('Any', n)])));
      const read = await store.readStream(s);
      t.equal(read.length, 9, 'nothing duplicated, nothing lost');
      const report = await verifyChains(store, { streamId: s });
      t.ok(report.ok, 'the chain holds');
      t.equal(report.verified, 9);
    });

    t.test('chain: a bounded stream (keepLast) chains from its first kept event', async (t) => {
      const s = stream('chainbounded');
      for (let n = 1; n <= 5; n++) await store.appendToStream(s, [ev('Checkpoint', n)], { keepLast: 1 });
      const [last] = await store.readStream(s);
      t.equal(last?.revision, 4n);
      t.equal(last?.metadata.keepLast, 1, 'the bound is recorded in the hashed metadata');
      const report = await verifyChains(store, { streamId: s });
      t.ok(report.ok, 'older events gone by design are not a problem');
      t.equal(report.pruned, 1);
    });
  });
}
