/**
 * The service's projections over read-model generations (src/projections/generations.ts): the runner works on
 * the file the pointer names, and the pointer is re-checked every `checkIntervalMs` (one stat). When `replay`
 * switches it, a runner is started on the new file (it catches up from where the replay stopped); once it is
 * live, readers are switched to it (every read of `target` after that goes to the new file) and the old runner stops.
 * Until then every read is served from the old file, which stays complete and consistent.
 *
 * The object returned is a `RunningProjections` whose members always act on the current runner.
 */
import type { EventStore } from '../eventstore/eventstore.js';
import type { Logger } from '../logger.js';
import type { Projection } from './projection.js';
import type { ReadModelTarget } from './target.js';
import { currentGeneration, pointerStamp } from './generations.js';
import { runProjections } from './runner.js';
import type { RunningProjections } from './runner.js';

export type FollowGenerationsOptions = {
  store: EventStore;
  /** READMODELS_PATH: the configured read-model path (the pointer is `<basePath>.current`). */
  basePath: string;
  logger: Logger;
  projections: readonly Projection[];
  /** How often the pointer is looked at; default 1000 ms. */
  checkIntervalMs?: number;
  /** Run on each file once its runner has prepared its tables (the service writes PLAN_PRICES there). */
  prepare?: (target: ReadModelTarget) => Promise<void>;
};

export type FollowingProjections = RunningProjections & {
  /** The read-model file in use and its generation. */
  current(): { path: string; generation: number };
  /** Look at the pointer now (the timer does it too); resolves once a switch it found is done. */
  checkNow(): Promise<void>;
};

type State = { runner: RunningProjections; path: string; generation: number; stamp: string; switching: Promise<void> | undefined; stopped: boolean };

async function switchTo(s: State, options: FollowGenerationsOptions, log: Logger): Promise<void> {
  const stamp = pointerStamp(options.basePath);
  if (stamp === s.stamp || s.stopped) return;
  let next: ReturnType<typeof currentGeneration>;
  try {
    next = currentGeneration(options.basePath);
  } catch (err) {
    log.error({ err }, 'read-model pointer unreadable; still serving the current file');
    s.stamp = stamp;
    return;
  }
  s.stamp = stamp;
  if (next.path === s.path) return;
  log.info({ from: s.path, to: next.path, generation: next.generation }, 'read models switched by a replay: starting on the new file');
  const runner = runProjections({ store: options.store, path: next.path, logger: log, projections: options.projections });
  await prepared(runner, options);
  await runner.whenLive();
  if (s.stopped) {
    await runner.stop();
    return;
  }
  const old = s.runner;
  Object.assign(s, { runner, path: next.path, generation: next.generation });
  log.info({ path: next.path, generation: next.generation }, 'read models now served from the new file');
  await old.stop();
}

/** The runner once its tables match the code and `prepare` ran on them. */
async function prepared(runner: RunningProjections, options: FollowGenerationsOptions): Promise<void> {
  await runner.ready();
  await options.prepare?.(runner.target);
}

export function followGenerations(options: FollowGenerationsOptions): FollowingProjections {
  const log = options.logger;
  const first = currentGeneration(options.basePath);
  const firstRunner = runProjections({ store: options.store, path: first.path, logger: log, projections: options.projections });
  const firstPrepared = prepared(firstRunner, options);
  firstPrepared.catch(() => undefined); // awaited by ready(); a failure is the caller's to see there
  const s: State = {
    runner: firstRunner,
    path: first.path,
    generation: first.generation,
    stamp: pointerStamp(options.basePath),
    switching: undefined,
    stopped: false,
  };
  const check = (): Promise<void> => {
    s.switching ??= switchTo(s, options, log)
      .catch((err: unknown) => log.error({ err }, 'could not switch the read models; still serving the current file'))
      .finally(() => {
        s.switching = undefined;
      });
    return s.switching;
  };
  const timer = setInterval(() => void check(), options.checkIntervalMs ?? 1000);
  timer.unref();
  return {
    get target(): ReadModelTarget {
      return s.runner.target;
    },
    projections: options.projections,
    idle: () => s.runner.idle(),
    whenLive: () => s.runner.whenLive(),
    waitForPosition: (position) => s.runner.waitForPosition(position),
    rebuild: (names) => s.runner.rebuild(names),
    status: () => s.runner.status(),
    eventsSeen: () => s.runner.eventsSeen(),
    ready: () => (s.runner === firstRunner ? firstPrepared : s.runner.ready()),
    current: () => ({ path: s.path, generation: s.generation }),
    checkNow: check,
    async stop() {
      s.stopped = true;
      clearInterval(timer);
      await s.switching;
      await s.runner.stop();
    },
  };
}
