/**
 * The Prometheus implementation of the metrics seam (metrics.ts), with prom-client: one Registry per service
 * instance (never prom-client's global one, so that several services, as tests build them, do not share
 * counters), the process's default metrics, and the service's own series, all named `fulfillment_…`.
 *
 * Counters and histograms are pushed as things happen. Gauges of "how far behind" are read when scraped,
 * from sources the composition root sets once the store is open (`setSources`); a source that fails
 * (the store closing) leaves its gauge empty for that scrape.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Metrics } from './metrics.js';

/** What the "behind" gauges read at scrape time. */
export type MetricSources = {
  /** Events each process manager has yet to handle, by process name. */
  processBacklog?: () => Promise<ReadonlyMap<string, number>>;
  /** Events each projection has yet to apply, by projection name. */
  projectionLag?: () => Promise<ReadonlyMap<string, number>>;
  /** Outbound integration events dead-lettered now (each blocks its subscription's queue). */
  deadLetters?: () => Promise<number>;
  /** Microsoft's (or Entra's) rejections of the credential since it was last accepted. */
  credentialRejections?: () => number;
};

export type PrometheusMetrics = Metrics & {
  readonly registry: Registry;
  /** The exposition format's content type (text/plain; version=0.0.4). */
  readonly contentType: string;
  /** The registry in Prometheus' text format. */
  render(): Promise<string>;
  setSources(sources: MetricSources): void;
};

/** ACK latency: Microsoft gives 10 s before it decides by itself; fine buckets around that. */
const ACK_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7, 8, 9, 10, 15, 30, 60];
const CALL_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** How often the event-loop delay behind nodejs_eventloop_lag_* is sampled. */
export const EVENT_LOOP_SAMPLE_MS = 100;

export function createPrometheusMetrics(): PrometheusMetrics {
  const registry = new Registry();
  // The event-loop delay histogram samples every 100 ms (prom-client's default, 10 ms, woke an idle service 100 times a
  // second: about half of its wake-ups and most of its idle CPU); a stall still delays the next sample and shows.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const registers = [registry];
  let sources: MetricSources = {};

  const webhooks = new Counter({ name: 'fulfillment_webhook_requests_total', help: "Microsoft's webhook notifications answered, by action and outcome", labelNames: ['action', 'outcome'], registers });
  const authFailures = new Counter({ name: 'fulfillment_webhook_auth_failures_total', help: 'Webhook requests refused before reading the body, by reason', labelNames: ['reason'], registers });
  const ack = new Histogram({ name: 'fulfillment_ack_latency_seconds', help: "Notification receipt to our PATCH acknowledging the operation to Microsoft (Microsoft's window is 10 s)", buckets: ACK_BUCKETS, registers });
  const calls = new Histogram({ name: 'fulfillment_marketplace_request_duration_seconds', help: "HTTP attempts at Microsoft's Fulfillment API, by client operation and status", labelNames: ['operation', 'status'], buckets: CALL_BUCKETS, registers });
  const retries = new Counter({ name: 'fulfillment_marketplace_retries_total', help: 'Calls to Microsoft tried again, by operation and reason', labelNames: ['operation', 'reason'], registers });
  const handled = new Histogram({ name: 'fulfillment_process_handle_duration_seconds', help: 'Events handled by the process managers, by process and outcome', labelNames: ['process', 'outcome'], buckets: CALL_BUCKETS, registers });
  const deliveries = new Counter({ name: 'fulfillment_outbound_deliveries_total', help: "Delivery attempts of integration events to the ISV's application, by outcome", labelNames: ['outcome'], registers });
  const drifts = new Counter({ name: 'fulfillment_reconciliation_drifts_total', help: 'Differences with Microsoft found by reconciliation, by kind and what was done', labelNames: ['kind', 'outcome'], registers });
  const appends = new Histogram({ name: 'fulfillment_store_append_duration_seconds', help: 'Appends to the event store, by outcome', labelNames: ['outcome'], buckets: STORE_BUCKETS, registers });

  gauge(registry, 'fulfillment_process_backlog_events', 'Events a process manager has yet to handle (from its stored checkpoint; capped at 10000)', 'process', () => sources.processBacklog?.());
  gauge(registry, 'fulfillment_projection_lag_events', 'Events a projection has yet to apply (capped at 10000)', 'projection', () => sources.projectionLag?.());
  gauge(registry, 'fulfillment_outbound_dead_letters', 'Integration events dead-lettered now, each blocking its subscription', undefined, async () => {
    const n = await sources.deadLetters?.();
    return n === undefined ? undefined : new Map([['', n]]);
  });
  gauge(registry, 'fulfillment_marketplace_credential_rejections', 'Rejections (401/403, or by Entra) of the credential since it was last accepted', undefined, async () => {
    const n = sources.credentialRejections?.();
    return n === undefined ? undefined : new Map([['', n]]);
  });

  return {
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),
    setSources: (s) => {
      sources = s;
    },
    webhookReceived: (action, outcome) => webhooks.inc({ action, outcome }),
    webhookAuthFailed: (reason) => authFailures.inc({ reason }),
    operationAcknowledged: (seconds) => ack.observe(seconds),
    marketplaceCall: (operation, status, seconds) => calls.observe({ operation, status }, seconds),
    marketplaceRetry: (operation, reason) => retries.inc({ operation, reason }),
    processHandled: (process, outcome, seconds) => handled.observe({ process, outcome }, seconds),
    outboundDelivery: (outcome) => deliveries.inc({ outcome }),
    reconciliationDrift: (kind, outcome) => drifts.inc({ kind, outcome }),
    storeAppend: (outcome, seconds) => appends.observe({ outcome }, seconds),
  };
}

/** A gauge read at scrape time: one series per key of what `read` gives (no label when `label` is undefined). */
function gauge(registry: Registry, name: string, help: string, label: string | undefined, read: () => Promise<ReadonlyMap<string, number> | undefined> | undefined): void {
  new Gauge({
    name,
    help,
    labelNames: label ? [label] : [],
    registers: [registry],
    async collect() {
      this.reset();
      let values: ReadonlyMap<string, number> | undefined;
      try {
        values = await read();
      } catch {
        return; // the source is closing or failing: no value this scrape rather than a wrong one
      }
      for (const [key, value] of values ?? []) {
        if (label) this.set({ [label]: key }, value);
        else this.set(value);
      }
    },
  });
}
