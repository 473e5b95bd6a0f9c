/**
 * The shapes every runner mode shares: a process handler, the runner options, a running process.
 * The modes (catch-up, lease, persistent) import these; only start.ts imports the modes.
 */
import type { RecordedEvent } from '../../eventstore/eventstore.js';
import type { LeaseOptions } from './lease.js';
import type { Metrics } from '../../metrics/metrics.js';

export type ProcessHandler = {
  name: string;
  streamPrefixes: string[];
  /**
   * The ordering key of an event (default: its stream id). Events with the same key are handled one at a time and
   * in order; a key whose event fails waits (retried with backoff, then parked) without holding up any other key.
   * The notification process keys by subscription id, so one subscription's notifications stay in order.
   * Used by the catch-up and lease modes; the persistent mode (EventStoreDB) orders by stream id, as its `Pinned`
   * strategy hashes the stream id (persistent.runner.ts).
   */
  keyOf?(event: RecordedEvent): string;
  /**
   * Keys handled at once when the runner options do not say (catch-up and lease; default 4). A handler that
   * mostly waits on outside calls (the notification process: Microsoft's API, inside a 10 s window) asks for more.
   */
  concurrency?: number;
  handle(event: RecordedEvent): Promise<void>;
};

/**
 * Thrown by a handler when the event cannot be handled NOW because something outside is not answering
 * (Microsoft, the ISV's provisioning endpoint) and trying again later can still succeed. The runner keeps the
 * event and its key aside and tries again after a capped exponential backoff (at least `afterMs`), for as long as
 * `until` (ISO-8601) allows, without holding up other keys. Past `until` the event is parked. The handler itself
 * decides what happens at its own deadline (e.g. activation records a final failure instead of throwing).
 * Any other error is treated as possibly permanent: a bounded number of retries, then the event is parked.
 */
export class RetryLater extends Error {
  override readonly name = 'RetryLater';
  constructor(
    message: string,
    readonly options: { until?: string; afterMs?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
  }
}

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
  /**
   * catch-up and lease: keys (`ProcessHandler.keyOf`) handled at once; one key's events are always handled one at
   * a time, in order. Default the handler's own `concurrency`, else 4.
   */
  concurrency?: number;
  /** Backoff after a handler failure: base (default 200 ms) and cap after an ordinary error (default 30 s). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** catch-up and lease: cap of the backoff after a `RetryLater` (or the store being unavailable). Default 5 minutes. */
  retryLaterMaxMs?: number;
  /** catch-up and lease: attempts at an event failing with an ordinary error before it is parked. Default 8. */
  maxAttempts?: number;
  lease?: LeaseOptions;
  persistent?: PersistentRunnerOptions;
  /** Each handled event's latency and outcome (src/metrics/metrics.ts). */
  metrics?: Pick<Metrics, 'processHandled'>;
};

export type RunningProcess = {
  name: string;
  mode: RunnerMode;
  instanceId: string;
  /** Whether this instance is handling the process's events now (lease: it holds the lease; persistent: joined). */
  active(): boolean;
  /**
   * Resolves once every event that existed when called is settled by this instance: handled, or held — waiting
   * for a retry after a failure (deferred), parked, or queued behind such an event of its key. It does NOT wait
   * for deferred events to succeed: wait for their effect instead. With `lease`, an instance that does not hold
   * the lease is idle; with `persistent`, best effort (other instances share the work; an event the server will
   * hand out again after a nack counts as settled only once parked).
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
