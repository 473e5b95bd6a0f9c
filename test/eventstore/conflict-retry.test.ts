/** The one retry loop on a concurrency conflict: its bound, its pauses, and what it lets through. */
import t from 'tap';
import { retryOnConflict } from '../../src/eventstore/conflict-retry.js';
import { ConcurrencyError, StoreUnavailableError } from '../../src/eventstore/eventstore.js';

const conflict = () => new ConcurrencyError('s-1', 0n, 1n);

t.test('a conflict is retried until an attempt succeeds', async (t) => {
  const seen: number[] = [];
  const result = await retryOnConflict({ maxAttempts: 5 }, async (n) => {
    seen.push(n);
    if (n < 3) throw conflict();
    return 'written';
  });
  t.equal(result, 'written');
  t.same(seen, [1, 2, 3], 'attempts are numbered from 1');
});

t.test('after maxAttempts conflicts the last conflict goes to the caller', async (t) => {
  let calls = 0;
  await t.rejects(
    retryOnConflict({ maxAttempts: 4 }, async () => {
      calls++;
      throw conflict();
    }),
    ConcurrencyError,
  );
  t.equal(calls, 4, 'maxAttempts counts the first attempt');
});

t.test('maxAttempts 1: the first conflict is the answer (a pinned revision)', async (t) => {
  let calls = 0;
  await t.rejects(
    retryOnConflict({ maxAttempts: 1 }, async () => {
      calls++;
      throw conflict();
    }),
    ConcurrencyError,
  );
  t.equal(calls, 1);
});

t.test('any other error is not retried', async (t) => {
  let calls = 0;
  await t.rejects(
    retryOnConflict({ maxAttempts: 5 }, async () => {
      calls++;
      throw new StoreUnavailableError('down');
    }),
    StoreUnavailableError,
  );
  t.equal(calls, 1);
});

t.test('the pause is asked for with the attempt that conflicted, and not after the last', async (t) => {
  const asked: number[] = [];
  await t.rejects(
    retryOnConflict({ maxAttempts: 3, pauseMs: (n) => (asked.push(n), 1) }, async () => {
      throw conflict();
    }),
  );
  t.same(asked, [1, 2]);
});
