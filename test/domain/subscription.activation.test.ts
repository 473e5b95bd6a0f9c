/**
 * Purchase and activation: recording a purchase in whatever state Microsoft reports it (auto-activation),
 * a pending subscription that turns out to be active, and the activation request / failure / confirmation cycle.
 */
import t from 'tap';
import { fold } from '../../src/domain/decider.js';
import { subscriptionDecider } from '../../src/domain/subscription/index.js';
import type { SubscriptionCommand, SubscriptionEvent } from '../../src/domain/subscription/index.js';
import {
  CONTACT,
  FIRST_TERM,
  NOW,
  T,
  activated,
  activationRequested,
  because,
  details,
  history,
  known,
  purchased,
  spec,
} from './subscription.fixtures.js';

const recordPurchase = (
  microsoftStatus: string,
  options: { operationId?: string; source?: 'landing' | 'webhook' | 'reconciliation'; subscription?: Parameters<typeof details>[0] } = {},
): SubscriptionCommand => ({
  type: 'RecordPurchase',
  now: NOW,
  source: options.source ?? 'landing',
  subscription: details(options.subscription),
  microsoftStatus,
  ...(options.operationId ? { operationId: options.operationId } : {}),
});

const activationFailed = (attempt: number, final: boolean, at: string = T.activated): SubscriptionEvent => ({
  type: 'ActivationFailed',
  data: { ...because(at, 'process'), reason: `Activate answered 503 (attempt ${attempt})`, attempt, final },
});

t.test('RecordPurchase of a new subscription', async (t) => {
  t.test('PendingFulfillmentStart (Resolve on the landing page) → Purchased', async (t) => {
    const state = spec(t)
      .given([])
      .when(recordPurchase('PendingFulfillmentStart'))
      .then([{ type: 'Purchased', data: { ...because(NOW, 'landing'), ...details(), microsoftStatus: 'PendingFulfillmentStart' } }]);
    t.match(state, {
      status: 'PendingFulfillmentStart',
      subscriptionId: details().subscriptionId,
      planId: 'silver',
      quantity: 5,
      purchasedAt: NOW,
      appliedOperations: [],
      autoActivated: false,
      activation: { failures: 0, gaveUp: false },
    });
  });

  t.test('Subscribed (auto-activation, a Subscribe webhook) → Purchased + Activated(autoActivated)', async (t) => {
    const state = spec(t)
      .given([])
      .when(recordPurchase('Subscribed', { operationId: 'op-subscribe-1', source: 'webhook', subscription: { term: FIRST_TERM } }))
      .then([
        {
          type: 'Purchased',
          data: {
            ...because(NOW, 'webhook'),
            operationId: 'op-subscribe-1',
            ...details({ term: FIRST_TERM }),
            microsoftStatus: 'Subscribed',
          },
        },
        {
          type: 'Activated',
          data: { ...because(NOW, 'webhook'), planId: 'silver', quantity: 5, autoActivated: true, term: FIRST_TERM },
        },
      ]);
    t.match(state, { status: 'Subscribed', autoActivated: true, activatedAt: NOW, term: FIRST_TERM });
    t.strictSame(known(state).appliedOperations, ['op-subscribe-1'], 'the Subscribe operation is applied');
    t.equal(known(state).activation.requestedAt, undefined, 'we never asked for an activation');
  });

  t.test('Suspended (learned of late, by reconciliation) → Purchased + Activated + Suspended, each with what Microsoft reported', async (t) => {
    const reported = { status: 'Suspended', planId: 'silver', quantity: 5, term: FIRST_TERM, autoRenew: true };
    const state = spec(t)
      .given([])
      .when(recordPurchase('Suspended', { source: 'reconciliation', subscription: { term: FIRST_TERM } }))
      .then([
        { type: 'Purchased', data: { ...because(NOW, 'reconciliation'), reported, ...details({ term: FIRST_TERM }), microsoftStatus: 'Suspended' } },
        {
          type: 'Activated',
          data: { ...because(NOW, 'reconciliation'), reported, planId: 'silver', quantity: 5, autoActivated: true, term: FIRST_TERM },
        },
        { type: 'Suspended', data: { ...because(NOW, 'reconciliation'), reported } },
      ]);
    t.match(state, { status: 'Suspended', suspendedAt: NOW, activatedAt: NOW, autoActivated: true });
  });

  t.test('Unsubscribed → Purchased + Unsubscribed, and it can never be activated', async (t) => {
    const reported = { status: 'Unsubscribed', planId: 'silver', quantity: 5, term: details().term, autoRenew: true };
    const events: SubscriptionEvent[] = [
      { type: 'Purchased', data: { ...because(NOW, 'reconciliation'), reported, ...details(), microsoftStatus: 'Unsubscribed' } },
      {
        type: 'Unsubscribed',
        data: { ...because(NOW, 'reconciliation'), reported, reason: 'already unsubscribed at Microsoft when first recorded' },
      },
    ];
    const state = spec(t).given([]).when(recordPurchase('Unsubscribed', { source: 'reconciliation' })).then(events);
    t.match(state, { status: 'Unsubscribed', unsubscribedAt: NOW });
    t.equal(known(state).activatedAt, undefined, 'never activated');
    spec(t)
      .given(events)
      .when({ type: 'RequestActivation', now: NOW, source: 'landing', contact: CONTACT })
      .thenError('illegal-transition', { messageIncludes: ['RequestActivation', 'Unsubscribed'] });
  });

  t.test("a status we do not know (the spec's NotStarted) is recorded as a pending purchase", async (t) => {
    const state = spec(t)
      .given([])
      .when(recordPurchase('NotStarted'))
      .then([{ type: 'Purchased', data: { ...because(NOW, 'landing'), ...details(), microsoftStatus: 'NotStarted' } }]);
    t.equal(state.status, 'PendingFulfillmentStart');
  });

  t.test('a plan that is not per seat has no quantity', async (t) => {
    const { quantity: _quantity, ...perPlan } = details();
    const state = spec(t)
      .given([])
      .when({ type: 'RecordPurchase', now: NOW, source: 'webhook', subscription: perPlan, microsoftStatus: 'Subscribed' })
      .then([
        { type: 'Purchased', data: { ...because(NOW, 'webhook'), ...perPlan, microsoftStatus: 'Subscribed' } },
        { type: 'Activated', data: { ...because(NOW, 'webhook'), planId: 'silver', autoActivated: true, term: perPlan.term } },
      ]);
    t.equal(known(state).quantity, undefined, 'no quantity');
  });

  t.test('a purchase without a subscription id is refused', async (t) => {
    spec(t)
      .given([])
      .when(recordPurchase('PendingFulfillmentStart', { subscription: { subscriptionId: '' } }))
      .thenError('invalid-purchase', { status: 400, messageIncludes: ['RecordPurchase', 'subscriptionId'] });
  });
});

