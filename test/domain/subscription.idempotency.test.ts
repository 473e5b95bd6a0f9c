/**
 * Idempotency: Microsoft retries webhooks (up to 500 times over 8 hours) and promises no order, our
 * processes retry after crashes, operators retry HTTP calls. A command that is already satisfied
 * emits nothing.
 */
import t from 'tap';
import { decide, evolve } from '../../src/domain/subscription/index.js';
import type { SubscriptionCommand, SubscriptionEvent } from '../../src/domain/subscription/index.js';
import {
  NOW,
  SECOND_TERM,
  T,
  because,
  details,
  history,
  known,
  purchased,
  spec,
} from './subscription.fixtures.js';

const later = '2026-05-02T08:00:00.000Z';

/** Every command keyed by a Microsoft operation id, in a state where it is legal the first time. */
const operationKeyed: Array<{
  name: string;
  given: SubscriptionEvent[];
  command: SubscriptionCommand;
  /** What happens between the first application and the repeat (the repeat must not undo it). */
  meanwhile?: SubscriptionEvent[];
}> = [
  {
    name: 'RecordPurchase (a Subscribe webhook)',
    given: [],
    command: {
      type: 'RecordPurchase',
      now: NOW,
      source: 'webhook',
      operationId: 'op-subscribe-1',
      subscription: details(),
      microsoftStatus: 'Subscribed',
    },
  },
  {
    name: 'ApplyPlanChange',
    given: history('Subscribed'),
    command: { type: 'ApplyPlanChange', now: NOW, source: 'webhook', operationId: 'op-plan-1', planId: 'gold', requestSource: 'Azure' },
    // The customer changed back to silver afterwards: a late duplicate of op-plan-1 must not move it to gold again.
    meanwhile: [{ type: 'PlanChanged', data: { ...because(later, 'webhook'), operationId: 'op-plan-2', planId: 'silver', previousPlanId: 'gold' } }],
  },
  {
    name: 'ApplyQuantityChange',
    given: history('Subscribed'),
    command: { type: 'ApplyQuantityChange', now: NOW, source: 'webhook', operationId: 'op-quantity-1', quantity: 8 },
    meanwhile: [{ type: 'QuantityChanged', data: { ...because(later, 'webhook'), operationId: 'op-quantity-2', quantity: 5, previousQuantity: 8 } }],
  },
  {
    name: 'RefuseChange',
    given: history('Subscribed'),
    command: {
      type: 'RefuseChange',
      now: NOW,
      source: 'webhook',
      operationId: 'op-quantity-1',
      action: 'ChangeQuantity',
      quantity: 5000,
      reason: 'more seats than the licence allows',
    },
  },
  {
    name: 'Suspend',
    given: history('Subscribed'),
    command: { type: 'Suspend', now: NOW, source: 'webhook', operationId: 'op-suspend-1' },
    // Reinstated since: a duplicate of the old Suspend must not suspend it again.
    meanwhile: [{ type: 'Reinstated', data: { ...because(later, 'webhook'), operationId: 'op-reinstate-1' } }],
  },
  {
    name: 'Reinstate',
    given: history('Suspended'),
    command: { type: 'Reinstate', now: NOW, source: 'webhook', operationId: 'op-reinstate-1' },
  },
  {
    name: 'Renew',
    given: history('Subscribed'),
    command: { type: 'Renew', now: NOW, source: 'webhook', operationId: 'op-renew-1', term: SECOND_TERM },
  },
  {
    name: 'Unsubscribe',
    given: history('Subscribed'),
    command: { type: 'Unsubscribe', now: NOW, source: 'webhook', operationId: 'op-unsubscribe-1' },
  },
  {
    name: 'RecordChangeRequestFailure (with the operation that failed)',
    given: [
      ...history('Subscribed'),
      { type: 'QuantityChangeRequested', data: { ...because(T.changeRequested, 'operator'), requestId: 'req-1', quantity: 10, previousQuantity: 5 } },
      { type: 'ChangeSubmitted', data: { ...because(T.changeSubmitted, 'process'), requestId: 'req-1', operationId: 'op-quantity-9' } },
    ],
    command: {
      type: 'RecordChangeRequestFailure',
      now: NOW,
      source: 'process',
      requestId: 'req-1',
      operationId: 'op-quantity-9',
      status: 'Failed',
      reason: 'operation Failed at Microsoft',
    },
  },
];

