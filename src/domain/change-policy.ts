/**
 * The ISV's rules for customer-side plan and quantity changes. A refusal has to reach Microsoft as a
 * 4xx answer to the webhook inside its 10-second window, so the policy is local and fast: it reads
 * configuration and the payload, never the network.
 */
export type ChangePolicyConfig = {
  /** Plans the product no longer offers: changes to them are refused. */
  retiredPlans: readonly string[];
  /** The most seats the product supports; undefined = no limit. */
  maxSeats?: number;
};

export type ChangeRequest = { action: string; planId?: string; quantity?: number };

export type PolicyDecision = { accept: true } | { accept: false; reason: string };

export function evaluateChange(policy: ChangePolicyConfig, change: ChangeRequest): PolicyDecision {
  if (change.action === 'ChangePlan' && change.planId && policy.retiredPlans.includes(change.planId)) {
    return { accept: false, reason: `plan ${change.planId} is no longer offered` };
  }
  if (change.action === 'ChangeQuantity' && change.quantity !== undefined && policy.maxSeats !== undefined && change.quantity > policy.maxSeats) {
    return { accept: false, reason: `${change.quantity} seats is more than the product supports (${policy.maxSeats})` };
  }
  return { accept: true };
}
