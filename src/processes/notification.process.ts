/**
 * Acts on Microsoft's recorded notifications (see src/application/notification-inbox.ts), once per operation id
 * (an `unverified` one again when Microsoft delivers it again). What to do is decided by the pure workflow
 * (notification.workflow.ts); this executor does the I/O of each step: Get operation, the subscription's
 * state, Get subscription, commands on the subscription, provisioning, the acknowledgement (PATCH `Success`,
 * inside Microsoft's 10-second window), and the appends to the notification's stream, last of all
 * `NotificationProcessed`. The stream is read once; after a crash the notification is simply processed again,
 * and every step is a no-op the second time (the subscription decider dedupes the operation id; an
 * acknowledgement already recorded is not sent again; one Microsoft took but we did not record is recorded
 * as recovered).
 *
 * Failure isolation (runner/types.ts): events are keyed by subscription (`keyOf`), so one subscription's
 * notifications stay in order while the others go on, up to NOTIFICATION_CONCURRENCY subscriptions at once. When Microsoft is not answering (Get operation, Get
 * subscription, the PATCH) the handler throws RetryLater: the PATCH until Microsoft's acknowledgement window
 * ends (`ackWindowMs` after the first delivery), the reads without a deadline.
 */
import { decodeNotificationEvent, decodeNotificationEvents } from '../application/notification-events.js';
import { ProvisioningError } from '../application/provisioner.js';
import type { Provisioner } from '../application/provisioner.js';
import { detailsFromMicrosoft } from '../application/subscription-details.js';
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import { fold } from '../domain/decider.js';
import { DomainError } from '../domain/errors.js';
import { notificationCategory, notificationDecider } from '../domain/notification/index.js';
import type { NotificationCommand, NotificationPayload, NotificationState } from '../domain/notification/index.js';
import { decodeSubscriptionEvent } from '../domain/subscription/index.js';
import type { EventStore, RecordedEvent } from '../eventstore/eventstore.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { MarketplaceConflictError, MarketplaceNotFoundError, MarketplaceUnavailableError } from '../marketplace/errors.js';
import type { FulfillmentClient } from '../marketplace/fulfillment-client.js';
import { decide, initialWorkflow, nextStep } from './notification.workflow.js';
import type { MicrosoftOperation, Observation, Step } from './notification.workflow.js';
import { RetryLater } from './runner/types.js';
import type { ProcessHandler } from './runner/types.js';
import { categoryPrefix } from '../eventstore/eventstore.js';

/** Microsoft's acknowledgement window for plan and quantity changes (docs/marketplace.md §7.2). */
export const ACK_WINDOW_MS = 10_000;

/**
 * Subscriptions handled at once. A notification's time is mostly spent waiting on Microsoft (Get operation, the
 * PATCH) and on the store, so the runner's default of 4 caps throughput at 4 / (one notification's latency): at
 * ~150 ms per notification that is ~26 a second, below what customers can send, and changes then miss their
 * 10 s window. Ordering per subscription is the runner's (one key at a time); 64 keeps the waiting overlapped.
 */
export const NOTIFICATION_CONCURRENCY = 64;

/** What the process needs of the Fulfillment client. */
export type NotificationMarketplace = Pick<FulfillmentClient, 'getOperation' | 'getSubscription' | 'updateOperationStatus'>;

export type NotificationProcessOptions = {
  store: () => EventStore;
  ledger: SubscriptionLedger;
  marketplace: NotificationMarketplace;
  provisioner: Provisioner;
  logger: Logger;
  now?: () => Date;
  /** Microsoft's acknowledgement window, from the first delivery (default ACK_WINDOW_MS). */
  ackWindowMs?: number;
  /** The ACK latency of each acknowledgement our PATCH made (src/metrics/metrics.ts). */
  metrics?: Pick<Metrics, 'operationAcknowledged'>;
};

const actor = 'system:notifications';

