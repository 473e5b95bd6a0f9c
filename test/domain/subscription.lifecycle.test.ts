/**
 * The lifecycle under Microsoft's unordered, repeated notifications (docs/marketplace.md §5, §7.1): late notifications
 * after a cancellation are refused without touching the state; a renewal reported during a suspension
 * still moves the term; Unsubscribed is terminal.
 */
import t from 'tap';
import { fold } from '../../src/domain/decider.js';
import { subscriptionDecider } from '../../src/domain/subscription/index.js';
import type { SubscriptionCommand, SubscriptionEvent } from '../../src/domain/subscription/index.js';
import { asStored } from '../support/given-when-then.js';
import {
  FIRST_TERM,
  NOW,
  SECOND_TERM,
  T,
  activationRequested,
  because,
  history,
  known,
  purchased,
  spec,
} from './subscription.fixtures.js';

t.test('Renew after Unsubscribe → refused, and the state is unchanged', async (t) => {
  const when = spec(t)
    .given(history('Unsubscribed'))
    .when({ type: 'Renew', now: NOW, source: 'webhook', operationId: 'op-renew-late', term: SECOND_TERM });
  when.thenError('illegal-transition', { status: 409, messageIncludes: ['Renew', 'Unsubscribed', 'Subscribed or Suspended'] });
  t.strictSame(asStored(when.state), asStored(fold(subscriptionDecider, history('Unsubscribed'))), 'the state is what the history says');
  t.match(known(when.state), { status: 'Unsubscribed', term: FIRST_TERM, lastRenewedAt: undefined });
});

t.test('nothing Microsoft sends late moves an Unsubscribed subscription', async (t) => {
  const late: SubscriptionCommand[] = [
    { type: 'ApplyPlanChange', now: NOW, source: 'webhook', operationId: 'op-late-1', planId: 'gold' },
    { type: 'ApplyQuantityChange', now: NOW, source: 'webhook', operationId: 'op-late-2', quantity: 9 },
    { type: 'RefuseChange', now: NOW, source: 'webhook', operationId: 'op-late-3', action: 'ChangePlan', planId: 'gold', reason: 'late' },
    { type: 'Suspend', now: NOW, source: 'webhook', operationId: 'op-late-4' },
    { type: 'Reinstate', now: NOW, source: 'webhook', operationId: 'op-late-5' },
    { type: 'Renew', now: NOW, source: 'webhook', operationId: 'op-late-6' },
  ];
  for (const command of late) {
    const when = spec(t).given(history('Unsubscribed')).when(command);
    when.thenError('illegal-transition', { messageIncludes: [command.type, 'Unsubscribed'] });
    t.equal(when.state.status, 'Unsubscribed');
  }
});

t.test('Renew while Suspended → Renewed; the subscription stays Suspended with the new term', async (t) => {
  const renewed: SubscriptionEvent = { type: 'Renewed', data: { ...because(NOW, 'webhook'), operationId: 'op-renew-1', term: SECOND_TERM } };
  const state = spec(t)
    .given(history('Suspended'))
    .when({ type: 'Renew', now: NOW, source: 'webhook', operationId: 'op-renew-1', term: SECOND_TERM })
    .then([renewed]);
  t.match(known(state), { status: 'Suspended', term: SECOND_TERM, lastRenewedAt: NOW, suspendedAt: T.suspended });

  // Reinstated afterwards, it keeps the renewed term.
  const reinstated = spec(t)
    .given([...history('Suspended'), renewed])
    .when({ type: 'Reinstate', now: '2026-05-03T00:00:00.000Z', source: 'webhook', operationId: 'op-reinstate-1' })
    .then([{ type: 'Reinstated', data: { ...because('2026-05-03T00:00:00.000Z', 'webhook'), operationId: 'op-reinstate-1' } }]);
  t.match(known(reinstated), { status: 'Subscribed', term: SECOND_TERM, suspendedAt: undefined });
});

