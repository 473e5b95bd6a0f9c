/** Shared by the projection tests: recorded-event builders, table dumps, stores filled with histories. */
import { join } from 'node:path';
import tap from 'tap';
import type { Test } from 'tap';
import type { EventMetadata, EventStore, RecordedEvent } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { SqliteEventStore } from '../../src/eventstore/sqlite.store.js';
import type { Database as SqliteDb } from 'better-sqlite3';
import type { Projection } from '../../src/projections/projection.js';
import { openReadModelDb } from '../../src/projections/readmodel-db.js';
import type { ReadModelSql } from '../../src/projections/readmodel-sql.js';
import type { RunningProjections } from '../../src/projections/runner.js';
import { openSqliteTarget, sqliteTarget } from '../../src/projections/sqlite.target.js';
import { openPostgresTarget } from '../../src/projections/postgres.target.js';
import { prepareProjections } from '../../src/projections/readmodel-db.js';
import { freshDatabase, postgresSkip } from '../support/postgres.js';
import type { SqliteTarget } from '../../src/projections/sqlite.target.js';
import type { ReadModelTarget } from '../../src/projections/target.js';
import { columnsSql } from '../../src/projections/dialect.js';
import { syntheticHistory, writeHistory } from '../support/synthetic-history.js';
import type { HistoryOptions } from '../support/synthetic-history.js';
import { tempDir } from '../support/temp.js';

/** Builds RecordedEvents with increasing global positions and per-stream revisions, as a store would. */
export function recorder(startPosition = 0n) {
  let position = startPosition;
  const revisions = new Map<string, bigint>();
  return (streamId: string, type: string, data: unknown, metadata: EventMetadata = {}): RecordedEvent => {
    position += 1n;
    const revision = (revisions.get(streamId) ?? -1n) + 1n;
    revisions.set(streamId, revision);
    return { id: `${streamId}#${revision}`, streamId, revision, position, type, data, metadata, recordedAt: '2026-03-01T00:00:00.000Z' };
  };
}

const targetOf = (db: SqliteDb | ReadModelTarget): ReadModelTarget => ('dialect' in db ? db : sqliteTarget(db));

/** Apply events the way the runner does (one transaction, only handled types). */
export async function applyAll(db: SqliteDb | ReadModelTarget, projection: Projection, events: readonly RecordedEvent[]): Promise<void> {
  await targetOf(db).transaction(async (tx) => {
    for (const e of events) if (projection.handles.has(e.type)) await projection.apply(tx, e);
  });
}

/** The SQLite database under running projections (the tests that read it with better-sqlite3 directly). */
export function sqliteOf(running: RunningProjections): SqliteDb {
  const target = running.target;
  if (target.dialect !== 'sqlite') throw new Error('these projections do not run on SQLite');
  return (target as SqliteTarget).db;
}

export function memoryDb(t: Test, ...projections: Projection[]): SqliteDb {
  const db = openReadModelDb(':memory:');
  for (const p of projections) db.exec(p.schemaSql);
  t.teardown(() => db.close());
  return db;
}

export type Dump = Record<string, Record<string, unknown>[]>;

/**
 * Every row of every table (and view) of the projections, ordered by every column in turn (NULLs first): the
 * same order on both targets (PostgreSQL's text columns compare byte by byte too, `COLLATE "C"`).
 */
export async function dump(source: SqliteDb | ReadModelTarget | ReadModelSql | RunningProjections, projections: readonly Projection[], options: { withoutPositions?: boolean } = {}): Promise<Dump> {
  const db: ReadModelSql = 'read' in source ? source.read : 'target' in source ? source.target.read : 'run' in source && 'dialect' in source ? source : sqliteTarget(source).read;
  const out: Dump = {};
  for (const p of projections) {
    for (const table of [...p.tables, ...p.views]) {
      const columns = (await db.all(columnsSql(db.dialect), { table })).map((c) => String(c.name));
      const order = columns.map((c) => `${c} ASC NULLS FIRST`).join(', ');
      // An average depends on the order it sums in (the order of a heap's rows): 12 significant digits are compared.
      const rows = (await db.all(`SELECT * FROM ${table} ORDER BY ${order}`)).map((r) =>
        Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(12)) : v])),
      );
      out[table] = options.withoutPositions
        ? rows.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => k !== 'position' && !(table === 'subscriptions_state' && k === 'state'))))
        : rows;
    }
  }
  return out;
}

