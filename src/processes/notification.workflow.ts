/**
 * What to do next for one recorded notification, pure: `decide(observation, state) → { state, step }`.
 * The executor (notification.process.ts) performs each step (a call to Microsoft, a command on the
 * subscription, provisioning, the acknowledgement) and reports what it saw as the next observation, until
 * the step is `Finish` (or `RetryLater`, which the executor throws). Every observation carries the
 * executor's clock (`now`); nothing here reads one.
 *
 * A notification is acted on only when Microsoft confirms it (docs/marketplace.md §7.1):
 * 1. An action we do not act on is recorded as ignored.
 * 2. Get operation must find the operation, for this subscription and this action, in a status that means
 *    it happened (`Succeeded`) or that it waits for us (`InProgress`, for a plan or quantity change and for
 *    Reinstate). `Failed` and `Conflict` are recorded as `failed`; `NotStarted`, an `InProgress` that does
 *    not wait for us, a missing or unknown status, another subscription or action are `unverified`.
 * 3. Subscribe, Unsubscribe and Renew may have no operation to read back (auto-activation, a failed
 *    activation, the end of a term). Then Get subscription must show what the notification claims
 *    (Subscribed; Unsubscribed; Subscribed with a term that moved on); otherwise `unverified`. A subscription
 *    Microsoft does not know (Get subscription 404) is `unverified` too. An unverified notification is
 *    processed again when Microsoft delivers it again (notification.state.ts).
 * 4. The subscription must be known before an action applies to it (a webhook can beat the landing page):
 *    record the purchase from Get subscription.
 * 5. Subscribe: catch our record up with Microsoft's status. Other actions: apply the command; for an
 *    accepted plan or quantity change provision it and, while Microsoft's operation waits for us, acknowledge
 *    it (PATCH Success); a pending Reinstate is acknowledged too. After a status action, converge on the
 *    status Microsoft reports (notifications arrive in any order).
 *
 * The acknowledgement must outlast short outages: a PATCH that fails for a transient reason is retried
 * later (RetryLater) until Microsoft's window ends (`ackDeadline`); after that, or when Microsoft answers
 * that the operation is already complete (409/404), the operation is read back once more and what Microsoft
 * did is recorded. A run that finds the operation Succeeded, applied here by an earlier run of this
 * notification but without a recorded acknowledgement (the process stopped between the PATCH and the
 * append), records the acknowledgement as recovered, unless that earlier run's PATCH is known not to have
 * got through (`earlierAckFailure`: Microsoft's window accepted the change).
 *
 * At most one Get subscription per notification, and one Get operation (plus one read-back after a failed
 * or refused acknowledgement): the one answer is reused. An answer fetched before our acknowledgement of a
 * Reinstate is not used to reconcile: the acknowledgement is what moves Microsoft's status on, so that
 * answer is already out of date.
 */
import { handledActions, isAcknowledgeable } from '../domain/notification/index.js';
import type { NotificationOutcome, NotificationPayload } from '../domain/notification/index.js';
import type { KnownSubscription, SubscriptionCommand, SubscriptionDetails } from '../domain/subscription/index.js';

/** Actions Microsoft may report without an operation we can read back (auto-activation, failed activation, term end). */
const verifiableWithoutOperation = new Set(['Subscribe', 'Unsubscribe', 'Renew']);
/** Actions that move the status (or the term) and after which the status is reconciled with Microsoft. */
const statusActions = new Set(['Suspend', 'Reinstate', 'Renew', 'Unsubscribe']);

/** Microsoft's operation waits for our answer while InProgress: plan and quantity changes, and Reinstate (§7.1). */
export function waitsForUs(action: string): boolean {
  return isAcknowledgeable(action) || action === 'Reinstate';
}

/** Microsoft's answer to Get subscription, as the workflow uses it. */
export type MicrosoftSubscription = { details: SubscriptionDetails; status?: string };

