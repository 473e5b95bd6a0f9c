/**
 * The embedded event store: one SQLite file, no server.
 *
 * - WAL mode with synchronous=FULL: an append that resolved survives a process kill and a power cut.
 * - Every append runs in a BEGIN IMMEDIATE transaction, so writers (in this process or another
 *   process on the same file) are serialised by SQLite's write lock; the expected-revision check
 *   and the insert happen under that lock, and UNIQUE(stream_id, revision) backs it up.
 * - Group commit (sqlite-group-commit.ts): appends asked for in the same turn of the event loop share that
 *   transaction and its one fsync, each in its own savepoint, so one append's conflict fails it alone; each
 *   caller is answered once the whole batch has committed.
 * - The integrity chain (chain-hash.ts): each event's chainHash is computed inside the append's transaction, from
 *   the previous event's hash read by (stream_id, revision) under the write lock.
 * - `position` is an AUTOINCREMENT key assigned under the write lock, so positions are committed
 *   in increasing order: a catch-up reader never sees a gap that is filled later.
 * - Subscriptions catch up by reading pages (prefix reads are index ranges on `category`: sqlite-reads.ts), then
 *   wait for a local append to a stream they read or a poll tick that finds the change mark moved
 *   (the poll is how events appended by another process on the same file are noticed).
 * - Nothing waits for a lock inside a call (`busy_timeout = 0`; better-sqlite3 is synchronous, so a
 *   busy wait there would stop the event loop): a write that meets another process's lock is retried
 *   on timers, in arrival order, for at most `busyWaitMs`, then fails with StoreUnavailableError
 *   (sqlite-writes.ts). A failed append is reported and rolled back whole: never half-written.
 * - Writes that fail for the store's own reasons (disk full, I/O error, a lock past the bound) make
 *   ping() — /readyz — throw StoreNotWritableError until a write (an append or ping's small probe
 *   write, at most one per `writeProbeIntervalMs`) succeeds again (write-health.ts).
 * - The WAL stays small: `journal_size_limit`, SQLite's autocheckpoint, and a `wal_checkpoint(TRUNCATE)`
 *   at open, every `checkpointIntervalMs`, while writes fail and once they work again, so a service on
 *   a small volume gets its space back once the disk has room (docs/operations.md).
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Database as Db, Statement } from 'better-sqlite3';
import type { Logger } from '../logger.js';
import {
  ConcurrencyError,
  StoreError,
  StoreUnavailableError,
  describeExpected,
} from './eventstore.js';
import type {
  AppendOptions,
  AppendResult,
  EventMetadata,
  EventStore,
  ExpectedRevision,
  NewEvent,
  ReadAllOptions,
  ReadStreamOptions,
  RecordedEvent,
  StoreSubscription,
  SubscribeOptions,
} from './eventstore.js';
import { GENESIS_HASH, chainedMetadata } from './chain-hash.js';
import { migrateSchema } from './sqlite-migrate.js';
import type { MigrationReport } from './sqlite-migrate.js';
import { PrefixReads, categoryOf, normalisePrefixes } from './sqlite-reads.js';
import { GroupCommit } from './sqlite-group-commit.js';
import type { GroupCommitStats } from './sqlite-group-commit.js';
import { StoreBusyError, WriteQueue, codeOf, isBusy, retryWhileBusy, writeFailureOf } from './sqlite-writes.js';
import type { BusyWait } from './sqlite-writes.js';
import { WriteHealth } from './write-health.js';
import { PollTicker } from './sqlite-poll-ticker.js';

export type SqliteStoreOptions = {
  /** The database file; its directory is created when missing. ':memory:' works for throwaway use. */
  path: string;
  /** How often a caught-up subscription looks for events appended by other processes. */
  pollIntervalMs?: number;
  /** Rows per page when reading all events. */
  pageSize?: number;
  /** How long a write or read waits (on timers) for another process's lock before StoreUnavailableError. Default 2000. */
  busyWaitMs?: number;
  /** The least time between two write probes made by ping() when nothing else was written. Default 5000. */
  writeProbeIntervalMs?: number;
  /** How often the WAL is checkpointed and truncated; 0 = only at open and after a write outage. Default 60000. */
  checkpointIntervalMs?: number;
  /** The most appends committed in one transaction (group commit, sqlite-group-commit.ts); 1 = one commit each. Default 256. */
  maxBatch?: number;
  /** Where the store says that writes fail and work again, and how checkpoints go. */
  logger?: Logger;
};