/** What the executor does its I/O with. */
type Io = {
  ledger: SubscriptionLedger;
  marketplace: NotificationMarketplace;
  provisioner: Provisioner;
  log: Logger;
  now: () => string;
  metrics?: Pick<Metrics, 'operationAcknowledged'> | undefined;
};

/** One notification being processed: the stream as read (once) and folded, and what every step needs. */
type Run = {
  store: EventStore;
  event: RecordedEvent;
  notification: NotificationPayload;
  state: NotificationState;
  correlationId: string;
};

/** The ordering key: the subscription a notification event is about, else its stream. */
export function notificationKey(event: RecordedEvent): string {
  return decodeNotificationEvent(event)?.data.subscriptionId ?? event.streamId;
}

export function notificationProcess(options: NotificationProcessOptions): ProcessHandler {
  const io: Io = {
    ledger: options.ledger,
    marketplace: options.marketplace,
    provisioner: options.provisioner,
    log: options.logger.child({ component: 'notification-process', process: 'notifications' }),
    now: () => (options.now?.() ?? new Date()).toISOString(),
    metrics: options.metrics,
  };
  const { log, now } = io;
  const windowMs = options.ackWindowMs ?? ACK_WINDOW_MS;
  /**
   * Operations whose PATCH did not get through in this process (it threw RetryLater): a later run that finds the
   * operation Succeeded then knows Microsoft's window accepted it, not our PATCH. Lost on restart, where an
   * unrecorded acknowledgement is recovered instead. Cleared once the notification's outcome is recorded.
   */
  const failedAcks = new Map<string, string>();

  return {
    name: 'notifications',
    streamPrefixes: [categoryPrefix(notificationCategory)],
    keyOf: notificationKey,
    concurrency: NOTIFICATION_CONCURRENCY,
    async handle(event) {
      const trigger = decodeNotificationEvent(event);
      if (trigger?.type !== 'NotificationReceived') return;
      // Unreadable deliveries are kept for people to look at; there is nothing to act on.
      const notification = trigger.data.payload;
      if (!notification) return;
      const store = options.store();
      const state = fold(notificationDecider, decodeNotificationEvents(await store.readStream(event.streamId)));
      if (state.status !== 'Received') return; // done before (or a repeated delivery)
      const run: Run = { store, event, notification, state, correlationId: trigger.data.headers['x-ms-correlationid'] ?? trigger.data.deliveryId };
      const ids = { operationId: notification.id, subscriptionId: notification.subscriptionId, action: notification.action };
      if (state.reopened) log.info({ ...ids, previous: state.reopened.outcome, detail: state.reopened.detail }, 'notification delivered again: processing it again');

      const deadline = new Date(Date.parse(state.first.receivedAt) + windowMs).toISOString();
      let workflow = initialWorkflow(notification, state.acknowledged !== undefined, now(), deadline, failedAcks.get(notification.id));
      let step = nextStep(workflow);
      while (step.type !== 'Finish') {
        const observation = await perform(io, run, step);
        if (observation.type === 'AcknowledgementFailed') failedAcks.set(notification.id, observation.reason);
        ({ state: workflow, step } = decide(observation, workflow));
      }
      failedAcks.delete(notification.id);

      const { outcome, detail, subscriptionEvents, operationStatus } = step;
      const command: NotificationCommand = { type: 'RecordOutcome', outcome, detail, subscriptionEvents, now: now(), ...(operationStatus !== undefined ? { operationStatus } : {}) };
      await record(run, command, { actor, correlationId: run.correlationId, causationId: event.id });
      const refused = outcome === 'unverified' || outcome === 'failed';
      log[refused ? 'warn' : 'info']({ ...ids, outcome, detail, operationStatus }, refused ? 'notification not applied' : 'notification processed');
    },
  };
}

