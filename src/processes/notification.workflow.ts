/**
 * What to do next for one recorded notification, pure: `decide(observation, state) → { state, step }`.
 * The executor (notification.process.ts) performs each step (a call to Microsoft, a command on the
 * subscription, provisioning, the acknowledgement) and reports what it saw as the next observation, until
 * the step is `Finish`. Every observation carries the executor's clock (`now`); nothing here reads one.
 *
 * The order is Microsoft's rules (docs/marketplace.md §7):
 * 1. An action we do not act on is recorded as ignored.
 * 2. Verify the operation with Microsoft (Get operation). Subscribe, Unsubscribe and Renew may have no
 *    operation to read back (auto-activation, failed activation, term end): a 404 is not a refusal for them.
 * 3. The subscription must be known before an action applies to it (a webhook can beat the landing page):
 *    record the purchase from Get subscription.
 * 4. Subscribe: catch our record up with Microsoft's status. Other actions: apply the command; for an
 *    accepted plan or quantity change provision it and, while Microsoft's operation is pending, acknowledge
 *    it (PATCH Success); a pending Reinstate is acknowledged too. After a status action, converge on the
 *    status Microsoft reports (notifications arrive in any order).
 * At most one Get operation and one Get subscription per notification: the one answer is reused. An answer
 * fetched before our acknowledgement of a Reinstate is not used to reconcile: the acknowledgement is what
 * moves Microsoft's status on, so that answer is already out of date.
 */
import { handledActions, isAcknowledgeable } from '../domain/notification/index.js';
import type { NotificationOutcome, NotificationPayload } from '../domain/notification/index.js';
import type { KnownSubscription, SubscriptionCommand, SubscriptionDetails } from '../domain/subscription/index.js';

/** Actions Microsoft may report without an operation we can read back (auto-activation, failed activation, term end). */
const verifiableWithoutOperation = new Set(['Subscribe', 'Unsubscribe', 'Renew']);
/** Actions that move the status (or the term) and after which the status is reconciled with Microsoft. */
const statusActions = new Set(['Suspend', 'Reinstate', 'Renew', 'Unsubscribe']);

/** Microsoft's answer to Get subscription, as the workflow uses it. */
export type MicrosoftSubscription = { details: SubscriptionDetails; status?: string };

/** Microsoft's answer to Get operation, as the workflow uses it. */
export type MicrosoftOperation = { subscriptionId?: string; action?: string; status?: string };

/** Why a command on the subscription is sent. */
export type Purpose = 'purchase' | 'catch-up' | 'action' | 'reconcile';

export type Verification = { ok: true; found: boolean; operationStatus?: string } | { ok: false; detail: string };

export type ActionResult = { events: string[]; subscription?: KnownSubscription } | { refused: string };

export type WorkflowState = {
  notification: NotificationPayload;
  /** The executor's clock at the last observation. */
  now: string;
  /** Microsoft's operation is acknowledged (before this run, or in it). */
  acknowledged: boolean;
  verification?: Verification;
  /** Whether the subscription was known here before this notification. */
  known?: boolean;
  microsoft?: MicrosoftSubscription;
  /** Microsoft's answer was fetched before we acknowledged: not used to reconcile. */
  microsoftStale?: boolean;
  /** Subscription events of each command sent (by purpose). */
  purchase?: string[];
  catchUp?: string[];
  action?: ActionResult;
  provisioned?: boolean;
  reconciled?: string[];
};

export type Observation =
  | { type: 'OperationFound'; operation: MicrosoftOperation; now: string }
  | { type: 'OperationNotFound'; now: string }
  | { type: 'SubscriptionLoaded'; known: boolean; now: string }
  | { type: 'SubscriptionFetched'; subscription: MicrosoftSubscription; now: string }
  | { type: 'CommandExecuted'; purpose: Purpose; events: string[]; subscription?: KnownSubscription; now: string }
  /** A DomainError's message; only for the steps that may be refused (`refusable`). */
  | { type: 'CommandRefused'; purpose: Purpose; reason: string; now: string }
  | { type: 'Provisioned'; now: string }
  | { type: 'Acknowledged'; now: string };

export type FinalOutcome = Exclude<NotificationOutcome, 'rejected'>;

