/**
 * Converge on Microsoft's record of a subscription, pure: given what Get (or List) subscriptions answered and our
 * state, the events that make our record say what Microsoft says. Microsoft owns the status, the plan, the
 * quantity, the term, auto-renew, the free-trial flag and the operations the customer may perform; we only
 * follow. Used after every applied change and at activation (source `webhook`/`process`), and by the reconciler
 * (source `reconciliation`). Every event carries what Microsoft `reported`, so the history shows why.
 *
 * What cannot be repaired is left as it is and reported by `driftOf` (the caller counts it): a subscription
 * Unsubscribed here stays Unsubscribed (terminal), and one active here cannot go back to PendingFulfillmentStart.
 * An Unsubscribed subscription still takes Microsoft's final plan, seats and other fields: a change Microsoft
 * completed just before the cancellation, whose notification came after the Unsubscribe, belongs in its history.
 */
import type { KnownSubscription } from './subscription.state.js';
import type { ChangeSource, MicrosoftReport, OwnedFields, SubscriptionDetails, SubscriptionEvent, Term } from './subscription.events.js';

/** Microsoft's record as the domain reads it: the details Get subscription answered, and its status. */
export type MicrosoftRecord = { details: SubscriptionDetails; status: string };

/** The kinds of difference between Microsoft's record and ours. */
export type DriftKind = 'status' | 'plan' | 'quantity' | 'term' | 'autoRenew' | 'isFreeTrial' | 'allowedCustomerOperations';
export const driftKinds: readonly DriftKind[] = ['status', 'plan', 'quantity', 'term', 'autoRenew', 'isFreeTrial', 'allowedCustomerOperations'];

const statuses = ['PendingFulfillmentStart', 'Subscribed', 'Suspended', 'Unsubscribed'] as const;
type Status = (typeof statuses)[number];
function isStatus(s: string): s is Status {
  return statuses.some((x) => x === s);
}

function sameTerm(a: Term, b: Term): boolean {
  return a.termUnit === b.termUnit && a.startDate === b.startDate && a.endDate === b.endDate;
}

/** Microsoft's term, when it says anything about one (a pending purchase has a unit but no dates yet). */
function reportedTerm(t: Term): Term | undefined {
  return t.termUnit !== undefined || t.startDate !== undefined || t.endDate !== undefined ? t : undefined;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const sorted = [...b].sort();
  return [...a].sort().every((x, i) => x === sorted[i]);
}

/** The kinds in which our record differs from Microsoft's (an unknown status of Microsoft's is not a drift we can judge). */
export function driftOf(state: KnownSubscription, microsoft: MicrosoftRecord): DriftKind[] {
  const m = microsoft.details;
  const kinds: DriftKind[] = [];
  if (isStatus(microsoft.status) && microsoft.status !== state.status) kinds.push('status');
  if (m.planId !== state.planId) kinds.push('plan');
  if (m.quantity !== undefined && m.quantity !== state.quantity) kinds.push('quantity');
  const term = reportedTerm(m.term);
  if (term && !sameTerm(term, state.term)) kinds.push('term');
  if (m.autoRenew !== state.autoRenew) kinds.push('autoRenew');
  if (m.isFreeTrial !== state.isFreeTrial) kinds.push('isFreeTrial');
  if (!sameList(m.allowedCustomerOperations, state.allowedCustomerOperations)) kinds.push('allowedCustomerOperations');
  return kinds;
}

function report(microsoft: MicrosoftRecord): MicrosoftReport {
  const m = microsoft.details;
  const term = reportedTerm(m.term);
  return {
    status: microsoft.status,
    planId: m.planId,
    ...(m.quantity !== undefined ? { quantity: m.quantity } : {}),
    ...(term ? { term } : {}),
    autoRenew: m.autoRenew,
  };
}

function statusEvents(s: KnownSubscription, target: Status, microsoft: MicrosoftRecord, because: Because): SubscriptionEvent[] {
  if (target === s.status || target === 'PendingFulfillmentStart') return [];
  if (target === 'Unsubscribed') {
    return [{ type: 'Unsubscribed', data: { ...because, reason: `Microsoft reports Unsubscribed (was ${s.status} here)` } }];
  }
  if (s.status === 'PendingFulfillmentStart') {
    const m = microsoft.details;
    const term = reportedTerm(m.term);
    const activated: SubscriptionEvent = {
      type: 'Activated',
      data: {
        ...because,
        planId: m.planId,
        ...(m.quantity !== undefined ? { quantity: m.quantity } : s.quantity !== undefined ? { quantity: s.quantity } : {}),
        autoActivated: !s.activation.requestedAt,
        ...(term ? { term } : {}),
      },
    };
    return target === 'Suspended' ? [activated, { type: 'Suspended', data: because }] : [activated];
  }
  return [{ type: target === 'Suspended' ? 'Suspended' : 'Reinstated', data: because }];
}

type Because = { at: string; source: ChangeSource; reported: MicrosoftReport };

/** The owned fields (besides status, plan, quantity) that differ: Microsoft's values and ours. */
function ownedChanges(s: KnownSubscription, m: SubscriptionDetails): { changes: OwnedFields; previous: OwnedFields } | undefined {
  const changes: OwnedFields = {};
  const previous: OwnedFields = {};
  const term = reportedTerm(m.term);
  if (term && !sameTerm(term, s.term)) {
    changes.term = term;
    previous.term = s.term;
  }
  if (m.autoRenew !== s.autoRenew) {
    changes.autoRenew = m.autoRenew;
    previous.autoRenew = s.autoRenew;
  }
  if (m.isFreeTrial !== s.isFreeTrial) {
    changes.isFreeTrial = m.isFreeTrial;
    previous.isFreeTrial = s.isFreeTrial;
  }
  if (!sameList(m.allowedCustomerOperations, s.allowedCustomerOperations)) {
    changes.allowedCustomerOperations = [...m.allowedCustomerOperations];
    previous.allowedCustomerOperations = [...s.allowedCustomerOperations];
  }
  return Object.keys(changes).length ? { changes, previous } : undefined;
}

/**
 * The events that bring `state` in line with Microsoft's record; none when they agree. The caller has checked the
 * subscription is known (a subscription we never saw is recorded with RecordPurchase first).
 */
export function convergeEvents(
  state: KnownSubscription,
  microsoft: MicrosoftRecord,
  meta: { now: string; source: ChangeSource },
): SubscriptionEvent[] {
  const because: Because = { at: meta.now, source: meta.source, reported: report(microsoft) };
  const m = microsoft.details;
  // Terminal: nothing Microsoft says brings an Unsubscribed subscription back.
  const target = state.status === 'Unsubscribed' || !isStatus(microsoft.status) ? state.status : microsoft.status;

  const events = statusEvents(state, target, microsoft, because);
  // Activated carries Microsoft's plan, seats and term: what it took over is not repeated below.
  const activated = events.some((e) => e.type === 'Activated');
  if (!activated && m.planId !== state.planId) {
    events.push({ type: 'PlanChanged', data: { ...because, planId: m.planId, previousPlanId: state.planId } });
  }
  if (!activated && m.quantity !== undefined && m.quantity !== state.quantity) {
    events.push({
      type: 'QuantityChanged',
      data: { ...because, quantity: m.quantity, ...(state.quantity !== undefined ? { previousQuantity: state.quantity } : {}) },
    });
  }
  const owned = ownedChanges(activated ? { ...state, term: reportedTerm(m.term) ?? state.term } : state, m);
  if (owned) events.push({ type: 'DetailsRefreshed', data: { ...because, ...owned } });
  return events;
}
