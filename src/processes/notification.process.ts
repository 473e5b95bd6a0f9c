/**
 * Acts on Microsoft's recorded notifications (see src/http/webhook.routes.ts), once per operation id:
 * verify the operation with Microsoft (Get operation, as Microsoft requires), make sure the
 * subscription is known, apply the action to the subscription, and for accepted plan and quantity
 * changes provision them and acknowledge the operation (PATCH `Success`) inside Microsoft's
 * 10-second window. Everything it does is recorded in the notification's stream, last of all
 * `NotificationProcessed`; after a crash the notification is simply processed again, and every step
 * is a no-op the second time (the decider dedupes the operation id; an acknowledgement already
 * recorded is not sent again).
 */
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import { detailsFromMicrosoft } from '../application/subscription-details.js';
import { acknowledgeableActions, handledActions, notificationCategory } from '../domain/notification/notification.events.js';
import type { NotificationOutcome, NotificationReceived, OperationAcknowledged } from '../domain/notification/notification.events.js';
import { DomainError } from '../domain/errors.js';
import type { SubscriptionCommand, Term } from '../domain/subscription/index.js';
import type { EventStore, RecordedEvent } from '../eventstore/eventstore.js';
import { MarketplaceConflictError, MarketplaceNotFoundError } from '../marketplace/errors.js';
import type { FulfillmentClient } from '../marketplace/fulfillment-client.js';
import { parseWebhookPayload } from '../marketplace/schemas.js';
import type { NormalisedOperation, NormalisedWebhookPayload } from '../marketplace/schemas.js';
import type { Logger } from '../logger.js';
import type { Provisioner } from '../application/provisioner.js';
import type { ProcessHandler } from './runner/types.js';

export type NotificationProcessOptions = {
  store: () => EventStore;
  ledger: SubscriptionLedger;
  marketplace: FulfillmentClient;
  provisioner: Provisioner;
  logger: Logger;
  now?: () => Date;
};

/** Actions Microsoft may report without an operation we can read back (auto-activation, failed activation, term end). */
const verifiableWithoutOperation = new Set(['Subscribe', 'Unsubscribe', 'Renew']);
/** Actions that move the status (or the term) and after which the status is reconciled with Microsoft. */
const statusActions = new Set(['Suspend', 'Reinstate', 'Renew', 'Unsubscribe']);
const actor = 'system:notifications';

type Result = { outcome: NotificationOutcome; detail: string; subscriptionEvents: string[] };

