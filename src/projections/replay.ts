/**
 * `replay` and the read-model half of `verify` (issue 12).
 *
 * replayReadModels: every projection rebuilt from the first event into a FRESH generation file
 * (src/projections/generations.ts), caught up to the head of the store as it was when the replay started, then
 * the pointer switched atomically. Memory stays bounded: the runner reads the store in pages and commits each
 * page (no event is kept once applied). The generation older than the one replaced is deleted (the replaced one
 * stays until the next replay, for a service that has not switched yet).
 *
 * buildScratch + compareReadModels: the same rebuild into a scratch file, then every table of every projection
 * compared row by row with the live file (the live file is read at its own checkpoint: the scratch build is
 * stopped at the live file's lowest checkpoint, so the two reflect the same events).
 */
import { existsSync } from 'node:fs';
import type { EventStore } from '../eventstore/eventstore.js';
import type { Logger } from '../logger.js';
import type { Database as SqliteDb } from 'better-sqlite3';
import type { Projection } from './projection.js';
import { currentGeneration, generationPath, olderGenerations, removeDatabaseFiles, writePointer } from './generations.js';
import { prepareProjections, readStates, resetProjection } from './readmodel-db.js';
import { openReadModelDb, openSqliteTarget, sqliteTarget } from './sqlite.target.js';
import { REBUILD_BATCH, runProjections } from './runner.js';
import { writePlanPrices } from './analysts.js';
import type { PlanPrice } from '../config.js';
import { allProjections } from './views/index.js';

export type Progress = (done: number, total: number) => void;

export type HeadInfo = { events: number; position: bigint | undefined };

/** How many events the projections will read, and the last one's position (one read of the store). */
export async function headOf(store: EventStore, projections: readonly Projection[], until?: bigint): Promise<HeadInfo> {
  const streamPrefixes = [...new Set(projections.flatMap((p) => p.streamPrefixes))];
  let events = 0;
  let position: bigint | undefined;
  for await (const e of store.readAll({ streamPrefixes })) {
    if (until !== undefined && e.position > until) break;
    events++;
    position = e.position;
  }
  return { events, position };
}

export type BuildOptions = {
  store: EventStore;
  logger: Logger;
  path: string;
  projections?: readonly Projection[];
  /** Stop at this position (default: the head when the build starts). */
  until?: bigint;
  onProgress?: Progress;
  /** PLAN_PRICES: written into the new file, as the service writes them into its own at start (analysts' revenue view). */
  planPrices?: readonly PlanPrice[];
  /** How often progress is reported; default 200 ms. */
  progressEveryMs?: number;
};

export type BuildResult = { path: string; events: number; position: string | undefined; ms: number; eventsPerSecond: number };

/** Every projection rebuilt from the first event into `path` (created, or emptied first), up to the head or `until`. */
export async function buildReadModels(options: BuildOptions): Promise<BuildResult> {
  const projections = options.projections ?? allProjections;
  const head = await headOf(options.store, projections, options.until);
  const target = openSqliteTarget(options.path);
  const started = performance.now();
  try {
    await prepareProjections(target, projections);
    for (const p of projections) await resetProjection(target, p);
    await writePlanPrices(target, options.planPrices ?? []);
    const runner = runProjections({ store: options.store, target, logger: options.logger, projections, ...REBUILD_BATCH });
    const report = setInterval(() => options.onProgress?.(Math.min(runner.eventsSeen(), head.events), head.events), options.progressEveryMs ?? 200);
    try {
      if (head.position !== undefined) await runner.waitForPosition(head.position);
    } finally {
      clearInterval(report);
      await runner.stop();
    }
    options.onProgress?.(head.events, head.events);
    target.db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    await target.close();
  }
  const ms = performance.now() - started;
  return { path: options.path, events: head.events, position: head.position?.toString(), ms, eventsPerSecond: Math.round((head.events / Math.max(ms, 1)) * 1000) };
}

export type ReplayResult = BuildResult & { generation: number; previous: { path: string; generation: number }; removed: string[] };

/** Rebuild into the next generation file and switch the pointer to it (see the file's comment). */
export async function replayReadModels(options: Omit<BuildOptions, 'path' | 'until'> & { basePath: string }): Promise<ReplayResult> {
  const previous = currentGeneration(options.basePath);
  const generation = previous.generation + 1;
  const path = generationPath(options.basePath, generation);
  if (existsSync(path)) removeDatabaseFiles(path); // left by an interrupted replay: never pointed at
  const built = await buildReadModels({ ...options, path });
  writePointer(options.basePath, { file: path.slice(path.lastIndexOf('/') + 1), generation, switchedAt: new Date().toISOString(), ...(built.position ? { position: built.position } : {}) });
  const removed = olderGenerations(options.basePath, previous.generation);
  for (const p of removed) removeDatabaseFiles(p);
  return { ...built, generation, previous: { path: previous.path, generation: previous.generation }, removed };
}

export type TableDifference = {
  table: string;
  /** Rows (by primary key) only in the live file, only in the rebuild, or in both with other values. */
  onlyLive: Record<string, unknown>[];
  onlyRebuilt: Record<string, unknown>[];
  differing: Array<{ key: string; live: Record<string, unknown>; rebuilt: Record<string, unknown> }>;
  liveRows: number;
  rebuiltRows: number;
};

export type ReadModelReport = {
  ok: boolean;
  live: string;
  /** The position both sides reflect (the live file's lowest checkpoint). */
  position?: string;
  tables: Array<{ table: string; rows: number; ok: boolean }>;
  differences: TableDifference[];
  /** Projections missing from the live file or of another version (nothing to compare with). */
  problems: string[];
};

