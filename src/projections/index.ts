/**
 * The read models: start the projections the service runs over an event store and a read-model target
 * (a SQLite file, or a PostgreSQL database), or rebuild some of them from scratch (the CLI, `replay`, the
 * benchmark).
 *
 * Rebuild entry points:
 * - `rebuildProjections({ store, path | db | target, names })`: reset the named projections where they are
 *   and replay every event into them (SQLite: a fresh file for `replay`, which then renames it into place).
 * - `rebuildPostgresGeneration({ store, url })`: build every projection into a new schema `rm_<n+1>` while
 *   the live one keeps serving, then switch to it atomically (`replay` over PostgreSQL).
 */
import type { Database as SqliteDb } from 'better-sqlite3';
import { allProjections } from './views/index.js';
import type { PlanPrice } from '../config.js';
import type { EventStore } from '../eventstore/eventstore.js';
import { writePlanPrices } from './analysts.js';
import type { Logger } from '../logger.js';
import type { Projection } from './projection.js';
import type { Generation } from './postgres.generations.js';
import { prepareProjections, resetProjection } from './readmodel-db.js';
import { REBUILD_BATCH, runProjections } from './runner.js';
import type { RunProjectionsOptions, RunningProjections } from './runner.js';
import { openSqliteTarget, sqliteTarget } from './sqlite.target.js';
import type { ReadModelTarget } from './target.js';

export { allProjections };
export type { Projection, ReadModelDb } from './projection.js';
export type { ReadModelTarget } from './target.js';
export { openReadModelDb } from './readmodel-db.js';
export { pendingChangeSource } from './pending-changes.js';
export { followGenerations } from './follow-generations.js';
export { writePlanPrices } from './analysts.js';
export type { FollowingProjections } from './follow-generations.js';
export type { ProjectionStatus, RunningProjections } from './runner.js';

export type StartProjectionsOptions = Omit<RunProjectionsOptions, 'projections'> & {
  /** Default: every projection of `projections/`. */
  projections?: readonly Projection[];
};

/** Start the projections: from their stored checkpoints, rebuilding any whose code version changed. */
export function startProjections(options: StartProjectionsOptions): RunningProjections {
  return runProjections({ ...options, projections: options.projections ?? allProjections });
}

/** Where the configuration puts the read models: PostgreSQL when a URL is given, else the SQLite file. */
export type ReadModelLocation = { path: string; url?: string; planPrices?: readonly PlanPrice[] };

/** The PostgreSQL target, loaded when one is configured: a service on the SQLite default never loads `pg` (~50 ms of its start). */
const postgresTarget = () => import('./postgres.target.js');

/**
 * Open the configured target. PostgreSQL: the live generation's schema (created at the first start), followed
 * when a rebuild switches to a new one; the analysts' views in `public` are (re)created over it.
 */
export async function openReadModelTarget(location: ReadModelLocation, logger?: Logger, projections: readonly Projection[] = allProjections): Promise<ReadModelTarget> {
  if (!location.url) {
    const target = openSqliteTarget(location.path);
    await prepareProjections(target, projections);
    await writePlanPrices(target, location.planPrices ?? []);
    return target;
  }
  const { liveGeneration, exposeLive } = await import('./postgres.generations.js');
  const { openPostgresTarget } = await postgresTarget();
  const live = await liveGeneration(location.url);
  const target = await openPostgresTarget({ url: location.url, schema: live.schema, followLive: true, ...(logger ? { logger } : {}) });
  await prepareProjections(target, projections);
  await exposeLive(location.url, projections);
  const analysts = await openPostgresTarget({ url: location.url, schema: 'public', poolSize: 1 });
  try {
    await writePlanPrices(analysts, location.planPrices ?? []);
  } finally {
    await analysts.close();
  }
  return target;
}

