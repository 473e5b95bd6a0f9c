/**
 * The shapes every runner mode shares: a process handler, the runner options, a running process.
 * The modes (catch-up, lease, persistent) import these; only start.ts imports the modes.
 */
import type { RecordedEvent } from '../../eventstore/eventstore.js';
import type { LeaseOptions } from './lease.js';

export type ProcessHandler = {
  name: string;
  streamPrefixes: string[];
  handle(event: RecordedEvent): Promise<void>;
};

export type RunnerMode = 'catch-up' | 'lease' | 'persistent';

export type RunnerOptions = {
  /** Default: `persistent` on EventStoreDB, `lease` on any other store. */
  mode?: RunnerMode;
  /** Names this instance in leases and logs. Default `<host>:<pid>:<random>`, new on every start. */
  instanceId?: string;
  /** catch-up and lease: save the checkpoint after this many handled events… */
  checkpointEvery?: number;
  /** …or this long after the first unsaved one. */
  checkpointAfterMs?: number;
  /** Backoff after a handler failure: base and cap. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  lease?: LeaseOptions;
  persistent?: PersistentRunnerOptions;
};

export type RunningProcess = {
  name: string;
  mode: RunnerMode;
  instanceId: string;
  /** Whether this instance is handling the process's events now (lease: it holds the lease; persistent: joined). */
  active(): boolean;
  /**
   * Resolves once this instance has handled every event that existed when called. With `lease`, an instance that
   * does not hold the lease is idle; with `persistent`, best effort (other instances share the work).
   */
  idle(): Promise<void>;
  stop(): Promise<void>;
};

/** Persistent subscription groups (EventStoreDB): see persistent.runner.ts. */
export type PersistentRunnerOptions = {
  /** The group's name. Default: the process's name. */
  group?: string;
  /** Deliveries after which the server parks an event. Default 10. */
  maxRetryCount?: number;
  /** See the header. Default 10 minutes. */
  messageTimeoutMs?: number;
  /** Unacknowledged events the server may push to this instance ahead of time. Default 10. */
  bufferSize?: number;
  /** First wait before reconnecting after the group's connection failed (doubles up to 30 s). Default 500 ms. */
  reconnectMs?: number;
};
