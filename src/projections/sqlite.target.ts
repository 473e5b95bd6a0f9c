/**
 * The SQLite read-model target: one file (`<DATA_DIR>/readmodels.db`) apart from the events, so it can be
 * deleted and rebuilt at any time.
 *
 * WAL with synchronous=NORMAL: a power cut may lose the last transactions, but never half of one, and a change
 * always commits with its checkpoint, so the projections simply re-apply what was lost.
 *
 * Locks: better-sqlite3 waits for a lock inside the call, which stops the event loop, so the wait is tiny
 * (READ_MODEL_BUSY_TIMEOUT_MS: enough for another process's batch commit to end, far too short to be felt).
 * A write that still meets the lock fails, rolls back and is retried on a timer by the projection runner
 * (its backoff, src/projections/runner.ts); reads in WAL mode do not wait for writers.
 *
 * Transactions: BEGIN IMMEDIATE … COMMIT around an async function whose statements all run synchronously
 * (readmodel-sql.ts), one transaction at a time per connection (a queue), so nothing else runs in between.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Database as SqliteDb } from 'better-sqlite3';
import { sqliteSql } from './readmodel-sql.js';
import type { ReadModelTarget } from './target.js';

/** How long a read-model statement may wait, synchronously, for another process's write lock. */
export const READ_MODEL_BUSY_TIMEOUT_MS = 25;

export type SqliteTarget = ReadModelTarget & { readonly dialect: 'sqlite'; readonly db: SqliteDb };

/** Open (creating it when missing) a SQLite read-model file, `:memory:` for a private one. */
export function openReadModelDb(path: string): SqliteDb {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma(`busy_timeout = ${READ_MODEL_BUSY_TIMEOUT_MS}`);
  db.pragma('cache_size = -16384'); // 16 MiB of page cache (the OS caches the file too): a rebuild's peak RSS stays low (64 MiB added ~40 MB at 200k events, no faster)
  return db;
}

const targets = new WeakMap<SqliteDb, SqliteTarget>();

/** The target over an open database (one per database; closing it closes the database only when `owns`). */
export function sqliteTarget(db: SqliteDb, owns = false): SqliteTarget {
  const known = targets.get(db);
  if (known) return known;
  const sql = sqliteSql(db);
  let queue: Promise<unknown> = Promise.resolve();
  const transaction = <T>(fn: (tx: typeof sql) => Promise<T>): Promise<T> => {
    const run = async (): Promise<T> => {
      db.exec('BEGIN IMMEDIATE');
      try {
        const result = await fn(sql);
        db.exec('COMMIT');
        return result;
      } catch (err) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw err;
      }
    };
    const next = queue.then(run, run);
    queue = next.catch(() => undefined);
    return next;
  };
  const target: SqliteTarget = {
    dialect: 'sqlite',
    db,
    where: db.name,
    read: sql,
    transaction,
    claim: (names) => Promise.resolve(new Set(names)),
    isOpen: () => db.open,
    close: async () => {
      if (owns && db.open) db.close();
    },
  };
  targets.set(db, target);
  return target;
}

/** The SQLite database behind a target, for the tools that read a file as a file (verify's table comparison, tests). */
export function sqliteDbOf(target: ReadModelTarget): SqliteDb {
  if (!isSqliteTarget(target)) throw new Error(`read models in ${target.where} are not a SQLite file`);
  return target.db;
}

function isSqliteTarget(target: ReadModelTarget): target is SqliteTarget {
  return target.dialect === 'sqlite' && 'db' in target;
}

export function openSqliteTarget(path: string): SqliteTarget {
  return sqliteTarget(openReadModelDb(path), true);
}
