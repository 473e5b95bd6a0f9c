import type { Decider, EventDecoder } from '../decider.js';
import { DomainError } from '../errors.js';
import type {
  ChangeSource,
  Contact,
  OperationRequestSource,
  SubscriptionDetails,
  SubscriptionEvent,
  Term,
} from './subscription.events.js';
import { decodeSubscriptionEvent } from './subscription.codec.js';
import { convergeEvents } from './converge.js';
import type { MicrosoftRecord } from './converge.js';
import { evolve, initialState } from './subscription.state.js';
import type { KnownSubscription, SubscriptionState } from './subscription.state.js';

/** Why and when, carried by every command. Time arrives here: the domain never reads a clock. */
export type CommandMeta = {
  now: string;
  source: ChangeSource;
};

/** Commands caused by a Microsoft operation carry its id: the idempotency key. */
type ByOperation = CommandMeta & { operationId: string };

export type SubscriptionCommand =
  /** We learned of a purchase (Resolve on the landing page, a `Subscribe` webhook, reconciliation). */
  | (CommandMeta & {
      type: 'RecordPurchase';
      subscription: SubscriptionDetails;
      /** `saasSubscriptionStatus` at Microsoft, trimmed. */
      microsoftStatus: string;
      operationId?: string;
    })
  | (CommandMeta & { type: 'RequestActivation'; contact: Contact; planId?: string; quantity?: number })
  /** `retryAt`: when the next attempt is due (ignored on a final failure). */
  | (CommandMeta & { type: 'RecordActivationFailure'; reason: string; final: boolean; retryAt?: string })
  | (CommandMeta & { type: 'ConfirmActivation'; planId?: string; quantity?: number; term?: Term })
  | (CommandMeta & { type: 'RequestPlanChange'; requestId: string; planId: string })
  | (CommandMeta & { type: 'RequestQuantityChange'; requestId: string; quantity: number })
  | (CommandMeta & { type: 'RequestUnsubscribe'; requestId: string; reason?: string })
  | (CommandMeta & { type: 'RecordChangeSubmitted'; requestId: string; operationId: string })
  | (CommandMeta & {
      type: 'RecordChangeRequestFailure';
      requestId: string;
      status: string;
      reason: string;
      operationId?: string;
    })
  | (ByOperation & { type: 'ApplyPlanChange'; planId: string; requestSource?: OperationRequestSource; timeStamp?: string })
  | (ByOperation & { type: 'ApplyQuantityChange'; quantity: number; requestSource?: OperationRequestSource; timeStamp?: string })
  | (ByOperation & {
      type: 'RefuseChange';
      action: 'ChangePlan' | 'ChangeQuantity';
      planId?: string;
      quantity?: number;
      reason: string;
    })
  | (ByOperation & { type: 'Suspend' })
  | (ByOperation & { type: 'Reinstate' })
  | (ByOperation & { type: 'Renew'; term?: Term })
  | (CommandMeta & { type: 'Unsubscribe'; operationId?: string; reason?: string })
  /** Converge on the status Microsoft reports now (Get subscription): notifications are hints, Microsoft is the truth. */
  | (CommandMeta & { type: 'ReconcileStatus'; microsoftStatus: string })
  /**
   * Converge on everything Microsoft owns, as Get/List subscriptions answered: status, plan, quantity, term,
   * auto-renew, free trial, allowed operations (converge.ts). Never carries an operation id: it is not an
   * operation, and it must run after the operation that caused it was applied.
   */
  | (CommandMeta & { type: 'ConvergeOnMicrosoft'; microsoft: MicrosoftRecord });

export type SubscriptionCommandType = SubscriptionCommand['type'];

function known(state: SubscriptionState, command: SubscriptionCommand): KnownSubscription {
  if (state.status === 'Initial') {
    throw new DomainError('subscription-not-found', `${command.type}: no purchase has been recorded for this subscription`, 404);
  }
  return state;
}

function refuse(state: KnownSubscription, command: SubscriptionCommand, allowed: string): never {
  throw new DomainError(
    'illegal-transition',
    `${command.type} is not allowed while the subscription is ${state.status} (only when ${allowed})`,
  );
}

function requireStatus<S extends KnownSubscription['status']>(
  state: KnownSubscription,
  command: SubscriptionCommand,
  ...statuses: S[]
): asserts state is Extract<KnownSubscription, { status: S }> {
  if (!(statuses as string[]).includes(state.status)) refuse(state, command, statuses.join(' or '));
}

