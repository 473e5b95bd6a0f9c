/** Microsoft's view of a subscription (tolerantly parsed) → what the domain records at purchase. */
import type { SubscriptionDetails } from '../domain/subscription/index.js';
import type { NormalisedSubscription } from '../marketplace/schemas.js';

export function detailsFromMicrosoft(sub: NormalisedSubscription): SubscriptionDetails {
  return {
    subscriptionId: sub.id,
    name: sub.name ?? '',
    ...(sub.publisherId ? { publisherId: sub.publisherId } : {}),
    offerId: sub.offerId ?? '',
    planId: sub.planId ?? '',
    ...(sub.quantity !== undefined ? { quantity: sub.quantity } : {}),
    purchaser: partyFromMicrosoft(sub.purchaser),
    beneficiary: partyFromMicrosoft(sub.beneficiary),
    term: termFromMicrosoft(sub.term),
    autoRenew: sub.autoRenew ?? true,
    isFreeTrial: sub.isFreeTrial ?? false,
    isTest: sub.isTest ?? false,
    ...(sub.sandboxType ? { sandboxType: sub.sandboxType } : {}),
    ...(sub.sessionMode ? { sessionMode: sub.sessionMode } : {}),
    allowedCustomerOperations: [...(sub.allowedCustomerOperations ?? ['Read', 'Update', 'Delete'])],
    ...(sub.created ? { created: sub.created } : {}),
  };
}

/** Microsoft's purchaser or beneficiary → the domain's Party: only the fields Microsoft gave. */
export function partyFromMicrosoft(p: NormalisedSubscription['purchaser']): SubscriptionDetails['purchaser'] {
  if (!p) return {};
  const out: SubscriptionDetails['purchaser'] = {};
  if (p.emailId) out.emailId = p.emailId;
  if (p.objectId) out.objectId = p.objectId;
  if (p.tenantId) out.tenantId = p.tenantId;
  if (p.puid !== undefined) out.puid = p.puid;
  return out;
}

/** Microsoft's term → the domain's Term: the one mapping (purchase, activation, notifications). */
export function termFromMicrosoft(t: NormalisedSubscription['term']): SubscriptionDetails['term'] {
  const out: SubscriptionDetails['term'] = {};
  if (!t) return out;
  if (t.termUnit) out.termUnit = t.termUnit;
  if (t.startDate) out.startDate = t.startDate;
  if (t.endDate) out.endDate = t.endDate;
  if (t.chargeDuration !== undefined) out.chargeDuration = t.chargeDuration;
  return out;
}
