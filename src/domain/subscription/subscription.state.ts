import type { Contact, OwnedFields, SubscriptionDetails, SubscriptionEvent, Term } from './subscription.events.js';

/** A publisher-side change we asked Microsoft for and that has not settled yet. */
export type PendingChange =
  | { kind: 'plan'; requestId: string; planId: string; operationId?: string; requestedAt: string }
  | { kind: 'quantity'; requestId: string; quantity: number; operationId?: string; requestedAt: string }
  | { kind: 'cancel'; requestId: string; operationId?: string; requestedAt: string };

export type Activation = {
  requestedAt?: string;
  /** The plan and seats the customer confirmed when requesting activation. */
  planId?: string;
  quantity?: number;
  /** Failed attempts in all, across activation requests. */
  failures: number;
  /** Failed attempts of the current activation request (a new request starts again from 0). */
  attempts: number;
  lastError?: string;
  /** When the next attempt is due, after a failure that was not final. */
  nextAttemptAt?: string;
  /** A final ActivationFailed: retries stopped, an operator has to look. */
  gaveUp: boolean;
};

type Known = SubscriptionDetails & {
  purchasedAt: string;
  /** Microsoft operation ids already applied; a repeat of one is a no-op. */
  appliedOperations: readonly string[];
  pendingChange?: PendingChange;
  /** Publisher-side request ids that have settled; a repeat of one is a no-op. */
  settledRequests: readonly string[];
  contact?: Contact;
  activation: Activation;
  autoActivated: boolean;
  activatedAt?: string;
  suspendedAt?: string;
  lastRenewedAt?: string;
  unsubscribedAt?: string;
  /** Microsoft's `timeStamp` of the last plan / quantity change applied (to recognise superseded ones). */
  planTimeStamp?: string;
  quantityTimeStamp?: string;
};

/** Mirrors Microsoft's `saasSubscriptionStatus`, plus `Initial` for a subscription we have never heard of. */
export type SubscriptionState =
  | { status: 'Initial' }
  | (Known & { status: 'PendingFulfillmentStart' })
  | (Known & { status: 'Subscribed' })
  | (Known & { status: 'Suspended' })
  | (Known & { status: 'Unsubscribed' });

export type KnownSubscription = Exclude<SubscriptionState, { status: 'Initial' }>;
export type SubscriptionStatus = SubscriptionState['status'];

export const initialState = (): SubscriptionState => ({ status: 'Initial' });

function applied(state: Known, operationId: string | undefined): readonly string[] {
  if (!operationId || state.appliedOperations.includes(operationId)) return state.appliedOperations;
  return [...state.appliedOperations, operationId];
}

/** The pending change settles when the event is about it: same request or same Microsoft operation. */
function settle(state: Known, requestId: string | undefined, operationId: string | undefined): PendingChange | undefined {
  const p = state.pendingChange;
  if (!p) return undefined;
  if (requestId !== undefined && p.requestId === requestId) return undefined;
  if (operationId !== undefined && p.operationId === operationId) return undefined;
  return p;
}

/** The state after the pending change (if this event settles it) is gone. */
function settled(state: Known, requestId: string | undefined, operationId: string | undefined): Pick<Known, 'pendingChange' | 'settledRequests'> {
  const pending = settle(state, requestId, operationId);
  if (pending === state.pendingChange) return { pendingChange: pending, settledRequests: state.settledRequests };
  const id = state.pendingChange?.requestId;
  return {
    pendingChange: pending,
    settledRequests: id && !state.settledRequests.includes(id) ? [...state.settledRequests, id] : state.settledRequests,
  };
}

/** After a failed attempt: counted, its reason kept, and when the next is due (unless it was final). */
function failedAttempt(activation: Activation, failed: { reason: string; final: boolean; retryAt?: string }): Activation {
  const retryAt = failed.final ? undefined : failed.retryAt;
  return {
    ...noNextAttempt(activation),
    failures: activation.failures + 1,
    attempts: activation.attempts + 1,
    lastError: failed.reason,
    ...(retryAt !== undefined ? { nextAttemptAt: retryAt } : {}),
    gaveUp: failed.final,
  };
}

/** The activation without a next attempt: none is due once it is activated, cancelled, requested afresh or failed again. */
function noNextAttempt(activation: Activation): Activation {
  const { nextAttemptAt: _next, ...rest } = activation;
  return rest;
}

function withTerm(term: Term, update: Term | undefined): Term {
  return update ? { ...term, ...update } : term;
}