for (const c of operationKeyed) {
  t.test(`${c.name}: repeating an operation already applied → nothing`, async (t) => {
    const first = decide(c.command, c.given.reduce(evolve, { status: 'Initial' }));
    t.ok(first.length > 0, `the first time it emits ${first.map((e) => e.type).join(', ')}`);
    t.ok(
      first.some((e) => e.data.operationId === ('operationId' in c.command ? c.command.operationId : undefined)),
      'an emitted event carries the operation id',
    );
    const state = spec(t)
      .given([...c.given, ...first])
      .when(c.command)
      .thenNothing();
    t.ok(known(state).appliedOperations.includes(String('operationId' in c.command && c.command.operationId)), 'the operation is recorded as applied');
    if (c.meanwhile) {
      spec(t)
        .given([...c.given, ...first, ...c.meanwhile])
        .when(c.command)
        .thenNothing();
    }
  });
}

t.test('an applied operation is a no-op whatever the repeat asks', async (t) => {
  const changed: SubscriptionEvent[] = [
    ...history('Subscribed'),
    { type: 'PlanChanged', data: { ...because(NOW, 'webhook'), operationId: 'op-plan-1', planId: 'gold', previousPlanId: 'silver' } },
  ];
  // Our reject decision arrives after the change was applied for the same operation (it was auto-accepted).
  spec(t)
    .given(changed)
    .when({ type: 'RefuseChange', now: later, source: 'webhook', operationId: 'op-plan-1', action: 'ChangePlan', planId: 'gold', reason: 'too late' })
    .thenNothing();
  // And an operation we rejected is not applied by a late duplicate of its notification.
  const rejected: SubscriptionEvent[] = [
    ...history('Subscribed'),
    {
      type: 'ChangeRejected',
      data: { ...because(NOW, 'webhook'), operationId: 'op-plan-3', action: 'ChangePlan', planId: 'platinum', reason: 'not sold here' },
    },
  ];
  const state = spec(t)
    .given(rejected)
    .when({ type: 'ApplyPlanChange', now: later, source: 'webhook', operationId: 'op-plan-3', planId: 'platinum' })
    .thenNothing();
  t.equal(known(state).planId, 'silver', 'still on silver');
});

t.test('an operation id is only a key on the subscription that applied it: a new one is decided on its merits', async (t) => {
  spec(t)
    .given([...history('Subscribed'), { type: 'Renewed', data: { ...because(NOW, 'webhook'), operationId: 'op-renew-1', term: SECOND_TERM } }])
    .when({ type: 'Renew', now: later, source: 'webhook', operationId: 'op-renew-2' })
    .then([{ type: 'Renewed', data: { ...because(later, 'webhook'), operationId: 'op-renew-2' } }]);
});

t.test('Renew applied twice would move the term twice: the duplicate is dropped and the state is unchanged', async (t) => {
  const renewed: SubscriptionEvent[] = [
    ...history('Subscribed'),
    { type: 'Renewed', data: { ...because(NOW, 'webhook'), operationId: 'op-renew-1', term: SECOND_TERM } },
  ];
  const when = spec(t).given(renewed).when({ type: 'Renew', now: later, source: 'webhook', operationId: 'op-renew-1', term: SECOND_TERM });
  const state = when.thenNothing();
  t.equal(known(state).lastRenewedAt, NOW, 'lastRenewedAt is the first renewal');
});