/** Microsoft's answer to Get operation, as the workflow uses it. */
export type MicrosoftOperation = { subscriptionId?: string; action?: string; status?: string; errorMessage?: string };

/** What Get operation answered: the operation, or none (404). */
export type OperationAnswer = { found: true; operation: MicrosoftOperation } | { found: false };

/** Why a command on the subscription is sent. */
export type Purpose = 'purchase' | 'catch-up' | 'action' | 'reconcile';

export type ActionResult = { events: string[]; subscription?: KnownSubscription } | { refused: string };

export type WorkflowState = {
  notification: NotificationPayload;
  /** The executor's clock at the last observation. */
  now: string;
  /** When Microsoft's acknowledgement window for this operation ends (first receipt + the window). */
  ackDeadline: string;
  /** Microsoft's operation is acknowledged (before this run, or in it). */
  acknowledged: boolean;
  /** The first Get operation's answer. */
  operation?: OperationAnswer;
  /** Get subscription's answer; `missing` when Microsoft does not know the subscription (404). */
  microsoft?: MicrosoftSubscription | 'missing';
  /** Whether the subscription was known here before this notification. */
  known?: boolean;
  /** This operation was applied to the subscription by an earlier run of this notification. */
  appliedBefore?: boolean;
  /** Microsoft's answer was fetched before we acknowledged: not used to reconcile. */
  microsoftStale?: boolean;
  /** Subscription events of each command sent (by purpose). */
  purchase?: string[];
  catchUp?: string[];
  action?: ActionResult;
  provisioned?: boolean;
  /** Microsoft's answer to our PATCH in this run: accepted (200); or why it did not take it. */
  ackAnswer?: { accepted: true } | { accepted: false; transient: boolean; reason: string };
  /** The operation read back after a refused or failed acknowledgement. */
  readBack?: OperationAnswer;
  /** Why our PATCH did not get through in an earlier run in this process (it then retried later), if it did not. */
  earlierAckFailure?: string;
  reconciled?: string[];
};

export type Observation =
  | { type: 'OperationFound'; operation: MicrosoftOperation; now: string }
  | { type: 'OperationNotFound'; now: string }
  | { type: 'SubscriptionLoaded'; known: boolean; appliedBefore?: boolean; now: string }
  | { type: 'SubscriptionFetched'; subscription: MicrosoftSubscription; now: string }
  /** Get subscription: 404. */
  | { type: 'SubscriptionNotFound'; now: string }
  | { type: 'CommandExecuted'; purpose: Purpose; events: string[]; subscription?: KnownSubscription; now: string }
  /** A DomainError's message; only for the steps that may be refused (`refusable`). */
  | { type: 'CommandRefused'; purpose: Purpose; reason: string; now: string }
  | { type: 'Provisioned'; now: string }
  /** Microsoft answered our PATCH 200 (or an acknowledgement was recovered): recorded. */
  | { type: 'Acknowledged'; now: string }
  /** Microsoft answered our PATCH that there is nothing to acknowledge (409/404): recorded with the answer. */
  | { type: 'AcknowledgementRefused'; reason: string; now: string }
  /** Our PATCH did not get through (Microsoft not answering): nothing recorded. */
  | { type: 'AcknowledgementFailed'; reason: string; now: string };

export type FinalOutcome = Exclude<NotificationOutcome, 'rejected'>;

export type Step =
  | { type: 'GetOperation' }
  | { type: 'LoadSubscription' }
  | { type: 'GetSubscription' }
  | { type: 'Execute'; purpose: Purpose; command: SubscriptionCommand; actor: string; refusable: boolean }
  | { type: 'Provision'; subscription: KnownSubscription; reason: 'plan-change' | 'quantity-change' }
  | { type: 'Acknowledge' }
  /** Record an acknowledgement Microsoft already took (no call): the note says why. */
  | { type: 'RecordAcknowledgement'; note: string }
  /** Not now: Microsoft is not answering, or has not settled the operation; try again later (until `until`). */
  | { type: 'RetryLater'; reason: string; until?: string }
  | { type: 'Finish'; outcome: FinalOutcome; detail: string; subscriptionEvents: string[]; operationStatus?: string };

