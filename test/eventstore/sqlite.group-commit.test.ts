/**
 * Group commit in the embedded store (issue 11): appends asked for together share one transaction and one fsync,
 * each in its own savepoint. A real SQLite file; a real tmpfs for the full volume. The batches are counted with
 * the store's writeStats(): appends asked for in the same tick (no await between them) are one batch.
 */
import { statfsSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { ConcurrencyError, StoreError, StoreUnavailableError } from '../../src/eventstore/eventstore.js';
import type { AppendResult } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { SqliteEventStore } from '../../src/eventstore/sqlite.store.js';
import { mountTmpfs, tmpfsUnavailable } from '../support/tmpfs.js';
import { tempDir } from '../support/temp.js';

function open(t: Test, options: { maxBatch?: number } = {}): SqliteEventStore {
  const store = openSqliteStore({ path: join(tempDir(t), 'events.db'), checkpointIntervalMs: 0, ...options });
  t.teardown(() => store.close());
  return store;
}

const one = (n: number) => [{ type: 'Happened', data: { n } }];

t.test('200 concurrent appends to different streams: a few transactions, each caller its own revision and position', async (t) => {
  const store = open(t);
  const before = store.writeStats();
  const results = await Promise.all(Array.from({ length: 200 }, (_, n) => store.appendToStream(`gc-${n}`, one(n), { expectedRevision: 'no_stream' })));
  const after = store.writeStats();
  const batches = after.batches - before.batches;
  t.ok(batches >= 1 && batches <= 2, `200 appends in ${batches} transaction(s) (at most 256 per batch)`);
  t.equal(after.appends - before.appends, 200);
  t.ok(results.every((r) => r.nextExpectedRevision === 0n), 'each new stream is at revision 0');
  const positions = results.map((r) => r.position);
  t.same(positions, [...positions].sort((a, b) => (a < b ? -1 : 1)), 'positions follow arrival order');
  t.equal(new Set(positions).size, 200, 'and are all different');
  for (const n of [0, 77, 199]) {
    const [event] = await store.readStream(`gc-${n}`);
    t.equal(event?.position, results[n]?.position, `gc-${n} is stored at the position its caller was given`);
    t.same(event?.data, { n });
  }
});

t.test('a bounded batch: 600 appends asked together go in batches of at most maxBatch', async (t) => {
  const store = open(t, { maxBatch: 100 });
  const results = await Promise.all(Array.from({ length: 600 }, (_, n) => store.appendToStream(`bounded-${n}`, one(n))));
  const stats = store.writeStats();
  t.equal(stats.largestBatch, 100, 'no batch above the bound');
  t.ok(stats.batches >= 6, `${stats.batches} transactions`);
  t.equal(new Set(results.map((r) => r.position)).size, 600);
});

t.test('a conflicting append in the middle of a batch fails alone; the others commit', async (t) => {
  const store = open(t);
  await store.appendToStream('taken-1', one(0));
  const before = store.writeStats().batches;
  const settled = await Promise.allSettled([
    store.appendToStream('mid-1', one(1), { expectedRevision: 'no_stream' }),
    store.appendToStream('mid-2', one(2), { expectedRevision: 'no_stream' }),
    store.appendToStream('taken-1', one(3), { expectedRevision: 'no_stream' }), // exists already
    store.appendToStream('taken-1', one(4), { expectedRevision: 5n }), // it is at 0
    store.appendToStream('mid-3', one(5), { expectedRevision: 'no_stream' }),
  ]);
  t.equal(store.writeStats().batches - before, 1, 'all five were one transaction');
  t.same(settled.map((s) => s.status), ['fulfilled', 'fulfilled', 'rejected', 'rejected', 'fulfilled']);
  const [, , third, fourth] = settled;
  t.ok(third?.status === 'rejected' && third.reason instanceof ConcurrencyError, 'no_stream on an existing stream: ConcurrencyError');
  t.match(fourth?.status === 'rejected' ? fourth.reason : undefined, { name: 'ConcurrencyError', actual: 0n });
  t.same((await store.readStream('taken-1')).map((e) => e.data), [{ n: 0 }], 'nothing of the conflicting appends is stored');
  for (const [stream, n] of [['mid-1', 1], ['mid-2', 2], ['mid-3', 5]] as const) {
    t.same((await store.readStream(stream)).map((e) => e.data), [{ n }], `${stream} committed`);
  }
});

t.test('appends to the same stream in one batch: applied in arrival order, each sees the one before', async (t) => {
  const store = open(t);
  const before = store.writeStats().batches;
  const settled = await Promise.allSettled([
    store.appendToStream('same-1', one(0), { expectedRevision: 'no_stream' }),
    store.appendToStream('same-1', [...one(1), ...one(2)], { expectedRevision: 0n }),
    store.appendToStream('same-1', one(3), { expectedRevision: 0n }), // stale: the second moved it to 2
    store.appendToStream('same-1', one(4), { expectedRevision: 2n }),
    store.appendToStream('same-1', one(5), { keepLast: 2 }),
  ]);
  t.equal(store.writeStats().batches - before, 1, 'one transaction');
  t.same(settled.map((s) => s.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
  const revisions = settled.map((s) => (s.status === 'fulfilled' ? s.value.nextExpectedRevision : undefined));
  t.same(revisions, [0n, 2n, undefined, 3n, 4n]);
  t.match(settled[2]?.status === 'rejected' ? settled[2].reason : undefined, { name: 'ConcurrencyError', expected: 0n, actual: 2n });
  const stored = await store.readStream('same-1');
  t.same(stored.map((e) => [e.revision, e.data]), [[3n, { n: 4 }], [4n, { n: 5 }]], 'keepLast applied inside the batch, revisions kept');
});

t.test('an idempotent repeat in a batch answers with the original result; a mismatching repeat fails alone', async (t) => {
  const store = open(t);
  const id = '0b9f6c1e-4d8a-4c51-9a3e-6f2d1c7b5e40';
  const event = [{ id, type: 'Once', data: {} }];
  const settled = await Promise.allSettled([
    store.appendToStream('idem-1', event, { expectedRevision: 'no_stream' }),
    store.appendToStream('idem-1', event, { expectedRevision: 'no_stream' }), // the same append, retried
    store.appendToStream('idem-2', event), // the same id in another stream
    store.appendToStream('idem-3', one(1)),
    // Its first event is inserted, its second reuses the id: rolled back to its savepoint, the first goes too.
    store.appendToStream('partial-1', [{ type: 'New', data: {} }, { id, type: 'Reused', data: {} }]),
    store.appendToStream('idem-4', one(2)),
  ]);
  t.same(settled.map((s) => s.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
  t.match(settled[4]?.status === 'rejected' ? settled[4].reason : undefined, { message: /^stream partial-1: an event id in this append is already used elsewhere/ });
  t.same(await store.readStream('partial-1'), [], 'nothing of the half-inserted append is left');
  t.equal((await store.readStream('idem-4')).length, 1, 'the append after it committed');
  const [first, repeat, other] = settled;
  const value = (s: PromiseSettledResult<AppendResult> | undefined) => (s?.status === 'fulfilled' ? s.value : undefined);
  t.same(value(repeat), value(first), 'the repeat is answered with the first append\'s revision and position');
  t.ok(other?.status === 'rejected' && other.reason instanceof StoreError && !(other.reason instanceof StoreUnavailableError), 'a request error, not a store outage');
  t.equal((await store.readStream('idem-1')).length, 1, 'stored once');
  t.same(await store.readStream('idem-2'), []);
  t.equal((await store.readStream('idem-3')).length, 1);
});

t.test('a lone append is not held back: it commits in a batch of its own', async (t) => {
  const store = open(t);
  const before = store.writeStats();
  const r = await store.appendToStream('alone-1', one(1));
  const after = store.writeStats();
  t.equal(after.batches - before.batches, 1);
  t.equal(after.appends - before.appends, 1);
  t.equal(r.nextExpectedRevision, 0n);
});

t.test('close() answers the appends still queued', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = openSqliteStore({ path });
  const appends = Array.from({ length: 10 }, (_, n) => store.appendToStream(`closing-${n}`, one(n)));
  await store.close();
  const settled = await Promise.allSettled(appends);
  t.ok(settled.every((s) => s.status === 'fulfilled'), 'every queued append committed before the file closed');
  const again = openSqliteStore({ path });
  t.teardown(() => again.close());
  t.equal((await again.readStream('closing-9')).length, 1);
});

const skip = tmpfsUnavailable() ?? false;

t.test('a batch that does not fit on the volume: every append in it fails with StoreUnavailableError, nothing is written', { skip }, async (t) => {
  const dir = mountTmpfs(t, 24);
  const path = join(dir, 'events.db');
  const store = openSqliteStore({ path, checkpointIntervalMs: 0 });
  t.teardown(() => store.close());
  await store.appendToStream('fits-1', one(0));
  // Leave about 1 MiB free, then ask for ~4 MiB at once: more than SQLite's page cache (2 MiB), so pages spill to
  // the WAL in the middle of the batch and the write fails there, not only at the commit.
  const spare = join(dir, 'other-data.bin');
  const { bavail, bsize } = statfsSync(dir);
  writeFileSync(spare, Buffer.alloc(Math.max(0, bavail * bsize - 1024 * 1024)));
  const big = (n: number) => [{ type: 'Big', data: { n, pad: 'x'.repeat(100_000) } }];
  const before = store.writeStats().batches;
  const settled = await Promise.allSettled(Array.from({ length: 40 }, (_, n) => store.appendToStream(`big-${n}`, big(n), { expectedRevision: 'no_stream' })));
  t.equal(store.writeStats().batches - before, 1, 'one transaction');
  t.ok(settled.every((s) => s.status === 'rejected' && s.reason instanceof StoreUnavailableError), 'all 40 fail with StoreUnavailableError');
  t.match(settled[7]?.status === 'rejected' ? settled[7].reason : undefined, { message: /^stream big-7: append failed: disk full/ }, 'each says its own stream');
  let stored = 0;
  for (let n = 0; n < 40; n++) stored += (await store.readStream(`big-${n}`)).length;
  t.equal(stored, 0, 'nothing of the batch is stored');
  t.equal((await store.readStream('fits-1')).length, 1, 'what was there before is intact');
  await t.rejects(store.ping(), { name: 'StoreNotWritableError' }, '/readyz: not ready');

  rmSync(spare);
  const again = await Promise.all(Array.from({ length: 40 }, (_, n) => store.appendToStream(`big-${n}`, big(n), { expectedRevision: 'no_stream' })));
  t.ok(again.every((r) => r.nextExpectedRevision === 0n), 'with room again the same batch goes through, at the revisions it asked for');
});
