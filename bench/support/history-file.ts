/**
 * An embedded event store file that already holds N events of realistic history, quickly, for the benchmarks
 * that measure a figure "at 1M events".
 *
 * The events are the synthetic history the projection tests use (test/support/synthetic-history.ts: real decider
 * output, subscription streams interleaved with their notification streams), written in one transaction with
 * `synchronous = OFF` straight into the store's own schema (the store creates the file first, so the schema,
 * its migrations and the `category` column are the store's). Writing 1M events through appendToStream would take
 * minutes of fsyncs that measure nothing the benchmarks are about.
 *
 * The process managers' checkpoints are put at the head, as in a service that has run with this history: a
 * benchmark of a restart measures the restart, not every process manager working through a year of events.
 *
 * The first call for a size writes a template in bench/results/cache/ (ignored by git); later calls copy it.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { createLogger } from '../../src/logger.js';
import { allProjections, rebuildProjections } from '../../src/projections/index.js';
import { categoryOf } from '../../src/eventstore/sqlite-reads.js';
import { saveCheckpoint } from '../../src/processes/runner/checkpoints.js';
import { INTEGRATION_PROCESS_NAME } from '../../src/processes/integration-events.process.js';
import { METERING_PROCESS_NAME } from '../../src/processes/metering.process.js';
import { syntheticHistory } from '../../test/support/synthetic-history.js';

/** Every process manager the service runs (src/processes/index.ts, integration-events.process.ts). */
const PROCESSES = ['activation', 'notifications', 'refresh', METERING_PROCESS_NAME, INTEGRATION_PROCESS_NAME];

/** Bump when the synthetic history or the store's schema changes, so old templates are not reused. */
const TEMPLATE_VERSION = 2;
const cacheDir = join(import.meta.dirname, '..', 'results', 'cache');

/** Writes (or copies from the cache) a store file holding at least `events` events to `dest`; returns the count. */
export async function historyFile(events: number, dest: string): Promise<number> {
  mkdirSync(cacheDir, { recursive: true });
  const template = join(cacheDir, `history-${events}-v${TEMPLATE_VERSION}.db`);
  if (!existsSync(template)) {
    const partial = `${template}.partial`;
    rmSync(partial, { force: true });
    await writeHistoryFile(partial, events);
    renameSync(partial, template);
  }
  copyFileSync(template, dest);
  return countIn(dest);
}

/**
 * Read models caught up with `historyFile(events)`'s history, copied to `dest` (a service's `<DATA_DIR>/readmodels.db`):
 * a benchmark of a service that has run with this history starts with its read models where that service's would be,
 * instead of measuring a catch-up from zero (the projections benchmark measures that on its own). Built once per size
 * and set of projection versions by a rebuild, then copied.
 */
export async function readModelsFile(events: number, dest: string): Promise<void> {
  mkdirSync(cacheDir, { recursive: true });
  const versions = allProjections.map((p) => `${p.name}${p.version}`).join('-');
  const template = join(cacheDir, `readmodels-${events}-v${TEMPLATE_VERSION}-${versions}.db`);
  if (!existsSync(template)) {
    const work = mkdtempSync(join(tmpdir(), 'ledger-readmodels-'));
    try {
      await historyFile(events, join(work, 'events.db'));
      const store = openSqliteStore({ path: join(work, 'events.db'), checkpointIntervalMs: 0 });
      try {
        await rebuildProjections({ store, path: join(work, 'readmodels.db'), logger: createLogger('warn') });
      } finally {
        await store.close();
      }
      const db = new Database(join(work, 'readmodels.db'));
      db.pragma('wal_checkpoint(TRUNCATE)');
      db.close();
      renameSync(join(work, 'readmodels.db'), template);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  copyFileSync(template, dest);
}

function countIn(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return Number(db.prepare('SELECT count(*) FROM events').pluck().get());
  } finally {
    db.close();
  }
}

async function writeHistoryFile(path: string, target: number): Promise<void> {
  // The store makes the file: its schema, its migrations. Then it is closed and the rows go in raw.
  await openSqliteStore({ path, checkpointIntervalMs: 0 }).close();
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  const insert = db.prepare(
    'INSERT INTO events (event_id, stream_id, category, revision, type, data, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const upsert = db.prepare('INSERT INTO streams (stream_id, revision) VALUES (?, ?) ON CONFLICT (stream_id) DO UPDATE SET revision = excluded.revision');
  const revisions = new Map<string, number>();
  let written = 0;
  const writeBatch = db.transaction((appends: ReturnType<typeof syntheticHistory>, room: number) => {
    for (const a of appends) {
      if (written >= room) return;
      let revision = revisions.get(a.streamId) ?? -1;
      const at = new Date(a.at).toISOString();
      for (const e of a.events) {
        revision += 1;
        insert.run(e.id ?? randomUUID(), a.streamId, categoryOf(a.streamId), revision, e.type, JSON.stringify(e.data ?? null), JSON.stringify(e.metadata ?? {}), at);
        written += 1;
      }
      revisions.set(a.streamId, revision);
    }
  });
  for (let seed = 1; written < target; seed++) {
    writeBatch(syntheticHistory({ subscriptions: 2000, seed, start: new Date(Date.parse('2026-01-05T08:00:00.000Z') + seed * 3_600_000).toISOString() }), target);
  }
  const flush = db.transaction(() => {
    for (const [stream, revision] of revisions) upsert.run(stream, revision);
  });
  flush();
  const head = BigInt(Number(db.prepare('SELECT max(position) FROM events').pluck().get()));
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  const store = openSqliteStore({ path, checkpointIntervalMs: 0 });
  for (const name of PROCESSES) await saveCheckpoint(store, name, head);
  await store.close();
}
