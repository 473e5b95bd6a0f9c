/**
 * Microsoft's webhook notifications as we keep them: every authenticated delivery is stored verbatim
 * (raw body, the headers that matter, receipt time, who signed it) in a `notification-<operation id>`
 * stream BEFORE anything acts on it; what we then did is recorded in the same stream.
 * The operation id is the idempotency key: a stream that has `NotificationProcessed` is done.
 */
export const notificationCategory = 'notification';

export function notificationStream(operationId: string): string {
  return `${notificationCategory}-${operationId}`;
}

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

export type NotificationOutcome = 'applied' | 'no-change' | 'rejected' | 'ignored' | 'unverified';

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
    at: string;
  };
};

export type NotificationEvent = NotificationReceived | OperationAcknowledged | NotificationProcessed;

/** Every webhook action we act on (API.md §7.1); any other is recorded, answered 200 and ignored. */
export const handledActions: readonly string[] = ['Subscribe', 'ChangePlan', 'ChangeQuantity', 'Renew', 'Suspend', 'Reinstate', 'Unsubscribe'];

/** Actions whose change Microsoft waits for us to accept or refuse (API.md §7.1–7.2). */
export const acknowledgeableActions = ['ChangePlan', 'ChangeQuantity'] as const;
