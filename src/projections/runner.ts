/**
 * The projection runner: one catch-up subscription to all events (of the streams the projections
 * read), from the lowest stored checkpoint; events are applied in batches, each batch ONE SQLite
 * transaction (BEGIN IMMEDIATE) that
 *   1. reads every projection's stored checkpoint and version under the write lock,
 *   2. applies to each projection only the events after its checkpoint,
 *   3. stores the new checkpoints.
 * So a read-model change and the position it reflects commit together or not at all: a crash, a
 * failing `apply` or a stop in the middle leaves the last committed state, and the next run continues
 * from there (exactly-once effect). Because the checkpoint is re-read inside each transaction, two
 * runners on the same file (the service and `projections:rebuild`, or several instances over
 * EventStoreDB) never apply an event twice, and a reset by another process is noticed and followed.
 *
 * A batch that fails rolls back, is logged, and is retried from the stored checkpoint with backoff;
 * nothing is skipped. A projection whose stored version is not its code's (another process rebuilt
 * it with other code) is left alone and reported `superseded`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { EventStore, RecordedEvent, StoreSubscription } from '../eventstore/eventstore.js';
import type { Logger } from '../logger.js';
import type { Projection, ReadModelDb } from './projection.js';
import { openReadModelDb, prepareProjections, readStates, resetProjection, saveProgress } from './readmodel-db.js';

export type RunProjectionsOptions = {
  store: EventStore;
  /** The read-model file, opened here and closed by `stop()`… */
  path?: string;
  /** …or a database the caller opened (and closes). */
  db?: ReadModelDb;
  logger: Logger;
  projections: readonly Projection[];
  /** Events per transaction. Default 500. */
  batchSize?: number;
  /** A partial batch is committed once no further event arrived for this long. Default 5 ms. */
  flushAfterMs?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Clock for `projection_state.updated_at` (bookkeeping only; projections never read the clock). */
  now?: () => Date;
};

export type ProjectionRunState = 'catching-up' | 'rebuilding' | 'live' | 'failing' | 'superseded' | 'stopped';

export type ProjectionStatus = {
  name: string;
  version: number;
  description: string;
  state: ProjectionRunState;
  /** Last global position applied (a bigint as a string); absent before the first event. */
  position?: string;
  eventsApplied: number;
  rebuiltAt?: string;
  updatedAt?: string;
  lastError?: string;
};

export type RunningProjections = {
  readonly db: ReadModelDb;
  readonly projections: readonly Projection[];
  /** Resolves once every projection has applied every event that existed when called. */
  idle(): Promise<void>;
  /** Resolves once every projection has reached `position`. */
  waitForPosition(position: bigint): Promise<void>;
  /** Drop the named projections' tables (all when omitted) and rebuild them from the first event; resolves when caught up. */
  rebuild(names?: string | readonly string[]): Promise<void>;
  status(): ProjectionStatus[];
  /** Events delivered and committed since start (every projection's share counted once). */
  eventsSeen(): number;
  stop(): Promise<void>;
};

/** Another process set a checkpoint back (a rebuild): resubscribe from the stored checkpoints. */
class CheckpointMovedBack extends Error {
  override name = 'CheckpointMovedBack';
}

export class ProjectionApplyError extends Error {
  override name = 'ProjectionApplyError';
  constructor(
    readonly projection: string,
    readonly event: { type: string; streamId: string; position: string },
    options: { cause: unknown },
  ) {
    super(`projection ${projection} failed on ${event.type} at position ${event.position} (${event.streamId}): ${(options.cause as Error)?.message ?? String(options.cause)}`, options);
  }
}

const TICK = Symbol('tick');
const noop = (): void => undefined;

/** a < b, where undefined is "before the first event". */
function behind(a: bigint | undefined, b: bigint | undefined): boolean {
  if (b === undefined) return false;
  return a === undefined || a < b;
}

