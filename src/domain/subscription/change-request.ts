/**
 * The life of one publisher-side change request, folded from the subscription's events: the one fold
 * behind the operator API's `lastChange` and the `change_requests` read model.
 *
 *   PlanChangeRequested / QuantityChangeRequested / CancellationRequested   → pending
 *   ChangeSubmitted (Microsoft accepted it and named the operation)          → submitted, or applied when
 *                                                                              that operation was already applied
 *   PlanChanged / QuantityChanged of its operation                           → applied
 *   Unsubscribed                                                             → applied (a `cancel` request) or abandoned
 *   ChangeRequestFailed                                                      → failed
 *
 * Applied, failed and abandoned are final. `evolveChangeRequest` returns the very record it was given when
 * the event does not change it, so a caller can tell "nothing to write" by identity.
 */
import type { SubscriptionEvent } from './subscription.events.js';

export type ChangeRequestKind = 'plan' | 'quantity' | 'cancel';

/** `pending`: recorded, not yet accepted by Microsoft; `submitted`: accepted (202), waiting for the outcome. */
export type ChangeRequestOutcome = 'pending' | 'submitted' | 'applied' | 'failed' | 'abandoned';

export const changeRequestOutcomes: readonly ChangeRequestOutcome[] = ['pending', 'submitted', 'applied', 'failed', 'abandoned'];

/** What was asked for. */
export type RequestedChange =
  | { kind: 'plan'; planId: string; previousPlanId: string }
  | { kind: 'quantity'; quantity: number; previousQuantity?: number }
  | { kind: 'cancel'; reason?: string };

export type ChangeRequest = RequestedChange & {
  requestId: string;
  requestedAt: string;
  outcome: ChangeRequestOutcome;
  /** Microsoft's operation id: from the 202 (ChangeSubmitted), or from the failure that named it. */
  operationId?: string;
  submittedAt?: string;
  settledAt?: string;
  failure?: { status: string; reason: string };
};

/**
 * When a Microsoft operation was applied to the subscription (the `at` of the event that applied it), or
 * undefined when it has not been. The fold needs it for a ChangeSubmitted whose operation Microsoft's
 * notification applied before the 202 was recorded.
 */
export type AppliedAt = (operationId: string) => string | undefined;

const notApplied: AppliedAt = () => undefined;

function isOpen(request: ChangeRequest): boolean {
  return request.outcome === 'pending' || request.outcome === 'submitted';
}

/**
 * The Microsoft operation a subscription event applied to the subscription, if it applied one: the events
 * that carry out an operation's action (Subscribe, ChangePlan, ChangeQuantity, Suspend, Reinstate, Renew,
 * Unsubscribe) and name its id.
 */
export function operationAppliedBy(event: SubscriptionEvent): string | undefined {
  switch (event.type) {
    case 'Purchased':
    case 'Activated':
    case 'PlanChanged':
    case 'QuantityChanged':
    case 'Suspended':
    case 'Reinstated':
    case 'Renewed':
    case 'Unsubscribed':
      return event.data.operationId;
    default:
      return undefined;
  }
}

/** The request a request event starts, pending; undefined for any other event. */
function started(event: SubscriptionEvent): ChangeRequest | undefined {
  switch (event.type) {
    case 'PlanChangeRequested': {
      const { requestId, at, planId, previousPlanId } = event.data;
      return { kind: 'plan', planId, previousPlanId, requestId, requestedAt: at, outcome: 'pending' };
    }
    case 'QuantityChangeRequested': {
      const { requestId, at, quantity, previousQuantity } = event.data;
      return { kind: 'quantity', quantity, ...(previousQuantity !== undefined ? { previousQuantity } : {}), requestId, requestedAt: at, outcome: 'pending' };
    }
    case 'CancellationRequested': {
      const { requestId, at, reason } = event.data;
      return { kind: 'cancel', ...(reason !== undefined ? { reason } : {}), requestId, requestedAt: at, outcome: 'pending' };
    }
    default:
      return undefined;
  }
}

/**
 * The request the event is about, after it. `request` is the request so far (undefined: none yet); a
 * request event for another request id starts that request (the latest one is what a history fold keeps),
 * a repeat of the same request id changes nothing.
 */
export function evolveChangeRequest(
  request: ChangeRequest | undefined,
  event: SubscriptionEvent,
  appliedAt: AppliedAt = notApplied,
): ChangeRequest | undefined {
  const next = started(event);
  if (next) return request?.requestId === next.requestId ? request : next;
  if (!request) return request;
  const at = event.data.at;
  switch (event.type) {
    case 'ChangeSubmitted': {
      if (event.data.requestId !== request.requestId || request.outcome !== 'pending') return request;
      const { operationId } = event.data;
      const applied = appliedAt(operationId);
      // Microsoft's notification for this operation may have been applied before its 202 was recorded.
      if (applied !== undefined) return { ...request, operationId, submittedAt: at, outcome: 'applied', settledAt: applied };
      return { ...request, operationId, submittedAt: at, outcome: 'submitted' };
    }
    case 'ChangeRequestFailed': {
      if (event.data.requestId !== request.requestId || !isOpen(request)) return request;
      const operationId = request.operationId ?? event.data.operationId;
      return {
        ...request,
        ...(operationId !== undefined ? { operationId } : {}),
        outcome: 'failed',
        settledAt: at,
        failure: { status: event.data.status, reason: event.data.reason },
      };
    }
    case 'PlanChanged':
    case 'QuantityChanged':
      if (!isOpen(request) || request.operationId === undefined || request.operationId !== event.data.operationId) return request;
      return { ...request, outcome: 'applied', settledAt: at };
    case 'Unsubscribed':
      if (!isOpen(request)) return request;
      return { ...request, outcome: request.kind === 'cancel' ? 'applied' : 'abandoned', settledAt: at };
    default:
      return request;
  }
}

/** The most recent publisher-side change request of a subscription's history, and how it ended. */
export function latestChangeRequest(events: Iterable<SubscriptionEvent>): ChangeRequest | undefined {
  const applied = new Map<string, string>();
  const appliedAt: AppliedAt = (operationId) => applied.get(operationId);
  let latest: ChangeRequest | undefined;
  for (const event of events) {
    latest = evolveChangeRequest(latest, event, appliedAt);
    const operationId = operationAppliedBy(event);
    if (operationId !== undefined && !applied.has(operationId)) applied.set(operationId, event.data.at);
  }
  return latest;
}