t.test('RecordPurchase of a subscription already recorded', async (t) => {
  t.test('a pending subscription Microsoft now reports Subscribed (auto-activated) → Activated(autoActivated)', async (t) => {
    const state = spec(t)
      .given([purchased()])
      .when(recordPurchase('Subscribed', { subscription: { term: FIRST_TERM } }))
      .then([
        { type: 'Activated', data: { ...because(NOW, 'landing'), planId: 'silver', quantity: 5, autoActivated: true, term: FIRST_TERM } },
      ]);
    t.match(state, { status: 'Subscribed', autoActivated: true, activatedAt: NOW, term: FIRST_TERM, purchasedAt: T.purchased });
  });

  t.test('… activated by our own unconfirmed request → Activated(autoActivated false)', async (t) => {
    spec(t)
      .given([purchased(), activationRequested()])
      .when(recordPurchase('Subscribed', { source: 'reconciliation', subscription: { term: FIRST_TERM } }))
      .then([
        {
          type: 'Activated',
          data: { ...because(NOW, 'reconciliation'), planId: 'silver', quantity: 5, autoActivated: false, term: FIRST_TERM },
        },
      ]);
  });

  t.test('… learned from a Subscribe webhook: the operation is applied, its repeat is a no-op', async (t) => {
    const command = recordPurchase('Subscribed', { operationId: 'op-subscribe-1', source: 'webhook', subscription: { planId: 'gold' } });
    const state = spec(t)
      .given([purchased()])
      .when(command)
      .then([
        {
          type: 'Activated',
          data: {
            ...because(NOW, 'webhook'),
            operationId: 'op-subscribe-1',
            planId: 'gold',
            quantity: 5,
            autoActivated: true,
            term: { termUnit: 'P1M' },
          },
        },
      ]);
    t.match(state, { status: 'Subscribed', planId: 'gold', appliedOperations: ['op-subscribe-1'] });
    spec(t)
      .given([purchased(), { type: 'Activated', data: { ...because(NOW, 'webhook'), operationId: 'op-subscribe-1', planId: 'gold', autoActivated: true } }])
      .when(command)
      .thenNothing();
  });

  t.test('… re-recorded in any other case: nothing (a second Resolve, "Manage account")', async (t) => {
    spec(t).given([purchased()]).when(recordPurchase('PendingFulfillmentStart')).thenNothing();
    spec(t).given(history('Subscribed')).when(recordPurchase('Subscribed')).thenNothing();
    spec(t).given(history('Suspended')).when(recordPurchase('Subscribed')).thenNothing();
    spec(t).given(history('Unsubscribed')).when(recordPurchase('Subscribed')).thenNothing();
  });

  t.test('a pending subscription Microsoft now reports Suspended catches up: Activated + Suspended', async (t) => {
    // No other command can bring it there: Suspend needs Subscribed.
    spec(t)
      .given([purchased()])
      .when(recordPurchase('Suspended', { source: 'reconciliation' }))
      .then(
        [
          {
            type: 'Activated',
            data: { ...because(NOW, 'reconciliation'), planId: 'silver', quantity: 5, autoActivated: true, term: { termUnit: 'P1M' } },
          },
          { type: 'Suspended', data: because(NOW, 'reconciliation') },
        ],
      );
  });

  t.test('a purchase of another subscription id is refused', async (t) => {
    spec(t)
      .given([purchased()])
      .when(recordPurchase('PendingFulfillmentStart', { subscription: { subscriptionId: 'another-subscription' } }))
      .thenError('subscription-mismatch', { status: 400, messageIncludes: ['RecordPurchase'] });
  });
});