export function runProjections(options: RunProjectionsOptions): RunningProjections {
  const { store, projections } = options;
  const log = options.logger.bindings().component === undefined ? options.logger.child({ component: 'projections' }) : options.logger;
  if (!options.db && !options.path) throw new Error('runProjections needs a read-model path or an open database');
  const ownsDb = !options.db;
  const db = options.db ?? openReadModelDb(options.path as string);
  const batchSize = options.batchSize ?? 500;
  const flushAfterMs = options.flushAfterMs ?? 5;
  const now = () => (options.now?.() ?? new Date()).toISOString();
  const byName = new Map(projections.map((p) => [p.name, p]));
  if (byName.size !== projections.length) throw new Error('projection names must be unique');

  for (const prepared of prepareProjections(db, projections)) {
    if (prepared.action === 'kept') continue;
    log.info({ projection: prepared.name, action: prepared.action, reason: prepared.reason }, prepared.action === 'rebuilt' ? 'projection will be rebuilt from the first event' : 'projection created');
  }

  const cursor = new Map<string, bigint | undefined>();
  const superseded = new Map<string, string>();
  const rebuilding = new Set<string>([...readStates(db)].filter(([, s]) => s.position === undefined).map(([n]) => n));
  const waiters: Array<{ target: bigint; resolve: () => void }> = [];
  const rebuildRequests: Array<{ names: string[]; done: () => void; failed: (err: unknown) => void }> = [];
  const stopSignal = new AbortController();
  let stopped = false;
  let live = false;
  let failures = 0;
  let lastError: string | undefined;
  let seen = 0;
  let current: StoreSubscription | undefined;

  const active = (): Projection[] => projections.filter((p) => !superseded.has(p.name));

  const lowest = (): bigint | undefined => {
    let low: bigint | undefined;
    let first = true;
    for (const p of active()) {
      const c = cursor.get(p.name);
      if (first || behind(c, low)) low = c;
      first = false;
    }
    return low;
  };

  const settleWaiters = () => {
    const low = lowest();
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i] as { target: bigint; resolve: () => void };
      if (low !== undefined && low >= w.target) {
        waiters.splice(i, 1);
        w.resolve();
      }
    }
  };

  const supersede = (p: Projection, storedVersion: number | undefined) => {
    if (superseded.has(p.name)) return;
    const why = storedVersion === undefined ? 'its state row is gone' : `the file holds version ${storedVersion}, this code has ${p.version}`;
    superseded.set(p.name, why);
    log.error({ projection: p.name, storedVersion, codeVersion: p.version }, 'projection superseded by another process; no longer applied here (restart to rebuild)');
  };

  /** Cursor := what the file says; projections changed under us are superseded. */
  const syncFromFile = () => {
    const stored = readStates(db);
    for (const p of active()) {
      const s = stored.get(p.name);
      if (!s || s.version !== p.version) supersede(p, s?.version);
      else cursor.set(p.name, s.position);
    }
  };

  const commit = (batch: readonly RecordedEvent[], running: readonly Projection[]) => {
    const at = now();
    const tx = db.transaction((): Array<[string, bigint | undefined]> => {
      const stored = readStates(db);
      const moved: Array<[string, bigint | undefined]> = [];
      for (const p of running) {
        if (superseded.has(p.name)) continue;
        const s = stored.get(p.name);
        if (!s || s.version !== p.version) {
          supersede(p, s?.version);
          continue;
        }
        if (behind(s.position, cursor.get(p.name))) throw new CheckpointMovedBack(p.name);
        let position = s.position;
        let applied = 0;
        for (const e of batch) {
          if (position !== undefined && e.position <= position) continue; // already applied (by us or another runner)
          if (p.handles.has(e.type) && p.streamPrefixes.some((prefix) => e.streamId.startsWith(prefix))) {
            try {
              p.apply(db, e);
            } catch (err) {
              throw new ProjectionApplyError(p.name, { type: e.type, streamId: e.streamId, position: e.position.toString() }, { cause: err });
            }
            applied++;
          }
          position = e.position;
        }
        if (position !== undefined && position !== s.position) saveProgress(db, p.name, position, applied, at);
        moved.push([p.name, position]);
      }
      return moved;
    });
    const moved = tx.immediate();
    for (const [name, position] of moved) cursor.set(name, position);
    seen += batch.length;
    if (failures > 0) log.info({ after: failures }, 'projections recovered');
    failures = 0;
    lastError = undefined;
    settleWaiters();
  };

  const markLive = () => {
    if (live) return;
    live = true;
    if (rebuilding.size > 0) log.info({ projections: [...rebuilding] }, 'projections rebuilt and live');
    rebuilding.clear();
  };

  const consume = async (sub: StoreSubscription, running: readonly Projection[]) => {
    const it = sub[Symbol.asyncIterator]();
    let batch: RecordedEvent[] = [];
    let tick: Promise<typeof TICK> | undefined;
    let next = it.next();
    next.catch(noop);
    for (;;) {
      const waitTick = batch.length > 0 || !live;
      const r = waitTick ? await Promise.race([next, (tick ??= sleep(flushAfterMs).then(() => TICK))]) : await next;
      if (r === TICK) {
        tick = undefined;
        if (batch.length > 0) commit(batch, running);
        batch = [];
        markLive();
        continue;
      }
      if (r.done) break;
      batch.push(r.value);
      next = it.next();
      next.catch(noop);
      if (batch.length >= batchSize) {
        tick = undefined;
        commit(batch, running);
        batch = [];
      }
    }
    if (batch.length > 0) commit(batch, running);
  };

  const runRebuilds = () => {
    for (const request of rebuildRequests.splice(0)) {
      try {
        for (const name of request.names) {
          const p = byName.get(name) as Projection;
          resetProjection(db, p, now());
          superseded.delete(name);
          cursor.set(name, undefined);
          rebuilding.add(name);
          log.info({ projection: name, version: p.version }, 'projection reset; rebuilding from the first event');
        }
        request.done();
      } catch (err) {
        request.failed(err);
      }
    }
  };

  const loop = (async () => {
    while (!stopped) {
      runRebuilds();
      syncFromFile();
      const running = active();
      if (running.length === 0) {
        log.error('no projection left to run');
        await sleep(1000, undefined, { signal: stopSignal.signal }).catch(noop);
        continue;
      }
      const from = lowest();
      const prefixes = [...new Set(running.flatMap((p) => p.streamPrefixes))];
      live = false;
      const sub = store.subscribeToAll({ ...(from !== undefined ? { after: from } : {}), streamPrefixes: prefixes });
      current = sub;
      if (stopped || rebuildRequests.length > 0) await sub.close();
      log.info({ from: from?.toString() ?? 'start', projections: running.map((p) => p.name) }, 'projections subscribed');
      try {
        await consume(sub, running);
      } catch (err) {
        if (err instanceof CheckpointMovedBack) {
          log.warn({ projection: err.message }, 'a checkpoint was set back by another process (rebuild): following it');
          continue;
        }
        failures++;
        lastError = (err as Error).message;
        const delay = Math.min(options.retryMaxMs ?? 30_000, (options.retryBaseMs ?? 200) * 2 ** Math.min(failures - 1, 10));
        log.error({ err, attempt: failures, retryInMs: delay }, 'projection batch failed and was rolled back; retrying from the stored checkpoint');
        await sleep(delay, undefined, { signal: stopSignal.signal }).catch(noop);
      } finally {
        current = undefined;
        await sub.close().catch(noop);
      }
    }
  })().catch((err: unknown) => log.fatal({ err }, 'projection runner stopped unexpectedly'));

  const headPosition = async (): Promise<bigint | undefined> => {
    const prefixes = [...new Set(active().flatMap((p) => p.streamPrefixes))];
    const from = lowest();
    let last: bigint | undefined;
    for await (const e of store.readAll({ ...(from !== undefined ? { after: from } : {}), streamPrefixes: prefixes })) last = e.position;
    return last;
  };

  const waitForPosition = (target: bigint): Promise<void> => {
    if (stopped) return Promise.resolve();
    const low = lowest();
    if (low !== undefined && low >= target) return Promise.resolve();
    return new Promise<void>((resolve) => waiters.push({ target, resolve }));
  };

  const idle = async (): Promise<void> => {
    const head = await headPosition();
    if (head !== undefined) await waitForPosition(head);
  };

  return {
    db,
    projections,
    idle,
    waitForPosition,
    async rebuild(names) {
      const list = names === undefined ? projections.map((p) => p.name) : typeof names === 'string' ? [names] : [...names];
      const unknown = list.filter((n) => !byName.has(n));
      if (unknown.length > 0) throw new Error(`unknown projection(s): ${unknown.join(', ')} (known: ${[...byName.keys()].join(', ')})`);
      if (stopped) throw new Error('the projection runner is stopped');
      await new Promise<void>((done, failed) => {
        rebuildRequests.push({ names: list, done, failed });
        void current?.close();
      });
      await idle();
    },
    status() {
      const stored = db.open ? readStates(db) : new Map();
      return projections.map((p): ProjectionStatus => {
        const s = stored.get(p.name);
        const state: ProjectionRunState = stopped
          ? 'stopped'
          : superseded.has(p.name)
            ? 'superseded'
            : failures > 0
              ? 'failing'
              : rebuilding.has(p.name)
                ? 'rebuilding'
                : live
                  ? 'live'
                  : 'catching-up';
        return {
          name: p.name,
          version: p.version,
          description: p.description,
          state,
          ...(s?.position !== undefined ? { position: s.position.toString() } : {}),
          eventsApplied: s?.eventsApplied ?? 0,
          ...(s ? { rebuiltAt: s.rebuiltAt, updatedAt: s.updatedAt } : {}),
          ...(failures > 0 && lastError ? { lastError } : superseded.has(p.name) ? { lastError: superseded.get(p.name) } : {}),
        };
      });
    },
    eventsSeen: () => seen,
    async stop() {
      if (stopped) return;
      stopped = true;
      stopSignal.abort();
      await current?.close();
      await loop;
      for (const w of waiters.splice(0)) w.resolve();
      for (const r of rebuildRequests.splice(0)) r.failed(new Error('the projection runner stopped'));
      if (ownsDb) db.close();
      log.info('projections stopped');
    },
  };
}