export function notificationProcess(options: NotificationProcessOptions): ProcessHandler {
  const { ledger, marketplace, provisioner } = options;
  const log = options.logger.child({ process: 'notifications' });
  const now = () => (options.now?.() ?? new Date()).toISOString();

  const verify = async (p: NormalisedWebhookPayload, correlationId: string): Promise<{ ok: true; operation?: NormalisedOperation } | { ok: false; detail: string }> => {
    try {
      const op = await marketplace.getOperation(p.subscriptionId, p.id, { correlationId });
      if (op.subscriptionId && op.subscriptionId !== p.subscriptionId) {
        return { ok: false, detail: `Microsoft's operation ${p.id} belongs to subscription ${op.subscriptionId}, not ${p.subscriptionId}` };
      }
      if (op.action && op.action !== p.action) return { ok: false, detail: `Microsoft's operation ${p.id} is a ${op.action}, not a ${p.action}` };
      return { ok: true, operation: op };
    } catch (err) {
      if (err instanceof MarketplaceNotFoundError) {
        if (verifiableWithoutOperation.has(p.action)) return { ok: true };
        return { ok: false, detail: `Microsoft has no operation ${p.id} for subscription ${p.subscriptionId}` };
      }
      throw err; // transient: the runner retries this notification
    }
  };

  /** The subscription must be known before an action applies to it (a webhook can beat the landing page). */
  const ensureKnown = async (p: NormalisedWebhookPayload, correlationId: string, causationId: string): Promise<string[]> => {
    const { state } = await ledger.load(p.subscriptionId);
    if (state.status !== 'Initial') return [];
    const sub = await marketplace.getSubscription(p.subscriptionId, { correlationId });
    const result = await ledger.execute(
      p.subscriptionId,
      {
        type: 'RecordPurchase',
        now: now(),
        source: 'webhook',
        subscription: detailsFromMicrosoft(sub),
        microsoftStatus: sub.saasSubscriptionStatus ?? 'PendingFulfillmentStart',
        ...(p.action === 'Subscribe' ? { operationId: p.id } : {}),
      },
      { actor: 'microsoft', correlationId, causationId },
    );
    return result.events.map((e) => e.type);
  };

  const command = (p: NormalisedWebhookPayload, at: string): SubscriptionCommand | undefined => {
    const base = { now: at, source: 'webhook' as const, operationId: p.id };
    switch (p.action) {
      case 'ChangePlan':
        return {
          ...base,
          type: 'ApplyPlanChange',
          planId: p.planId ?? '',
          ...(p.operationRequestSource ? { requestSource: p.operationRequestSource } : {}),
          ...(p.timeStamp ? { occurredAt: p.timeStamp } : {}),
        };
      case 'ChangeQuantity':
        return p.quantity === undefined
          ? undefined
          : {
              ...base,
              type: 'ApplyQuantityChange',
              quantity: p.quantity,
              ...(p.operationRequestSource ? { requestSource: p.operationRequestSource } : {}),
              ...(p.timeStamp ? { occurredAt: p.timeStamp } : {}),
            };
      case 'Suspend':
        return { ...base, type: 'Suspend' };
      case 'Reinstate':
        return { ...base, type: 'Reinstate' };
      case 'Renew':
        return { ...base, type: 'Renew', ...(p.subscription?.term ? { term: termOf(p.subscription.term) } : {}) };
      case 'Unsubscribe':
        return { ...base, type: 'Unsubscribe', reason: 'Microsoft notified Unsubscribe' };
      default:
        return undefined;
    }
  };

  const acknowledge = async (store: EventStore, stream: string, p: NormalisedWebhookPayload, receivedAt: string, correlationId: string) => {
    const history = await store.readStream(stream);
    if (history.some((e) => e.type === 'OperationAcknowledged')) return;
    let note: string | undefined;
    try {
      await marketplace.updateOperationStatus(p.subscriptionId, p.id, 'Success', { correlationId });
    } catch (err) {
      // Already completed at Microsoft (auto-accepted after 10 s, or a newer update fulfilled): nothing to undo.
      if (err instanceof MarketplaceConflictError || err instanceof MarketplaceNotFoundError) note = err.message;
      else throw err;
    }
    const ack: OperationAcknowledged = {
      type: 'OperationAcknowledged',
      data: {
        operationId: p.id,
        subscriptionId: p.subscriptionId,
        status: 'Success',
        at: now(),
        latencyMs: Date.now() - Date.parse(receivedAt),
        ...(note ? { note } : {}),
      },
    };
    await store.appendToStream(stream, [{ ...ack, metadata: { actor, correlationId } }]);
    log[note ? 'warn' : 'info']({ operationId: p.id, subscriptionId: p.subscriptionId, latencyMs: ack.data.latencyMs, note }, 'operation acknowledged');
  };

  const process = async (event: RecordedEvent, received: NotificationReceived['data'], p: NormalisedWebhookPayload): Promise<Result> => {
    const correlationId = received.headers['x-ms-correlationid'] ?? received.deliveryId;
    if (!handledActions.includes(p.action)) return { outcome: 'ignored', detail: `unknown action ${p.action}: recorded, not acted on`, subscriptionEvents: [] };
    const verified = await verify(p, correlationId);
    if (!verified.ok) return { outcome: 'unverified', detail: verified.detail, subscriptionEvents: [] };
    const created = await ensureKnown(p, correlationId, event.id);
    if (p.action === 'Subscribe') {
      // Auto-activation: the purchase is Subscribed at Microsoft. Catch our record up if it is behind.
      const sub = await marketplace.getSubscription(p.subscriptionId, { correlationId });
      const again = await ledger.execute(
        p.subscriptionId,
        { type: 'RecordPurchase', now: now(), source: 'webhook', subscription: detailsFromMicrosoft(sub), microsoftStatus: sub.saasSubscriptionStatus ?? 'Subscribed', operationId: p.id },
        { actor: 'microsoft', correlationId, causationId: event.id },
      );
      const events = [...created, ...again.events.map((e) => e.type)];
      return { outcome: events.length ? 'applied' : 'no-change', detail: 'Subscribe', subscriptionEvents: events };
    }
    const cmd = command(p, now());
    if (!cmd) return { outcome: 'ignored', detail: `${p.action} without the data it needs (planId/quantity)`, subscriptionEvents: created };
    const pending = verified.operation ? verified.operation.status === 'InProgress' : p.status === undefined || p.status === 'InProgress';
    let applied: string[] = [];
    let refused: DomainError | undefined;
    try {
      const result = await ledger.execute(p.subscriptionId, cmd, { actor: 'microsoft', correlationId, causationId: event.id });
      applied = result.events.map((e) => e.type);
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      // Out of order or no longer possible (a late Renew after Unsubscribe): recorded, state untouched.
      refused = err;
      log.warn({ operationId: p.id, subscriptionId: p.subscriptionId, action: p.action, code: err.code, detail: err.message }, 'notification not applied as such');
    }
    if ((acknowledgeableActions as readonly string[]).includes(p.action)) {
      if (!refused) {
        const { state } = await ledger.load(p.subscriptionId);
        if (state.status !== 'Initial') await provisioner.provision(state, p.action === 'ChangePlan' ? 'plan-change' : 'quantity-change');
        if (pending) await acknowledge(options.store(), event.streamId, p, received.receivedAt, correlationId);
      }
    } else if (statusActions.has(p.action)) {
      // Notify-only per the webhook docs, but the operations docs ask for an acknowledgement and an
      // answered Reinstate completes sooner; Success is harmless while it is pending (API.md §7.1).
      // It is sent even when the Reinstate arrived before the Suspend it undoes: Microsoft is reinstating.
      if (p.action === 'Reinstate' && pending) await acknowledge(options.store(), event.streamId, p, received.receivedAt, correlationId);
      // Notifications can arrive in any order: after a status change, converge on what Microsoft reports now.
      applied = [...applied, ...(await reconcileStatus(p, correlationId, event.id))];
    }
    const events = [...created, ...applied];
    if (refused && events.length === created.length) return { outcome: 'ignored', detail: refused.message, subscriptionEvents: events };
    return {
      outcome: events.length ? 'applied' : 'no-change',
      detail: refused ? `${refused.message}; reconciled with Microsoft's status` : events.length ? `${p.action} applied` : `${p.action} already applied or nothing to change`,
      subscriptionEvents: events,
    };
  };

  const reconcileStatus = async (p: NormalisedWebhookPayload, correlationId: string, causationId: string): Promise<string[]> => {
    const sub = await marketplace.getSubscription(p.subscriptionId, { correlationId });
    if (!sub.saasSubscriptionStatus) return [];
    try {
      const result = await ledger.execute(
        p.subscriptionId,
        { type: 'ReconcileStatus', now: now(), source: 'reconciliation', microsoftStatus: sub.saasSubscriptionStatus },
        { actor: 'system:notifications', correlationId, causationId },
      );
      if (result.events.length) log.warn({ subscriptionId: p.subscriptionId, microsoftStatus: sub.saasSubscriptionStatus, events: result.events.map((e) => e.type) }, 'status reconciled with Microsoft');
      return result.events.map((e) => e.type);
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      log.warn({ subscriptionId: p.subscriptionId, code: err.code, detail: err.message }, 'cannot reconcile status with Microsoft');
      return [];
    }
  };

  return {
    name: 'notifications',
    streamPrefixes: [`${notificationCategory}-`],
    async handle(event) {
      if (event.type !== 'NotificationReceived') return;
      const store = options.store();
      const history = await store.readStream(event.streamId);
      if (history.some((e) => e.type === 'NotificationProcessed')) return; // done before (or a repeated delivery)
      const received = event.data as NotificationReceived['data'];
      let payload: NormalisedWebhookPayload;
      try {
        payload = parseWebhookPayload(JSON.parse(received.body) as unknown);
      } catch {
        return; // unreadable deliveries are kept for people to look at; there is nothing to act on
      }
      const result = await process(event, received, payload);
      await store.appendToStream(event.streamId, [
        {
          type: 'NotificationProcessed',
          data: { operationId: payload.id, subscriptionId: payload.subscriptionId, action: payload.action, ...result, at: now() },
          metadata: { actor, causationId: event.id },
        },
      ]);
      log[result.outcome === 'unverified' ? 'warn' : 'info'](
        { operationId: payload.id, subscriptionId: payload.subscriptionId, action: payload.action, outcome: result.outcome, detail: result.detail },
        'notification processed',
      );
    },
  };
}

function termOf(t: { termUnit?: string; startDate?: string | null; endDate?: string | null }): Term {
  return {
    ...(t.termUnit ? { termUnit: t.termUnit } : {}),
    ...(t.startDate ? { startDate: t.startDate } : {}),
    ...(t.endDate ? { endDate: t.endDate } : {}),
  };
}
