/**
 * The metrics seam: what the service's layers report, as plain calls with plain values. Layers accept a
 * `Metrics` as an optional dependency and call it where something countable happens; they never import
 * prom-client. The Prometheus implementation (prometheus.ts) is chosen by the composition root
 * (runtime.ts), one per service instance; tests and tools that pass none report nothing.
 *
 * Imports nothing of ours: every layer may import it (the lowest floor in scripts/check-structure.ts).
 */

/** How one handled event ended for a process manager. */
export type HandleOutcome = 'handled' | 'retry-later' | 'failed';

/** How one append to the event store ended. */
export type AppendOutcome = 'ok' | 'conflict' | 'unavailable' | 'error';

/** How one delivery attempt of an outbound integration event ended. */
export type DeliveryOutcome = 'delivered' | 'failed' | 'dead-lettered';

export type Metrics = {
  /** POST /webhook answered: the notification's action (`unknown` when unreadable) and the inbox's outcome. */
  webhookReceived(action: string, outcome: string): void;
  /** POST /webhook refused before the body was read: the authenticator's reason. */
  webhookAuthFailed(reason: string): void;
  /** An operation acknowledged to Microsoft by our PATCH: seconds from the notification's receipt. */
  operationAcknowledged(latencySeconds: number): void;
  /** One HTTP attempt at Microsoft's Fulfillment API: the client method, the status (or `network-error`, `timeout`). */
  marketplaceCall(operation: string, status: string, seconds: number): void;
  /** A call to Microsoft about to be tried again, and why (`429`, `503`, `network-error`, …). */
  marketplaceRetry(operation: string, reason: string): void;
  /** A process manager handled one event. */
  processHandled(process: string, outcome: HandleOutcome, seconds: number): void;
  /** One delivery attempt of an outbound integration event. */
  outboundDelivery(outcome: DeliveryOutcome): void;
  /** Reconciliation found a subscription different at Microsoft: the kind of difference and what it did. */
  reconciliationDrift(kind: string, outcome: string): void;
  /** One append to the event store. */
  storeAppend(outcome: AppendOutcome, seconds: number): void;
};

/** Reports nothing: the default where no metrics are wanted. */
export const noMetrics: Metrics = {
  webhookReceived: () => undefined,
  webhookAuthFailed: () => undefined,
  operationAcknowledged: () => undefined,
  marketplaceCall: () => undefined,
  marketplaceRetry: () => undefined,
  processHandled: () => undefined,
  outboundDelivery: () => undefined,
  reconciliationDrift: () => undefined,
  storeAppend: () => undefined,
};

/** Seconds since `startedMs` (a `performance.now()` reading). */
export function secondsSince(startedMs: number): number {
  return (performance.now() - startedMs) / 1000;
}
