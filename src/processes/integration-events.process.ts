/**
 * Integration events to the ISV's application: every event of every subscription becomes an
 * integration event (src/integration/outbound-event.ts) in that subscription's outbox, and the
 * outbox dispatcher POSTs it, signed, to PROVISIONING_WEBHOOK_URL until acknowledged — in order per
 * subscription, a failing subscription holding back only itself, dead letters for operators.
 *
 * The runner's handler only schedules (one small append per event, idempotent on replay), so the
 * global checkpoint advances even while the ISV is down; delivery state lives in the outboxes.
 * Without PROVISIONING_WEBHOOK_URL nothing is recorded and nothing is sent (the local sandbox).
 */
import { decodeSubscriptionEvent, evolve, initialState, subscriptionCategory } from '../domain/subscription/index.js';
import type { SubscriptionState } from '../domain/subscription/index.js';
import { categoryPrefix, entityIdOf } from '../eventstore/eventstore.js';
import type { EventStore, RecordedEvent } from '../eventstore/eventstore.js';
import { OutboxDispatcher } from '../integration/dispatcher.js';
import { backlogOf } from './runner/backlog.js';
import type { DeadLetterAdmin, DispatcherOptions, OutboxStatus } from '../integration/dispatcher.js';
import { toIntegrationEvent } from '../integration/outbound-event.js';
import type { IntegrationEvent } from '../integration/outbound-event.js';
import type { IntegrationConfig } from '../config.js';
import { createWebhookSender } from '../integration/webhook-sender.js';
import type { WebhookSenderOptions } from '../integration/webhook-sender.js';
import type { Logger } from '../logger.js';
import { startProcess } from './runner/start.js';
import type { ProcessHandler, RunnerOptions, RunningProcess } from './runner/types.js';

export const INTEGRATION_PROCESS_NAME = 'integration-events';
const prefix = categoryPrefix(subscriptionCategory);
/** Subscriptions whose folded state is kept between events (a replay or a cold one reads its stream). */
const STATE_CACHE_SIZE = 10_000;

export type Scheduler = { schedule(event: IntegrationEvent): Promise<void> };

/** The runner's handler: subscription event → integration event in the subscription's outbox. */
export function integrationEventsProcess(options: { store: EventStore; outbox: Scheduler }): ProcessHandler {
  const cache = new Map<string, { revision: bigint; state: SubscriptionState }>();

  const stateAfter = async (subscriptionId: string, event: RecordedEvent): Promise<SubscriptionState> => {
    const cached = cache.get(subscriptionId);
    let state: SubscriptionState;
    if (cached && cached.revision === event.revision - 1n) {
      const decoded = decodeSubscriptionEvent(event);
      state = decoded ? evolve(cached.state, decoded) : cached.state;
    } else {
      const history = await options.store.readStream(event.streamId, { maxCount: Number(event.revision) + 1 });
      state = initialState();
      for (const e of history) {
        const decoded = decodeSubscriptionEvent(e);
        if (decoded) state = evolve(state, decoded);
      }
    }
    cache.delete(subscriptionId);
    cache.set(subscriptionId, { revision: event.revision, state });
    if (cache.size > STATE_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    return state;
  };

  return {
    name: INTEGRATION_PROCESS_NAME,
    streamPrefixes: [prefix],
    async handle(event) {
      const subscriptionId = entityIdOf(event.streamId);
      const state = await stateAfter(subscriptionId, event);
      await options.outbox.schedule(toIntegrationEvent(event, subscriptionId, state));
    },
  };
}

export type IntegrationEventsOptions = {
  store: EventStore;
  /** From `config.integration`; undefined (no PROVISIONING_WEBHOOK_URL) disables the integration. */
  settings: IntegrationConfig | undefined;
  logger: Logger;
  runner?: RunnerOptions;
  delivery?: Pick<DispatcherOptions, 'backoffBaseMs' | 'backoffMaxMs' | 'concurrency' | 'now' | 'random' | 'activeCheckMs'>;
  fetch?: WebhookSenderOptions['fetch'];
  /** Delivery outcomes (the handling latency goes in `runner.metrics`). */
  metrics?: DispatcherOptions['metrics'];
};

export type RunningIntegrationEvents = {
  readonly enabled: boolean;
  /** For the operator API (src/http/integration.routes.ts). */
  readonly admin: DeadLetterAdmin;
  /** The dispatcher, when enabled. */
  readonly outbox?: OutboxDispatcher;
  /** Events the integration process has yet to put in outboxes (runner/backlog.ts); empty when disabled. */
  backlog(): Promise<Map<string, number>>;
  /** Resolves once every existing subscription event is in its outbox (not necessarily delivered). */
  idle(): Promise<void>;
  stop(): Promise<void>;
};

const disabledAdmin: DeadLetterAdmin = {
  enabled: false,
  deadLetters: async () => [],
  retry: async () => undefined,
  skip: async () => undefined,
  status: async (): Promise<OutboxStatus> => ({ subscriptions: 0, pending: 0, retrying: 0, deadLettered: 0, inFlight: 0 }),
};

export function startIntegrationEvents(options: IntegrationEventsOptions): RunningIntegrationEvents {
  const { settings, logger } = options;
  if (!settings) {
    logger.info(
      { process: INTEGRATION_PROCESS_NAME },
      'PROVISIONING_WEBHOOK_URL not set: integration events are neither recorded nor delivered, and provisioning succeeds at once (local sandbox)',
    );
    return { enabled: false, admin: disabledAdmin, backlog: async () => new Map(), idle: async () => undefined, stop: async () => undefined };
  }
  if (settings.insecure) {
    logger.warn({ url: settings.url }, 'PROVISIONING_WEBHOOK_URL is plain http to another host: customer data travels unencrypted (signed, not secret); use https');
  }
  const sender = createWebhookSender({
    url: settings.url,
    secrets: settings.secrets,
    timeoutMs: settings.timeoutMs,
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.delivery?.now ? { now: options.delivery.now } : {}),
  });
  let process: RunningProcess | undefined;
  const outbox = new OutboxDispatcher({
    store: options.store,
    sender,
    logger,
    maxAttempts: settings.maxAttempts,
    // Deliver where the integration process runs (on SQLite, the instance that holds its lease).
    active: () => process?.active() ?? false,
    ...options.delivery,
    ...(options.metrics ? { metrics: options.metrics } : {}),
  });
  logger.info(
    { process: INTEGRATION_PROCESS_NAME, url: settings.url, maxAttempts: settings.maxAttempts, timeoutMs: settings.timeoutMs, secrets: settings.secrets.length },
    'delivering integration events to the ISV application',
  );
  const recovery = outbox.start().catch((err: unknown) => logger.error({ err }, 'could not recover the integration outboxes; they resume as their subscriptions change'));
  const handler = integrationEventsProcess({ store: options.store, outbox });
  const running = startProcess(options.store, handler, logger, options.runner);
  process = running;
  return {
    enabled: true,
    admin: outbox,
    outbox,
    backlog: () => backlogOf(options.store, [{ handler, process: running }]),
    idle: async () => {
      await recovery;
      await running.idle();
    },
    stop: async () => {
      await running.stop();
      await outbox.stop();
    },
  };
}