export type RebuildOptions = {
  store: EventStore;
  logger: Logger;
  /** The read-model file to rebuild in (it may be in use by the service: the runners cooperate)… */
  path?: string;
  /** …or an open SQLite database… */
  db?: SqliteDb;
  /** …or an open target (PostgreSQL: one schema). */
  target?: ReadModelTarget;
  /** Names of the projections to rebuild; default all. */
  names?: readonly string[];
  projections?: readonly Projection[];
  /** Events per transaction at most; default 5,000 (at 200k events 20,000 gave no more throughput and ~11 MB more peak RSS). */
  batchSize?: number;
  /** How long a batch may hold the event loop before the next ones shrink; default 500 ms (no HTTP waits on a rebuild). */
  maxBatchMs?: number;
  /** Stop at this position instead of the store's last event when called. */
  until?: bigint;
};

export type RebuildResult = { projections: string[]; events: number; ms: number; eventsPerSecond: number };

function selectedOf(projections: readonly Projection[], names: readonly string[]): Projection[] {
  return names.map((name) => {
    const p = projections.find((q) => q.name === name);
    if (!p) throw new Error(`unknown projection ${name} (known: ${projections.map((q) => q.name).join(', ')})`);
    return p;
  });
}

/** Reset the named projections, replay every event into them, and stop once caught up. */
export async function rebuildProjections(options: RebuildOptions): Promise<RebuildResult> {
  const projections = options.projections ?? allProjections;
  const names = options.names ?? projections.map((p) => p.name);
  const selected = selectedOf(projections, names);
  const target = options.target ?? (options.db ? sqliteTarget(options.db) : openSqliteTarget(options.path ?? ':memory:'));
  try {
    await prepareProjections(target, projections);
    for (const p of selected) await resetProjection(target, p);
    const started = performance.now();
    const runner = runProjections({
      store: options.store,
      target,
      logger: options.logger,
      projections: selected,
      batchSize: options.batchSize ?? REBUILD_BATCH.batchSize,
      maxBatchMs: options.maxBatchMs ?? REBUILD_BATCH.maxBatchMs,
    });
    try {
      if (options.until !== undefined) await runner.waitForPosition(options.until);
      else await runner.idle();
    } finally {
      await runner.stop();
    }
    const ms = performance.now() - started;
    const events = runner.eventsSeen();
    return { projections: names.slice(), events, ms, eventsPerSecond: Math.round((events / ms) * 1000) };
  } finally {
    if (!options.target && !options.db) await target.close();
  }
}

export type GenerationRebuildOptions = Omit<RebuildOptions, 'path' | 'db' | 'target' | 'names'> & {
  /** postgres://… (READMODELS_URL). */
  url: string;
  /** Build only, do not switch (a check, or a switch left to the caller): default false. */
  noSwitch?: boolean;
};

export type GenerationRebuildResult = RebuildResult & { schema: string; previous: string; switched: boolean };

/**
 * `replay` over PostgreSQL: every projection rebuilt into a new schema (`rm_<n+1>`) while the live one keeps
 * serving and applying, then, in one transaction, the live pointer and the analysts' `public` views switched
 * to it (postgres.generations.ts). Instances still on the old schema move over at their next batch and
 * continue the new one from its checkpoints; the schema before the old one is dropped.
 */
export async function rebuildPostgresGeneration(options: GenerationRebuildOptions): Promise<GenerationRebuildResult> {
  const projections = options.projections ?? allProjections;
  const { liveGeneration, nextGeneration, switchGeneration } = await import('./postgres.generations.js');
  const { openPostgresTarget } = await postgresTarget();
  const previous = await liveGeneration(options.url);
  const next: Generation = await nextGeneration(options.url);
  const target = await openPostgresTarget({ url: options.url, schema: next.schema, logger: options.logger });
  try {
    const { url: _url, noSwitch: _noSwitch, ...rest } = options;
    const result = await rebuildProjections({ ...rest, projections, target });
    if (!options.noSwitch) await switchGeneration(options.url, next, projections);
    return { ...result, schema: next.schema, previous: previous.schema, switched: !options.noSwitch };
  } finally {
    await target.close();
  }
}
