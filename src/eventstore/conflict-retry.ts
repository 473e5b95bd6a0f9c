/**
 * The one retry loop for "decide on what you read, append at the revision you read": when the append meets a
 * concurrency conflict (another writer got there first), read again and decide again, a bounded number of times.
 * Anything else, and the conflict after the last attempt, goes to the caller.
 *
 * Used by the command handler (command-handler.ts) and the integration-event outbox (integration/dispatcher.ts),
 * which differ only in the bound and in whether racing retries are spread apart.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ConcurrencyError } from './eventstore.js';

export type ConflictRetryPolicy = {
  /** Attempts in all, the first included (at least 1). */
  maxAttempts: number;
  /** Pause before attempt `attempt + 1` after a conflict on `attempt`; none when absent. */
  pauseMs?: (attempt: number) => number;
};

/** Spreads racing writers apart: a random pause under 10 ms × the attempt that conflicted. */
export const jitteredPause = (attempt: number): number => Math.floor(Math.random() * 10 * attempt);

/** Runs `attempt(1)`, `attempt(2)`, … until one does not end in a ConcurrencyError, at most `maxAttempts` times. */
export async function retryOnConflict<T>(policy: ConflictRetryPolicy, attempt: (n: number) => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (!(err instanceof ConcurrencyError) || n >= policy.maxAttempts) throw err;
      const pause = policy.pauseMs?.(n) ?? 0;
      if (pause > 0) await sleep(pause);
    }
  }
}
