/** Small helpers the projections share: per-database prepared statements, times, booleans. */
import type { Statement } from 'better-sqlite3';
import { decodeSubscriptionEvent } from '../../domain/subscription/index.js';
import type { SubscriptionEvent } from '../../domain/subscription/index.js';
import type { RecordedEvent } from '../../eventstore/eventstore.js';
import type { ProjectionBatch, ReadModelDb } from '../projection.js';

/**
 * Prepared statements for one database, made once: `cached(db, key, sql)`. A rebuild drops and
 * recreates tables; SQLite re-prepares a statement whose schema changed, so the cache stays valid.
 */
const caches = new WeakMap<ReadModelDb, Map<string, Statement>>();

export function cached(db: ReadModelDb, sql: string): Statement {
  let cache = caches.get(db);
  if (!cache) caches.set(db, (cache = new Map()));
  let stmt = cache.get(sql);
  if (!stmt) cache.set(sql, (stmt = db.prepare(sql)));
  return stmt;
}

/** SQLite has no boolean: 0/1. */
export const bit = (value: boolean | undefined): 0 | 1 => (value ? 1 : 0);

/** An ISO-8601 UTC string (`toISOString()`), so text comparison is time order; undefined when it is not a time. */
export function isoTime(value: string | undefined | null): string | undefined {
  if (!value) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
}

/** The UTC day (`YYYY-MM-DD`) of a time; the raw prefix when it does not parse. */
export function utcDay(value: string): string {
  return isoTime(value)?.slice(0, 10) ?? value.slice(0, 10);
}

/** Seconds from `from` to `to`, or undefined when either is missing or not a time. */
export function secondsBetween(from: string | undefined, to: string | undefined): number | undefined {
  const a = from ? Date.parse(from) : Number.NaN;
  const b = to ? Date.parse(to) : Number.NaN;
  if (Number.isNaN(a) || Number.isNaN(b)) return undefined;
  return Math.round(b - a) / 1000;
}

/** `undefined` → NULL for a bound parameter. */
export const nullable = <T>(value: T | undefined): T | null => (value === undefined ? null : value);


/** A row update from a record of column → value, as `UPDATE table SET a = @a, … WHERE key = @key` (cached per column set). */
export function updateRow(db: ReadModelDb, table: string, key: string, keyValue: string, values: Record<string, unknown>): void {
  const columns = Object.keys(values);
  if (columns.length === 0) return;
  const sql = `UPDATE ${table} SET ${columns.map((c) => `${c} = @${c}`).join(', ')} WHERE ${key} = @__key`;
  cached(db, sql).run({ ...values, __key: keyValue });
}

/** `INSERT INTO table (cols) VALUES (@cols)` for a record of column → value (cached per column set). */
export function insertRow(db: ReadModelDb, table: string, values: Record<string, unknown>, onConflict = ''): void {
  const columns = Object.keys(values);
  const sql = `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')}) ${onConflict}`;
  cached(db, sql).run(values);
}

/**
 * A subscription event decoded once per recorded event, whatever the number of projections that read it (the
 * runner hands every projection the same RecordedEvent objects of a batch).
 */
const decodedSubscriptionEvents = new WeakMap<RecordedEvent, SubscriptionEvent | undefined>();

export function subscriptionEventOf(recorded: RecordedEvent): SubscriptionEvent | undefined {
  if (decodedSubscriptionEvents.has(recorded)) return decodedSubscriptionEvents.get(recorded);
  const event = decodeSubscriptionEvent(recorded);
  decodedSubscriptionEvents.set(recorded, event);
  return event;
}

/**
 * The batches of one projection (src/projections/projection.ts): `begin(db)` opens one on `db`, `use(db, fn)`
 * runs `fn` with the open batch, or with a batch of its own that is flushed at once when none is open.
 */
export function batchesOf<B extends { flush(): void }>(create: (db: ReadModelDb) => B) {
  const open = new WeakMap<ReadModelDb, B>();
  return {
    begin(db: ReadModelDb): ProjectionBatch {
      const batch = create(db);
      open.set(db, batch);
      return {
        flush: () => batch.flush(),
        close: () => {
          if (open.get(db) === batch) open.delete(db);
        },
      };
    },
    use(db: ReadModelDb, fn: (batch: B) => void): void {
      const batch = open.get(db);
      if (batch) return fn(batch);
      const single = create(db);
      fn(single);
      single.flush();
    },
  };
}