t.test('RequestActivation', async (t) => {
  const request = (overrides: { planId?: string; quantity?: number; email?: string } = {}): SubscriptionCommand => ({
    type: 'RequestActivation',
    now: NOW,
    source: 'landing',
    contact: { ...CONTACT, email: overrides.email ?? CONTACT.email },
    ...(overrides.planId ? { planId: overrides.planId } : {}),
    ...(overrides.quantity !== undefined ? { quantity: overrides.quantity } : {}),
  });

  t.test('with the plan and seats the customer chose on the landing page', async (t) => {
    const state = spec(t)
      .given([purchased()])
      .when(request({ planId: 'gold', quantity: 7 }))
      .then([{ type: 'ActivationRequested', data: { ...because(NOW, 'landing'), planId: 'gold', quantity: 7, contact: CONTACT } }]);
    t.match(state, { status: 'PendingFulfillmentStart', contact: CONTACT, activation: { requestedAt: NOW, failures: 0, gaveUp: false } });
    t.equal(known(state).planId, 'silver', 'the plan changes only when the activation is confirmed');
  });

  t.test('a repeat while one is under way → nothing', async (t) => {
    spec(t).given([purchased(), activationRequested()]).when(request()).thenNothing();
    spec(t).given([purchased(), activationRequested(), activationFailed(1, false)]).when(request()).thenNothing();
  });

  t.test('after retries gave up → a new request, failures kept', async (t) => {
    const state = spec(t)
      .given([purchased(), activationRequested(), activationFailed(1, false), activationFailed(2, true)])
      .when(request())
      .then([{ type: 'ActivationRequested', data: { ...because(NOW, 'landing'), planId: 'silver', quantity: 5, contact: CONTACT } }]);
    t.match(state, { activation: { requestedAt: NOW, failures: 2, attempts: 0, gaveUp: false } }, 'the new request counts its attempts from 0');
    spec(t)
      .given([purchased(), activationRequested(), activationFailed(1, false), activationFailed(2, true), activationRequested(NOW)])
      .when({ type: 'RecordActivationFailure', now: NOW, source: 'process', reason: 'Activate answered 503', final: false })
      .then([{ type: 'ActivationFailed', data: { ...because(NOW, 'process'), reason: 'Activate answered 503', attempt: 1, final: false } }]);
  });

  t.test('without a contact email → contact-required', async (t) => {
    spec(t).given([purchased()]).when(request({ email: '' })).thenError('contact-required', { status: 400, messageIncludes: ['RequestActivation'] });
  });

  for (const quantity of [0, -3, 2.5, Number.NaN]) {
    t.test(`with quantity ${quantity} → invalid-quantity`, async (t) => {
      spec(t)
        .given([purchased()])
        .when(request({ quantity }))
        .thenError('invalid-quantity', { status: 400, messageIncludes: ['RequestActivation', String(quantity)] });
    });
  }

  t.test('on an active subscription → already-active (it is never activated twice)', async (t) => {
    spec(t).given(history('Subscribed')).when(request()).thenError('already-active', { messageIncludes: ['RequestActivation', 'Subscribed'] });
    spec(t).given(history('Suspended')).when(request()).thenError('already-active', { messageIncludes: ['RequestActivation', 'Suspended'] });
  });
});