export function rowCount(d: Dump): Record<string, number> {
  return Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v.length]));
}

/** A SQLite event store in a temp dir holding a synthetic history. */
export async function storeWithHistory(t: Test, options: HistoryOptions): Promise<{ store: SqliteEventStore; dir: string }> {
  const dir = tempDir(t, 'projections');
  const store = openSqliteStore({ path: join(dir, 'events.db'), pollIntervalMs: 20 });
  t.teardown(() => store.close());
  await writeHistory(store, syntheticHistory(options));
  return { store, dir };
}

/** The store as it was at `until`: events after it are not delivered (a runner then stops there). */
export function storeUntil(store: EventStore, until: bigint): EventStore {
  return {
    kind: store.kind,
    appendToStream: (s, e, o) => store.appendToStream(s, e, o),
    readStream: (s, o) => store.readStream(s, o),
    readLastEvent: (s) => store.readLastEvent(s),
    ping: () => store.ping(),
    close: async () => undefined,
    readAll: (options) => filtered(store.readAll(options), until),
    subscribeToAll(options) {
      const sub = store.subscribeToAll(options);
      return Object.assign(filtered(sub, until), { close: () => sub.close() });
    },
  };
}

async function* filtered(source: AsyncIterable<RecordedEvent>, until: bigint): AsyncGenerator<RecordedEvent> {
  for await (const e of source) if (e.position <= until) yield e;
}

/** An at-least-once store: every event twice, and every 100 events the last 50 again, in reads (catch-up pages) and subscriptions alike. */
export function stutteringStore(store: EventStore): EventStore {
  return {
    ...storeUntil(store, 2n ** 62n),
    readAll: (options) => stutter(store.readAll(options)),
    subscribeToAll(options) {
      const sub = store.subscribeToAll(options);
      return Object.assign(stutter(sub), { close: () => sub.close() });
    },
  };
}

async function* stutter(source: AsyncIterable<RecordedEvent>): AsyncGenerator<RecordedEvent> {
  const recent: RecordedEvent[] = [];
  for await (const e of source) {
    yield e;
    yield e;
    recent.push(e);
    if (recent.length === 100) {
      yield* recent.slice(50);
      recent.length = 0;
    }
  }
}

export type TargetKind = 'sqlite' | 'postgres';

/**
 * A read-model target of the kind for this test, its projections' tables created: SQLite in memory (or a file,
 * `file: true`), PostgreSQL in a database of its own (support/postgres.ts). Closed at teardown.
 */
export async function testTarget(t: Test, kind: TargetKind, projections: readonly Projection[], options: { file?: boolean; schema?: string } = {}): Promise<ReadModelTarget> {
  const target =
    kind === 'sqlite'
      ? openSqliteTarget(options.file ? join(tempDir(t, 'readmodels'), 'readmodels.db') : ':memory:')
      : await openPostgresTarget({ url: await freshDatabase(t), schema: options.schema ?? 'rm_test' });
  t.teardown(() => target.close());
  await prepareProjections(target, projections);
  return target;
}

/** Defines the test once per target; the PostgreSQL one is skipped (with the reason) where PostgreSQL does not answer. */
export async function forEachTarget(name: string, fn: (t: Test, kind: TargetKind) => Promise<void>): Promise<void> {
  const skip = await postgresSkip();
  tap.test(`${name} [sqlite]`, (t) => fn(t, 'sqlite'));
  tap.test(`${name} [postgres]`, { skip }, (t) => fn(t, 'postgres'));
}