function noPendingChange(state: KnownSubscription, command: SubscriptionCommand): void {
  const p = state.pendingChange;
  if (p) {
    throw new DomainError(
      'change-pending',
      `${command.type}: a publisher-side ${p.kind} change (request ${p.requestId}${
        p.operationId ? `, operation ${p.operationId}` : ''
      }) is still pending at Microsoft; wait until it settles`,
    );
  }
}

function allowsCustomerOperation(state: KnownSubscription, command: SubscriptionCommand, op: 'Update' | 'Delete'): void {
  if (!state.allowedCustomerOperations.includes(op)) {
    throw new DomainError(
      'operation-not-allowed',
      `${command.type}: Microsoft does not allow '${op}' on this subscription (allowedCustomerOperations: ${
        state.allowedCustomerOperations.join(', ') || 'none'
      }; CSP purchases are Read only)`,
      422,
    );
  }
}

/** A change older (by Microsoft's clock) than the last one of its kind already applied. */
function superseded(command: SubscriptionCommand, timeStamp: string | undefined, lastTimeStamp: string | undefined): void {
  if (timeStamp && lastTimeStamp && Date.parse(timeStamp) < Date.parse(lastTimeStamp)) {
    throw new DomainError('superseded', `${command.type}: Microsoft's operation of ${timeStamp} is older than the change already applied (${lastTimeStamp})`);
  }
}

function quantityValid(quantity: number, command: SubscriptionCommand): void {
  if (!Number.isInteger(quantity) || quantity < 1) {
    throw new DomainError('invalid-quantity', `${command.type}: quantity must be a whole number ≥ 1, got ${quantity}`, 400);
  }
}

/** Events that rebuild the lifecycle position Microsoft reports for a subscription we learn of late. */
function purchaseEvents(
  command: Extract<SubscriptionCommand, { type: 'RecordPurchase' }>,
): SubscriptionEvent[] {
  const s = command.subscription;
  // Recorded by the reconciler from Microsoft's list: the events say what Microsoft reported, like every converging event.
  const reported =
    command.source === 'reconciliation'
      ? { status: command.microsoftStatus, planId: s.planId, ...(s.quantity !== undefined ? { quantity: s.quantity } : {}), term: s.term, autoRenew: s.autoRenew }
      : undefined;
  const because = { at: command.now, source: command.source, ...(reported ? { reported } : {}) };
  const events: SubscriptionEvent[] = [
    {
      type: 'Purchased',
      data: {
        ...because,
        ...(command.operationId ? { operationId: command.operationId } : {}),
        ...s,
        microsoftStatus: command.microsoftStatus,
      },
    },
  ];
  const alreadyActive = ['Subscribed', 'Suspended'].includes(command.microsoftStatus);
  if (alreadyActive) {
    events.push({
      type: 'Activated',
      data: { ...because, planId: s.planId, quantity: s.quantity, autoActivated: true, term: s.term },
    });
  }
  if (command.microsoftStatus === 'Suspended') events.push({ type: 'Suspended', data: because });
  if (command.microsoftStatus === 'Unsubscribed') {
    events.push({ type: 'Unsubscribed', data: { ...because, reason: 'already unsubscribed at Microsoft when first recorded' } });
  }
  return events;
}

type Command<T extends SubscriptionCommandType> = Extract<SubscriptionCommand, { type: T }>;

/** The `at` and `source` every event of one decision carries. */
type Because = { at: string; source: ChangeSource };

// ── Purchase and activation ─────────────────────────────────────────────────────────────────────

function recordPurchase(command: Command<'RecordPurchase'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  if (state.status !== 'Initial') {
    // A second Resolve (Microsoft's "Manage account") or a repeated Subscribe: already recorded.
    if (command.subscription.subscriptionId !== state.subscriptionId) {
      throw new DomainError('subscription-mismatch', 'RecordPurchase: subscription id does not match this stream', 400);
    }
    // A purchase we recorded as pending that Microsoft now reports further on: catch up.
    if (state.status === 'PendingFulfillmentStart' && ['Subscribed', 'Suspended'].includes(command.microsoftStatus)) {
      const events: SubscriptionEvent[] = [
        {
          type: 'Activated',
          data: {
            ...because,
            ...(command.operationId ? { operationId: command.operationId } : {}),
            planId: command.subscription.planId,
            quantity: command.subscription.quantity,
            // Activated by our own request that we had not confirmed yet, or by Microsoft at purchase.
            autoActivated: !state.activation.requestedAt,
            term: command.subscription.term,
          },
        },
      ];
      if (command.microsoftStatus === 'Suspended') events.push({ type: 'Suspended', data: because });
      return events;
    }
    return [];
  }
  if (!command.subscription.subscriptionId) {
    throw new DomainError('invalid-purchase', 'RecordPurchase: subscriptionId is required', 400);
  }
  return purchaseEvents(command);
}

