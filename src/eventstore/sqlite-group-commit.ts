/**
 * Group commit for the embedded store: appends that wait at the same moment share one transaction and one fsync.
 *
 * With synchronous=FULL every commit is an fsync of the WAL, and one commit per append caps a service at the
 * disk's fsync rate (a few thousand a second here). Appends asked for while the service is busy are instead
 * queued and written together:
 *
 * - `submit` queues the append and, when nothing is queued or in flight yet, schedules a flush with
 *   `setImmediate`: everything asked for in the same turn of the event loop (a poll phase's worth of webhook
 *   requests) goes into the batch; a lone append waits no more than that one turn.
 * - A flush takes up to `maxBatch` appends in arrival order and runs them in ONE `BEGIN IMMEDIATE` transaction,
 *   each inside its own SAVEPOINT (better-sqlite3's nested transaction). An append that fails for a reason of
 *   its own (a ConcurrencyError, an idempotent repeat that does not match, a reused event id) is rolled back to
 *   its savepoint and fails alone; the others commit. Appends to the same stream in one batch run in arrival
 *   order, so the second sees the first's revision.
 * - A failure that is the store's (disk full, I/O error, a lock: `isStoreFailure`) ends the whole transaction:
 *   it is rolled back and every append in the batch gets that error; nothing of the batch is written. So does a
 *   failed COMMIT.
 * - Every caller is answered after the batch has committed (or failed): a resolved append is durable.
 * - Batches go through the connection's WriteQueue (sqlite-writes.ts): a batch that meets another process's lock
 *   waits on timers, bounded from the moment its oldest append was asked for; appends asked for meanwhile form the
 *   next batch, which starts only when this one is answered, so batches commit in order (positions increase).
 */
import type { Database as Db } from 'better-sqlite3';
import { isBusy, writeFailureOf } from './sqlite-writes.js';
import type { WriteQueue } from './sqlite-writes.js';

export type GroupCommitOptions = {
  /** The most appends in one transaction. Default 256. */
  maxBatch?: number;
  /** Runs before each attempt of a batch (the store checks that it is still open). */
  beforeWrite?: () => void;
};

/**
 * What the store counts: transactions committed (or tried), the appends they carried, and the time spent inside them
 * (statements and the commit's fsync), during which the event loop is held: better-sqlite3 is synchronous.
 */
export type GroupCommitStats = { batches: number; appends: number; largestBatch: number; lastBatchMs: number; totalBatchMs: number };

type Pending = { run: () => unknown; started: number; resolve: (value: unknown) => void; reject: (err: unknown) => void };
type Settled = { ok: true; value: unknown } | { ok: false; error: unknown };

/** The store cannot go on with this transaction: every append in it fails with this error. */
export function isStoreFailure(err: unknown): boolean {
  return isBusy(err) || writeFailureOf(err) !== undefined;
}

export const DEFAULT_MAX_BATCH = 256;

export class GroupCommit {
  private readonly queue: Pending[] = [];
  private scheduled = false;
  private inFlight: Promise<void> | undefined;
  private readonly maxBatch: number;
  private readonly counts: GroupCommitStats = { batches: 0, appends: 0, largestBatch: 0, lastBatchMs: 0, totalBatchMs: 0 };
  /** One append in its savepoint: better-sqlite3 makes a transaction called inside another a SAVEPOINT. */
  private readonly one: (run: () => unknown) => unknown;
  private readonly batch: { immediate: (items: readonly Pending[]) => Settled[] };

  constructor(
    private readonly db: Db,
    private readonly writes: WriteQueue,
    private readonly options: GroupCommitOptions = {},
  ) {
    this.maxBatch = Math.max(1, options.maxBatch ?? DEFAULT_MAX_BATCH);
    this.one = db.transaction((run: () => unknown) => run());
    this.batch = db.transaction((items: readonly Pending[]) => items.map((item) => this.attempt(item)));
  }

  /** `run` does one append's statements; it runs inside the batch's transaction, in its own savepoint. */
  submit<T>(run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, started: performance.now(), resolve: resolve as (value: unknown) => void, reject });
      this.schedule();
    });
  }

  stats(): Readonly<GroupCommitStats> {
    return { ...this.counts };
  }

  /** Resolves once every append asked for so far has its answer. */
  async idle(): Promise<void> {
    while (this.inFlight || this.scheduled || this.queue.length > 0) {
      if (this.inFlight) await this.inFlight;
      else await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    const items = this.queue.splice(0, this.maxBatch);
    if (items.length === 0) return;
    const oldest = (items[0] as Pending).started;
    const what = items.length === 1 ? 'append' : `${items.length} appends`;
    this.inFlight = this.writes
      .write(
        what,
        () => {
          this.options.beforeWrite?.();
          const t0 = performance.now();
          try {
            return this.batch.immediate(items);
          } finally {
            this.counts.lastBatchMs = performance.now() - t0;
            this.counts.totalBatchMs += this.counts.lastBatchMs;
          }
        },
        oldest,
      )
      .then(
        (settled) => settled.forEach((s, i) => (s.ok ? items[i]?.resolve(s.value) : items[i]?.reject(s.error))),
        (err: unknown) => items.forEach((item) => item.reject(err)),
      )
      .finally(() => {
        this.counts.batches += 1;
        this.counts.appends += items.length;
        this.counts.largestBatch = Math.max(this.counts.largestBatch, items.length);
        this.inFlight = undefined;
        this.schedule();
      });
  }

  /** One append inside the batch: its own failure is its own; the store's failure ends the batch. */
  private attempt(item: Pending): Settled {
    try {
      return { ok: true, value: this.one(item.run) };
    } catch (error) {
      // SQLite may have rolled the whole transaction back by itself (it may after SQLITE_FULL, IOERR, NOMEM, BUSY).
      if (isStoreFailure(error) || !this.db.inTransaction) throw error;
      return { ok: false, error };
    }
  }
}
