/**
 * Schema version 2 of the embedded store, applied in place at open: `events.category` (see sqlite-reads.ts), filled
 * for the rows written before it in batches, a trigger that fills it for rows inserted without it (a process still
 * running the previous version on the same file), and the index `events_category (category, position)`.
 *
 * Every step is idempotent and runs in its own BEGIN IMMEDIATE transaction, so two processes opening the same
 * file at once are serialised by SQLite's write lock and the second finds the work done. The version is recorded
 * last: a migration cut short (a kill, a full disk) is finished by the next open. Runs while `busy_timeout` still
 * waits for the lock (openDatabase), once in a file's life.
 */
import type { Database as Db } from 'better-sqlite3';
import { categorySql } from './sqlite-reads.js';

export const SCHEMA_VERSION = 2;
/** Rows updated per transaction while filling `category` in an existing file. */
export const BACKFILL_BATCH_ROWS = 20_000;

export type MigrationReport = { from: number; backfilled: number; batches: number };

function version(db: Db): number {
  const v = db.prepare("SELECT value FROM store_info WHERE key = 'schema_version'").pluck().get();
  return typeof v === 'string' ? Number(v) : 1;
}

/** Brings a version-1 file (or one whose migration was cut short) to version 2; nothing to do on a version-2 file. */
export function migrateSchema(db: Db, batchRows = BACKFILL_BATCH_ROWS): MigrationReport | undefined {
  const from = version(db);
  if (from >= SCHEMA_VERSION) return undefined;
  db.transaction(() => {
    const columns = db.prepare('PRAGMA table_info(events)').all() as Array<{ name: string }>;
    if (!columns.some((c) => c.name === 'category')) db.exec('ALTER TABLE events ADD COLUMN category TEXT');
    db.exec(`CREATE TRIGGER IF NOT EXISTS events_category AFTER INSERT ON events FOR EACH ROW WHEN NEW.category IS NULL
      BEGIN UPDATE events SET category = ${categorySql('NEW.stream_id')} WHERE position = NEW.position; END`);
  }).immediate();
  // Rows inserted from here on get their category from the writer or the trigger: only positions up to `last` need filling.
  const last = (db.prepare('SELECT MAX(position) FROM events').pluck().get() as number | null) ?? 0;
  const fill = db.prepare(`UPDATE events SET category = ${categorySql('stream_id')} WHERE position > ? AND position <= ? AND category IS NULL`);
  let backfilled = 0;
  let batches = 0;
  for (let after = 0; after < last; after += batchRows) {
    backfilled += db.transaction(() => fill.run(after, after + batchRows).changes).immediate();
    batches++;
  }
  db.transaction(() => {
    db.exec('CREATE INDEX IF NOT EXISTS events_category ON events (category, position)');
    db.prepare("INSERT INTO store_info (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
      .run(String(SCHEMA_VERSION));
  }).immediate();
  return { from, backfilled, batches };
}
