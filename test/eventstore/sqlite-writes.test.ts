/** The write queue and the wait for a lock, with writes that say SQLITE_BUSY a given number of times. */
import t from 'tap';
import { StoreUnavailableError } from '../../src/eventstore/eventstore.js';
import { StoreBusyError, WriteQueue, retryWhileBusy, writeFailureOf } from '../../src/eventstore/sqlite-writes.js';
import { WriteHealth } from '../../src/eventstore/write-health.js';

const busy = (code = 'SQLITE_BUSY') => Object.assign(new Error('database is locked'), { code });

/** A write that meets the lock `times` times, then returns `value`. */
function lockedFor<T>(times: number, value: T, log: string[] = []): () => T {
  let left = times;
  return () => {
    if (left-- > 0) throw busy();
    log.push(String(value));
    return value;
  };
}

t.test('a free write runs at once, in the same tick; errors that are not a lock are not retried', async (t) => {
  const q = new WriteQueue({ maxWaitMs: 1000 });
  let ran = false;
  const done = q.write('w', () => (ran = true));
  t.ok(ran, 'ran synchronously, before any timer');
  t.equal(await done, true);
  let calls = 0;
  await t.rejects(
    q.write('w', () => {
      calls++;
      throw Object.assign(new Error('UNIQUE constraint failed'), { code: 'SQLITE_CONSTRAINT_UNIQUE' });
    }),
    { code: 'SQLITE_CONSTRAINT_UNIQUE' },
  );
  t.equal(calls, 1);
});

t.test('writes that meet the lock wait on timers and commit in the order they were asked', async (t) => {
  const q = new WriteQueue({ maxWaitMs: 5000 });
  const log: string[] = [];
  const results = await Promise.all([q.write('a', lockedFor(5, 'a', log)), q.write('b', lockedFor(0, 'b', log)), q.write('c', lockedFor(2, 'c', log))]);
  t.same(results, ['a', 'b', 'c']);
  t.same(log, ['a', 'b', 'c'], 'b, free at once, did not overtake a');
  await q.idle();
});

t.test('a write asked for just as the queue empties still runs (no write is stranded)', async (t) => {
  const q = new WriteQueue({ maxWaitMs: 5000 });
  const first = q.write('a', lockedFor(2, 'a'));
  // Continues in the microtask right after the first write's answer, before the drain's own bookkeeping could run.
  const second = first.then(() => q.write('b', lockedFor(3, 'b')));
  t.equal(await second, 'b');
});

t.test('past the bound: StoreBusyError, a StoreUnavailableError that says how long it waited; the next write goes on', async (t) => {
  const q = new WriteQueue({ maxWaitMs: 120, maxDelayMs: 20 });
  const stuck = q.write('stream s-1', () => {
    throw busy('SQLITE_BUSY_SNAPSHOT');
  });
  const next = q.write('stream s-2', lockedFor(0, 'next'));
  const err = await stuck.then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof StoreBusyError && err instanceof StoreUnavailableError);
  t.match(err, { message: /^stream s-1: the database is locked by another writer \(waited \d+ ms\)$/, code: 'SQLITE_BUSY' });
  t.ok(err instanceof StoreBusyError && err.waitedMs >= 120, 'waited its bound');
  t.equal(await next, 'next', 'the write behind it was not held up past its own bound');
  t.match(writeFailureOf(err), { code: 'SQLITE_BUSY', reason: /locked by another process/ });
});

t.test('reads: the same wait, without a queue', async (t) => {
  t.equal(await retryWhileBusy('read', lockedFor(3, 'rows'), { maxWaitMs: 5000 }), 'rows');
  await t.rejects(retryWhileBusy('read', lockedFor(1000, 'never'), { maxWaitMs: 30 }), StoreBusyError);
});

t.test('which errors say the store cannot write', async (t) => {
  const code = (c: string) => writeFailureOf(Object.assign(new Error(c), { code: c }));
  t.match(code('SQLITE_FULL'), { reason: 'disk full' });
  t.match(code('SQLITE_IOERR_WRITE'), { reason: /I\/O error/ });
  t.match(code('SQLITE_READONLY'), { reason: /read-only/ });
  t.match(code('SQLITE_CORRUPT'), { reason: /damaged/ });
  t.equal(code('SQLITE_CONSTRAINT_UNIQUE'), undefined, 'a request error, not the store\'s');
  t.equal(writeFailureOf(new Error('no code')), undefined);
});

t.test('write health: a failure is reported until a write succeeds; probes are rate-limited and shared', async (t) => {
  const events: string[] = [];
  const health = new WriteHealth({
    probeIntervalMs: 60_000,
    onFailing: (f) => events.push(`failing ${f.code}`),
    onRecovered: (o) => events.push(`recovered ${o.code}`),
    now: () => new Date('2026-03-01T10:00:00.000Z'),
  });
  let probes = 0;
  const failingProbe = async () => {
    probes++;
    health.failed({ code: 'SQLITE_FULL', reason: 'disk full' });
    throw new Error('probe failed');
  };
  await t.rejects(Promise.all([health.check(failingProbe), health.check(failingProbe)]), { name: 'StoreNotWritableError', reason: 'cannot write: disk full', since: '2026-03-01T10:00:00.000Z' });
  t.equal(probes, 1, 'two checks at once share one probe');
  await t.rejects(health.check(failingProbe), { name: 'StoreNotWritableError', reason: 'cannot write: disk full' });
  t.equal(probes, 1, 'no second probe within the interval: the last outcome stands');
  health.failed({ code: 'SQLITE_FULL', reason: 'disk full' });
  t.same(events, ['failing SQLITE_FULL'], 'logged once per outage');
  health.succeeded();
  await health.check(failingProbe);
  t.same(events, ['failing SQLITE_FULL', 'recovered SQLITE_FULL']);
  t.equal(health.failure, undefined);
});
