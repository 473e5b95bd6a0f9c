/**
 * The projection runner: one catch-up subscription to all events (of the streams the projections
 * read), from the lowest stored checkpoint; events are applied in batches, each batch ONE transaction
 * on the read-model target (SQLite: BEGIN IMMEDIATE; PostgreSQL: the checkpoints read FOR UPDATE) that
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
 *
 * Several instances on one PostgreSQL: each projection is applied by the instance that holds its advisory
 * lock (`target.claim`); the others report it `standby`, serve reads from the shared tables, and try to
 * claim it again every `claimEveryMs` — when its holder dies, PostgreSQL frees the lock and one of them
 * continues from the stored checkpoint.
 */
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import type { EventStore, RecordedEvent, StoreSubscription } from '../eventstore/eventstore.js';
import type { Logger } from '../logger.js';
import type { Database as SqliteDb } from 'better-sqlite3';
import type { Projection, ReadModelDb } from './projection.js';
import { prepareProjections, readStates, resetProjection, saveProgress } from './readmodel-db.js';
import type { StoredState } from './readmodel-db.js';
import { openSqliteTarget, sqliteTarget } from './sqlite.target.js';
import { TargetMoved } from './target.js';
import type { ReadModelTarget } from './target.js';

export type RunProjectionsOptions = {
  store: EventStore;
  /** The read-model SQLite file, opened here and closed by `stop()`… */
  path?: string;
  /** …or a SQLite database the caller opened (and closes)… */
  db?: SqliteDb;
  /** …or any target (PostgreSQL) the caller opened; closed by `stop()` when `ownsTarget`. */
  target?: ReadModelTarget;
  ownsTarget?: boolean;
  /** How often an instance tries to claim the projections another instance applies (PostgreSQL). Default 1,000 ms. */
  claimEveryMs?: number;
  logger: Logger;
  projections: readonly Projection[];
  /** Events per transaction at most. Default 10,000 (`maxBatchMs` keeps a batch short on a slow machine). */
  batchSize?: number;
  /**
   * A batch's transaction should hold the event loop for at most about this long: while catching up, the next
   * batch is sized from this one's time per event (`adaptBatchLimit`: from 50 events up to `batchSize`). Default 25 ms.
   */
  maxBatchMs?: number;
  /** A partial batch is committed once no further event arrived for this long. Default 5 ms. */
  flushAfterMs?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Clock for `projection_state.updated_at` (bookkeeping only; projections never read the clock). */
  now?: () => Date;
};

export type ProjectionRunState = 'catching-up' | 'rebuilding' | 'live' | 'standby' | 'failing' | 'superseded' | 'stopped';

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
  /** Where the read models are: the read API reads `target.read`. */
  readonly target: ReadModelTarget;
  readonly projections: readonly Projection[];
  /** Resolves once every projection has applied every event that existed when called. */
  idle(): Promise<void>;
  /**
   * Resolves once the runner is live (it caught up with the store: no further event came within the flush
   * delay), at once when it is live already, and when it stops. Cheaper than `idle()`, which reads to the head.
   */
  whenLive(): Promise<void>;
  /** Resolves once every projection has reached `position`. */
  waitForPosition(position: bigint): Promise<void>;
  /** Drop the named projections' tables (all when omitted) and rebuild them from the first event; resolves when caught up. */
  rebuild(names?: string | readonly string[]): Promise<void>;
  status(): ProjectionStatus[];
  /** Events delivered and committed since start (every projection's share counted once). */
  eventsSeen(): number;
  /** Resolves once the tables match the code (created or reset as their versions say). */
  ready(): Promise<void>;
  stop(): Promise<void>;
};

/** Another process set a checkpoint back (a rebuild): resubscribe from the stored checkpoints. */
class CheckpointMovedBack extends Error {
  override name = 'CheckpointMovedBack';
}