/** Decide on the notification's own stream and append what it says (the run's state follows). */
async function record(run: Run, command: NotificationCommand, metadata: Record<string, string>) {
  const events = notificationDecider.decide(command, run.state);
  if (events.length === 0) return events;
  await run.store.appendToStream(run.event.streamId, events.map((e) => ({ ...e, metadata })));
  run.state = events.reduce(notificationDecider.evolve, run.state);
  return events;
}

/** Record an acknowledgement Microsoft answered (or, with a note, one it took before a restart). */
async function recordAcknowledgement(io: Io, run: Run, note: string | undefined): Promise<void> {
  const p = run.notification;
  const [ack] = await record(run, { type: 'AcknowledgeOperation', status: 'Success', now: io.now(), ...(note ? { note } : {}) }, { actor, correlationId: run.correlationId, causationId: run.event.id });
  const latencyMs = ack?.type === 'OperationAcknowledged' ? ack.data.latencyMs : undefined;
  if (!note && latencyMs !== undefined) io.metrics?.operationAcknowledged(latencyMs / 1000);
  io.log[note ? 'warn' : 'info']({ operationId: p.id, subscriptionId: p.subscriptionId, latencyMs, note }, 'operation acknowledged');
}

/** PATCH Success: accepted, refused (409/404: nothing left to acknowledge; recorded with Microsoft's answer), or not through. */
async function acknowledge(io: Io, run: Run): Promise<Observation> {
  const p = run.notification;
  try {
    await io.marketplace.updateOperationStatus(p.subscriptionId, p.id, 'Success', { correlationId: run.correlationId });
  } catch (err) {
    if (err instanceof MarketplaceConflictError || err instanceof MarketplaceNotFoundError) {
      // Already completed at Microsoft (auto-accepted after 10 s, or a newer update fulfilled): read back what it did.
      await recordAcknowledgement(io, run, err.message);
      return { type: 'AcknowledgementRefused', reason: err.message, now: io.now() };
    }
    if (err instanceof MarketplaceUnavailableError) {
      io.log.warn({ operationId: p.id, subscriptionId: p.subscriptionId, ...err.toLog() }, 'acknowledgement did not get through');
      return { type: 'AcknowledgementFailed', reason: err.message, now: io.now() };
    }
    throw err;
  }
  await recordAcknowledgement(io, run, undefined);
  return { type: 'Acknowledged', now: io.now() };
}

/** Microsoft not answering a read: try again later (no deadline, the answer is needed). Anything else is rethrown. */
function transient(err: unknown, what: string): unknown {
  return err instanceof MarketplaceUnavailableError ? new RetryLater(`${what}: ${err.message}`, { cause: err }) : err;
}

async function getOperation(io: Io, run: Run): Promise<Observation> {
  const p = run.notification;
  try {
    const op = await io.marketplace.getOperation(p.subscriptionId, p.id, { correlationId: run.correlationId });
    const operation: MicrosoftOperation = {
      ...(op.subscriptionId ? { subscriptionId: op.subscriptionId } : {}),
      ...(op.action ? { action: op.action } : {}),
      ...(op.status !== undefined ? { status: op.status } : {}),
      ...(op.errorMessage ? { errorMessage: op.errorMessage } : {}),
    };
    return { type: 'OperationFound', operation, now: io.now() };
  } catch (err) {
    if (err instanceof MarketplaceNotFoundError) return { type: 'OperationNotFound', now: io.now() };
    throw transient(err, `Get operation ${p.id}`);
  }
}

async function getSubscription(io: Io, run: Run): Promise<Observation> {
  const p = run.notification;
  try {
    const sub = await io.marketplace.getSubscription(p.subscriptionId, { correlationId: run.correlationId });
    return {
      type: 'SubscriptionFetched',
      subscription: { details: detailsFromMicrosoft(sub), ...(sub.saasSubscriptionStatus ? { status: sub.saasSubscriptionStatus } : {}) },
      now: io.now(),
    };
  } catch (err) {
    if (err instanceof MarketplaceNotFoundError) return { type: 'SubscriptionNotFound', now: io.now() };
    throw transient(err, `Get subscription ${p.subscriptionId}`);
  }
}