function requestActivation(command: Command<'RequestActivation'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  const s = known(state, command);
  if (s.status === 'Subscribed' || s.status === 'Suspended') {
    throw new DomainError('already-active', `RequestActivation: the subscription is already ${s.status}; it is never activated twice`);
  }
  requireStatus(s, command, 'PendingFulfillmentStart');
  if (!command.contact.email) throw new DomainError('contact-required', 'RequestActivation: a contact email is required', 400);
  if (s.activation.requestedAt && !s.activation.gaveUp) return []; // already under way
  if (command.quantity !== undefined) quantityValid(command.quantity, command);
  return [
    {
      type: 'ActivationRequested',
      data: { ...because, planId: command.planId ?? s.planId, quantity: command.quantity ?? s.quantity, contact: command.contact },
    },
  ];
}

function recordActivationFailure(
  command: Command<'RecordActivationFailure'>,
  state: SubscriptionState,
  because: Because,
): SubscriptionEvent[] {
  const s = known(state, command);
  requireStatus(s, command, 'PendingFulfillmentStart');
  if (!s.activation.requestedAt) refuse(s, command, 'an activation has been requested');
  return [
    {
      type: 'ActivationFailed',
      data: {
        ...because,
        reason: command.reason,
        attempt: s.activation.attempts + 1,
        final: command.final,
        ...(!command.final && command.retryAt !== undefined ? { retryAt: command.retryAt } : {}),
      },
    },
  ];
}

function confirmActivation(command: Command<'ConfirmActivation'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  const s = known(state, command);
  // Confirmed before a crash (and perhaps suspended since): nothing more to record.
  if (s.status === 'Subscribed' || s.status === 'Suspended') return [];
  requireStatus(s, command, 'PendingFulfillmentStart');
  return [
    {
      type: 'Activated',
      data: {
        ...because,
        planId: command.planId ?? s.activation.planId ?? s.planId,
        quantity: command.quantity ?? s.activation.quantity ?? s.quantity,
        autoActivated: false,
        term: command.term,
      },
    },
  ];
}

// ── Publisher-side requests (ours, sent to Microsoft) ───────────────────────────────────────────

/** The request is pending already, or has settled: repeating it records nothing. */
function seenRequest(s: KnownSubscription, requestId: string): boolean {
  return s.pendingChange?.requestId === requestId || s.settledRequests.includes(requestId);
}

function requestPlanChange(command: Command<'RequestPlanChange'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  const s = known(state, command);
  if (seenRequest(s, command.requestId)) return [];
  requireStatus(s, command, 'Subscribed');
  allowsCustomerOperation(s, command, 'Update');
  noPendingChange(s, command);
  if (!command.planId) throw new DomainError('invalid-plan', 'RequestPlanChange: planId is required', 400);
  if (command.planId === s.planId) {
    throw new DomainError('same-plan', `RequestPlanChange: the subscription is already on plan ${s.planId}`, 400);
  }
  return [
    { type: 'PlanChangeRequested', data: { ...because, requestId: command.requestId, planId: command.planId, previousPlanId: s.planId } },
  ];
}

function requestQuantityChange(
  command: Command<'RequestQuantityChange'>,
  state: SubscriptionState,
  because: Because,
): SubscriptionEvent[] {
  const s = known(state, command);
  if (seenRequest(s, command.requestId)) return [];
  requireStatus(s, command, 'Subscribed');
  allowsCustomerOperation(s, command, 'Update');
  noPendingChange(s, command);
  quantityValid(command.quantity, command);
  if (command.quantity === s.quantity) {
    throw new DomainError('same-quantity', `RequestQuantityChange: the subscription already has ${s.quantity} seats`, 400);
  }
  return [
    {
      type: 'QuantityChangeRequested',
      data: { ...because, requestId: command.requestId, quantity: command.quantity, previousQuantity: s.quantity },
    },
  ];
}

