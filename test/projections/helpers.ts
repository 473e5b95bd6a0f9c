/** Shared by the projection tests: recorded-event builders, table dumps, stores filled with histories. */
import { join } from 'node:path';
import type { Test } from 'tap';
import type { EventMetadata, EventStore, RecordedEvent } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { SqliteEventStore } from '../../src/eventstore/sqlite.store.js';
import type { Projection, ReadModelDb } from '../../src/projections/projection.js';
import { openReadModelDb } from '../../src/projections/readmodel-db.js';
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

/** Apply events the way the runner does (one transaction, only handled types). */
export function applyAll(db: ReadModelDb, projection: Projection, events: readonly RecordedEvent[]): void {
  db.transaction(() => {
    for (const e of events) if (projection.handles.has(e.type)) projection.apply(db, e);
  })();
}

export function memoryDb(t: Test, ...projections: Projection[]): ReadModelDb {
  const db = openReadModelDb(':memory:');
  for (const p of projections) db.exec(p.schemaSql);
  t.teardown(() => db.close());
  return db;
}

export type Dump = Record<string, Record<string, unknown>[]>;

/** Every row of every table (and view) of the projections, in primary-key order. */
export function dump(db: ReadModelDb, projections: readonly Projection[], options: { withoutPositions?: boolean } = {}): Dump {
  const out: Dump = {};
  for (const p of projections) {
    for (const table of [...p.tables, ...p.views]) {
      const columns = (db.prepare('SELECT name, pk FROM pragma_table_info(?)').all(table) as Array<{ name: string; pk: number }>);
      const keys = columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name);
      const order = (keys.length > 0 ? keys : columns.map((c) => c.name)).join(', ');
      const rows = db.prepare(`SELECT * FROM ${table} ORDER BY ${order}`).all() as Record<string, unknown>[];
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