export function initialWorkflow(
  notification: NotificationPayload,
  acknowledged: boolean,
  now: string,
  ackDeadline: string = now,
  earlierAckFailure?: string,
): WorkflowState {
  return { notification, acknowledged, now, ackDeadline, ...(earlierAckFailure !== undefined ? { earlierAckFailure } : {}) };
}

export function evolve(state: WorkflowState, o: Observation): WorkflowState {
  const s = { ...state, now: o.now };
  switch (o.type) {
    case 'OperationFound':
    case 'OperationNotFound': {
      const answer: OperationAnswer = o.type === 'OperationFound' ? { found: true, operation: o.operation } : { found: false };
      return s.operation === undefined ? { ...s, operation: answer } : { ...s, readBack: answer };
    }
    case 'SubscriptionLoaded':
      return { ...s, known: o.known, ...(o.appliedBefore ? { appliedBefore: true } : {}) };
    case 'SubscriptionFetched':
      return { ...s, microsoft: o.subscription };
    case 'SubscriptionNotFound':
      return { ...s, microsoft: 'missing' };
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
      return { ...s, acknowledged: true, ackAnswer: { accepted: true }, microsoftStale: s.microsoft !== undefined };
    case 'AcknowledgementRefused':
      return { ...s, acknowledged: true, ackAnswer: { accepted: false, transient: false, reason: o.reason }, microsoftStale: s.microsoft !== undefined };
    case 'AcknowledgementFailed':
      return { ...s, ackAnswer: { accepted: false, transient: true, reason: o.reason } };
    default: {
      const _exhaustive: never = o;
      return s;
    }
  }
}