t.test('Renew without a term keeps the term and records the renewal', async (t) => {
  const state = spec(t)
    .given(history('Subscribed'))
    .when({ type: 'Renew', now: NOW, source: 'webhook', operationId: 'op-renew-1' })
    .then([{ type: 'Renewed', data: { ...because(NOW, 'webhook'), operationId: 'op-renew-1' } }]);
  t.match(known(state), { term: FIRST_TERM, lastRenewedAt: NOW });
});

t.test('a Reinstate that overtakes its Suspend is refused (Microsoft retries it)', async (t) => {
  spec(t)
    .given(history('Subscribed'))
    .when({ type: 'Reinstate', now: NOW, source: 'webhook', operationId: 'op-reinstate-1' })
    .thenError('illegal-transition', { messageIncludes: ['Reinstate', 'Subscribed', 'only when Suspended'] });
});

t.test('only a Subscribed subscription can be suspended or changed', async (t) => {
  for (const command of [
    { type: 'Suspend', now: NOW, source: 'webhook', operationId: 'op-s' },
    { type: 'ApplyPlanChange', now: NOW, source: 'webhook', operationId: 'op-p', planId: 'gold' },
    { type: 'ApplyQuantityChange', now: NOW, source: 'webhook', operationId: 'op-q', quantity: 9 },
  ] satisfies SubscriptionCommand[]) {
    spec(t).given([purchased()]).when(command).thenError('illegal-transition', { messageIncludes: [command.type, 'PendingFulfillmentStart'] });
  }
  for (const command of [
    { type: 'ApplyPlanChange', now: NOW, source: 'webhook', operationId: 'op-p', planId: 'gold' },
    { type: 'ApplyQuantityChange', now: NOW, source: 'webhook', operationId: 'op-q', quantity: 9 },
    { type: 'RequestPlanChange', now: NOW, source: 'operator', requestId: 'req-1', planId: 'gold' },
  ] satisfies SubscriptionCommand[]) {
    spec(t).given(history('Suspended')).when(command).thenError('illegal-transition', { messageIncludes: [command.type, 'Suspended'] });
  }
});

t.test('Unsubscribe after an activation that failed for good (Microsoft unsubscribes it)', async (t) => {
  const state = spec(t)
    .given([
      purchased(),
      activationRequested(),
      { type: 'ActivationFailed', data: { ...because(T.activated, 'process'), reason: 'Activate answered 400', attempt: 1, final: true } },
    ])
    .when({ type: 'Unsubscribe', now: NOW, source: 'webhook', operationId: 'op-unsubscribe-1' })
    .then([{ type: 'Unsubscribed', data: { ...because(NOW, 'webhook'), operationId: 'op-unsubscribe-1' } }]);
  t.match(known(state), { status: 'Unsubscribed', unsubscribedAt: NOW, activatedAt: undefined, activation: { gaveUp: true } });
});

t.test('Unsubscribe by reconciliation (no operation id), then the late webhook', async (t) => {
  const reconciled: SubscriptionEvent = { type: 'Unsubscribed', data: { ...because(NOW, 'reconciliation'), reason: 'Unsubscribed at Microsoft' } };
  const state = spec(t)
    .given(history('Suspended'))
    .when({ type: 'Unsubscribe', now: NOW, source: 'reconciliation', reason: 'Unsubscribed at Microsoft' })
    .then([reconciled]);
  t.strictSame(known(state).appliedOperations, ['op-suspend-0'], 'no operation id to record');
  spec(t)
    .given([...history('Suspended'), reconciled])
    .when({ type: 'Unsubscribe', now: '2026-05-01T12:30:00.000Z', source: 'webhook', operationId: 'op-unsubscribe-1' })
    .thenNothing();
});

t.test('an Unsubscribed subscription cannot be cancelled or activated again', async (t) => {
  spec(t)
    .given(history('Unsubscribed'))
    .when({ type: 'RequestUnsubscribe', now: NOW, source: 'operator', requestId: 'req-1' })
    .thenError('illegal-transition', { messageIncludes: ['RequestUnsubscribe', 'Unsubscribed'] });
  spec(t)
    .given(history('Unsubscribed'))
    .when({ type: 'ConfirmActivation', now: NOW, source: 'process' })
    .thenError('illegal-transition', { messageIncludes: ['ConfirmActivation', 'Unsubscribed'] });
});
