/**
 * The read models: start the projections the service runs over an event store and a read-model
 * file, or rebuild some of them from scratch (the CLI and the benchmark).
 */
import { allProjections } from './views/index.js';
import type { EventStore } from '../eventstore/eventstore.js';
import type { Logger } from '../logger.js';
import type { Projection, ReadModelDb } from './projection.js';
import { openReadModelDb, prepareProjections, resetProjection } from './readmodel-db.js';
import { runProjections } from './runner.js';
import type { RunProjectionsOptions, RunningProjections } from './runner.js';

export { allProjections };
export type { Projection, ReadModelDb } from './projection.js';
export { openReadModelDb } from './readmodel-db.js';
export { pendingChangeSource } from './pending-changes.js';
export { followGenerations } from './follow-generations.js';
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

export type RebuildOptions = {
  store: EventStore;
  logger: Logger;
  /** The read-model file to rebuild in (it may be in use by the service: the runners cooperate)… */
  path?: string;
  /** …or an open database. */
  db?: ReadModelDb;
  /** Names of the projections to rebuild; default all. */
  names?: readonly string[];
  projections?: readonly Projection[];
  /** Events per transaction at most; default 20,000 (a rebuild favours throughput: larger batches, fewer writes per row). */
  batchSize?: number;
  /** How long a batch may hold the event loop before the next ones shrink; default 500 ms (no HTTP waits on a rebuild). */
  maxBatchMs?: number;
  /** Stop at this position instead of the store's last event when called. */
  until?: bigint;
};

export type RebuildResult = { projections: string[]; events: number; ms: number; eventsPerSecond: number };

/** Reset the named projections, replay every event into them, and stop once caught up. */
export async function rebuildProjections(options: RebuildOptions): Promise<RebuildResult> {
  const projections = options.projections ?? allProjections;
  const names = options.names ?? projections.map((p) => p.name);
  const selected = names.map((name) => {
    const p = projections.find((q) => q.name === name);
    if (!p) throw new Error(`unknown projection ${name} (known: ${projections.map((q) => q.name).join(', ')})`);
    return p;
  });
  const db = options.db ?? openReadModelDb(options.path ?? ':memory:');
  try {
    prepareProjections(db, projections);
    for (const p of selected) resetProjection(db, p);
    const started = performance.now();
    const runner = runProjections({
      store: options.store,
      db,
      logger: options.logger,
      projections: selected,
      batchSize: options.batchSize ?? 20_000,
      maxBatchMs: options.maxBatchMs ?? 500,
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
    if (!options.db) db.close();
  }
}