function finish(outcome: FinalOutcome, detail: string, subscriptionEvents: string[], operationStatus?: string): Step {
  return { type: 'Finish', outcome, detail, subscriptionEvents, ...(operationStatus !== undefined ? { operationStatus } : {}) };
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

// ------------------------------------------------------------------------------------------------
// Verification

/** Microsoft confirmed the notification: how (its operation's status, or Get subscription), and whether it waits for us. */
type Confirmed = { ok: true; operationStatus?: string; pending: boolean };
/** Not confirmed: record this and stop. */
type NotConfirmed = { ok: false; outcome: 'failed' | 'unverified'; detail: string; operationStatus?: string };
type Verdict = Confirmed | NotConfirmed | { ok: false; next: Step };

function operationName(n: NotificationPayload): string {
  return `Microsoft's ${n.action} operation ${n.id} for subscription ${n.subscriptionId}`;
}

/** How an unverified notification ends: nothing lost, a later delivery of the same operation reopens it. */
const untilRedelivered = 'not applied; processed again if Microsoft delivers it again';

/** What an operation Microsoft found says about the notification. */
function verdictOfOperation(n: NotificationPayload, op: MicrosoftOperation): Confirmed | NotConfirmed {
  const status = op.status;
  const withStatus = status !== undefined ? { operationStatus: status } : {};
  if (op.subscriptionId && op.subscriptionId !== n.subscriptionId) {
    return { ok: false, outcome: 'unverified', detail: `Microsoft's operation ${n.id} belongs to subscription ${op.subscriptionId}, not ${n.subscriptionId}`, ...withStatus };
  }
  if (op.action && op.action !== n.action) {
    return { ok: false, outcome: 'unverified', detail: `Microsoft's operation ${n.id} is a ${op.action}, not a ${n.action}`, ...withStatus };
  }
  switch (status) {
    case 'Succeeded':
      return { ok: true, operationStatus: status, pending: false };
    case 'InProgress':
      if (waitsForUs(n.action)) return { ok: true, operationStatus: status, pending: true };
      return { ok: false, outcome: 'unverified', detail: `${operationName(n)} is still InProgress: ${untilRedelivered}`, operationStatus: status };
    case 'NotStarted':
      return { ok: false, outcome: 'unverified', detail: `${operationName(n)} has not started: ${untilRedelivered}`, operationStatus: status };
    case 'Failed':
    case 'Conflict': {
      const why = op.errorMessage ? ` (${op.errorMessage})` : '';
      return { ok: false, outcome: 'failed', detail: `${operationName(n)} is ${status}${why}: it did not happen, not applied`, operationStatus: status };
    }
    case undefined:
      return { ok: false, outcome: 'unverified', detail: `${operationName(n)} has no status: ${untilRedelivered}` };
    default:
      return { ok: false, outcome: 'unverified', detail: `${operationName(n)} has status ${status}, which we do not act on: ${untilRedelivered}`, operationStatus: status };
  }
}

/** Whether Microsoft's subscription shows what an action without an operation record claims; why not, if not. */
function claimShortfall(n: NotificationPayload, m: MicrosoftSubscription): string | undefined {
  const expected = n.action === 'Unsubscribe' ? 'Unsubscribed' : 'Subscribed';
  const status = m.status ?? 'without a status';
  if (m.status !== expected) return `subscription ${n.subscriptionId} is ${status} at Microsoft, not ${expected}`;
  if (n.action !== 'Renew') return undefined;
  const claimed = n.term?.startDate;
  const current = m.details.term.startDate;
  if (claimed === undefined || current === undefined) return undefined;
  const [claimedAt, currentAt] = [Date.parse(claimed), Date.parse(current)];
  if (Number.isNaN(claimedAt) || Number.isNaN(currentAt) || currentAt >= claimedAt) return undefined;
  return `subscription ${n.subscriptionId}'s term at Microsoft starts ${current}, before the renewed term's ${claimed}`;
}

function verdict(s: WorkflowState): Verdict {
  const n = s.notification;
  if (!s.operation) return { ok: false, next: { type: 'GetOperation' } };
  if (s.operation.found) return verdictOfOperation(n, s.operation.operation);
  if (!verifiableWithoutOperation.has(n.action)) {
    return { ok: false, outcome: 'unverified', detail: `Microsoft has no operation ${n.id} for subscription ${n.subscriptionId}: ${untilRedelivered}` };
  }
  // No operation record: Microsoft's subscription must show what the notification claims.
  if (!s.microsoft) return { ok: false, next: { type: 'GetSubscription' } };
  const none = `Microsoft has no operation ${n.id} for this ${n.action}`;
  if (s.microsoft === 'missing') return { ok: false, outcome: 'unverified', detail: `${none}, and does not know subscription ${n.subscriptionId}: ${untilRedelivered}` };
  const shortfall = claimShortfall(n, s.microsoft);
  if (shortfall !== undefined) return { ok: false, outcome: 'unverified', detail: `${none}, and ${shortfall}: ${untilRedelivered}` };
  return { ok: true, pending: false };
}

// ------------------------------------------------------------------------------------------------
// The acknowledgement

/** Microsoft's status of the operation as far as this run knows it. */
function knownStatus(s: WorkflowState, v: Confirmed): string | undefined {
  if (s.readBack?.found && s.readBack.operation.status !== undefined) return s.readBack.operation.status;
  if (s.ackAnswer?.accepted) return 'Succeeded';
  return v.operationStatus;
}

/**
 * The acknowledgement steps, once the change is applied (and provisioned): send it while Microsoft waits;
 * retry a failed one until the window ends; then read the operation back; record an acknowledgement an
 * earlier run left unrecorded. A Finish when Microsoft's read-back settles the notification; undefined to go on.
 */
function acknowledgement(s: WorkflowState, v: Confirmed, events: string[]): Step | undefined {
  const n = s.notification;
  const answer = s.ackAnswer;
  if (answer && !answer.accepted) {
    if (answer.transient && Date.parse(s.now) < Date.parse(s.ackDeadline) && !s.readBack) {
      return { type: 'RetryLater', reason: `acknowledging operation ${n.id}: ${answer.reason}`, until: s.ackDeadline };
    }
    if (!s.readBack) return { type: 'GetOperation' };
    return afterReadBack(s, answer.reason, events);
  }
  if (v.pending && !s.acknowledged) return { type: 'Acknowledge' };
  // Our earlier PATCH is known not to have got through: Microsoft's window accepted it, nothing of ours to recover.
  if (!v.pending && v.operationStatus === 'Succeeded' && !s.acknowledged && s.appliedBefore && s.earlierAckFailure === undefined) {
    return {
      type: 'RecordAcknowledgement',
      note:
        'recovered: an earlier run applied this change but stopped before recording its acknowledgement; ' +
        'Microsoft reports the operation Succeeded (our PATCH before the stop, or the end of its window, completed it)',
    };
  }
  return undefined;
}

/** What Microsoft did, read back after our acknowledgement was refused or could not be sent. */
function afterReadBack(s: WorkflowState, why: string, events: string[]): Step | undefined {
  const n = s.notification;
  const back = s.readBack;
  if (!back?.found) return finish(events.length ? 'applied' : 'no-change', `${n.action} applied here; our acknowledgement was not taken (${why}) and Microsoft no longer finds operation ${n.id}`, events);
  const status = back.operation.status;
  if (status === 'Succeeded') return undefined; // Microsoft completed it (its window ended): the notification goes on as applied
  if (status === 'Failed' || status === 'Conflict') {
    return finish(
      'failed',
      `${n.action} was applied here, but Microsoft ended operation ${n.id} ${status} after our acknowledgement was not taken (${why}): our record differs from Microsoft's until it is reconciled`,
      events,
      status,
    );
  }
  return { type: 'RetryLater', reason: `Microsoft has not settled operation ${n.id} (${status ?? 'no status'}) after our acknowledgement was not taken (${why})` };
}

// ------------------------------------------------------------------------------------------------
// The next step

/** The purchase of a subscription we never saw, from Get subscription. A step, or undefined once recorded. */
function purchaseStep(s: WorkflowState): Step | undefined {
  if (s.known || s.purchase !== undefined) return undefined;
  const n = s.notification;
  if (!s.microsoft) return { type: 'GetSubscription' };
  if (s.microsoft === 'missing') return finish('unverified', `Microsoft does not know subscription ${n.subscriptionId} (Get subscription: 404): ${untilRedelivered}`, []);
  return { type: 'Execute', purpose: 'purchase', command: recordPurchase(s, s.microsoft, 'PendingFulfillmentStart', n.action === 'Subscribe'), actor: 'microsoft', refusable: false };
}

/** Subscribe: the purchase is Subscribed at Microsoft (auto-activation); catch our record up if it is behind. */
function subscribeStep(s: WorkflowState, v: Confirmed, created: string[]): Step {
  if (!s.microsoft) return { type: 'GetSubscription' };
  if (s.microsoft === 'missing') return finish('unverified', `Microsoft does not know subscription ${s.notification.subscriptionId} (Get subscription: 404): ${untilRedelivered}`, created, v.operationStatus);
  if (s.catchUp === undefined) return { type: 'Execute', purpose: 'catch-up', command: recordPurchase(s, s.microsoft, 'Subscribed', true), actor: 'microsoft', refusable: false };
  const events = [...created, ...s.catchUp];
  return finish(events.length ? 'applied' : 'no-change', 'Subscribe', events, v.operationStatus);
}

/** After a status action: converge on Microsoft's status. A step, or the events it caused (none when skipped). */
function reconcileStep(s: WorkflowState): Step | string[] {
  if (s.reconciled !== undefined) return s.reconciled;
  if (!s.microsoft) return { type: 'GetSubscription' };
  if (s.microsoft === 'missing' || s.microsoftStale || !s.microsoft.status) return [];
  return {
    type: 'Execute',
    purpose: 'reconcile',
    command: { type: 'ReconcileStatus', now: s.now, source: 'reconciliation', microsoftStatus: s.microsoft.status },
    actor: 'system:notifications',
    refusable: true,
  };
}

export function nextStep(s: WorkflowState): Step {
  const n = s.notification;
  if (!handledActions.includes(n.action)) return finish('ignored', `unknown action ${n.action}: recorded, not acted on`, []);
  const v = verdict(s);
  if (!v.ok) return 'next' in v ? v.next : finish(v.outcome, v.detail, [], v.operationStatus);
  if (s.known === undefined) return { type: 'LoadSubscription' };
  const purchase = purchaseStep(s);
  if (purchase) return purchase;
  const created = s.purchase ?? [];
  if (n.action === 'Subscribe') return subscribeStep(s, v, created);
  const command = actionCommand(n, s.now);
  if (!command) return finish('ignored', `${n.action} without the data it needs (planId/quantity)`, created, v.operationStatus);
  if (!s.action) return { type: 'Execute', purpose: 'action', command, actor: 'microsoft', refusable: true };
  const refused = 'refused' in s.action ? s.action.refused : undefined;
  const applied = 'events' in s.action ? s.action.events : [];
  let reconciled: string[] = [];
  if (isAcknowledgeable(n.action)) {
    if ('events' in s.action) {
      if (!s.provisioned && s.action.subscription) {
        return { type: 'Provision', subscription: s.action.subscription, reason: n.action === 'ChangePlan' ? 'plan-change' : 'quantity-change' };
      }
      const ack = acknowledgement(s, v, [...created, ...applied]);
      if (ack) return ack;
    }
  } else if (statusActions.has(n.action)) {
    // Notify-only per the webhook docs, but the operations docs ask for an acknowledgement and an answered
    // Reinstate completes sooner; Success is harmless while it is pending (docs/marketplace.md §7.1). It is
    // sent even when the Reinstate arrived before the Suspend it undoes: Microsoft is reinstating.
    if (n.action === 'Reinstate') {
      const ack = acknowledgement(s, v, [...created, ...applied]);
      if (ack) return ack;
    }
    const step = reconcileStep(s);
    if (!Array.isArray(step)) return step;
    reconciled = step;
  }
  const events = [...created, ...applied, ...reconciled];
  const status = knownStatus(s, v);
  if (refused !== undefined && events.length === created.length) return finish('ignored', refused, events, status);
  if (refused !== undefined) return finish(events.length ? 'applied' : 'no-change', `${refused}; reconciled with Microsoft's status${ackNote(s)}`, events, status);
  if (events.length) return finish('applied', `${n.action} applied${ackNote(s)}`, events, status);
  // Nothing new: an earlier run of this notification applied it (it stopped before recording the outcome), or it was already so.
  if (s.appliedBefore) return finish('applied', `${n.action} applied by an earlier run of this notification${ackNote(s)}`, events, status);
  return finish('no-change', `${n.action} already applied or nothing to change${ackNote(s)}`, events, status);
}

/** What the detail adds when our acknowledgement was not the one that completed the operation. */
function ackNote(s: WorkflowState): string {
  const answer = s.ackAnswer;
  if (answer?.accepted) return '';
  if (answer) return `; our acknowledgement was not taken (${answer.reason}), Microsoft completed the operation`;
  if (s.earlierAckFailure !== undefined && !s.acknowledged) return `; our acknowledgement did not get through (${s.earlierAckFailure}), Microsoft completed the operation`;
  return '';
}

/** One turn of the workflow: what was observed, and what to do next. */
export function decide(observation: Observation, state: WorkflowState): { state: WorkflowState; step: Step } {
  const next = evolve(state, observation);
  return { state: next, step: nextStep(next) };
}