/** The WAL is cut back to this size whenever it is reset (about SQLite's autocheckpoint threshold of 1000 pages). */
export const JOURNAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024;
/** The probe row's padding: a write somewhat larger than a typical append, so a probe does not pass where an append would fail. */
const PROBE_PAD_BYTES = 32 * 1024;
/** A probe waits at most this long for the write lock (or `busyWaitMs`, when shorter): /readyz answers quickly. */
const PROBE_MAX_WAIT_MS = 500;

type EventRow = {
  position: number;
  event_id: string;
  stream_id: string;
  revision: number;
  type: string;
  data: string;
  metadata: string;
  recorded_at: string;
};

const schema = `
CREATE TABLE IF NOT EXISTS events (
  position    INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id    TEXT    NOT NULL UNIQUE,
  stream_id   TEXT    NOT NULL,
  revision    INTEGER NOT NULL,
  type        TEXT    NOT NULL,
  data        TEXT    NOT NULL,
  metadata    TEXT    NOT NULL,
  recorded_at TEXT    NOT NULL,
  UNIQUE (stream_id, revision)
);
CREATE TABLE IF NOT EXISTS streams (
  stream_id TEXT PRIMARY KEY,
  revision  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_info (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO store_info (key, value) VALUES ('schema_version', '1');
CREATE TABLE IF NOT EXISTS store_probe (
  id        INTEGER PRIMARY KEY CHECK (id = 1),
  probed_at TEXT NOT NULL,
  pad       BLOB NOT NULL
);
`;
const schemaTables = ['events', 'streams', 'store_info', 'store_probe'];

function toRecorded(row: EventRow): RecordedEvent {
  return {
    id: row.event_id,
    streamId: row.stream_id,
    revision: BigInt(row.revision),
    position: BigInt(row.position),
    type: row.type,
    data: JSON.parse(row.data) as unknown,
    metadata: JSON.parse(row.metadata) as EventMetadata,
    recordedAt: row.recorded_at,
  };
}

function serialise(event: NewEvent, streamId: string): { data: string; metadata: string } {
  if (!event.type) throw new StoreError(`stream ${streamId}: every event needs a type`);
  try {
    return { data: JSON.stringify(event.data ?? null), metadata: JSON.stringify(event.metadata ?? {}) };
  } catch (err) {
    throw new StoreError(`stream ${streamId}: event ${event.type} is not JSON-serialisable: ${(err as Error).message}`);
  }
}

/**
 * Opens the file with the pragmas above. Creating the schema and migrating it (sqlite-migrate.ts) are the only
 * writes made at open, and only for a new (or older) file; they may wait for the lock synchronously (up to
 * `busyWaitMs` per step, once in the file's life), everything after runs with `busy_timeout = 0`.
 */