function requestUnsubscribe(command: Command<'RequestUnsubscribe'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  const s = known(state, command);
  if (seenRequest(s, command.requestId)) return [];
  requireStatus(s, command, 'PendingFulfillmentStart', 'Subscribed', 'Suspended');
  allowsCustomerOperation(s, command, 'Delete');
  noPendingChange(s, command);
  return [{ type: 'CancellationRequested', data: { ...because, requestId: command.requestId, reason: command.reason } }];
}

function recordChangeSubmitted(
  command: Command<'RecordChangeSubmitted'>,
  state: SubscriptionState,
  because: Because,
): SubscriptionEvent[] {
  const s = known(state, command);
  const p = s.pendingChange;
  if (!p || p.requestId !== command.requestId) {
    throw new DomainError('no-such-request', `RecordChangeSubmitted: request ${command.requestId} is not pending`);
  }
  if (p.operationId === command.operationId) return [];
  if (p.operationId) {
    throw new DomainError('already-submitted', `RecordChangeSubmitted: request ${command.requestId} already has operation ${p.operationId}`);
  }
  return [{ type: 'ChangeSubmitted', data: { ...because, requestId: command.requestId, operationId: command.operationId } }];
}

function recordChangeRequestFailure(
  command: Command<'RecordChangeRequestFailure'>,
  state: SubscriptionState,
  because: Because,
): SubscriptionEvent[] {
  const s = known(state, command);
  if (s.pendingChange?.requestId !== command.requestId) return []; // settled already (by success or a previous failure)
  return [
    {
      type: 'ChangeRequestFailed',
      data: {
        ...because,
        ...(command.operationId ? { operationId: command.operationId } : {}),
        requestId: command.requestId,
        status: command.status,
        reason: command.reason,
      },
    },
  ];
}

// ── Changes Microsoft reports (webhook notifications) ───────────────────────────────────────────

function applyPlanChange(command: Command<'ApplyPlanChange'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  const s = known(state, command);
  requireStatus(s, command, 'Subscribed');
  if (!command.planId) throw new DomainError('invalid-plan', 'ApplyPlanChange: the notification names no planId', 400);
  superseded(command, command.timeStamp, s.planTimeStamp);
  if (command.planId === s.planId) return []; // a "revert" notification: already on that plan
  return [
    {
      type: 'PlanChanged',
      data: {
        ...because,
        operationId: command.operationId,
        planId: command.planId,
        previousPlanId: s.planId,
        requestSource: command.requestSource,
        ...(command.timeStamp ? { timeStamp: command.timeStamp } : {}),
      },
    },
  ];
}

function applyQuantityChange(command: Command<'ApplyQuantityChange'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  const s = known(state, command);
  requireStatus(s, command, 'Subscribed');
  quantityValid(command.quantity, command);
  superseded(command, command.timeStamp, s.quantityTimeStamp);
  if (command.quantity === s.quantity) return []; // a "revert" notification
  return [
    {
      type: 'QuantityChanged',
      data: {
        ...because,
        operationId: command.operationId,
        quantity: command.quantity,
        previousQuantity: s.quantity,
        requestSource: command.requestSource,
        ...(command.timeStamp ? { timeStamp: command.timeStamp } : {}),
      },
    },
  ];
}

function refuseChange(command: Command<'RefuseChange'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  const s = known(state, command);
  requireStatus(s, command, 'Subscribed');
  return [
    {
      type: 'ChangeRejected',
      data: {
        ...because,
        operationId: command.operationId,
        action: command.action,
        planId: command.planId,
        quantity: command.quantity,
        reason: command.reason,
      },
    },
  ];
}

// ── Status ──────────────────────────────────────────────────────────────────────────────────────

function suspend(command: Command<'Suspend'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  const s = known(state, command);
  requireStatus(s, command, 'Subscribed');
  return [{ type: 'Suspended', data: { ...because, operationId: command.operationId } }];
}

function reinstate(command: Command<'Reinstate'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  const s = known(state, command);
  requireStatus(s, command, 'Suspended');
  return [{ type: 'Reinstated', data: { ...because, operationId: command.operationId } }];
}