t.test('re-recording a purchase → nothing', async (t) => {
  for (const status of ['PendingFulfillmentStart', 'Subscribed', 'Suspended', 'Unsubscribed'] as const) {
    spec(t)
      .given(history(status))
      .when({ type: 'RecordPurchase', now: NOW, source: 'landing', subscription: details(), microsoftStatus: status })
      .thenNothing();
  }
  // A repeated Subscribe webhook on an auto-activated subscription.
  spec(t)
    .given([purchased({ microsoftStatus: 'Subscribed', operationId: 'op-subscribe-1', source: 'webhook' })])
    .when({
      type: 'RecordPurchase',
      now: NOW,
      source: 'webhook',
      operationId: 'op-subscribe-1',
      subscription: details(),
      microsoftStatus: 'Subscribed',
    })
    .thenNothing();
});

t.test('RequestActivation while one is under way → nothing', async (t) => {
  spec(t)
    .given([purchased(), { type: 'ActivationRequested', data: { ...because(T.activationRequested, 'landing'), planId: 'silver', contact: { email: 'a@contoso.example' } } }])
    .when({ type: 'RequestActivation', now: NOW, source: 'landing', contact: { email: 'b@contoso.example' }, quantity: 9 })
    .thenNothing();
});

t.test('ConfirmActivation when already Subscribed → nothing', async (t) => {
  const state = spec(t).given(history('Subscribed')).when({ type: 'ConfirmActivation', now: NOW, source: 'process', planId: 'gold' }).thenNothing();
  t.match(state, { planId: 'silver', activatedAt: T.activated }, 'the first activation stands');
});

t.test('publisher-side requests with the same requestId → nothing', async (t) => {
  const planRequested: SubscriptionEvent = {
    type: 'PlanChangeRequested',
    data: { ...because(T.changeRequested, 'operator'), requestId: 'req-1', planId: 'gold', previousPlanId: 'silver' },
  };
  const quantityRequested: SubscriptionEvent = {
    type: 'QuantityChangeRequested',
    data: { ...because(T.changeRequested, 'operator'), requestId: 'req-2', quantity: 10, previousQuantity: 5 },
  };
  const cancellationRequested: SubscriptionEvent = {
    type: 'CancellationRequested',
    data: { ...because(T.changeRequested, 'operator'), requestId: 'req-3' },
  };
  const submitted = (requestId: string): SubscriptionEvent => ({
    type: 'ChangeSubmitted',
    data: { ...because(T.changeSubmitted, 'process'), requestId, operationId: `op-${requestId}` },
  });

  for (const wasSubmitted of [false, true]) {
    const then = (requestId: string): SubscriptionEvent[] => (wasSubmitted ? [submitted(requestId)] : []);
    t.test(`plan, quantity and cancellation requests${wasSubmitted ? ' already submitted to Microsoft' : ''}`, async (t) => {
      spec(t)
        .given([...history('Subscribed'), planRequested, ...then('req-1')])
        .when({ type: 'RequestPlanChange', now: NOW, source: 'operator', requestId: 'req-1', planId: 'gold' })
        .thenNothing();
      spec(t)
        .given([...history('Subscribed'), quantityRequested, ...then('req-2')])
        .when({ type: 'RequestQuantityChange', now: NOW, source: 'operator', requestId: 'req-2', quantity: 10 })
        .thenNothing();
      spec(t)
        .given([...history('Subscribed'), cancellationRequested, ...then('req-3')])
        .when({ type: 'RequestUnsubscribe', now: NOW, source: 'operator', requestId: 'req-3' })
        .thenNothing();
    });
  }

  // After the change settled, the request id is forgotten: a retry of the operator's call is decided anew.
  const settled: SubscriptionEvent[] = [
    ...history('Subscribed'),
    quantityRequested,
    submitted('req-2'),
    { type: 'QuantityChanged', data: { ...because(NOW, 'webhook'), operationId: 'op-req-2', quantity: 10, previousQuantity: 5, requestSource: 'Partner' } },
  ];
  spec(t)
    .given(settled)
    .when({ type: 'RequestQuantityChange', now: later, source: 'operator', requestId: 'req-2', quantity: 10 })
    .thenNothing();
});
