/**
 * The read-model database: one SQLite file (`<DATA_DIR>/readmodels.db`) apart from the events, so it
 * can be deleted and rebuilt at any time. It holds each projection's tables and `projection_state`,
 * the checkpoint (global position) and code version every projection's tables reflect.
 *
 * WAL with synchronous=NORMAL: a power cut may lose the last transactions, but never half of one, and
 * a change always commits with its checkpoint, so the projections simply re-apply what was lost.
 *
 * Locks: better-sqlite3 waits for a lock inside the call, which stops the event loop, so the wait is tiny
 * (READ_MODEL_BUSY_TIMEOUT_MS: enough for another process's batch commit to end, far too short to be felt).
 * A write that still meets the lock fails, rolls back and is retried on a timer by the projection runner
 * (its backoff, src/projections/runner.ts); reads in WAL mode do not wait for writers.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Projection, ReadModelDb } from './projection.js';

const stateSchema = `
CREATE TABLE IF NOT EXISTS projection_state (
  name           TEXT PRIMARY KEY,
  version        INTEGER NOT NULL,
  position       INTEGER,          -- last global position applied; NULL = nothing yet
  events_applied INTEGER NOT NULL DEFAULT 0,
  rebuilt_at     TEXT NOT NULL,
  updated_at     TEXT NOT NULL
) WITHOUT ROWID;
`;

/** How long a read-model statement may wait, synchronously, for another process's write lock. */
export const READ_MODEL_BUSY_TIMEOUT_MS = 25;

export type StoredState = { version: number; position: bigint | undefined; eventsApplied: number; rebuiltAt: string; updatedAt: string };

export function openReadModelDb(path: string): ReadModelDb {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma(`busy_timeout = ${READ_MODEL_BUSY_TIMEOUT_MS}`);
  db.pragma('cache_size = -65536'); // 64 MiB of page cache: rebuilds rewrite many rows and their indexes
  db.exec(stateSchema);
  return db;
}

type StateRow = { name: string; version: bigint; position: bigint | null; events_applied: bigint; rebuilt_at: string; updated_at: string };

export function readStates(db: ReadModelDb): Map<string, StoredState> {
  const rows = db.prepare('SELECT * FROM projection_state').safeIntegers(true).all() as StateRow[];
  return new Map(
    rows.map((r) => [
      r.name,
      {
        version: Number(r.version),
        position: r.position === null ? undefined : r.position,
        eventsApplied: Number(r.events_applied),
        rebuiltAt: r.rebuilt_at,
        updatedAt: r.updated_at,
      },
    ]),
  );
}

export function saveProgress(db: ReadModelDb, name: string, position: bigint, applied: number, now: string): void {
  db.prepare('UPDATE projection_state SET position = ?, events_applied = events_applied + ?, updated_at = ? WHERE name = ?').run(position, applied, now, name);
}

function tableExists(db: ReadModelDb, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?").get(name) !== undefined;
}

/** Drop the projection's tables and views, recreate them empty, and set its checkpoint back to the start: one transaction. */
export function resetProjection(db: ReadModelDb, projection: Projection, now = new Date().toISOString()): void {
  db.transaction(() => {
    for (const view of projection.views) db.exec(`DROP VIEW IF EXISTS "${view}"`);
    for (const table of projection.tables) db.exec(`DROP TABLE IF EXISTS "${table}"`);
    db.exec(projection.schemaSql);
    db.prepare(
      `INSERT INTO projection_state (name, version, position, events_applied, rebuilt_at, updated_at) VALUES (?, ?, NULL, 0, ?, ?)
       ON CONFLICT (name) DO UPDATE SET version = excluded.version, position = NULL, events_applied = 0, rebuilt_at = excluded.rebuilt_at, updated_at = excluded.updated_at`,
    ).run(projection.name, projection.version, now, now);
  }).immediate();
}

export type Preparation = { name: string; action: 'created' | 'kept' | 'rebuilt'; reason?: string };

/**
 * Make every projection's tables match its code: a projection met for the first time gets its tables;
 * one whose stored version differs from its code's, or whose tables were removed by hand, is reset
 * (to be rebuilt from the first event); the others keep their tables and checkpoint.
 */
export function prepareProjections(db: ReadModelDb, projections: readonly Projection[]): Preparation[] {
  const states = readStates(db);
  return projections.map((p): Preparation => {
    const stored = states.get(p.name);
    if (!stored) {
      resetProjection(db, p);
      return { name: p.name, action: 'created' };
    }
    if (stored.version !== p.version) {
      resetProjection(db, p);
      return { name: p.name, action: 'rebuilt', reason: `stored version ${stored.version}, code version ${p.version}` };
    }
    const missing = [...p.tables, ...p.views].filter((t) => !tableExists(db, t));
    if (missing.length > 0) {
      resetProjection(db, p);
      return { name: p.name, action: 'rebuilt', reason: `missing ${missing.join(', ')}` };
    }
    db.exec(p.schemaSql); // new indexes of the same version are harmless; IF NOT EXISTS keeps the rest
    return { name: p.name, action: 'kept' };
  });
}
