/**
 * Acts on Microsoft's recorded notifications (see src/application/notification-inbox.ts), once per operation id.
 * What to do is decided by the pure workflow (notification.workflow.ts); this executor does the I/O of each
 * step: Get operation, the subscription's state, Get subscription, commands on the subscription, provisioning,
 * the acknowledgement (PATCH `Success`, inside Microsoft's 10-second window), and the appends to the
 * notification's stream, last of all `NotificationProcessed`. The stream is read once; after a crash the
 * notification is simply processed again, and every step is a no-op the second time (the subscription
 * decider dedupes the operation id; an acknowledgement already recorded is not sent again).
 */
import { decodeNotificationEvent, decodeNotificationEvents } from '../application/notification-events.js';
import type { Provisioner } from '../application/provisioner.js';
import { detailsFromMicrosoft } from '../application/subscription-details.js';
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import { fold } from '../domain/decider.js';
import { DomainError } from '../domain/errors.js';
import { notificationCategory, notificationDecider } from '../domain/notification/index.js';
import type { NotificationCommand, NotificationPayload, NotificationState } from '../domain/notification/index.js';
import type { EventStore, RecordedEvent } from '../eventstore/eventstore.js';
import type { Logger } from '../logger.js';
import { MarketplaceConflictError, MarketplaceNotFoundError } from '../marketplace/errors.js';
import type { FulfillmentClient } from '../marketplace/fulfillment-client.js';
import { decide, initialWorkflow, nextStep } from './notification.workflow.js';
import type { Observation, Step } from './notification.workflow.js';
import type { ProcessHandler } from './runner/types.js';
import { categoryPrefix } from '../eventstore/eventstore.js';

export type NotificationProcessOptions = {
  store: () => EventStore;
  ledger: SubscriptionLedger;
  marketplace: FulfillmentClient;
  provisioner: Provisioner;
  logger: Logger;
  now?: () => Date;
};

const actor = 'system:notifications';

/** What the executor does its I/O with. */
type Io = {
  ledger: SubscriptionLedger;
  marketplace: FulfillmentClient;
  provisioner: Provisioner;
  log: Logger;
  now: () => string;
};

/** One notification being processed: the stream as read (once) and folded, and what every step needs. */
type Run = {
  store: EventStore;
  event: RecordedEvent;
  notification: NotificationPayload;
  state: NotificationState;
  correlationId: string;
};

export function notificationProcess(options: NotificationProcessOptions): ProcessHandler {
  const io: Io = {
    ledger: options.ledger,
    marketplace: options.marketplace,
    provisioner: options.provisioner,
    log: options.logger.child({ process: 'notifications' }),
    now: () => (options.now?.() ?? new Date()).toISOString(),
  };
  const { log, now } = io;

  return {
    name: 'notifications',
    streamPrefixes: [categoryPrefix(notificationCategory)],
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

      let workflow = initialWorkflow(notification, state.acknowledged !== undefined, now());
      let step = nextStep(workflow);
      while (step.type !== 'Finish') ({ state: workflow, step } = decide(await perform(io, run, step), workflow));

      const { outcome, detail, subscriptionEvents } = step;
      await record(run, { type: 'RecordOutcome', outcome, detail, subscriptionEvents, now: now() }, { actor, causationId: event.id });
      log[outcome === 'unverified' ? 'warn' : 'info'](
        { operationId: notification.id, subscriptionId: notification.subscriptionId, action: notification.action, outcome, detail },
        'notification processed',
      );
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

async function acknowledge(io: Io, run: Run): Promise<void> {
  const { marketplace, log, now } = io;
  const p = run.notification;
  let note: string | undefined;
  try {
    await marketplace.updateOperationStatus(p.subscriptionId, p.id, 'Success', { correlationId: run.correlationId });
  } catch (err) {
    // Already completed at Microsoft (auto-accepted after 10 s, or a newer update fulfilled): nothing to undo.
    if (err instanceof MarketplaceConflictError || err instanceof MarketplaceNotFoundError) note = err.message;
    else throw err;
  }
  const [ack] = await record(run, { type: 'AcknowledgeOperation', status: 'Success', now: now(), ...(note ? { note } : {}) }, { actor, correlationId: run.correlationId });
  const latencyMs = ack?.type === 'OperationAcknowledged' ? ack.data.latencyMs : undefined;
  log[note ? 'warn' : 'info']({ operationId: p.id, subscriptionId: p.subscriptionId, latencyMs, note }, 'operation acknowledged');
}

/** Perform one step and report what was seen. */
async function perform(io: Io, run: Run, step: Exclude<Step, { type: 'Finish' }>): Promise<Observation> {
  const { ledger, marketplace, provisioner, log, now } = io;
  const p = run.notification;
  const call = { correlationId: run.correlationId };
  switch (step.type) {
    case 'GetOperation':
      try {
        const op = await marketplace.getOperation(p.subscriptionId, p.id, call);
        const operation = {
          ...(op.subscriptionId ? { subscriptionId: op.subscriptionId } : {}),
          ...(op.action ? { action: op.action } : {}),
          ...(op.status !== undefined ? { status: op.status } : {}),
        };
        return { type: 'OperationFound', operation, now: now() };
      } catch (err) {
        if (err instanceof MarketplaceNotFoundError) return { type: 'OperationNotFound', now: now() };
        throw err; // transient: the runner retries this notification
      }
    case 'LoadSubscription': {
      const { state } = await ledger.load(p.subscriptionId);
      return { type: 'SubscriptionLoaded', known: state.status !== 'Initial', now: now() };
    }
    case 'GetSubscription': {
      const sub = await marketplace.getSubscription(p.subscriptionId, call);
      return {
        type: 'SubscriptionFetched',
        subscription: { details: detailsFromMicrosoft(sub), ...(sub.saasSubscriptionStatus ? { status: sub.saasSubscriptionStatus } : {}) },
        now: now(),
      };
    }
    case 'Execute':
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
    case 'Provision':
      await provisioner.provision(step.subscription, step.reason);
      return { type: 'Provisioned', now: now() };
    case 'Acknowledge':
      await acknowledge(io, run);
      return { type: 'Acknowledged', now: now() };
    default: {
      const _exhaustive: never = step;
      throw new Error(`unknown step ${JSON.stringify(_exhaustive)}`);
    }
  }
}
