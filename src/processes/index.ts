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
import type { RunnerOptions, RunningProcess } from './runner/types.js';

export type ProcessesOptions = {
  store: EventStore;
  ledger: SubscriptionLedger;
  marketplace: FulfillmentClient;
  provisioner: Provisioner;
  logger: Logger;
  activation?: Pick<ActivationOptions, 'backoffMs' | 'maxBackoffMs' | 'deadlineMs' | 'confirmTimeoutMs'>;
  runner?: RunnerOptions;
  /** Metered billing: the hourly submission of usage (metering.process.ts); not run when absent. */
  metering?: Omit<MeteringOptions, 'logger'>;
};

export type RunningProcesses = {
  /** Names this service instance in process leases and logs (the same for all its processes). */
  instanceId: string;
  all: RunningProcess[];
  /** Resolves once every process has handled every event that existed when called. */
  idle(): Promise<void>;
  stop(): Promise<void>;
};

export function startProcesses(options: ProcessesOptions): RunningProcesses {
  const { store, ledger, marketplace, provisioner, logger } = options;
  // How each process coordinates with other instances (a lease on SQLite, a persistent subscription group on
  // EventStoreDB) is the runner's choice: see runner/start.ts and docs/several-instances.md.
  const runner = { ...options.runner, instanceId: options.runner?.instanceId ?? newInstanceId() };
  const all = [
    startProcess(store, activationProcess({ ledger, marketplace, provisioner, logger, ...options.activation }), logger, runner),
    startProcess(store, notificationProcess({ store: () => store, ledger, marketplace, provisioner, logger }), logger, runner),
    startProcess(store, refreshProcess({ ledger, marketplace, logger }), logger, runner),
    ...(options.metering ? [startProcess(store, meteringProcess({ ...options.metering, logger }), logger, runner)] : []),
  ];
  return {
    instanceId: runner.instanceId,
    all,
    idle: async () => {
      await Promise.all(all.map((p) => p.idle()));
    },
    stop: async () => {
      await Promise.all(all.map((p) => p.stop()));
    },
  };
}