/** Our record of the subscription: known?, and whether an earlier run of this notification applied its operation. */
async function loadSubscription(io: Io, run: Run): Promise<Observation> {
  const p = run.notification;
  const { state, events } = await io.ledger.load(p.subscriptionId);
  const appliedBefore = events.some((e) => {
    const decoded = decodeSubscriptionEvent(e);
    return decoded !== undefined && 'operationId' in decoded.data && decoded.data.operationId === p.id && decoded.data.source === 'webhook';
  });
  return { type: 'SubscriptionLoaded', known: state.status !== 'Initial', ...(appliedBefore ? { appliedBefore } : {}), now: io.now() };
}

async function execute(io: Io, run: Run, step: Extract<Step, { type: 'Execute' }>): Promise<Observation> {
  const { ledger, log, now } = io;
  const p = run.notification;
  try {
    const result = await ledger.execute(p.subscriptionId, step.command, { actor: step.actor, correlationId: run.correlationId, causationId: run.event.id });
    const events = result.events.map((e) => e.type);
    if (step.purpose === 'reconcile' && events.length && step.command.type === 'ReconcileStatus') {
      log.warn({ subscriptionId: p.subscriptionId, microsoftStatus: step.command.microsoftStatus, events }, 'status reconciled with Microsoft');
    }
    return { type: 'CommandExecuted', purpose: step.purpose, events, ...(result.state.status !== 'Initial' ? { subscription: result.state } : {}), now: now() };
  } catch (err) {
    if (!(err instanceof DomainError) || !step.refusable) throw err;
    if (step.purpose === 'reconcile') {
      log.warn({ subscriptionId: p.subscriptionId, code: err.code, detail: err.message }, 'cannot reconcile status with Microsoft');
    } else {
      // Out of order or no longer possible (a late Renew after Unsubscribe): recorded, state untouched.
      log.warn({ operationId: p.id, subscriptionId: p.subscriptionId, action: p.action, code: err.code, detail: err.message }, 'notification not applied as such');
    }
    return { type: 'CommandRefused', purpose: step.purpose, reason: err.message, now: now() };
  }
}

/** Perform one step and report what was seen. */
async function perform(io: Io, run: Run, step: Exclude<Step, { type: 'Finish' }>): Promise<Observation> {
  switch (step.type) {
    case 'GetOperation':
      return getOperation(io, run);
    case 'LoadSubscription':
      return loadSubscription(io, run);
    case 'GetSubscription':
      return getSubscription(io, run);
    case 'Execute':
      return execute(io, run, step);
    case 'Provision':
      try {
        await io.provisioner.provision(step.subscription, step.reason);
      } catch (err) {
        // The ISV's product is not answering: this subscription waits (backing off), nobody else does.
        if (err instanceof ProvisioningError) {
          throw new RetryLater(`provisioning ${step.reason} of ${step.subscription.subscriptionId}: ${err.message}`, { cause: err, ...(err.retryAfterMs !== undefined ? { afterMs: err.retryAfterMs } : {}) });
        }
        throw err;
      }
      return { type: 'Provisioned', now: io.now() };
    case 'Acknowledge':
      return acknowledge(io, run);
    case 'RecordAcknowledgement':
      await recordAcknowledgement(io, run, step.note);
      return { type: 'Acknowledged', now: io.now() };
    case 'RetryLater': {
      const p = run.notification;
      io.log.warn({ operationId: p.id, subscriptionId: p.subscriptionId, action: p.action, reason: step.reason, until: step.until }, 'notification will be tried again later');
      throw new RetryLater(step.reason, step.until !== undefined ? { until: step.until } : {});
    }
    default: {
      const _exhaustive: never = step;
      throw new Error(`unknown step ${JSON.stringify(_exhaustive)}`);
    }
  }
}
