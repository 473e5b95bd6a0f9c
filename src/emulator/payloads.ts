/**
 * The emulator's records as Microsoft's wire shapes (docs/marketplace.md §4, §7.3): field names and value
 * spellings exactly as the Fulfillment API and the webhook send them. Types come from
 * `../schemas.ts`, so what the emulator sends is what our client parses.
 */
import type { ResolvedSubscription, SaaSOperation, Subscription, WebhookPayload } from '../marketplace/schemas.js';
import type { OperationRecord, SubscriptionRecord } from './state.js';

export function toSubscriptionPayload(sub: SubscriptionRecord): Subscription {
  const term: NonNullable<Subscription['term']> = { termUnit: sub.termUnit };
  if (sub.startDate) term.startDate = sub.startDate.toISOString();
  if (sub.endDate) term.endDate = sub.endDate.toISOString();
  const payload: Subscription = {
    id: sub.id,
    publisherId: sub.publisherId,
    offerId: sub.offerId,
    name: sub.name,
    saasSubscriptionStatus: sub.status,
    beneficiary: { ...sub.beneficiary },
    purchaser: { ...sub.purchaser },
    planId: sub.planId,
    ...(sub.quantity !== undefined ? { quantity: sub.quantity } : {}),
    term,
    autoRenew: sub.autoRenew,
    isTest: sub.isTest,
    isFreeTrial: sub.isFreeTrial,
    allowedCustomerOperations: [...sub.allowedCustomerOperations],
    sandboxType: sub.sandboxType,
    sessionMode: sub.sessionMode,
    created: sub.created.toISOString(),
  };
  return payload;
}

/** Resolve's body: note `subscriptionName` at the top, `name` inside `subscription`. */
export function toResolvedPayload(sub: SubscriptionRecord): ResolvedSubscription {
  const payload: ResolvedSubscription = {
    id: sub.id,
    subscriptionName: sub.name,
    offerId: sub.offerId,
    planId: sub.planId,
    ...(sub.quantity !== undefined ? { quantity: sub.quantity } : {}),
    subscription: toSubscriptionPayload(sub),
  };
  return payload;
}

export function toOperationPayload(op: OperationRecord): SaaSOperation {
  const payload: SaaSOperation = {
    id: op.id,
    activityId: op.activityId,
    subscriptionId: op.subscriptionId,
    offerId: op.offerId,
    publisherId: op.publisherId,
    planId: op.planId,
    ...(op.quantity !== undefined ? { quantity: op.quantity } : {}),
    action: op.action,
    timeStamp: op.timeStamp.toISOString(),
    status: op.status,
  };
  if (op.errorStatusCode !== undefined) payload.errorStatusCode = op.errorStatusCode;
  if (op.errorMessage !== undefined) payload.errorMessage = op.errorMessage;
  return payload;
}

/**
 * The webhook body (docs/marketplace.md §7.3). `subscription` is the subscription as it is when the webhook is
 * built: before the change for ChangePlan/ChangeQuantity/Reinstate, after it for the notifications.
 */
export type EmulatorWebhookPayload = WebhookPayload & {
  operationRequestSource: string;
  subscription: Subscription;
  purchaseToken: null;
};

export function toWebhookPayload(op: OperationRecord, sub: SubscriptionRecord): EmulatorWebhookPayload {
  return webhookPayload(op, toSubscriptionPayload(sub), op.status);
}

/**
 * The webhook of an injected notification: its own `status` (any string), the subscription as
 * Microsoft has it (or, for one it does not know, `unknownSubscriptionPayload`), and the term unit
 * in `subscription.term` replaced when one is given (`PAY`, say).
 */
export function toInjectedWebhookPayload(
  op: OperationRecord,
  subscription: Subscription,
  status: string,
  termUnit?: string,
): EmulatorWebhookPayload {
  const sub: Subscription = termUnit === undefined ? subscription : { ...subscription, term: { ...subscription.term, termUnit } };
  return webhookPayload(op, sub, status);
}

/** A subscription block for a webhook about a subscription Microsoft has no record of. */
export function unknownSubscriptionPayload(op: OperationRecord): Subscription {
  return {
    id: op.subscriptionId,
    publisherId: op.publisherId,
    offerId: op.offerId,
    name: `Subscription ${op.subscriptionId}`,
    saasSubscriptionStatus: 'Subscribed',
    planId: op.planId,
    ...(op.quantity !== undefined ? { quantity: op.quantity } : {}),
    term: { termUnit: 'P1M' },
    autoRenew: true,
    isTest: false,
    isFreeTrial: false,
    allowedCustomerOperations: ['Read', 'Update', 'Delete'],
    sandboxType: 'None',
    sessionMode: 'None',
  };
}

function webhookPayload(op: OperationRecord, subscription: Subscription, status: string): EmulatorWebhookPayload {
  const payload: EmulatorWebhookPayload = {
    id: op.id,
    activityId: op.activityId,
    publisherId: op.publisherId,
    offerId: op.offerId,
    planId: op.planId,
    ...(op.quantity !== undefined ? { quantity: op.quantity } : {}),
    subscriptionId: op.subscriptionId,
    timeStamp: op.timeStamp.toISOString(),
    action: op.action,
    status,
    operationRequestSource: op.source,
    subscription,
    purchaseToken: null,
  };
  return payload;
}