function columnsOf(db: SqliteDb, schema: string, table: string): Array<{ name: string; pk: number }> {
  return db.prepare(`SELECT name, pk FROM pragma_table_info(?, ?)`).all(table, schema) as Array<{ name: string; pk: number }>;
}

/** Bookkeeping columns that say when a row was written rather than what it holds. */
const volatile = new Set(['updated_at', 'rebuilt_at']);

/**
 * One table of the live file (`main`) against the rebuild (attached as `rebuilt`), in SQL: the rows of each side
 * that the other does not hold (EXCEPT, computed by SQLite, so memory stays bounded), at most `maxListed` of each
 * listed; a row of one side whose key is on the other side too is listed as differing, with both versions.
 */
function compareTable(db: SqliteDb, table: string, maxListed: number): TableDifference {
  const columns = columnsOf(db, 'rebuilt', table);
  const keys = columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name);
  const compared = columns.map((c) => c.name).filter((c) => !volatile.has(c));
  const cols = compared.map((c) => `"${c}"`).join(', ');
  const count = (schema: string) => Number(db.prepare(`SELECT count(*) FROM ${schema}."${table}"`).pluck().get());
  const except = (a: string, b: string) => db.prepare(`SELECT ${cols} FROM ${a}."${table}" EXCEPT SELECT ${cols} FROM ${b}."${table}" LIMIT ?`).all(maxListed) as Record<string, unknown>[];
  const d: TableDifference = { table, onlyLive: [], onlyRebuilt: [], differing: [], liveRows: count('main'), rebuiltRows: count('rebuilt') };
  const liveOnly = except('main', 'rebuilt');
  const rebuiltOnly = except('rebuilt', 'main');
  const keyOf = (row: Record<string, unknown>) => JSON.stringify(keys.map((k) => row[k]));
  const rebuiltByKey = new Map(rebuiltOnly.map((r) => [keyOf(r), r]));
  for (const row of liveOnly) {
    const other = keys.length > 0 ? rebuiltByKey.get(keyOf(row)) : undefined;
    if (other) {
      d.differing.push({ key: keyOf(row), live: row, rebuilt: other });
      rebuiltByKey.delete(keyOf(row));
    } else d.onlyLive.push(row);
  }
  d.onlyRebuilt = [...rebuiltByKey.values()];
  return d;
}

async function lowestPosition(db: SqliteDb, projections: readonly Projection[]): Promise<{ position: bigint | undefined; problems: string[] }> {
  const states = await readStates(sqliteTarget(db).read);
  const problems: string[] = [];
  let low: bigint | undefined;
  let any = false;
  for (const p of projections) {
    const s = states.get(p.name);
    if (!s) problems.push(`${p.name}: not in the live file`);
    else if (s.version !== p.version) problems.push(`${p.name}: version ${s.version} in the live file, ${p.version} in the code`);
    else if (s.position !== undefined && (!any || low === undefined || s.position < low)) low = s.position;
    if (s) any = true;
  }
  return { position: low, problems };
}

/** Every table of the projections in `livePath` compared with the same tables in `otherPath` (attached). */
export async function compareReadModelFiles(livePath: string, otherPath: string, options: { projections?: readonly Projection[]; maxListed?: number } = {}): Promise<ReadModelReport> {
  const projections = options.projections ?? allProjections;
  const live = openReadModelDb(livePath);
  try {
    const { position, problems } = await lowestPosition(live, projections);
    live.prepare('ATTACH DATABASE ? AS rebuilt').run(otherPath);
    try {
      const differences: TableDifference[] = [];
      const tables: ReadModelReport['tables'] = [];
      for (const p of projections) {
        if (problems.some((m) => m.startsWith(`${p.name}:`))) continue;
        for (const table of [...p.tables, ...p.views]) {
          const d = compareTable(live, table, options.maxListed ?? 20);
          const ok = d.onlyLive.length + d.onlyRebuilt.length + d.differing.length === 0 && d.liveRows === d.rebuiltRows;
          tables.push({ table, rows: d.liveRows, ok });
          if (!ok) differences.push(d);
        }
      }
      return { ok: differences.length === 0 && problems.length === 0, live: livePath, ...(position !== undefined ? { position: position.toString() } : {}), tables, differences, problems };
    } finally {
      live.prepare('DETACH DATABASE rebuilt').run();
    }
  } finally {
    live.close();
  }
}

export type VerifyReadModelsOptions = { store: EventStore; logger: Logger; livePath: string; scratchPath: string; onProgress?: Progress; maxListed?: number; projections?: readonly Projection[] };

/**
 * Rebuilds the read models into `scratchPath` up to the live file's lowest checkpoint and compares every table.
 * Projections a running service moved past that checkpoint meanwhile are compared at their own positions, so run it
 * on a quiet moment or accept differences in rows written since (the report says the position compared).
 */
export async function verifyReadModels(options: VerifyReadModelsOptions): Promise<ReadModelReport> {
  const projections = options.projections ?? allProjections;
  const live = openReadModelDb(options.livePath);
  let position: bigint | undefined;
  try {
    position = (await lowestPosition(live, projections)).position;
  } finally {
    live.close();
  }
  removeDatabaseFiles(options.scratchPath);
  try {
    await buildReadModels({ store: options.store, logger: options.logger, path: options.scratchPath, projections, until: position ?? -1n, ...(options.onProgress ? { onProgress: options.onProgress } : {}) });
    return await compareReadModelFiles(options.livePath, options.scratchPath, { projections, ...(options.maxListed !== undefined ? { maxListed: options.maxListed } : {}) });
  } finally {
    removeDatabaseFiles(options.scratchPath);
  }
}