/** The fields Microsoft owns that a DetailsRefreshed changes, as state fields. */
function ownedFields(c: OwnedFields): Partial<Known> {
  return {
    ...(c.term ? { term: c.term } : {}),
    ...(c.autoRenew !== undefined ? { autoRenew: c.autoRenew } : {}),
    ...(c.isFreeTrial !== undefined ? { isFreeTrial: c.isFreeTrial } : {}),
    ...(c.allowedCustomerOperations ? { allowedCustomerOperations: c.allowedCustomerOperations } : {}),
  };
}

export function evolve(state: SubscriptionState, event: SubscriptionEvent): SubscriptionState {
  if (event.type === 'Purchased') {
    if (state.status !== 'Initial') return state;
    const { at, source: _source, operationId, microsoftStatus: _ms, ...details } = event.data;
    return {
      ...details,
      status: 'PendingFulfillmentStart',
      purchasedAt: at,
      appliedOperations: operationId ? [operationId] : [],
      settledRequests: [],
      activation: { failures: 0, attempts: 0, gaveUp: false },
      autoActivated: false,
    };
  }
  if (state.status === 'Initial') return state; // nothing but a purchase can start a stream
  const d = event.data;
  const ops = applied(state, d.operationId);
  switch (event.type) {
    case 'ActivationRequested':
      return {
        ...state,
        contact: event.data.contact,
        activation: {
          ...noNextAttempt(state.activation),
          attempts: 0,
          requestedAt: d.at,
          planId: event.data.planId,
          ...(event.data.quantity !== undefined ? { quantity: event.data.quantity } : {}),
          gaveUp: false,
        },
      };
    case 'ActivationFailed':
      return { ...state, activation: failedAttempt(state.activation, event.data) };
    case 'Activated':
      return {
        ...state,
        activation: noNextAttempt(state.activation),
        status: 'Subscribed',
        planId: event.data.planId,
        quantity: event.data.quantity ?? state.quantity,
        term: withTerm(state.term, event.data.term),
        autoActivated: event.data.autoActivated,
        activatedAt: d.at,
        appliedOperations: ops,
      };
    case 'PlanChangeRequested':
      return {
        ...state,
        pendingChange: { kind: 'plan', requestId: event.data.requestId, planId: event.data.planId, requestedAt: d.at },
      };
    case 'QuantityChangeRequested':
      return {
        ...state,
        pendingChange: {
          kind: 'quantity',
          requestId: event.data.requestId,
          quantity: event.data.quantity,
          requestedAt: d.at,
        },
      };
    case 'CancellationRequested':
      return { ...state, pendingChange: { kind: 'cancel', requestId: event.data.requestId, requestedAt: d.at } };
    case 'ChangeSubmitted':
      if (state.pendingChange?.requestId !== event.data.requestId) return state;
      // Microsoft's notification for this operation may have been applied before its 202 was recorded.
      if (state.appliedOperations.includes(event.data.operationId)) return { ...state, ...settled(state, event.data.requestId, undefined) };
      return { ...state, pendingChange: { ...state.pendingChange, operationId: event.data.operationId } };
    case 'ChangeRequestFailed':
      return { ...state, ...settled(state, event.data.requestId, d.operationId), appliedOperations: ops };
    case 'PlanChanged':
      return {
        ...state,
        planId: event.data.planId,
        ...(event.data.timeStamp ? { planTimeStamp: event.data.timeStamp } : {}),
        ...settled(state, undefined, d.operationId),
        appliedOperations: ops,
      };
    case 'QuantityChanged':
      return {
        ...state,
        quantity: event.data.quantity,
        ...(event.data.timeStamp ? { quantityTimeStamp: event.data.timeStamp } : {}),
        ...settled(state, undefined, d.operationId),
        appliedOperations: ops,
      };
    case 'ChangeRejected':
      return { ...state, appliedOperations: ops };
    case 'Suspended':
      return { ...state, status: 'Suspended', suspendedAt: d.at, appliedOperations: ops };
    case 'Reinstated':
      return { ...state, status: 'Subscribed', suspendedAt: undefined, appliedOperations: ops };
    case 'Renewed':
      return { ...state, term: withTerm(state.term, event.data.term), lastRenewedAt: d.at, appliedOperations: ops };
    case 'Unsubscribed':
      return {
        ...state,
        status: 'Unsubscribed',
        activation: noNextAttempt(state.activation),
        unsubscribedAt: d.at,
        pendingChange: undefined,
        settledRequests: state.pendingChange
          ? [...state.settledRequests, state.pendingChange.requestId]
          : state.settledRequests,
        appliedOperations: ops,
      };
    case 'DetailsRefreshed':
      return { ...state, ...ownedFields(event.data.changes), appliedOperations: ops };
    default: {
      const _exhaustive: never = event;
      return state;
    }
  }
}
