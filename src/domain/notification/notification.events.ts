/**
 * Microsoft's webhook notifications as we keep them: every authenticated delivery is stored verbatim
 * (raw body, the headers that matter, receipt time, who signed it) in a `notification-<operation id>`
 * stream BEFORE anything acts on it; what we then did is recorded in the same stream.
 * The operation id is the idempotency key: a stream that has `NotificationProcessed` is done, unless
 * its outcome only says that Microsoft did not confirm the operation (yet): a later delivery of the
 * same operation then reopens it (`isReopenable`), and it is processed again.
 */
import { streamName } from '../streams.js';
import type { Term } from '../subscription/subscription.events.js';

export const notificationCategory = 'notification';

export function notificationStream(operationId: string): string {
  return streamName(notificationCategory, operationId);
}

/** Microsoft's notification as the domain reads it: the webhook's fields, trimmed and normalised once at the edge. */
export type NotificationPayload = {
  /** The operation id (the stream's key). */
  id: string;
  subscriptionId: string;
  /** Microsoft's action; unknown actions are kept as sent (trimmed). */
  action: string;
  activityId?: string;
  publisherId?: string;
  offerId?: string;
  planId?: string;
  quantity?: number;
  /** Microsoft's time of the operation. */
  timeStamp?: string;
  /** The operation's status as the notification reports it (`InProgress`, `Succeeded`, …). */
  status?: string;
  /** Who asked for the change: `Azure` (the customer) or `Partner` (the ISV). */
  operationRequestSource?: string;
  /** The subscription's term as the notification reports it (a Renew carries the new one). */
  term?: Term;
};

export type NotificationReceived = {
  type: 'NotificationReceived';
  data: {
    deliveryId: string;
    receivedAt: string;
    operationId?: string;
    subscriptionId?: string;
    action?: string;
    /** The body exactly as it arrived. */
    body: string;
    /**
     * The body read as a notification at receipt. Deliveries recorded before this field existed do
     * not have it: decodeNotificationEvent (src/application/notification-events.ts) reads their body.
     */
    payload?: NotificationPayload;
    headers: Record<string, string>;
    caller?: { tokenVersion: string; issuer: string; caller: string; tenantId: string };
    /** Why the body could not be read as a notification, when it could not. */
    unreadable?: string;
  };
};

export type OperationAcknowledged = {
  type: 'OperationAcknowledged';
  data: {
    operationId: string;
    subscriptionId: string;
    status: 'Success' | 'Failure';
    at: string;
    /** From receipt of the first delivery to Microsoft's answer to our PATCH. */
    latencyMs: number;
    /** Microsoft's answer when it was not a plain 200 (e.g. 409: a newer update already fulfilled). */
    note?: string;
  };
};

/**
 * What processing made of a notification:
 * - `applied`: Microsoft confirmed it and it changed our record; `no-change`: confirmed, nothing to change.
 * - `rejected`: our policy refused it inside Microsoft's window.
 * - `ignored`: recorded, not acted on (an action we do not know, data missing, not applicable here).
 * - `failed`: Microsoft says the operation did not happen (`Failed` or `Conflict`): not applied.
 * - `unverified`: Microsoft did not confirm it (no such operation, another subscription or action, not
 *   final yet, a subscription it does not know, or not in the state the notification claims): not applied,
 *   and reopened by a later delivery of the same operation.
 */
export type NotificationOutcome = 'applied' | 'no-change' | 'rejected' | 'ignored' | 'failed' | 'unverified';

/** Outcomes a later delivery of the same operation reopens: Microsoft may confirm it then. */
export const reopenableOutcomes: readonly NotificationOutcome[] = ['unverified'];

export function isReopenable(outcome: NotificationOutcome): boolean {
  return reopenableOutcomes.includes(outcome);
}

export type NotificationProcessed = {
  type: 'NotificationProcessed';
  data: {
    operationId: string;
    subscriptionId?: string;
    action?: string;
    outcome: NotificationOutcome;
    detail: string;
    /** Types of the subscription events this notification caused. */
    subscriptionEvents: string[];
    /**
     * Microsoft's status of the operation when processing ended, as far as we know it: read back with Get
     * operation, or `Succeeded` once Microsoft accepted our acknowledgement. Absent when Microsoft has no
     * operation to read (and in histories recorded before this field existed).
     */
    operationStatus?: string;
    at: string;
  };
};

export type NotificationEvent = NotificationReceived | OperationAcknowledged | NotificationProcessed;

/** Every webhook action we act on (docs/marketplace.md §7.1); any other is recorded, answered 200 and ignored. */
export const handledActions: readonly string[] = ['Subscribe', 'ChangePlan', 'ChangeQuantity', 'Renew', 'Suspend', 'Reinstate', 'Unsubscribe'];

/** Actions whose change Microsoft waits for us to accept or refuse (docs/marketplace.md §7.1–7.2). */
export const acknowledgeableActions = ['ChangePlan', 'ChangeQuantity'] as const;
export type AcknowledgeableAction = (typeof acknowledgeableActions)[number];

export function isAcknowledgeable(action: string): action is AcknowledgeableAction {
  return acknowledgeableActions.some((a) => a === action);
}
