/**
 * Refresh what Microsoft owns, pure (issue 9 item 2). After every change we applied to a subscription (activated,
 * plan or seats changed, renewed, suspended, reinstated), Microsoft's own record is read back (Get subscription)
 * and whatever differs — term unit and dates, auto-renew, free trial, allowed operations, and plan, seats or status
 * if a notification is still on its way — is recorded by ConvergeOnMicrosoft, so the ledger, the read models and the
 * pages show Microsoft's values (a monthly-to-yearly plan change moves the term).
 *
 * Microsoft's record is only read back once no operation of the subscription is still open at Microsoft
 * (NotStarted/InProgress in List operations): an accepted change not yet completed there would otherwise be
 * "repaired" back to the old plan. While one is open the refresh waits (the runner retries later); past
 * `patienceMs` after the change it is left to the reconciler, which compares every subscription anyway.
 */
import type { KnownSubscription, SubscriptionEvent, SubscriptionState } from '../domain/subscription/index.js';

/** Events after which Microsoft's record may hold values we do not have. */
const triggers: ReadonlySet<SubscriptionEvent['type']> = new Set(['Activated', 'PlanChanged', 'QuantityChanged', 'Renewed', 'Suspended', 'Reinstated', 'Unsubscribed']);

/** How long after the change a refresh still waits for Microsoft's open operations to complete. */
export const defaultRefreshPatienceMs = 60 * 60 * 1000;

/**
 * Whether the event alone can ask for a refresh (no state needed): a change we applied, not one that converged
 * on Microsoft already. The executor checks this before it loads the subscription.
 */
export function mayWantRefresh(event: SubscriptionEvent): boolean {
  // Events that carry what Microsoft reported (converged, or recorded by the reconciler from Microsoft's list) were
  // just read from Microsoft's record. ReconcileStatus's events carry only the status and are read back.
  return triggers.has(event.type) && event.data.reported === undefined;
}

/** Whether this event asks for a refresh, given the subscription's state now. */
export function wantsRefresh(event: SubscriptionEvent, state: SubscriptionState): state is KnownSubscription {
  if (!mayWantRefresh(event)) return false;
  // After the cancellation itself, Microsoft's final record is read once more (a change it completed just before
  // may be notified after); after anything else, a cancelled subscription is left alone.
  return state.status !== 'Initial' && (state.status !== 'Unsubscribed' || event.type === 'Unsubscribed');
}

export type RefreshDecision =
  | { type: 'Converge' }
  | { type: 'Wait'; reason: string; untilMs: number }
  | { type: 'LeaveToReconciliation'; reason: string };

/** Open operations at Microsoft decide whether the record can be read back now. */
export function afterOperations(open: readonly { id: string; action?: string; status?: string }[], changedAt: string, now: string, patienceMs = defaultRefreshPatienceMs): RefreshDecision {
  if (open.length === 0) return { type: 'Converge' };
  const what = open.map((o) => `${o.action ?? 'operation'} ${o.id} ${o.status ?? ''}`.trim()).join(', ');
  const untilMs = Date.parse(changedAt) + patienceMs;
  if (Date.parse(now) >= untilMs) return { type: 'LeaveToReconciliation', reason: `still open at Microsoft after ${Math.round(patienceMs / 60000)} min: ${what}` };
  return { type: 'Wait', reason: `open at Microsoft: ${what}`, untilMs };
}

/** Operation statuses that mean Microsoft has not finished with it. */
export function isOpen(status: string | undefined): boolean {
  return status === 'NotStarted' || status === 'InProgress';
}
