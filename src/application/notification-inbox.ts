/**
 * The webhook's application service: one authenticated delivery in, recorded in `notification-<operation id>`
 * before anything acts on it (never answered as accepted unless it is durable: a store that cannot take it
 * throws StoreUnavailableError, which the edge answers 503). The notification decider says what to record;
 * this service reads the stream, runs the policy refusal on the subscription first, and appends.
 *
 * A first delivery of a customer-side plan or quantity change that the ISV's policy refuses is refused now,
 * inside Microsoft's 10-second window: the refusal goes on the subscription (ChangeRejected), then the
 * delivery and its outcome are appended in one write, so the notification process can never see the
 * delivery without the refusal and apply the change. Verifying, applying and acknowledging the rest is
 * the notification process's job (src/processes/notification.process.ts); a repeated delivery of a
 * notification Microsoft had not confirmed (`unverified`) reopens it, and the process tries it again.
 */
import { randomUUID } from 'node:crypto';
import type { ChangePolicyConfig } from '../domain/change-policy.js';
import { fold } from '../domain/decider.js';
import { DomainError } from '../domain/errors.js';
import { handledActions, isAcknowledgeable, isReopenable, notificationDecider, notificationStream, policyRefusal } from '../domain/notification/index.js';
import type { Delivery, NotificationEvent, NotificationPayload, NotificationReading } from '../domain/notification/index.js';
import type { EventStore, NewEvent } from '../eventstore/eventstore.js';
import { decodeNotificationEvents } from './notification-events.js';
import { resolveStore } from './subscription-ledger.js';
import type { StoreRef, SubscriptionLedger } from './subscription-ledger.js';

export type NotificationInboxOptions = {
  store: StoreRef;
  ledger: SubscriptionLedger;
  policy: ChangePolicyConfig;
  now?: () => Date;
};

/** One delivery as the edge saw it: the body, the headers worth keeping, who signed it, and what the body says. */
export type ReceiveNotification = Pick<Delivery, 'body' | 'headers' | 'caller'> & { reading: NotificationReading };

export type InboxOutcome =
  | { kind: 'accepted'; operationId: string; deliveryId: string }
  | { kind: 'duplicate'; operationId: string; deliveryId: string }
  | { kind: 'refused'; reason: string }
  | { kind: 'unreadable'; deliveryId: string; reason: string };

/** The little of a logger the inbox needs (Fastify's request logger is one). */
export type InboxLog = {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  child(bindings: Record<string, unknown>): InboxLog;
};

export class NotificationInbox {
  constructor(private readonly options: NotificationInboxOptions) {}

  private now(): string {
    return (this.options.now?.() ?? new Date()).toISOString();
  }

  async receive(command: ReceiveNotification, parentLog: InboxLog): Promise<InboxOutcome> {
    const delivery: Delivery = {
      receivedAt: this.now(),
      deliveryId: randomUUID(),
      body: command.body,
      headers: command.headers,
      ...(command.caller ? { caller: command.caller } : {}),
    };
    const { reading } = command;
    const n = reading.readable ? reading.notification : undefined;
    const stream = notificationStream(n?.id ?? `unreadable-${delivery.deliveryId}`);
    const store = resolveStore(this.options.store);
    const state = fold(notificationDecider, decodeNotificationEvents(await store.readStream(stream)));
    const log = parentLog.child({ deliveryId: delivery.deliveryId, operationId: n?.id, subscriptionId: n?.subscriptionId, action: n?.action });

    const refusal = n ? policyRefusal(state, n, this.options.policy) : undefined;
    if (n && refusal !== undefined) {
      const subscriptionEvents = await this.recordRefusal(n, refusal, delivery, log);
      const events = notificationDecider.decide({ type: 'RefuseChange', delivery, notification: n, reason: refusal, subscriptionEvents, now: this.now() }, state);
      await append(store, stream, delivery, events);
      log.warn({ reason: refusal }, 'webhook: change refused by policy');
      return { kind: 'refused', reason: refusal };
    }

    await append(store, stream, delivery, notificationDecider.decide({ type: 'ReceiveDelivery', delivery, reading }, state));
    if (!reading.readable) {
      // Kept for people to look at; a 4xx tells the sender it was not understood (Microsoft's are always readable).
      log.warn({ unreadable: reading.reason }, 'webhook: unreadable notification recorded, not processed');
      return { kind: 'unreadable', deliveryId: delivery.deliveryId, reason: reading.reason };
    }
    const { notification } = reading;
    if (state.status === 'Processed' && isReopenable(state.outcome)) {
      log.info({ deliveries: state.deliveries + 1, previous: state.outcome }, 'webhook: repeated delivery of a notification Microsoft had not confirmed; it is processed again');
      return { kind: 'duplicate', operationId: notification.id, deliveryId: delivery.deliveryId };
    }
    if (state.status !== 'Initial') {
      log.info({ deliveries: state.deliveries + 1 }, 'webhook: repeated delivery recorded; nothing new to do');
      if (state.status === 'Processed' && state.outcome === 'rejected') return { kind: 'refused', reason: state.detail };
      return { kind: 'duplicate', operationId: notification.id, deliveryId: delivery.deliveryId };
    }
    if (!handledActions.includes(notification.action)) log.warn({}, 'webhook: unknown action recorded; answering 200 so Microsoft does not retry');
    else log.info({}, 'webhook: notification recorded');
    return { kind: 'accepted', operationId: notification.id, deliveryId: delivery.deliveryId };
  }

  /** Record the refusal on the subscription; an unknown subscription is refused all the same. */
  private async recordRefusal(n: NotificationPayload, reason: string, delivery: Delivery, log: InboxLog): Promise<string[]> {
    if (!isAcknowledgeable(n.action)) return [];
    try {
      const result = await this.options.ledger.execute(
        n.subscriptionId,
        {
          type: 'RefuseChange',
          now: delivery.receivedAt,
          source: 'webhook',
          operationId: n.id,
          action: n.action,
          ...(n.planId ? { planId: n.planId } : {}),
          ...(n.quantity !== undefined ? { quantity: n.quantity } : {}),
          reason,
        },
        { actor: 'system:policy', correlationId: delivery.headers['x-ms-correlationid'] ?? delivery.deliveryId, causationId: delivery.deliveryId },
      );
      return result.events.map((e) => e.type);
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      log.warn({ code: err.code, detail: err.message }, 'webhook: refusal not recorded on the subscription');
      return [];
    }
  }
}

/** Every delivery is recorded, so no expected revision: a racing repeat is one more delivery, which the process dedupes. */
async function append(store: EventStore, stream: string, delivery: Delivery, events: NotificationEvent[]): Promise<void> {
  const correlationId = delivery.headers['x-ms-correlationid'] ?? delivery.deliveryId;
  const stored: NewEvent[] = events.map((e) =>
    e.type === 'NotificationReceived'
      ? { ...e, id: e.data.deliveryId, metadata: { actor: 'microsoft', correlationId, causationId: delivery.deliveryId } }
      : { ...e, metadata: { actor: 'system:webhook', correlationId, causationId: delivery.deliveryId } },
  );
  await store.appendToStream(stream, stored);
}