function renew(command: Command<'Renew'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  const s = known(state, command);
  // A renewal reported after a suspension (notifications are not ordered) still moves the term.
  requireStatus(s, command, 'Subscribed', 'Suspended');
  return [{ type: 'Renewed', data: { ...because, operationId: command.operationId, term: command.term } }];
}

function unsubscribe(command: Command<'Unsubscribe'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  const s = known(state, command);
  if (s.status === 'Unsubscribed') return []; // terminal, and already where the command wants it
  requireStatus(s, command, 'PendingFulfillmentStart', 'Subscribed', 'Suspended');
  return [
    {
      type: 'Unsubscribed',
      data: { ...because, ...(command.operationId ? { operationId: command.operationId } : {}), reason: command.reason },
    },
  ];
}

function reconcileStatus(command: Command<'ReconcileStatus'>, state: SubscriptionState, because: Because): SubscriptionEvent[] {
  const s = known(state, command);
  const target = command.microsoftStatus;
  if (target === s.status || !['PendingFulfillmentStart', 'Subscribed', 'Suspended', 'Unsubscribed'].includes(target)) return [];
  if (s.status === 'Unsubscribed' || target === 'PendingFulfillmentStart') {
    throw new DomainError(
      'cannot-reconcile',
      `ReconcileStatus: Microsoft reports ${target} but the subscription is ${s.status} here, and there is no way back`,
    );
  }
  if (target === 'Unsubscribed') {
    return [{ type: 'Unsubscribed', data: { ...because, reason: `Microsoft reports Unsubscribed (was ${s.status} here)` } }];
  }
  if (s.status === 'PendingFulfillmentStart') {
    const events: SubscriptionEvent[] = [
      { type: 'Activated', data: { ...because, planId: s.planId, quantity: s.quantity, autoActivated: !s.activation.requestedAt } },
    ];
    if (target === 'Suspended') events.push({ type: 'Suspended', data: because });
    return events;
  }
  return [{ type: target === 'Suspended' ? 'Suspended' : 'Reinstated', data: because }];
}

/** A Microsoft operation already applied to this subscription is a no-op, whatever it asks. */
function alreadyApplied(command: SubscriptionCommand, state: SubscriptionState): boolean {
  return (
    state.status !== 'Initial' &&
    'operationId' in command &&
    command.operationId !== undefined &&
    command.type !== 'RecordChangeSubmitted' &&
    state.appliedOperations.includes(command.operationId)
  );
}

export function decide(command: SubscriptionCommand, state: SubscriptionState): SubscriptionEvent[] {
  if (alreadyApplied(command, state)) return [];
  const because: Because = { at: command.now, source: command.source };

  switch (command.type) {
    case 'RecordPurchase':
      return recordPurchase(command, state, because);
    case 'RequestActivation':
      return requestActivation(command, state, because);
    case 'RecordActivationFailure':
      return recordActivationFailure(command, state, because);
    case 'ConfirmActivation':
      return confirmActivation(command, state, because);
    case 'RequestPlanChange':
      return requestPlanChange(command, state, because);
    case 'RequestQuantityChange':
      return requestQuantityChange(command, state, because);
    case 'RequestUnsubscribe':
      return requestUnsubscribe(command, state, because);
    case 'RecordChangeSubmitted':
      return recordChangeSubmitted(command, state, because);
    case 'RecordChangeRequestFailure':
      return recordChangeRequestFailure(command, state, because);
    case 'ApplyPlanChange':
      return applyPlanChange(command, state, because);
    case 'ApplyQuantityChange':
      return applyQuantityChange(command, state, because);
    case 'RefuseChange':
      return refuseChange(command, state, because);
    case 'Suspend':
      return suspend(command, state, because);
    case 'Reinstate':
      return reinstate(command, state, because);
    case 'Renew':
      return renew(command, state, because);
    case 'Unsubscribe':
      return unsubscribe(command, state, because);
    case 'ReconcileStatus':
      return reconcileStatus(command, state, because);
    case 'ConvergeOnMicrosoft':
      return convergeEvents(known(state, command), command.microsoft, command);
    default: {
      const _exhaustive: never = command;
      throw new DomainError('unknown-command', `unknown command ${(command as { type: string }).type}`, 400);
    }
  }
}

export const subscriptionDecider: Decider<SubscriptionCommand, SubscriptionState, SubscriptionEvent> & EventDecoder<SubscriptionEvent> = {
  decide,
  evolve,
  initialState,
  decode: decodeSubscriptionEvent,
};