function openDatabase(path: string, busyWaitMs: number): { db: Db; migrated: MigrationReport | undefined } {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    db.pragma(`busy_timeout = ${busyWaitMs}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT_BYTES}`);
    db.pragma('wal_autocheckpoint = 1000'); // SQLite's default, stated: the periodic TRUNCATE comes on top of it
    const present = db
      .prepare(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (${schemaTables.map(() => '?').join(', ')})`)
      .pluck()
      .get(...schemaTables);
    if (present !== schemaTables.length) db.exec(schema);
    const migrated = migrateSchema(db);
    db.pragma('busy_timeout = 0');
    return { db, migrated };
  } catch (err) {
    db.close();
    throw err;
  }
}

type AppendOutcome = { result: AppendResult; wrote: boolean };

export class SqliteEventStore implements EventStore {
  readonly kind = 'sqlite' as const;
  private readonly db: Db;
  private readonly pageSize: number;
  private readonly busy: BusyWait;
  private readonly writes: WriteQueue;
  private readonly group: GroupCommit;
  private readonly health: WriteHealth;
  private readonly log: Logger | undefined;
  private readonly checkpointTimer: NodeJS.Timeout | undefined;
  private readonly subscriptions = new Set<SqliteSubscription>();
  /** The one poll timer of the caught-up subscriptions (sqlite-poll-ticker.ts). */
  private readonly ticker: PollTicker;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly stmt: {
    streamRevision: Statement<[string], { revision: number }>;
    chainHashAt: Statement<[string, number], unknown>;
    eventById: Statement<[string], { stream_id: string; revision: number; position: number }>;
    insert: Statement<[string, string, string, number, string, string, string, string]>;
    upsertStream: Statement<[string, number]>;
    readStream: Statement<[string, number, number], EventRow>;
    lastEvent: Statement<[string], EventRow>;
    pruneStream: Statement<[string, number]>;
    probe: Statement<[string, number]>;
    lastPosition: Statement<[], number | null>;
    changeMark: Statement<[], number | null>;
    select1: Statement<[], unknown>;
  };
  private readonly reads: PrefixReads<EventRow>;
  /** How many idle-poll checks ran (each one cheap read of the change mark): for the tests. */
  private pollChecks = 0;

  constructor(private readonly options: SqliteStoreOptions) {
    this.busy = { maxWaitMs: options.busyWaitMs ?? 2000 };
    let migrated: MigrationReport | undefined;
    try {
      ({ db: this.db, migrated } = openDatabase(options.path, this.busy.maxWaitMs));
    } catch (err) {
      const why = writeFailureOf(err)?.reason ?? (err instanceof Error ? err.message : String(err));
      throw new StoreUnavailableError(`cannot open the event store ${options.path}: ${why}`, { cause: err });
    }
    this.ticker = new PollTicker(options.pollIntervalMs ?? 250);
    this.pageSize = options.pageSize ?? 1000;
    this.log = options.logger;
    if (migrated && migrated.from > 0 && migrated.backfilled > 0) {
      this.log?.info({ store: 'sqlite', path: options.path, ...migrated }, 'event store schema migrated: events carry their category, prefix reads use events_category');
    }
    this.writes = new WriteQueue(this.busy);
    this.group = new GroupCommit(this.db, this.writes, {
      ...(options.maxBatch !== undefined ? { maxBatch: options.maxBatch } : {}),
      beforeWrite: () => this.assertOpen(), // the store may have been closed while the batch waited for the lock
    });
    this.health = new WriteHealth({
      probeIntervalMs: options.writeProbeIntervalMs ?? 5000,
      onFailing: (f) => this.log?.error({ store: 'sqlite', path: options.path, code: f.code, reason: f.reason }, 'event store cannot write: appends answer 503 and /readyz says not-ready until a write succeeds'),
      onRecovered: (o) => {
        this.log?.warn({ store: 'sqlite', path: options.path, code: o.code, reason: o.reason, since: o.since }, 'event store writes work again');
        setImmediate(() => this.checkpoint('recovered')).unref();
      },
    });
    this.stmt = {
      streamRevision: this.db.prepare('SELECT revision FROM streams WHERE stream_id = ?'),
      // The previous event's hash: one point lookup on UNIQUE(stream_id, revision), whatever the stream's length.
      chainHashAt: this.db.prepare<[string, number], unknown>("SELECT json_extract(metadata, '$.chainHash') FROM events WHERE stream_id = ? AND revision = ?").pluck(),
      eventById: this.db.prepare('SELECT stream_id, revision, position FROM events WHERE event_id = ?'),
      insert: this.db.prepare(
        'INSERT INTO events (event_id, stream_id, category, revision, type, data, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      upsertStream: this.db.prepare(
        'INSERT INTO streams (stream_id, revision) VALUES (?, ?) ON CONFLICT (stream_id) DO UPDATE SET revision = excluded.revision',
      ),
      readStream: this.db.prepare(
        'SELECT * FROM events WHERE stream_id = ? AND revision >= ? ORDER BY revision LIMIT ?',
      ),
      lastEvent: this.db.prepare('SELECT * FROM events WHERE stream_id = ? ORDER BY revision DESC LIMIT 1'),
      pruneStream: this.db.prepare('DELETE FROM events WHERE stream_id = ? AND revision <= ?'),
      probe: this.db.prepare(
        'INSERT INTO store_probe (id, probed_at, pad) VALUES (1, ?, zeroblob(?)) ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at, pad = excluded.pad',
      ),
      lastPosition: this.db.prepare<[], number | null>('SELECT MAX(position) FROM events').pluck(),
      // AUTOINCREMENT's high-water mark: grows with every insert by any connection, never goes back (pruning included).
      changeMark: this.db.prepare<[], number | null>("SELECT seq FROM sqlite_sequence WHERE name = 'events'").pluck(),
      select1: this.db.prepare('SELECT 1'),
    };
    this.reads = new PrefixReads<EventRow>(this.db);
    this.checkpoint('open');
    const every = options.checkpointIntervalMs ?? 60_000;
    if (every > 0 && options.path !== ':memory:') this.checkpointTimer = setInterval(() => this.checkpoint('periodic'), every).unref();
  }

  async appendToStream(
    streamId: string,
    events: readonly NewEvent[],
    options: AppendOptions = {},
  ): Promise<AppendResult> {
    this.assertOpen();
    if (!streamId) throw new StoreError('a stream id is required');
    const expected = options.expectedRevision ?? 'any';
    const keepLast = options.keepLast;
    if (keepLast !== undefined && (!Number.isInteger(keepLast) || keepLast < 1)) {
      throw new StoreError(`stream ${streamId}: keepLast must be a whole number of at least 1, not ${keepLast}`);
    }
    const rows = events.map((e) => ({ id: e.id ?? randomUUID(), type: e.type, ...serialise(e, streamId) }));
    const category = categoryOf(streamId);
    const append = (): AppendOutcome => {
      const current = this.stmt.streamRevision.get(streamId)?.revision ?? -1;
      const repeat = this.idempotentRepeat(streamId, rows.map((r) => r.id));
      if (repeat) return { result: repeat, wrote: false };
      this.checkExpected(streamId, expected, current);
      if (rows.length === 0) {
        return { result: { nextExpectedRevision: BigInt(current), position: BigInt(this.lastPosition()) }, wrote: false };
      }
      const recordedAt = new Date().toISOString();
      let revision = current;
      let position = 0;
      // The integrity chain (chain-hash.ts): computed here, under the write lock, from the previous event's hash.
      let previous = this.previousHash(streamId, current);
      for (const [i, r] of rows.entries()) {
        revision += 1;
        const source = events[i] as NewEvent;
        const metadata = chainedMetadata(previous, { id: r.id, streamId, revision: BigInt(revision), type: r.type, data: source.data, metadata: source.metadata }, keepLast);
        previous = metadata.chainHash as string;
        const info = this.stmt.insert.run(r.id, streamId, category, revision, r.type, r.data, JSON.stringify(metadata), recordedAt);
        position = Number(info.lastInsertRowid);
      }
      this.stmt.upsertStream.run(streamId, revision);
      // A bounded stream: its older events go with this append, or not at all.
      if (keepLast !== undefined) this.stmt.pruneStream.run(streamId, revision - keepLast);
      return { result: { nextExpectedRevision: BigInt(revision), position: BigInt(position) }, wrote: true };
    };
    let outcome: AppendOutcome;
    try {
      // Committed with whatever else is appended now, in one transaction, inside its own savepoint (sqlite-group-commit.ts).
      outcome = await this.group.submit(append);
    } catch (err) {
      throw this.appendError(streamId, err);
    }
    if (outcome.wrote) {
      this.health.succeeded();
      for (const sub of this.subscriptions) sub.appended(streamId);
    }
    return outcome.result;
  }

  /** What a failed append throws; a failure of the store itself (disk, lock, I/O) is also remembered for /readyz. */
  private appendError(streamId: string, err: unknown): Error {
    const failure = writeFailureOf(err);
    if (failure) this.health.failed(failure);
    // A batch that waited for the lock past its bound: said for this append's stream.
    if (err instanceof StoreBusyError) return new StoreBusyError(`stream ${streamId}`, err.waitedMs);
    if (err instanceof StoreError) return err; // ours: a conflict, a bad batch, a closed store
    const code = codeOf(err);
    const message = err instanceof Error ? err.message : String(err);
    if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
      return new StoreError(`stream ${streamId}: an event id in this append is already used elsewhere: ${message}`);
    }
    return new StoreUnavailableError(`stream ${streamId}: append failed: ${failure ? `${failure.reason}: ${message}` : message}`, { cause: err });
  }

  /**
   * A retried append of events that are already stored, with the same ids, at consecutive
   * revisions of this stream: report the original result instead of writing them twice.
   */
  private idempotentRepeat(streamId: string, ids: string[]): AppendResult | undefined {
    if (ids.length === 0) return undefined;
    const first = this.stmt.eventById.get(ids[0] as string);
    if (!first) return undefined;
    let last = first;
    for (let i = 0; i < ids.length; i++) {
      const found = this.stmt.eventById.get(ids[i] as string);
      if (!found || found.stream_id !== streamId || found.revision !== first.revision + i) {
        throw new StoreError(
          `stream ${streamId}: event id ${ids[i]} repeats an earlier append but the batch does not match what was stored`,
        );
      }
      last = found;
    }
    return { nextExpectedRevision: BigInt(last.revision), position: BigInt(last.position) };
  }

  /** The chainHash of the stream's event at `revision` (its last); GENESIS_HASH for a new stream or an event written before the chain. */
  private previousHash(streamId: string, revision: number): string {
    if (revision < 0) return GENESIS_HASH;
    const hash = this.stmt.chainHashAt.get(streamId, revision);
    return typeof hash === 'string' ? hash : GENESIS_HASH;
  }

  private checkExpected(streamId: string, expected: ExpectedRevision, current: number): void {
    if (typeof expected !== 'bigint' && !['any', 'no_stream', 'stream_exists'].includes(expected)) {
      throw new StoreError(`stream ${streamId}: unknown expected revision ${describeExpected(expected)}`);
    }
    const ok =
      expected === 'any' ||
      (expected === 'no_stream' && current === -1) ||
      (expected === 'stream_exists' && current >= 0) ||
      (typeof expected === 'bigint' && expected === BigInt(current));
    if (!ok) throw new ConcurrencyError(streamId, expected, BigInt(current));
  }

  private lastPosition(): number {
    return this.stmt.lastPosition.get() ?? 0;
  }

  /** A number that grows whenever any connection appends: a caught-up subscription compares it before reading again. */
  changeMark(): number {
    this.pollChecks++;
    return this.stmt.changeMark.get() ?? 0;
  }

  /** Group-commit transactions and the appends they carried so far (what the group-commit tests and the benchmark count). */
  writeStats(): GroupCommitStats {
    return this.group.stats();
  }

  /** Page queries run and idle-poll checks made so far (what the wake-up tests and the benchmark count). */
  readStats(): { pageQueries: number; pollChecks: number } {
    return { pageQueries: this.reads.queries, pollChecks: this.pollChecks };
  }

  /** A read, retried on timers in the rare case that it meets a lock (WAL recovery by another process). */
  private reading<T>(what: string, read: () => T): Promise<T> {
    try {
      return Promise.resolve(read());
    } catch (err) {
      if (!isBusy(err)) return Promise.reject(err);
    }
    const again = (): T => {
      this.assertOpen();
      return read();
    };
    return retryWhileBusy(what, again, this.busy, performance.now(), true);
  }

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    const from = Number(options.fromRevision ?? 0n);
    const limit = options.maxCount ?? -1;
    const rows = await this.reading(`stream ${streamId}`, () => this.stmt.readStream.all(streamId, from, limit));
    return rows.map(toRecorded);
  }

  async readLastEvent(streamId: string): Promise<RecordedEvent | undefined> {
    this.assertOpen();
    const row = await this.reading(`stream ${streamId}`, () => this.stmt.lastEvent.get(streamId));
    return row ? toRecorded(row) : undefined;
  }

  /** One page of events after `after`, in global order. */
  async readPage(after: bigint, limit: number, prefixes?: readonly string[]): Promise<RecordedEvent[]> {
    this.assertOpen();
    const rows = await this.reading('all events', () => this.reads.page(Number(after), limit, prefixes));
    return rows.map(toRecorded);
  }

  async *readAll(options: ReadAllOptions = {}): AsyncGenerator<RecordedEvent> {
    let after = options.after ?? 0n;
    let remaining = options.maxCount ?? Number.POSITIVE_INFINITY;
    while (remaining > 0) {
      const page = await this.readPage(after, Math.min(this.pageSize, remaining), options.streamPrefixes);
      for (const event of page) yield event;
      if (page.length === 0) return;
      after = (page[page.length - 1] as RecordedEvent).position;
      remaining -= page.length;
      if (page.length < this.pageSize) return;
    }
  }

  subscribeToAll(options: SubscribeOptions = {}): StoreSubscription {
    this.assertOpen();
    const sub = new SqliteSubscription(this, options, this.ticker, this.pageSize, () =>
      this.subscriptions.delete(sub),
    );
    this.subscriptions.add(sub);
    return sub;
  }

  /**
   * /readyz: the file answers a read, and writes work: StoreNotWritableError (a StoreUnavailableError) with
   * the reason while they fail. When nothing was written for `writeProbeIntervalMs`, a small probe write tells.
   */
  async ping(): Promise<void> {
    this.assertOpen();
    await this.reading('ping', () => this.stmt.select1.get());
    await this.health.check(() => this.probe());
  }

  /**
   * One small write in `store_probe`; its outcome goes to the write health. Not queued behind appends that wait
   * for the lock (its order does not matter, and /readyz must answer within PROBE_MAX_WAIT_MS).
   */
  private async probe(): Promise<void> {
    // While writes fail, first give the volume back what the WAL holds beyond the last checkpoint.
    if (this.health.failure) this.checkpoint('failing');
    const wait = { ...this.busy, maxWaitMs: Math.min(this.busy.maxWaitMs, PROBE_MAX_WAIT_MS) };
    const write = this.db.transaction(() => this.stmt.probe.run(new Date().toISOString(), PROBE_PAD_BYTES));
    try {
      await retryWhileBusy('write probe', () => {
        this.assertOpen();
        write.immediate();
      }, wait);
    } catch (err) {
      const failure = writeFailureOf(err);
      if (failure) this.health.failed(failure);
      throw err;
    }
    this.health.succeeded();
  }

  /**
   * `wal_checkpoint(TRUNCATE)`: copy the WAL into the database and cut the WAL to zero bytes. Never waits
   * (busy_timeout 0): when another connection is in the way it does what it can and the next one finishes.
   */
  private checkpoint(why: 'open' | 'periodic' | 'failing' | 'recovered'): void {
    if (this.closed || this.options.path === ':memory:') return;
    try {
      const [result] = this.db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number; log: number; checkpointed: number }>;
      this.log?.debug({ store: 'sqlite', why, ...result }, 'WAL checkpoint');
    } catch (err) {
      // Expected while writes fail (a full disk has no room to copy the WAL into): the outage is logged already.
      const level = this.health.failure ? 'debug' : 'warn';
      this.log?.[level]({ store: 'sqlite', why, err, reason: writeFailureOf(err)?.reason }, 'WAL checkpoint failed');
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.subscriptions].map((s) => s.close()));
      await this.group.idle(); // queued appends, and those waiting for the lock, get their answer first
      await this.writes.idle();
      this.closed = true;
      clearInterval(this.checkpointTimer);
      this.ticker.stop();
      this.db.close();
    })();
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('the event store is closed');
  }
}

/**
 * A subscription reads a page, and when caught up waits for a local append to a stream it matches (the store
 * calls `appended` with each append's stream id) or a poll tick. A tick first compares the store's change mark
 * with the one taken before the last read: unchanged means nothing was appended anywhere, and no query runs.
 */
class SqliteSubscription implements StoreSubscription {
  private closed = false;
  private started = false;
  private wake: (() => void) | undefined;
  /** A matching local append arrived since the last read began. */
  private pending = false;
  private readonly prefixes: string[] | undefined;

  constructor(
    private readonly store: SqliteEventStore,
    private readonly options: SubscribeOptions,
    private readonly ticker: PollTicker,
    private readonly pageSize: number,
    private readonly onClose: () => void,
  ) {
    this.prefixes = normalisePrefixes(options.streamPrefixes);
  }

  /** Called by the store after each local append: only a stream this subscription reads wakes it. */
  appended(streamId: string): void {
    if (this.prefixes && !this.prefixes.some((p) => streamId.startsWith(p))) return;
    this.pending = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<RecordedEvent> {
    if (this.started) throw new StoreError('a subscription can be iterated once');
    this.started = true;
    let after = this.options.after ?? 0n;
    try {
      while (!this.closed) {
        const mark = this.mark(); // before the read: whatever is appended later moves it
        this.pending = false;
        const page = await this.store.readPage(after, this.pageSize, this.options.streamPrefixes);
        for (const event of page) {
          if (this.closed) return;
          yield event;
          after = event.position;
        }
        if (page.length < this.pageSize) await this.waitForNew(mark);
      }
    } finally {
      this.closed = true;
      this.onClose();
    }
  }

  /** The store's change mark; -1 when it cannot be read now (the next tick then reads the page, which retries). */
  private mark(): number {
    try {
      return this.store.changeMark();
    } catch {
      return -1;
    }
  }

  /** Until a matching local append, or a tick that finds the change mark moved (another process, or a stream we may read). */
  private async waitForNew(mark: number): Promise<void> {
    while (!this.closed && !this.pending) {
      await this.waitForMore();
      if (this.closed || this.pending) return;
      const now = this.mark();
      if (now !== mark || now === -1) return;
    }
  }

  private waitForMore(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        cancel();
        this.wake = undefined;
        resolve();
      };
      const cancel = this.ticker.wait(done);
      this.wake = done;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    this.onClose();
  }
}

export function openSqliteStore(options: SqliteStoreOptions): SqliteEventStore {
  return new SqliteEventStore(options);
}
