/**
 * Runs a process manager: events in, handler called once per event (in order per stream), crash-safe.
 * `startProcess` is the single entry; it picks how from the store, so that several instances of the service can
 * run side by side and still make ONE outside call per intent (docs/several-instances.md):
 *
 * - `persistent` (EventStoreDB, the default there): every instance joins the process's persistent subscription
 *   group; the server gives each event to one of them (persistent.runner.ts).
 * - `lease` (SQLite, the default there; works on any store): instances compete for a lease kept in the store;
 *   only the holder runs the catch-up runner from the shared checkpoint (leased.runner.ts, lease.ts).
 * - `catch-up`: no coordination at all; right only when this is certainly the only instance (catch-up.runner.ts).
 *
 * Handlers must be idempotent: every mode hands an event over again after a crash between handling and
 * recording that it was handled. They re-check recorded state before any outside call.
 */
import type { EventStore } from '../../eventstore/eventstore.js';
import type { Logger } from '../../logger.js';
import { startCatchUpProcess } from './catch-up.runner.js';
import { newInstanceId } from './lease.js';
import { startLeasedProcess } from './leased.runner.js';
import { hasPersistentSubscriptions, startPersistentProcess } from './persistent.runner.js';
import type { ProcessHandler, RunnerMode, RunnerOptions, RunningProcess } from './types.js';
import { timeHandler } from './timed-handler.js';

export type { LeaseOptions } from './lease.js';
export type { PersistentRunnerOptions } from './persistent.runner.js';
export type { ProcessHandler, RunnerMode, RunnerOptions, RunningProcess } from './types.js';
export { RetryLater } from './types.js';

/** The mode `startProcess` uses for this store when none is given. */
export function defaultRunnerMode(store: EventStore): RunnerMode {
  return hasPersistentSubscriptions(store) ? 'persistent' : 'lease';
}

export function startProcess(store: EventStore, untimed: ProcessHandler, logger: Logger, options: RunnerOptions = {}): RunningProcess {
  const handler = options.metrics ? timeHandler(untimed, options.metrics) : untimed;
  const mode = options.mode ?? defaultRunnerMode(store);
  const withId = { ...options, instanceId: options.instanceId ?? newInstanceId() };
  switch (mode) {
    case 'persistent':
      if (!hasPersistentSubscriptions(store)) {
        throw new Error(`process ${handler.name}: mode 'persistent' needs EventStoreDB; this store is ${store.kind}`);
      }
      return startPersistentProcess(store, handler, logger, withId);
    case 'lease':
      return startLeasedProcess(store, handler, logger, withId);
    case 'catch-up':
      return startCatchUpProcess(store, handler, logger, withId);
    default: {
      const unknown: never = mode;
      throw new Error(`process ${handler.name}: unknown runner mode ${String(unknown)}`);
    }
  }
}
