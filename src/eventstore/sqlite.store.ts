/**
 * The embedded event store: one SQLite file, no server.
 *
 * - WAL mode with synchronous=FULL: an append that resolved survives a process kill and a power cut.
 * - Every append runs in a BEGIN IMMEDIATE transaction, so writers (in this process or another
 *   process on the same file) are serialised by SQLite's write lock; the expected-revision check
 *   and the insert happen under that lock, and UNIQUE(stream_id, revision) backs it up.
 * - `position` is an AUTOINCREMENT key assigned under the write lock, so positions are committed
 *   in increasing order: a catch-up reader never sees a gap that is filled later.
 * - Subscriptions catch up by reading pages, then wait for a local append signal or a poll tick
 *   (the poll is how events appended by another process on the same file are noticed).
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Database as Db, Statement } from 'better-sqlite3';
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

export type SqliteStoreOptions = {
  /** The database file; its directory is created when missing. ':memory:' works for throwaway use. */
  path: string;
  /** How often a caught-up subscription looks for events appended by other processes. */
  pollIntervalMs?: number;
  /** Rows per page when reading all events. */
  pageSize?: number;
};

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
`;

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

/** Prefix filter as index-friendly ranges: prefix <= stream_id < prefix + U+FFFF. */
function prefixClause(prefixes: readonly string[] | undefined): { sql: string; params: string[] } {
  if (!prefixes || prefixes.length === 0) return { sql: '', params: [] };
  const parts = prefixes.map(() => '(stream_id >= ? AND stream_id < ?)');
  return { sql: ` AND (${parts.join(' OR ')})`, params: prefixes.flatMap((p) => [p, `${p}\uffff`]) };
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
}

export class SqliteEventStore implements EventStore {
  readonly kind = 'sqlite' as const;
  private readonly db: Db;
  private readonly appended = new EventEmitter();
  private readonly pollIntervalMs: number;
  private readonly pageSize: number;
  private readonly subscriptions = new Set<SqliteSubscription>();
  private closed = false;
  private readonly stmt: {
    streamRevision: Statement<[string], { revision: number }>;
    eventById: Statement<[string], { stream_id: string; revision: number; position: number }>;
    insert: Statement<[string, string, number, string, string, string, string]>;
    upsertStream: Statement<[string, number]>;
    readStream: Statement<[string, number, number], EventRow>;
    lastEvent: Statement<[string], EventRow>;
    pruneStream: Statement<[string, number]>;
  };

  constructor(options: SqliteStoreOptions) {
    if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
    this.db = new Database(options.path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(schema);
    this.pollIntervalMs = options.pollIntervalMs ?? 250;
    this.pageSize = options.pageSize ?? 1000;
    this.appended.setMaxListeners(0);
    this.stmt = {
      streamRevision: this.db.prepare('SELECT revision FROM streams WHERE stream_id = ?'),
      eventById: this.db.prepare('SELECT stream_id, revision, position FROM events WHERE event_id = ?'),
      insert: this.db.prepare(
        'INSERT INTO events (event_id, stream_id, revision, type, data, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      upsertStream: this.db.prepare(
        'INSERT INTO streams (stream_id, revision) VALUES (?, ?) ON CONFLICT (stream_id) DO UPDATE SET revision = excluded.revision',
      ),
      readStream: this.db.prepare(
        'SELECT * FROM events WHERE stream_id = ? AND revision >= ? ORDER BY revision LIMIT ?',
      ),
      lastEvent: this.db.prepare('SELECT * FROM events WHERE stream_id = ? ORDER BY revision DESC LIMIT 1'),
      pruneStream: this.db.prepare('DELETE FROM events WHERE stream_id = ? AND revision <= ?'),
    };
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
    const append = this.db.transaction((): AppendResult => {
      const current = this.stmt.streamRevision.get(streamId)?.revision ?? -1;
      const repeat = this.idempotentRepeat(streamId, rows.map((r) => r.id));
      if (repeat) return repeat;
      this.checkExpected(streamId, expected, current);
      if (rows.length === 0) {
        return { nextExpectedRevision: BigInt(current), position: BigInt(this.lastPosition()) };
      }
      const recordedAt = new Date().toISOString();
      let revision = current;
      let position = 0;
      for (const r of rows) {
        revision += 1;
        const info = this.stmt.insert.run(r.id, streamId, revision, r.type, r.data, r.metadata, recordedAt);
        position = Number(info.lastInsertRowid);
      }
      this.stmt.upsertStream.run(streamId, revision);
      // A bounded stream: its older events go with this append, or not at all.
      if (keepLast !== undefined) this.stmt.pruneStream.run(streamId, revision - keepLast);
      return { nextExpectedRevision: BigInt(revision), position: BigInt(position) };
    });
    let result: AppendResult;
    try {
      result = append.immediate();
    } catch (err) {
      if (err instanceof StoreError) throw err;
      if (isBusy(err)) throw new StoreUnavailableError(`stream ${streamId}: the database is busy (locked by another writer)`);
      const code = (err as { code?: string }).code;
      if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new StoreError(`stream ${streamId}: an event id in this append is already used elsewhere: ${(err as Error).message}`);
      }
      throw new StoreUnavailableError(`stream ${streamId}: append failed: ${(err as Error).message}`);
    }
    if (rows.length > 0) this.appended.emit('append');
    return result;
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
    const row = this.db.prepare('SELECT MAX(position) AS p FROM events').get() as { p: number | null };
    return row.p ?? 0;
  }

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    const from = Number(options.fromRevision ?? 0n);
    const limit = options.maxCount ?? -1;
    return this.stmt.readStream.all(streamId, from, limit).map(toRecorded);
  }

  async readLastEvent(streamId: string): Promise<RecordedEvent | undefined> {
    this.assertOpen();
    const row = this.stmt.lastEvent.get(streamId);
    return row ? toRecorded(row) : undefined;
  }

  /** One page of events after `after`, in global order. */
  readPage(after: bigint, limit: number, prefixes?: readonly string[]): RecordedEvent[] {
    this.assertOpen();
    const filter = prefixClause(prefixes);
    const rows = this.db
      .prepare(`SELECT * FROM events WHERE position > ?${filter.sql} ORDER BY position LIMIT ?`)
      .all(Number(after), ...filter.params, limit) as EventRow[];
    return rows.map(toRecorded);
  }

  async *readAll(options: ReadAllOptions = {}): AsyncGenerator<RecordedEvent> {
    let after = options.after ?? 0n;
    let remaining = options.maxCount ?? Number.POSITIVE_INFINITY;
    while (remaining > 0) {
      const page = this.readPage(after, Math.min(this.pageSize, remaining), options.streamPrefixes);
      for (const event of page) yield event;
      if (page.length === 0) return;
      after = (page[page.length - 1] as RecordedEvent).position;
      remaining -= page.length;
      if (page.length < this.pageSize) return;
    }
  }

  subscribeToAll(options: SubscribeOptions = {}): StoreSubscription {
    this.assertOpen();
    const sub = new SqliteSubscription(this, this.appended, options, this.pollIntervalMs, this.pageSize, () =>
      this.subscriptions.delete(sub),
    );
    this.subscriptions.add(sub);
    return sub;
  }

  async ping(): Promise<void> {
    this.assertOpen();
    this.db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.all([...this.subscriptions].map((s) => s.close()));
    this.closed = true;
    this.db.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('the event store is closed');
  }
}

class SqliteSubscription implements StoreSubscription {
  private closed = false;
  private started = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly store: SqliteEventStore,
    private readonly appended: EventEmitter,
    private readonly options: SubscribeOptions,
    private readonly pollIntervalMs: number,
    private readonly pageSize: number,
    private readonly onClose: () => void,
  ) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<RecordedEvent> {
    if (this.started) throw new StoreError('a subscription can be iterated once');
    this.started = true;
    let after = this.options.after ?? 0n;
    try {
      while (!this.closed) {
        const page = this.store.readPage(after, this.pageSize, this.options.streamPrefixes);
        for (const event of page) {
          if (this.closed) return;
          yield event;
          after = event.position;
        }
        if (page.length < this.pageSize) await this.waitForMore();
      }
    } finally {
      this.closed = true;
      this.onClose();
    }
  }

  private waitForMore(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.appended.off('append', done);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, this.pollIntervalMs);
      this.appended.on('append', done);
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
