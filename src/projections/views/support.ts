/** Small helpers the projections share: times, booleans, row writes, decoded events, batches. */
import { decodeSubscriptionEvent } from '../../domain/subscription/index.js';
import type { SubscriptionEvent } from '../../domain/subscription/index.js';
import type { RecordedEvent } from '../../eventstore/eventstore.js';
import type { ProjectionBatch, ReadModelDb } from '../projection.js';

/** Booleans are stored as 0/1 on both targets (SQLite has no boolean). */
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

/** The same stored value: a position read back as a number equals the bigint an event carries. */
export const same = (a: unknown, b: unknown): boolean =>
  a === b || (typeof a !== typeof b && (typeof a === 'bigint' || typeof b === 'bigint') && String(a) === String(b));

/** `undefined` → NULL for a bound parameter. */
export const nullable = <T>(value: T | undefined): T | null => (value === undefined ? null : value);


/** A row update from a record of column → value, as `UPDATE table SET a = @a, … WHERE key = @key` (cached per column set). */
export async function updateRow(db: ReadModelDb, table: string, key: string, keyValue: string, values: Record<string, unknown>): Promise<void> {
  const columns = Object.keys(values);
  if (columns.length === 0) return;
  const sql = `UPDATE ${table} SET ${columns.map((c) => `${c} = @${c}`).join(', ')} WHERE ${key} = @__key`;
  await db.run(sql, { ...values, __key: keyValue });
}

/** `INSERT INTO table (cols) VALUES (@cols)` for a record of column → value (cached per column set). */
export async function insertRow(db: ReadModelDb, table: string, values: Record<string, unknown>, onConflict = ''): Promise<void> {
  const columns = Object.keys(values);
  const sql = `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')}) ${onConflict}`;
  await db.run(sql, values);
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
export function batchesOf<B extends { flush(): Promise<void> }>(create: (db: ReadModelDb) => B) {
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
    async use(db: ReadModelDb, fn: (batch: B) => Promise<void>): Promise<void> {
      const batch = open.get(db);
      if (batch) return fn(batch);
      const single = create(db);
      await fn(single);
      await single.flush();
    },
  };
}