t.test('RecordActivationFailure', async (t) => {
  const failure = (final: boolean): SubscriptionCommand => ({
    type: 'RecordActivationFailure',
    now: NOW,
    source: 'process',
    reason: 'Activate answered 503',
    final,
  });

  t.test('without an activation request → illegal-transition', async (t) => {
    spec(t)
      .given([purchased()])
      .when(failure(false))
      .thenError('illegal-transition', { messageIncludes: ['RecordActivationFailure', 'PendingFulfillmentStart', 'an activation has been requested'] });
  });

  t.test('counts attempts; a final failure gives up', async (t) => {
    const state = spec(t)
      .given([purchased(), activationRequested(), activationFailed(1, false)])
      .when(failure(true))
      .then([{ type: 'ActivationFailed', data: { ...because(NOW, 'process'), reason: 'Activate answered 503', attempt: 2, final: true } }]);
    t.match(state, {
      status: 'PendingFulfillmentStart',
      activation: { requestedAt: T.activationRequested, failures: 2, lastError: 'Activate answered 503', gaveUp: true },
    });
  });
});

t.test('RecordActivationFailure with when the next attempt is due', async (t) => {
  const RETRY_AT = '2026-05-01T12:15:00.000Z';
  const failedDueAgain: SubscriptionEvent = {
    type: 'ActivationFailed',
    data: { ...because(T.activated, 'process'), reason: 'Activate answered 503', attempt: 1, final: false, retryAt: RETRY_AT },
  };
  const failure = (final: boolean): SubscriptionCommand => ({
    type: 'RecordActivationFailure',
    now: NOW,
    source: 'process',
    reason: 'Microsoft is not answering',
    final,
    retryAt: RETRY_AT,
  });

  t.test('not final → ActivationFailed with retryAt; the pending state says when', async (t) => {
    const state = spec(t)
      .given([purchased(), activationRequested(), activationFailed(1, false)])
      .when(failure(false))
      .then([{ type: 'ActivationFailed', data: { ...because(NOW, 'process'), reason: 'Microsoft is not answering', attempt: 2, final: false, retryAt: RETRY_AT } }]);
    t.match(state, { activation: { failures: 2, attempts: 2, nextAttemptAt: RETRY_AT, gaveUp: false } });
  });

  t.test('final → no retryAt, and no next attempt', async (t) => {
    const state = spec(t)
      .given([purchased(), activationRequested(), failedDueAgain])
      .when(failure(true))
      .then([{ type: 'ActivationFailed', data: { ...because(NOW, 'process'), reason: 'Microsoft is not answering', attempt: 2, final: true } }]);
    t.equal(known(state).activation.nextAttemptAt, undefined);
    t.equal(known(state).activation.gaveUp, true);
  });

  t.test('activated, cancelled or requested afresh: no next attempt any more', async (t) => {
    const waiting = [purchased(), activationRequested(), failedDueAgain];
    const next = (events: SubscriptionEvent[]) => known(fold(subscriptionDecider, events)).activation.nextAttemptAt;
    t.equal(next(waiting), RETRY_AT);
    t.equal(next([...waiting, activated()]), undefined, 'Activated');
    t.equal(next([...waiting, { type: 'Unsubscribed', data: because(NOW, 'webhook') }]), undefined, 'Unsubscribed');
  });
});

t.test('ConfirmActivation', async (t) => {
  t.test('with what Microsoft activated → Activated, Subscribed', async (t) => {
    const state = spec(t)
      .given([purchased(), activationRequested()])
      .when({ type: 'ConfirmActivation', now: NOW, source: 'process', planId: 'gold', quantity: 7, term: FIRST_TERM })
      .then([
        { type: 'Activated', data: { ...because(NOW, 'process'), planId: 'gold', quantity: 7, autoActivated: false, term: FIRST_TERM } },
      ]);
    t.match(state, { status: 'Subscribed', planId: 'gold', quantity: 7, term: FIRST_TERM, activatedAt: NOW, autoActivated: false });
  });

  t.test('already Subscribed (confirmed before a crash, or auto-activated) → nothing', async (t) => {
    spec(t).given([purchased(), activationRequested(), activated()]).when({ type: 'ConfirmActivation', now: NOW, source: 'process' }).thenNothing();
    spec(t)
      .given([
        purchased({ microsoftStatus: 'Subscribed', source: 'webhook' }),
        { type: 'Activated', data: { ...because(T.purchased, 'webhook'), planId: 'silver', quantity: 5, autoActivated: true } },
      ])
      .when({ type: 'ConfirmActivation', now: NOW, source: 'process' })
      .thenNothing();
  });
});
