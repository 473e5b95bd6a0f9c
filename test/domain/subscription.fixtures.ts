/**
 * One subscription's facts and the histories that put it in each status, shared by the decider tests.
 * Builders return fresh objects: the given-when-then helper deep-freezes what it is given.
 */
import { subscriptionDecider } from '../../src/domain/subscription/index.js';
import type {
  ChangeSource,
  Contact,
  KnownSubscription,
  SubscriptionDetails,
  SubscriptionEvent,
  SubscriptionState,
  SubscriptionStatus,
  Term,
} from '../../src/domain/subscription/index.js';
import { deciderSpec } from '../support/given-when-then.js';

export const spec = deciderSpec(subscriptionDecider);

export const SUBSCRIPTION_ID = '3c1f6a2e-9b7d-4e51-8a0c-2d4f6b8e1a37';

/** When things happened in the canonical histories, and `NOW`, when the command under test arrives. */
export const T = {
  created: '2026-03-01T08:59:12.000Z',
  purchased: '2026-03-01T09:00:00.000Z',
  activationRequested: '2026-03-01T09:05:00.000Z',
  activated: '2026-03-01T09:05:02.000Z',
  suspended: '2026-04-02T00:10:00.000Z',
  changeRequested: '2026-04-10T10:00:00.000Z',
  changeSubmitted: '2026-04-10T10:00:01.000Z',
  unsubscribed: '2026-04-20T16:00:00.000Z',
} as const;
export const NOW = '2026-05-01T12:00:00.000Z';

/** Every status, in lifecycle order. Typed so that a new status is a compile error until it is listed here. */
const statusSet: Record<SubscriptionStatus, true> = {
  Initial: true,
  PendingFulfillmentStart: true,
  Subscribed: true,
  Suspended: true,
  Unsubscribed: true,
};
export const STATUSES = Object.keys(statusSet) as SubscriptionStatus[];

export const CONTACT: Contact = { email: 'it-admin@contoso.example', name: 'Dana Admin', company: 'Contoso Ltd' };

export const FIRST_TERM: Term = { termUnit: 'P1M', startDate: '2026-03-01T00:00:00Z', endDate: '2026-03-31T00:00:00Z' };
export const SECOND_TERM: Term = { termUnit: 'P1M', startDate: '2026-04-01T00:00:00Z', endDate: '2026-04-30T00:00:00Z' };

/** Microsoft's view at purchase: plan `silver`, 5 seats, a direct (non-CSP) purchase. */
export function details(overrides: Partial<SubscriptionDetails> = {}): SubscriptionDetails {
  return {
    subscriptionId: SUBSCRIPTION_ID,
    name: 'Contoso ledger',
    publisherId: 'fabrikam',
    offerId: 'fulfillment-ledger',
    planId: 'silver',
    quantity: 5,
    purchaser: {
      emailId: 'buyer@contoso.example',
      objectId: '0d2f4a6c-1111-4b2e-9c3d-5e6f7a8b9c0d',
      tenantId: 'a1b2c3d4-2222-4e5f-8a9b-0c1d2e3f4a5b',
      puid: '10037FFE8D5E1D37',
    },
    beneficiary: {
      emailId: 'user@contoso.example',
      objectId: '7e8f9a0b-3333-4c1d-8e2f-3a4b5c6d7e8f',
      tenantId: 'a1b2c3d4-2222-4e5f-8a9b-0c1d2e3f4a5b',
      puid: null,
    },
    term: { termUnit: 'P1M' },
    autoRenew: true,
    isFreeTrial: false,
    isTest: false,
    sandboxType: 'None',
    sessionMode: 'None',
    allowedCustomerOperations: ['Read', 'Update', 'Delete'],
    created: T.created,
    ...overrides,
  };
}

/** The state of a subscription we know of (for assertions on its fields). */
export function known(state: SubscriptionState): KnownSubscription {
  if (state.status === 'Initial') throw new Error('expected a subscription with a recorded purchase, got Initial');
  return state;
}

/** `{ at, source }`: the why and when every event carries. */
export const because = (at: string, source: ChangeSource) => ({ at, source });

// ---- Events of the canonical histories -------------------------------------------------------

export function purchased(
  options: { microsoftStatus?: string; operationId?: string; subscription?: Partial<SubscriptionDetails>; source?: ChangeSource } = {},
): SubscriptionEvent {
  return {
    type: 'Purchased',
    data: {
      ...because(T.purchased, options.source ?? 'landing'),
      ...(options.operationId ? { operationId: options.operationId } : {}),
      ...details(options.subscription),
      microsoftStatus: options.microsoftStatus ?? 'PendingFulfillmentStart',
    },
  };
}

export function activationRequested(at: string = T.activationRequested): SubscriptionEvent {
  return { type: 'ActivationRequested', data: { ...because(at, 'landing'), planId: 'silver', quantity: 5, contact: CONTACT } };
}

export function activated(): SubscriptionEvent {
  return {
    type: 'Activated',
    data: { ...because(T.activated, 'process'), planId: 'silver', quantity: 5, autoActivated: false, term: FIRST_TERM },
  };
}

export function suspended(operationId = 'op-suspend-0'): SubscriptionEvent {
  return { type: 'Suspended', data: { ...because(T.suspended, 'webhook'), operationId } };
}

export function unsubscribed(operationId = 'op-unsubscribe-0'): SubscriptionEvent {
  return { type: 'Unsubscribed', data: { ...because(T.unsubscribed, 'webhook'), operationId } };
}

/** A publisher-side cancellation we asked for (the only change that may be pending in every known status). */
export function cancellationRequested(requestId = 'req-cancel', at: string = T.changeRequested): SubscriptionEvent {
  return { type: 'CancellationRequested', data: { ...because(at, 'operator'), requestId, reason: 'customer asked by phone' } };
}

export function changeSubmitted(requestId: string, operationId: string, at: string = T.changeSubmitted): SubscriptionEvent {
  return { type: 'ChangeSubmitted', data: { ...because(at, 'process'), requestId, operationId } };
}

/** The shortest realistic history that leaves the subscription in each status. */
export function history(status: SubscriptionStatus): SubscriptionEvent[] {
  switch (status) {
    case 'Initial':
      return [];
    case 'PendingFulfillmentStart':
      return [purchased()];
    case 'Subscribed':
      return [purchased(), activationRequested(), activated()];
    case 'Suspended':
      return [...history('Subscribed'), suspended()];
    case 'Unsubscribed':
      return [...history('Subscribed'), unsubscribed()];
  }
}

/** The canonical history with a publisher-side cancellation `req-cancel` pending, where one can be. */
export function historyWithPendingCancellation(status: SubscriptionStatus): SubscriptionEvent[] {
  switch (status) {
    case 'Initial':
      return [];
    case 'PendingFulfillmentStart':
      return [purchased(), cancellationRequested()];
    case 'Subscribed':
      return [...history('Subscribed'), cancellationRequested()];
    case 'Suspended':
      return [...history('Suspended'), cancellationRequested()];
    case 'Unsubscribed':
      // The cancellation went through: Microsoft's Unsubscribe for our operation settled it.
      return [
        ...history('Subscribed'),
        cancellationRequested(),
        changeSubmitted('req-cancel', 'op-unsubscribe-0'),
        unsubscribed('op-unsubscribe-0'),
      ];
  }
}
