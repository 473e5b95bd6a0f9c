/**
 * Schema version 2 of the embedded store, applied in place at open: `events.category` (see sqlite-reads.ts), filled
 * for the rows written before it in batches, a trigger that fills it for rows inserted without it (a process still
 * running the previous version on the same file), and the index `events_category (category, position)`.
 *
 * Every step is idempotent and runs in its own BEGIN IMMEDIATE transaction, so two processes opening the same
 * file at once are serialised by SQLite's write lock and the second finds the work done. The version is recorded
 * last: a migration cut short (a kill, a full disk) is finished by the next open. Runs while `busy_timeout` still
 * waits for the lock (openDatabase), each step tried again for up to STEP_MAX_WAIT_MS, once in a file's life.
 */
import type { Database as Db } from 'better-sqlite3';
import { categorySql } from './sqlite-reads.js';
import { isBusy } from './sqlite-writes.js';

export const SCHEMA_VERSION = 2;
/** Rows updated per transaction while filling `category` in an existing file. */
export const BACKFILL_BATCH_ROWS = 20_000;

/**
 * How long one step keeps trying for the write lock: another process migrating the same big file holds it for
 * seconds at a time (the index build at 1M events takes ~1-2 s), longer than `busyWaitMs`. Once in a file's life.
 */
const STEP_MAX_WAIT_MS = 120_000;

const pause = new Int32Array(new SharedArrayBuffer(4));

/** One step in its own BEGIN IMMEDIATE transaction, tried again while another connection holds the lock. */
function step<T>(db: Db, work: () => T): T {
  const deadline = performance.now() + STEP_MAX_WAIT_MS;
  for (;;) {
    try {
      return db.transaction(work).immediate();
    } catch (err) {
      if (!isBusy(err) || performance.now() > deadline) throw err;
      Atomics.wait(pause, 0, 0, 50); // the open is synchronous anyway: wait a little without spinning (busy_timeout may be 0)
    }
  }
}

export type MigrationReport = { from: number; backfilled: number; batches: number };

function version(db: Db): number {
  const v = db.prepare("SELECT value FROM store_info WHERE key = 'schema_version'").pluck().get();
  return typeof v === 'string' ? Number(v) : 1;
}

/** Brings a version-1 file (or one whose migration was cut short) to version 2; nothing to do on a version-2 file. */
export function migrateSchema(db: Db, batchRows = BACKFILL_BATCH_ROWS): MigrationReport | undefined {
  const from = version(db);
  if (from >= SCHEMA_VERSION) return undefined;
  step(db, () => {
    const columns = db.prepare('PRAGMA table_info(events)').all() as Array<{ name: string }>;
    if (!columns.some((c) => c.name === 'category')) db.exec('ALTER TABLE events ADD COLUMN category TEXT');
    db.exec(`CREATE TRIGGER IF NOT EXISTS events_category AFTER INSERT ON events FOR EACH ROW WHEN NEW.category IS NULL
      BEGIN UPDATE events SET category = ${categorySql('NEW.stream_id')} WHERE position = NEW.position; END`);
  });
  // Rows inserted from here on get their category from the writer or the trigger: only positions up to `last` need filling.
  const last = (db.prepare('SELECT MAX(position) FROM events').pluck().get() as number | null) ?? 0;
  const fill = db.prepare(`UPDATE events SET category = ${categorySql('stream_id')} WHERE position > ? AND position <= ? AND category IS NULL`);
  let backfilled = 0;
  let batches = 0;
  for (let after = 0; after < last; after += batchRows) {
    backfilled += step(db, () => fill.run(after, after + batchRows).changes);
    batches++;
  }
  step(db, () => {
    db.exec('CREATE INDEX IF NOT EXISTS events_category ON events (category, position)');
    db.prepare("INSERT INTO store_info (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
      .run(String(SCHEMA_VERSION));
  });
  return { from, backfilled, batches };
}