export type Step =
  | { type: 'GetOperation' }
  | { type: 'LoadSubscription' }
  | { type: 'GetSubscription' }
  | { type: 'Execute'; purpose: Purpose; command: SubscriptionCommand; actor: string; refusable: boolean }
  | { type: 'Provision'; subscription: KnownSubscription; reason: 'plan-change' | 'quantity-change' }
  | { type: 'Acknowledge' }
  | { type: 'Finish'; outcome: FinalOutcome; detail: string; subscriptionEvents: string[] };

export function initialWorkflow(notification: NotificationPayload, acknowledged: boolean, now: string): WorkflowState {
  return { notification, acknowledged, now };
}

function verification(n: NotificationPayload, o: Extract<Observation, { type: 'OperationFound' | 'OperationNotFound' }>): Verification {
  if (o.type === 'OperationNotFound') {
    if (verifiableWithoutOperation.has(n.action)) return { ok: true, found: false };
    return { ok: false, detail: `Microsoft has no operation ${n.id} for subscription ${n.subscriptionId}` };
  }
  const op = o.operation;
  if (op.subscriptionId && op.subscriptionId !== n.subscriptionId) {
    return { ok: false, detail: `Microsoft's operation ${n.id} belongs to subscription ${op.subscriptionId}, not ${n.subscriptionId}` };
  }
  if (op.action && op.action !== n.action) return { ok: false, detail: `Microsoft's operation ${n.id} is a ${op.action}, not a ${n.action}` };
  return { ok: true, found: true, ...(op.status !== undefined ? { operationStatus: op.status } : {}) };
}

export function evolve(state: WorkflowState, o: Observation): WorkflowState {
  const s = { ...state, now: o.now };
  switch (o.type) {
    case 'OperationFound':
    case 'OperationNotFound':
      return { ...s, verification: verification(s.notification, o) };
    case 'SubscriptionLoaded':
      return { ...s, known: o.known };
    case 'SubscriptionFetched':
      return { ...s, microsoft: o.subscription };
    case 'CommandExecuted':
      switch (o.purpose) {
        case 'purchase':
          return { ...s, purchase: o.events };
        case 'catch-up':
          return { ...s, catchUp: o.events };
        case 'action':
          return { ...s, action: { events: o.events, ...(o.subscription ? { subscription: o.subscription } : {}) } };
        case 'reconcile':
          return { ...s, reconciled: o.events };
      }
      return s;
    case 'CommandRefused':
      if (o.purpose === 'action') return { ...s, action: { refused: o.reason } };
      if (o.purpose === 'reconcile') return { ...s, reconciled: [] };
      return s; // a purchase is never refusable: the executor does not report it
    case 'Provisioned':
      return { ...s, provisioned: true };
    case 'Acknowledged':
      return { ...s, acknowledged: true, microsoftStale: s.microsoft !== undefined };
    default: {
      const _exhaustive: never = o;
      return s;
    }
  }
}

function finish(outcome: FinalOutcome, detail: string, subscriptionEvents: string[]): Step {
  return { type: 'Finish', outcome, detail, subscriptionEvents };
}

function recordPurchase(s: WorkflowState, microsoft: MicrosoftSubscription, defaultStatus: string, withOperation: boolean): SubscriptionCommand {
  return {
    type: 'RecordPurchase',
    now: s.now,
    source: 'webhook',
    subscription: microsoft.details,
    microsoftStatus: microsoft.status ?? defaultStatus,
    ...(withOperation ? { operationId: s.notification.id } : {}),
  };
}

/** The subscription command a notification stands for; undefined when it lacks the data it needs. */
export function actionCommand(n: NotificationPayload, now: string): SubscriptionCommand | undefined {
  const base = { now, source: 'webhook' as const, operationId: n.id };
  const when = {
    ...(n.operationRequestSource ? { requestSource: n.operationRequestSource } : {}),
    ...(n.timeStamp ? { timeStamp: n.timeStamp } : {}),
  };
  switch (n.action) {
    case 'ChangePlan':
      return { ...base, type: 'ApplyPlanChange', planId: n.planId ?? '', ...when };
    case 'ChangeQuantity':
      return n.quantity === undefined ? undefined : { ...base, type: 'ApplyQuantityChange', quantity: n.quantity, ...when };
    case 'Suspend':
      return { ...base, type: 'Suspend' };
    case 'Reinstate':
      return { ...base, type: 'Reinstate' };
    case 'Renew':
      return { ...base, type: 'Renew', ...(n.term ? { term: n.term } : {}) };
    case 'Unsubscribe':
      return { ...base, type: 'Unsubscribe', reason: 'Microsoft notified Unsubscribe' };
    default:
      return undefined;
  }
}

