/** The process managers that run beside the HTTP front doors. */
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import type { EventStore } from '../eventstore/eventstore.js';
import type { FulfillmentClient } from '../marketplace/fulfillment-client.js';
import type { Logger } from '../logger.js';
import { activationProcess } from './activation.process.js';
import type { ActivationOptions } from './activation.process.js';
import { notificationProcess } from './notification.process.js';
import { refreshProcess } from './refresh.process.js';
import { meteringProcess } from './metering.process.js';
import type { MeteringOptions } from './metering.process.js';
import type { Provisioner } from '../application/provisioner.js';
import { newInstanceId } from './runner/lease.js';
import { startProcess } from './runner/start.js';
import { backlogOf } from './runner/backlog.js';
import type { Metrics } from '../metrics/metrics.js';
import type { RunnerOptions, RunningProcess } from './runner/types.js';

export type ProcessesOptions = {
  store: EventStore;
  ledger: SubscriptionLedger;
  marketplace: FulfillmentClient;
  provisioner: Provisioner;
  logger: Logger;
  activation?: Pick<ActivationOptions, 'backoffMs' | 'maxBackoffMs' | 'deadlineMs' | 'confirmTimeoutMs'>;
  runner?: RunnerOptions;
  /** The notification process's ACK latency; the runner's handling latency goes in `runner.metrics`. */
  metrics?: Pick<Metrics, 'operationAcknowledged'>;
  /** Metered billing: the hourly submission of usage (metering.process.ts); not run when absent. */
  metering?: Omit<MeteringOptions, 'logger'>;
};

export type RunningProcesses = {
  /** Names this service instance in process leases and logs (the same for all its processes). */
  instanceId: string;
  all: RunningProcess[];
  /** Events each process has yet to handle, by name (runner/backlog.ts). */
  backlog(): Promise<Map<string, number>>;
  /** Resolves once every process has handled every event that existed when called. */
  idle(): Promise<void>;
  stop(): Promise<void>;
};

export function startProcesses(options: ProcessesOptions): RunningProcesses {
  const { store, ledger, marketplace, provisioner, logger } = options;
  // How each process coordinates with other instances (a lease on SQLite, a persistent subscription group on
  // EventStoreDB) is the runner's choice: see runner/start.ts and docs/several-instances.md.
  const runner = { ...options.runner, instanceId: options.runner?.instanceId ?? newInstanceId() };
  const handlers = [
    activationProcess({ ledger, marketplace, provisioner, logger, ...options.activation }),
    notificationProcess({ store: () => store, ledger, marketplace, provisioner, logger, ...(options.metrics ? { metrics: options.metrics } : {}) }),
    refreshProcess({ ledger, marketplace, logger }),
    ...(options.metering ? [meteringProcess({ ...options.metering, logger })] : []),
  ];
  const started = handlers.map((handler) => ({ handler, process: startProcess(store, handler, logger, runner) }));
  const all = started.map((s) => s.process);
  return {
    instanceId: runner.instanceId,
    all,
    backlog: () => backlogOf(store, started),
    idle: async () => {
      await Promise.all(all.map((p) => p.idle()));
    },
    stop: async () => {
      await Promise.all(all.map((p) => p.stop()));
    },
  };
}
