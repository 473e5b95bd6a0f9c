/**
 * Waiting for SQLite's locks without blocking the event loop.
 *
 * better-sqlite3 is synchronous: with a `busy_timeout`, a statement that meets another process's write
 * lock sleeps INSIDE the call, and the whole service (webhooks, /healthz) stops for that long. So the
 * embedded store runs with `busy_timeout = 0`: a locked statement fails at once with SQLITE_BUSY, and
 * the wait happens here, between short timers, up to a bound; past it the caller gets a
 * StoreUnavailableError (503 on the webhook).
 *
 * - `WriteQueue` serialises one connection's writes in arrival order: a write is tried at once when
 *   nothing is ahead of it (the usual case: no timer, no extra tick), else queued behind the others,
 *   so two writes of this process never overtake each other while one waits for the lock. The store's
 *   writes are group-commit batches (sqlite-group-commit.ts).
 * - `retryWhileBusy` does the same wait for reads (in WAL mode they hardly ever meet a lock).
 * - `writeFailureOf` says which errors mean "this store cannot write right now" (disk full, I/O error,
 *   read-only, locked past the bound), as opposed to errors of the request itself.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { StoreUnavailableError } from './eventstore.js';

/** The wait for a lock: at most `maxWaitMs` in all, between retries of growing (jittered) length. */
export type BusyWait = {
  maxWaitMs: number;
  /** First pause between two attempts. Default 2 ms. */
  firstDelayMs?: number;
  /** Longest pause between two attempts. Default 50 ms. */
  maxDelayMs?: number;
};

/** The lock was still held when the wait's bound ran out. */
export class StoreBusyError extends StoreUnavailableError {
  override name = 'StoreBusyError';
  readonly code = 'SQLITE_BUSY';
  constructor(
    what: string,
    readonly waitedMs: number,
  ) {
    super(`${what}: the database is locked by another writer (waited ${waitedMs} ms)`);
  }
}

export function isBusy(err: unknown): boolean {
  const code = codeOf(err);
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
}

export function codeOf(err: unknown): string {
  if (typeof err !== 'object' || err === null || !('code' in err)) return '';
  return typeof err.code === 'string' ? err.code : '';
}

/** Why the store cannot write, for /readyz and the logs; undefined for errors that say nothing about the store. */
export type WriteFailure = { code: string; reason: string };

export function writeFailureOf(err: unknown): WriteFailure | undefined {
  if (err instanceof StoreBusyError) return { code: err.code, reason: `the database is locked by another process (waited ${err.waitedMs} ms)` };
  const code = codeOf(err);
  if (code === 'SQLITE_FULL') return { code, reason: 'disk full' };
  if (code.startsWith('SQLITE_IOERR')) return { code, reason: `I/O error (${code})` };
  if (code.startsWith('SQLITE_READONLY')) return { code, reason: `the database is read-only (${code})` };
  if (code.startsWith('SQLITE_CANTOPEN')) return { code, reason: `cannot open the database files (${code})` };
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') return { code, reason: `the database file is damaged (${code})` };
  if (code === 'SQLITE_NOMEM') return { code, reason: 'out of memory' };
  return undefined;
}

function pause(attempt: number, wait: BusyWait, left: number): number {
  const first = wait.firstDelayMs ?? 2;
  const most = wait.maxDelayMs ?? 50;
  const step = Math.min(most, first * 2 ** Math.min(attempt, 16));
  // Jitter: two processes that met on the lock do not come back at the same instant.
  return Math.max(0, Math.min(left, step / 2 + Math.random() * (step / 2)));
}

/**
 * Runs `attempt` until it does not fail with SQLITE_BUSY/LOCKED, pausing on timers between tries, until
 * `wait.maxWaitMs` after `started` (a `performance.now()` time); then a StoreBusyError.
 * `alreadyTried`: the first try has been made (and met the lock).
 */
export async function retryWhileBusy<T>(what: string, attempt: () => T, wait: BusyWait, started = performance.now(), alreadyTried = false): Promise<T> {
  const deadline = started + wait.maxWaitMs;
  for (let n = 0; ; n++) {
    if (n > 0 || alreadyTried) {
      const left = deadline - performance.now();
      if (left <= 0) throw new StoreBusyError(what, Math.round(performance.now() - started));
      await sleep(pause(n, wait, left));
    }
    try {
      return attempt();
    } catch (err) {
      if (!isBusy(err)) throw err;
    }
  }
}

type Job = { what: string; attempt: () => unknown; started: number; tried: boolean; resolve: (v: unknown) => void; reject: (e: unknown) => void };

/** One connection's writes, one at a time, in the order they were asked for; see the file comment. */
export class WriteQueue {
  private readonly jobs: Job[] = [];
  /** Set and cleared synchronously (not by a promise callback), so a write asked for just as the queue empties starts a new drain. */
  private running = false;
  private draining: Promise<void> = Promise.resolve();

  constructor(private readonly wait: BusyWait) {}

  /**
   * `attempt` runs one whole write transaction synchronously; it is retried while the database is locked, for at
   * most the bound from `started` (default now; the group commit passes when its oldest append was asked for).
   */
  write<T>(what: string, attempt: () => T, started = performance.now()): Promise<T> {
    let tried = false;
    if (this.jobs.length === 0) {
      tried = true;
      try {
        return Promise.resolve(attempt());
      } catch (err) {
        if (!isBusy(err)) return Promise.reject(err);
      }
    }
    return new Promise<T>((resolve, reject) => {
      this.jobs.push({ what, attempt, started, tried, resolve: resolve as (v: unknown) => void, reject });
      if (!this.running) {
        this.running = true;
        this.draining = this.drain();
      }
    });
  }

  /** Resolves once every queued write has committed or failed. */
  async idle(): Promise<void> {
    while (this.running) await this.draining;
  }

  private async drain(): Promise<void> {
    try {
      for (let job = this.jobs[0]; job; job = this.jobs[0]) {
        try {
          job.resolve(await retryWhileBusy(job.what, job.attempt, this.wait, job.started, job.tried));
        } catch (err) {
          job.reject(err);
        }
        this.jobs.shift();
      }
    } finally {
      this.running = false;
    }
  }
}