/** This instance claimed projections another one applied until now: resubscribe with them. */
class ClaimsChanged extends Error {
  override name = 'ClaimsChanged';
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
/** `idle()` reads to the head of the store; it gives the event loop a turn every this many events. */
const HEAD_YIELD_EVERY = 1000;
const noop = (): void => undefined;

/** a < b, where undefined is "before the first event". */
function behind(a: bigint | undefined, b: bigint | undefined): boolean {
  if (b === undefined) return false;
  return a === undefined || a < b;
}

type RebuildRequest = { names: string[]; done: () => void; failed: (err: unknown) => void };

/** One running runner: its settings and the state its loop, its commits and its callers share. */
type Runner = {
  readonly store: EventStore;
  readonly projections: readonly Projection[];
  readonly byName: ReadonlyMap<string, Projection>;
  readonly log: Logger;
  readonly target: ReadModelTarget;
  readonly ownsTarget: boolean;
  readonly batchSize: number;
  readonly maxBatchMs: number;
  /** The batch size in use: `batchSize`, smaller while batches take longer than `maxBatchMs`. */
  batchLimit: number;
  readonly flushAfterMs: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly claimEveryMs: number;
  readonly now: () => string;
  /** Each projection's last applied position, as far as this runner knows. */
  readonly cursor: Map<string, bigint | undefined>;
  /** Projections another process changed under us, and why. */
  readonly superseded: Map<string, string>;
  /** The projections this instance applies (all on SQLite; those whose lock it holds on PostgreSQL). */
  claimed: Set<string>;
  claimsChanged: boolean;
  claimTimer: NodeJS.Timeout | undefined;
  /** The stored states as last read (the read status answers from them without a query). */
  states: Map<string, StoredState>;
  prepared: boolean;
  readonly preparedWaiters: Array<() => void>;
  readonly rebuilding: Set<string>;
  readonly waiters: Array<{ target: bigint; resolve: () => void }>;
  readonly rebuildRequests: RebuildRequest[];
  readonly liveWaiters: Array<() => void>;
  readonly stopSignal: AbortController;
  stopped: boolean;
  live: boolean;
  failures: number;
  lastError: string | undefined;
  seen: number;
  current: StoreSubscription | undefined;
};

const active = (r: Runner): Projection[] => r.projections.filter((p) => !r.superseded.has(p.name));
const applying = (r: Runner): Projection[] => active(r).filter((p) => r.claimed.has(p.name));

function lowestOf(r: Runner, projections: readonly Projection[]): bigint | undefined {
  let low: bigint | undefined;
  let first = true;
  for (const p of projections) {
    const c = r.cursor.get(p.name);
    if (first || behind(c, low)) low = c;
    first = false;
  }
  return low;
}

const lowest = (r: Runner): bigint | undefined => lowestOf(r, applying(r));

function settleWaiters(r: Runner): void {
  const low = lowest(r);
  for (let i = r.waiters.length - 1; i >= 0; i--) {
    const w = r.waiters[i] as { target: bigint; resolve: () => void };
    if (low !== undefined && low >= w.target) {
      r.waiters.splice(i, 1);
      w.resolve();
    }
  }
}

function supersede(r: Runner, p: Projection, storedVersion: number | undefined): void {
  if (r.superseded.has(p.name)) return;
  const why = storedVersion === undefined ? 'its state row is gone' : `the read models hold version ${storedVersion}, this code has ${p.version}`;
  r.superseded.set(p.name, why);
  r.log.error({ projection: p.name, storedVersion, codeVersion: p.version }, 'projection superseded by another process; no longer applied here (restart to rebuild)');
}

/** Cursor := what the read models say; projections changed under us are superseded. */
async function syncFromStore(r: Runner): Promise<void> {
  const stored = await readStates(r.target.read);
  r.states = stored;
  for (const p of active(r)) {
    const s = stored.get(p.name);
    if (!s || s.version !== p.version) supersede(r, p, s?.version);
    else r.cursor.set(p.name, s.position);
  }
}

/**
 * Applies to `p` the events of `batch` after `from` (inside the batch's transaction); returns where it got and how
 * many it applied. A projection with batches (`beginBatch`) keeps its changes in memory until the flush at the end.
 */
async function applyBatch(
  p: Projection,
  tx: ReadModelDb,
  batch: readonly RecordedEvent[],
  from: bigint | undefined,
): Promise<{ position: bigint | undefined; applied: number }> {
  let position = from;
  let applied = 0;
  let last: RecordedEvent | undefined;
  const open = p.beginBatch?.(tx);
  const failed = (e: RecordedEvent, err: unknown) => new ProjectionApplyError(p.name, { type: e.type, streamId: e.streamId, position: e.position.toString() }, { cause: err });
  try {
    for (const e of batch) {
      if (position !== undefined && e.position <= position) continue; // already applied (by us or another runner)
      if (p.handles.has(e.type) && p.streamPrefixes.some((prefix) => e.streamId.startsWith(prefix))) {
        try {
          await p.apply(tx, e);
        } catch (err) {
          throw failed(e, err);
        }
        applied++;
        last = e;
      }
      position = e.position;
    }
    if (open && last) {
      try {
        await open.flush();
      } catch (err) {
        throw failed(last, err); // a write of the batch failed: named after its last event
      }
    }
  } finally {
    open?.close();
  }
  return { position, applied };
}

/** One batch, one transaction: every running projection's share of it and its new checkpoint. */
async function commit(r: Runner, batch: readonly RecordedEvent[], running: readonly Projection[]): Promise<void> {
  if (r.claimsChanged) throw new ClaimsChanged('claimed more projections');
  const at = r.now();
  const { moved, states } = await r.target.transaction(async (tx) => {
    const stored = await readStates(tx, true);
    const moved: Array<[string, bigint | undefined]> = [];
    for (const p of running) {
      if (r.superseded.has(p.name)) continue;
      const s = stored.get(p.name);
      if (!s || s.version !== p.version) {
        supersede(r, p, s?.version);
        continue;
      }
      if (behind(s.position, r.cursor.get(p.name))) throw new CheckpointMovedBack(p.name);
      const { position, applied } = await applyBatch(p, tx, batch, s.position);
      if (position !== undefined && position !== s.position) await saveProgress(tx, p.name, position, applied, at);
      moved.push([p.name, position]);
    }
    return { moved, states: await readStates(tx) };
  });
  r.states = states;
  for (const [name, position] of moved) r.cursor.set(name, position);
  r.seen += batch.length;
  if (r.failures > 0) r.log.info({ after: r.failures }, 'projections recovered');
  r.failures = 0;
  r.lastError = undefined;
  settleWaiters(r);
}

function markLive(r: Runner): void {
  if (r.live) return;
  r.live = true;
  for (const resolve of r.liveWaiters.splice(0)) resolve();
  if (r.rebuilding.size > 0) r.log.info({ projections: [...r.rebuilding] }, 'projections rebuilt and live');
  r.rebuilding.clear();
}

const MIN_BATCH = 50;
/** The service's batch limit: large, because the time a batch may hold the event loop (`maxBatchMs`) bounds it first. */
const DEFAULT_BATCH = 10_000;
/** A rebuild's batches (rebuildProjections, replay): no HTTP waits on them; 5,000 events bound its memory (20,000 gave no more throughput at 200k events, ~11 MB more peak RSS). */
export const REBUILD_BATCH = { batchSize: 5_000, maxBatchMs: 500 } as const;

/** Batches start at this size and grow while they take under half of `maxBatchMs`. */
const FIRST_BATCH = 500;
/** The service's `maxBatchMs`: a batch (its read and its transaction) holds the event loop about this long at most. */
export const DEFAULT_MAX_BATCH_MS = 25;

/**
 * After a batch that took over `maxBatchMs`, or under half of it: the next batch size aimed at 80 % of `maxBatchMs`
 * from this one's time per event (growing at most twofold, down to 50 events). A batch is an interval between two
 * chances for HTTP to be answered, so the aim keeps most of them inside the bound without overshooting it after a
 * doubling (a catch-up at 1M events held /healthz up to 248 ms when batches doubled from just under half of 50 ms).
 */
function adaptBatchLimit(r: Runner, tookMs: number): void {
  if (tookMs <= r.maxBatchMs && tookMs >= r.maxBatchMs / 2) return;
  const scale = tookMs > 0 ? Math.min(2, (0.8 * r.maxBatchMs) / tookMs) : 2;
  r.batchLimit = Math.max(Math.min(MIN_BATCH, r.batchSize), Math.min(r.batchSize, Math.floor(r.batchLimit * scale)));
}

/** A flush timer that can be dropped: once cancelled, its promise (and every race waiting on it) is garbage. */
function flushTimer(ms: number): { promise: Promise<typeof TICK>; cancel: () => void } {
  let handle: NodeJS.Timeout | undefined;
  const promise = new Promise<typeof TICK>((resolve) => {
    handle = setTimeout(resolve, ms, TICK);
  });
  return { promise, cancel: () => clearTimeout(handle) };
}

/**
 * Reads the subscription in batches of up to `batchSize`, a partial batch committed after `flushAfterMs` of quiet.
 * Between batches it gives the event loop a turn (setImmediate): a catch-up from memory resolves every `next()`
 * in microtasks, so without it HTTP and timers would wait for the end of the catch-up. The flush timer of a
 * batch is cancelled once the batch is committed, so no event already applied stays referenced by a pending race.
 */
async function consume(r: Runner, sub: StoreSubscription, running: readonly Projection[]): Promise<void> {
  const it = sub[Symbol.asyncIterator]();
  let batch: RecordedEvent[] = [];
  let timer: ReturnType<typeof flushTimer> | undefined;
  const flush = async (): Promise<void> => {
    timer?.cancel();
    timer = undefined;
    const pending = batch;
    batch = [];
    if (pending.length > 0) await commit(r, pending, running);
  };
  let next = it.next();
  next.catch(noop);
  try {
    for (;;) {
      const waitTick = batch.length > 0 || !r.live;
      const res = waitTick ? await Promise.race([next, (timer ??= flushTimer(r.flushAfterMs)).promise]) : await next;
      if (res === TICK) {
        // The event loop turned already (a timer fired): no yield needed here.
        await flush();
        markLive(r);
        continue;
      }
      if (res.done) break;
      batch.push(res.value);
      next = it.next();
      next.catch(noop);
      if (batch.length >= r.batchLimit) {
        const started = performance.now();
        await flush();
        adaptBatchLimit(r, performance.now() - started);
        await yieldToLoop();
      }
    }
    await flush();
  } finally {
    timer?.cancel();
  }
}

async function runRebuilds(r: Runner): Promise<void> {
  for (const request of r.rebuildRequests.splice(0)) {
    try {
      for (const name of request.names) {
        const p = r.byName.get(name) as Projection;
        await resetProjection(r.target, p, r.now());
        r.superseded.delete(name);
        r.cursor.set(name, undefined);
        r.rebuilding.add(name);
        r.log.info({ projection: name, version: p.version }, 'projection reset; rebuilding from the first event');
      }
      await r.target.afterReset?.(r.projections);
      request.done();
    } catch (err) {
      request.failed(err);
    }
  }
}

const interrupted = (r: Runner): boolean => r.stopped || r.rebuildRequests.length > 0 || r.claimsChanged;

/**
 * Catch-up: pages of up to `batchLimit` events read from the store (readAll) after the lowest checkpoint, each
 * committed as one batch, with a turn of the event loop between batches; it ends at the head of the store, or
 * when the runner stops or a rebuild is requested. The batch limit adapts to the time a batch holds the event
 * loop, the read included (`adaptBatchLimit`).
 */
async function catchUp(r: Runner, running: readonly Projection[], prefixes: readonly string[]): Promise<void> {
  while (!interrupted(r)) {
    const from = lowestOf(r, running);
    const limit = r.batchLimit;
    const started = performance.now();
    const page: RecordedEvent[] = [];
    for await (const e of r.store.readAll({ ...(from !== undefined ? { after: from } : {}), maxCount: limit, streamPrefixes: prefixes })) page.push(e);
    if (page.length > 0) await commit(r, page, running);
    adaptBatchLimit(r, performance.now() - started);
    if (page.length < limit) return;
    await yieldToLoop();
  }
}

/** What a failed catch-up or subscription means: follow another process, or back off and retry. */
async function recover(r: Runner, err: unknown): Promise<void> {
  if (err instanceof CheckpointMovedBack) {
    r.log.warn({ projection: err.message }, 'a checkpoint was set back by another process (rebuild): following it');
    return;
  }
  if (err instanceof ClaimsChanged) return;
  if (err instanceof TargetMoved && r.target.moveTo) {
    await r.target.moveTo(err.to);
    r.prepared = false;
    return;
  }
  r.failures++;
  r.lastError = (err as Error).message;
  const delay = Math.min(r.retryMaxMs, r.retryBaseMs * 2 ** Math.min(r.failures - 1, 10));
  r.log.error({ err, attempt: r.failures, retryInMs: delay }, 'projection batch failed and was rolled back; retrying from the stored checkpoint');
  await sleep(delay, undefined, { signal: r.stopSignal.signal }).catch(noop);
}

/** Catch up in pages, then one subscription from the lowest checkpoint, until it ends, fails or is closed (stop, rebuild, claims). */
async function subscribeOnce(r: Runner, running: readonly Projection[]): Promise<void> {
  const prefixes = [...new Set(running.flatMap((p) => p.streamPrefixes))];
  r.live = false;
  let sub: StoreSubscription | undefined;
  try {
    await catchUp(r, running, prefixes);
    const from = lowestOf(r, running);
    sub = r.store.subscribeToAll({ ...(from !== undefined ? { after: from } : {}), streamPrefixes: prefixes });
    r.current = sub;
    if (interrupted(r)) await sub.close();
    r.log.info({ from: from?.toString() ?? 'start', projections: running.map((p) => p.name) }, 'projections subscribed');
    await consume(r, sub, running);
  } catch (err) {
    await recover(r, err);
  } finally {
    r.current = undefined;
    await sub?.close().catch(noop);
  }
}

/** Creates or rebuilds the projections' tables as their versions say (once per target; again after a move). */
async function prepare(r: Runner): Promise<void> {
  const preparations = await prepareProjections(r.target, r.projections);
  for (const prepared of preparations) {
    if (prepared.action === 'kept') continue;
    r.log.info({ projection: prepared.name, action: prepared.action, reason: prepared.reason }, prepared.action === 'rebuilt' ? 'projection will be rebuilt from the first event' : 'projection created');
  }
  if (preparations.some((p) => p.action !== 'kept')) await r.target.afterReset?.(r.projections);
  r.states = await readStates(r.target.read);
  for (const [name, s] of r.states) if (s.position === undefined && r.byName.has(name)) r.rebuilding.add(name);
  r.prepared = true;
  for (const resolve of r.preparedWaiters.splice(0)) resolve();
}

/** Claims what this instance may apply; on a change while subscribed, the subscription is closed to take them in. */
async function reclaim(r: Runner): Promise<void> {
  if (r.stopped || !r.prepared) return;
  const wanted = active(r).map((p) => p.name);
  if (wanted.every((n) => r.claimed.has(n))) return;
  if (!takeClaims(r, await r.target.claim(wanted))) return;
  r.claimsChanged = true;
  void r.current?.close();
}

/** The claims this instance holds now (logging those it gained and lost); whether they changed. */
function takeClaims(r: Runner, claimed: Set<string>): boolean {
  const gained = [...claimed].filter((n) => !r.claimed.has(n));
  const lost = [...r.claimed].filter((n) => !claimed.has(n));
  if (gained.length > 0 && r.target.dialect !== 'sqlite') r.log.info({ projections: gained }, 'projections claimed: this instance applies them now');
  if (lost.length > 0) r.log.warn({ projections: lost }, 'projections no longer claimed here: another instance may apply them');
  r.claimed = claimed;
  return gained.length > 0 || lost.length > 0;
}

async function step(r: Runner): Promise<void> {
  if (!r.prepared) await prepare(r);
  await runRebuilds(r);
  await syncFromStore(r);
  takeClaims(r, await r.target.claim(active(r).map((p) => p.name)));
  r.claimsChanged = false;
  const running = applying(r);
  if (running.length === 0) {
    if (active(r).length === 0) r.log.error('no projection left to run');
    markLive(r); // nothing to catch up here: another instance applies them (standby)
    await sleep(r.claimEveryMs, undefined, { signal: r.stopSignal.signal }).catch(noop);
    return;
  }
  await subscribeOnce(r, running);
}

async function loop(r: Runner): Promise<void> {
  if (r.target.dialect !== 'sqlite') r.claimTimer = setInterval(() => void reclaim(r).catch(noop), r.claimEveryMs);
  while (!r.stopped) {
    try {
      await step(r);
    } catch (err) {
      await recover(r, err);
    }
  }
}

async function headPosition(r: Runner, projections: readonly Projection[]): Promise<bigint | undefined> {
  const prefixes = [...new Set(projections.flatMap((p) => p.streamPrefixes))];
  const from = lowestOf(r, projections);
  let last: bigint | undefined;
  let n = 0;
  for await (const e of r.store.readAll({ ...(from !== undefined ? { after: from } : {}), streamPrefixes: prefixes })) {
    last = e.position;
    if (++n % HEAD_YIELD_EVERY === 0) await yieldToLoop(); // a long read from memory must not starve HTTP either
  }
  return last;
}

/** Projections another instance applies have reached `target` in the shared tables (polled). */
async function standbyReached(r: Runner, target: bigint): Promise<boolean> {
  const standby = active(r).filter((p) => !r.claimed.has(p.name));
  if (standby.length === 0) return true;
  const stored = await readStates(r.target.read);
  r.states = stored;
  return standby.every((p) => {
    const at = stored.get(p.name)?.position;
    return at !== undefined && at >= target;
  });
}

async function waitForPosition(r: Runner, target: bigint): Promise<void> {
  if (!r.prepared) await new Promise<void>((resolve) => r.preparedWaiters.push(resolve));
  while (!r.stopped) {
    const low = lowest(r);
    const mine = applying(r).length === 0 || (low !== undefined && low >= target);
    if (mine) {
      if (await standbyReached(r, target)) return;
      await sleep(Math.min(50, r.claimEveryMs), undefined, { signal: r.stopSignal.signal }).catch(noop);
      continue;
    }
    await new Promise<void>((resolve) => {
      const waiter = { target, resolve };
      r.waiters.push(waiter);
      setTimeout(() => {
        const i = r.waiters.indexOf(waiter);
        if (i >= 0) r.waiters.splice(i, 1);
        resolve();
      }, r.claimEveryMs).unref(); // claims may change meanwhile: look again
    });
  }
}

async function idle(r: Runner): Promise<void> {
  // Caught up first: the head is then read from near the end, not over the whole store (a rebuild's start).
  if (!r.live && !r.stopped) await new Promise<void>((resolve) => r.liveWaiters.push(resolve));
  const head = await headPosition(r, active(r));
  if (head !== undefined) await waitForPosition(r, head);
}

async function rebuild(r: Runner, names: string | readonly string[] | undefined): Promise<void> {
  const list = names === undefined ? r.projections.map((p) => p.name) : typeof names === 'string' ? [names] : [...names];
  const unknown = list.filter((n) => !r.byName.has(n));
  if (unknown.length > 0) throw new Error(`unknown projection(s): ${unknown.join(', ')} (known: ${[...r.byName.keys()].join(', ')})`);
  if (r.stopped) throw new Error('the projection runner is stopped');
  await new Promise<void>((done, failed) => {
    r.rebuildRequests.push({ names: list, done, failed });
    void r.current?.close();
  });
  await idle(r);
}

function runStateOf(r: Runner, p: Projection): ProjectionRunState {
  if (r.stopped) return 'stopped';
  if (r.superseded.has(p.name)) return 'superseded';
  if (r.failures > 0) return 'failing';
  if (r.rebuilding.has(p.name)) return 'rebuilding';
  if (r.prepared && !r.claimed.has(p.name)) return 'standby';
  return r.live ? 'live' : 'catching-up';
}

function statusOf(r: Runner): ProjectionStatus[] {
  return r.projections.map((p): ProjectionStatus => {
    const s = r.states.get(p.name);
    return {
      name: p.name,
      version: p.version,
      description: p.description,
      state: runStateOf(r, p),
      ...(s?.position !== undefined ? { position: s.position.toString() } : {}),
      eventsApplied: s?.eventsApplied ?? 0,
      ...(s ? { rebuiltAt: s.rebuiltAt, updatedAt: s.updatedAt } : {}),
      ...(r.failures > 0 && r.lastError ? { lastError: r.lastError } : r.superseded.has(p.name) ? { lastError: r.superseded.get(p.name) } : {}),
    };
  });
}

async function stop(r: Runner, running: Promise<void>): Promise<void> {
  if (r.stopped) return;
  r.stopped = true;
  r.stopSignal.abort();
  clearInterval(r.claimTimer);
  await r.current?.close();
  await running;
  for (const w of r.waiters.splice(0)) w.resolve();
  for (const resolve of r.liveWaiters.splice(0)) resolve();
  for (const resolve of r.preparedWaiters.splice(0)) resolve();
  for (const req of r.rebuildRequests.splice(0)) req.failed(new Error('the projection runner stopped'));
  if (r.ownsTarget) await r.target.close();
  r.log.info('projections stopped');
}

function targetOf(options: RunProjectionsOptions): { target: ReadModelTarget; owns: boolean } {
  if (options.target) return { target: options.target, owns: options.ownsTarget ?? false };
  if (options.db) return { target: sqliteTarget(options.db), owns: false };
  if (options.path) return { target: openSqliteTarget(options.path), owns: true };
  throw new Error('runProjections needs a read-model target, path or open database');
}

/** The runner's settings and initial state; its loop first creates or rebuilds the projections' tables as their versions say. */
function createRunner(options: RunProjectionsOptions): Runner {
  const { store, projections } = options;
  const log = options.logger.bindings().component === undefined ? options.logger.child({ component: 'projections' }) : options.logger;
  const { target, owns } = targetOf(options);
  const byName = new Map(projections.map((p) => [p.name, p]));
  if (byName.size !== projections.length) throw new Error('projection names must be unique');
  return {
    store,
    projections,
    byName,
    log,
    target,
    ownsTarget: owns,
    batchSize: options.batchSize ?? DEFAULT_BATCH,
    maxBatchMs: options.maxBatchMs ?? DEFAULT_MAX_BATCH_MS,
    batchLimit: Math.min(FIRST_BATCH, options.batchSize ?? DEFAULT_BATCH),
    flushAfterMs: options.flushAfterMs ?? 5,
    retryBaseMs: options.retryBaseMs ?? 200,
    retryMaxMs: options.retryMaxMs ?? 30_000,
    claimEveryMs: options.claimEveryMs ?? 1000,
    now: () => (options.now?.() ?? new Date()).toISOString(),
    cursor: new Map(),
    superseded: new Map(),
    claimed: new Set(),
    claimsChanged: false,
    claimTimer: undefined,
    states: new Map(),
    prepared: false,
    preparedWaiters: [],
    rebuilding: new Set<string>(),
    waiters: [],
    rebuildRequests: [],
    liveWaiters: [],
    stopSignal: new AbortController(),
    stopped: false,
    live: false,
    failures: 0,
    lastError: undefined,
    seen: 0,
    current: undefined,
  };
}

export function runProjections(options: RunProjectionsOptions): RunningProjections {
  const r = createRunner(options);
  const running = loop(r).catch((err: unknown) => r.log.fatal({ err }, 'projection runner stopped unexpectedly'));
  return {
    target: r.target,
    projections: r.projections,
    idle: () => idle(r),
    whenLive: () => (r.live || r.stopped ? Promise.resolve() : new Promise<void>((resolve) => r.liveWaiters.push(resolve))),
    waitForPosition: (position) => waitForPosition(r, position),
    rebuild: (names) => rebuild(r, names),
    status: () => statusOf(r),
    eventsSeen: () => r.seen,
    ready: () => (r.prepared || r.stopped ? Promise.resolve() : new Promise<void>((resolve) => r.preparedWaiters.push(resolve))),
    stop: () => stop(r, running),
  };
}