/** Whether Microsoft's operation still waits for an answer: its status as read back, else as notified. */
function pending(s: WorkflowState, v: Extract<Verification, { ok: true }>): boolean {
  if (v.found) return v.operationStatus === 'InProgress';
  return s.notification.status === undefined || s.notification.status === 'InProgress';
}

export function nextStep(s: WorkflowState): Step {
  const n = s.notification;
  if (!handledActions.includes(n.action)) return finish('ignored', `unknown action ${n.action}: recorded, not acted on`, []);
  const v = s.verification;
  if (!v) return { type: 'GetOperation' };
  if (!v.ok) return finish('unverified', v.detail, []);
  if (s.known === undefined) return { type: 'LoadSubscription' };
  if (!s.known && s.purchase === undefined) {
    if (!s.microsoft) return { type: 'GetSubscription' };
    return { type: 'Execute', purpose: 'purchase', command: recordPurchase(s, s.microsoft, 'PendingFulfillmentStart', n.action === 'Subscribe'), actor: 'microsoft', refusable: false };
  }
  const created = s.purchase ?? [];
  if (n.action === 'Subscribe') {
    // Auto-activation: the purchase is Subscribed at Microsoft. Catch our record up if it is behind.
    if (!s.microsoft) return { type: 'GetSubscription' };
    if (s.catchUp === undefined) return { type: 'Execute', purpose: 'catch-up', command: recordPurchase(s, s.microsoft, 'Subscribed', true), actor: 'microsoft', refusable: false };
    const events = [...created, ...s.catchUp];
    return finish(events.length ? 'applied' : 'no-change', 'Subscribe', events);
  }
  const command = actionCommand(n, s.now);
  if (!command) return finish('ignored', `${n.action} without the data it needs (planId/quantity)`, created);
  if (!s.action) return { type: 'Execute', purpose: 'action', command, actor: 'microsoft', refusable: true };
  const refused = 'refused' in s.action ? s.action.refused : undefined;
  const applied = 'events' in s.action ? s.action.events : [];
  let reconciled: string[] = [];
  if (isAcknowledgeable(n.action)) {
    if (refused === undefined && 'events' in s.action) {
      if (!s.provisioned && s.action.subscription) {
        return { type: 'Provision', subscription: s.action.subscription, reason: n.action === 'ChangePlan' ? 'plan-change' : 'quantity-change' };
      }
      if (pending(s, v) && !s.acknowledged) return { type: 'Acknowledge' };
    }
  } else if (statusActions.has(n.action)) {
    // Notify-only per the webhook docs, but the operations docs ask for an acknowledgement and an answered
    // Reinstate completes sooner; Success is harmless while it is pending (docs/marketplace.md §7.1). It is
    // sent even when the Reinstate arrived before the Suspend it undoes: Microsoft is reinstating.
    if (n.action === 'Reinstate' && pending(s, v) && !s.acknowledged) return { type: 'Acknowledge' };
    if (s.reconciled === undefined) {
      if (!s.microsoft) return { type: 'GetSubscription' };
      if (!s.microsoftStale && s.microsoft.status) {
        return {
          type: 'Execute',
          purpose: 'reconcile',
          command: { type: 'ReconcileStatus', now: s.now, source: 'reconciliation', microsoftStatus: s.microsoft.status },
          actor: 'system:notifications',
          refusable: true,
        };
      }
    }
    reconciled = s.reconciled ?? [];
  }
  const events = [...created, ...applied, ...reconciled];
  if (refused !== undefined && events.length === created.length) return finish('ignored', refused, events);
  const detail =
    refused !== undefined ? `${refused}; reconciled with Microsoft's status` : events.length ? `${n.action} applied` : `${n.action} already applied or nothing to change`;
  return finish(events.length ? 'applied' : 'no-change', detail, events);
}

/** One turn of the workflow: what was observed, and what to do next. */
export function decide(observation: Observation, state: WorkflowState): { state: WorkflowState; step: Step } {
  const next = evolve(state, observation);
  return { state: next, step: nextStep(next) };
}
