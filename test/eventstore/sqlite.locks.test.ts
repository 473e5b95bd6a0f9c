/**
 * The embedded store and another process's write lock (issue 10: a lock held elsewhere froze the service):
 * a real file, a real second process holding `BEGIN IMMEDIATE` on it.
 */
import { join } from 'node:path';
import t from 'tap';
import { StoreUnavailableError } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { StoreNotWritableError } from '../../src/eventstore/write-health.js';
import { holdWriteLock } from '../support/lock-holder.js';
import { tempDir } from '../support/temp.js';

/** Counts timer ticks while `work` runs: a blocked event loop counts none. */
async function ticksDuring<T>(work: Promise<T>): Promise<{ ticks: number; outcome: PromiseSettledResult<T> }> {
  let ticks = 0;
  const timer = setInterval(() => (ticks += 1), 10);
  const [outcome] = await Promise.allSettled([work]);
  clearInterval(timer);
  return { ticks, outcome: outcome as PromiseSettledResult<T> };
}

t.test('a lock held by another process: the append waits on timers, fails within its bound, writes nothing; then works', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = openSqliteStore({ path, busyWaitMs: 1500, writeProbeIntervalMs: 100 });
  t.teardown(() => store.close());
  await store.appendToStream('lock-1', [{ type: 'Before', data: {} }]);
  const lock = await holdWriteLock(t, path);

  const { ticks, outcome } = await ticksDuring(store.appendToStream('lock-1', [{ type: 'Blocked', data: {} }, { type: 'Blocked', data: {} }]));
  t.equal(outcome.status, 'rejected', 'the append failed');
  const err = outcome.status === 'rejected' ? outcome.reason : undefined;
  t.ok(err instanceof StoreUnavailableError, 'with StoreUnavailableError (the webhook answers 503)');
  t.match(err, { message: /stream lock-1: the database is locked by another writer \(waited \d+ ms\)/ });
  t.ok(ticks >= 5, `the event loop kept running while it waited (${ticks} timer ticks)`);

  t.same((await store.readStream('lock-1')).map((e) => e.type), ['Before'], 'reads answer while the lock is held, and nothing of the failed append is there');
  await t.rejects(store.ping(), StoreNotWritableError, '/readyz: not ready');
  const notReady = await store.ping().then(() => undefined, (e: unknown) => e);
  t.match(notReady, { reason: /^cannot write: the database is locked by another process/, since: /^\d{4}-\d\d-\d\dT/ }, 'with the reason and since when');

  await lock.release();
  const r = await store.appendToStream('lock-1', [{ type: 'After', data: {} }], { expectedRevision: 0n });
  t.equal(r.nextExpectedRevision, 1n, 'the next append lands where the failed one would have');
  await store.ping();
  t.pass('ready again once a write went through');
  t.same((await store.readStream('lock-1')).map((e) => e.type), ['Before', 'After']);
});

t.test('appends that wait for the lock keep their order and land once it is released; ping probes and recovers by itself', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = openSqliteStore({ path, busyWaitMs: 60_000, writeProbeIntervalMs: 100 });
  t.teardown(() => store.close());
  await store.appendToStream('order-1', [{ type: 'First', data: { n: 0 } }]);
  const lock = await holdWriteLock(t, path);
  const settled: string[] = [];
  const appends = [1, 2, 3].map((n) =>
    store.appendToStream(n === 2 ? 'order-2' : 'order-1', [{ type: 'Waited', data: { n } }]).then((r) => {
      settled.push(`append ${n}`);
      return r;
    }),
  );
  // A probe with a short wait meets the lock and says so, without holding up the appends behind it.
  const probe = new Promise((resolve) => setTimeout(resolve, 150)).then(() => store.ping());
  t.match(await probe.then(() => undefined, (e: unknown) => e), { name: 'StoreNotWritableError', reason: /locked by another process/ });
  t.same(settled, [], 'the appends are still waiting');
  await lock.release();
  const results = await Promise.all(appends);
  t.same(settled, ['append 1', 'append 2', 'append 3'], 'answered in the order they were asked');
  const positions = results.map((r) => r.position);
  t.same([...positions].sort((a, b) => (a < b ? -1 : 1)), positions, `and committed in that order (positions ${positions.join(', ')})`);
  t.same((await store.readStream('order-1')).map((e) => (e.data as { n: number }).n), [0, 1, 3]);
  await store.ping();
  t.pass('ready: the appends after the release count as writes that work');
});

t.test('close() while an append waits for the lock: the append gets its answer first', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = openSqliteStore({ path, busyWaitMs: 800 });
  await store.appendToStream('close-1', [{ type: 'A', data: {} }]);
  const lock = await holdWriteLock(t, path);
  const waiting = store.appendToStream('close-1', [{ type: 'B', data: {} }]);
  waiting.catch(() => undefined);
  await store.close();
  await t.rejects(waiting, { name: 'StoreBusyError' }, 'failed within its bound, before the file was closed');
  await lock.release();
  const again = openSqliteStore({ path });
  t.teardown(() => again.close());
  t.same((await again.readStream('close-1')).map((e) => e.type), ['A']);
});
