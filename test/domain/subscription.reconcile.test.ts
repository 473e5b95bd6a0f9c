/** Converging on Microsoft's truth: status reconciliation and superseded (out-of-order) changes. */
import t from 'tap';
import { subscriptionDecider } from '../../src/domain/subscription/index.js';
import type { SubscriptionEvent } from '../../src/domain/subscription/index.js';
import { deciderSpec } from '../support/given-when-then.js';
import { NOW, because, history } from './subscription.fixtures.js';

const spec = deciderSpec(subscriptionDecider);
const reconcile = (microsoftStatus: string) => ({ type: 'ReconcileStatus' as const, now: NOW, source: 'reconciliation' as const, microsoftStatus });

t.test('ReconcileStatus moves the subscription to what Microsoft reports', async (t) => {
  spec(t).given(history('Suspended')).when(reconcile('Subscribed')).then([{ type: 'Reinstated', data: because(NOW, 'reconciliation') }]);
  spec(t)
    .given(history('Subscribed'))
    .when(reconcile('Unsubscribed'))
    .then([{ type: 'Unsubscribed', data: { ...because(NOW, 'reconciliation'), reason: 'Microsoft reports Unsubscribed (was Subscribed here)' } }]);
  spec(t)
    .given(history('Suspended'))
    .when(reconcile('Unsubscribed'))
    .then([{ type: 'Unsubscribed', data: { ...because(NOW, 'reconciliation'), reason: 'Microsoft reports Unsubscribed (was Suspended here)' } }]);
  spec(t).given(history('Subscribed')).when(reconcile('Subscribed')).thenNothing();
  spec(t).given(history('Subscribed')).when(reconcile('NotStarted')).thenNothing();
  spec(t).given(history('Subscribed')).when(reconcile('PendingFulfillmentStart')).thenError('cannot-reconcile', { messageIncludes: ['ReconcileStatus', 'PendingFulfillmentStart'] });
  spec(t).given(history('Unsubscribed')).when(reconcile('Subscribed')).thenError('cannot-reconcile', { messageIncludes: ['ReconcileStatus', 'Unsubscribed'] });
});

t.test('a plan or quantity change older than the last one applied is superseded, not applied', async (t) => {
  const newer: SubscriptionEvent = {
    type: 'PlanChanged',
    data: { ...because(NOW, 'webhook'), operationId: 'op-2', planId: 'gold', previousPlanId: 'silver', requestSource: 'Azure', timeStamp: '2026-05-01T11:00:00.000Z' },
  };
  spec(t)
    .given([...history('Subscribed'), newer])
    .when({ type: 'ApplyPlanChange', now: NOW, source: 'webhook', operationId: 'op-1', planId: 'bronze', timeStamp: '2026-05-01T10:00:00.000Z' })
    .thenError('superseded', { messageIncludes: ['ApplyPlanChange', '2026-05-01T10:00:00.000Z'] });
  spec(t)
    .given([...history('Subscribed'), newer])
    .when({ type: 'ApplyPlanChange', now: NOW, source: 'webhook', operationId: 'op-3', planId: 'platinum', timeStamp: '2026-05-01T11:30:00.000Z' })
    .then([
      {
        type: 'PlanChanged',
        data: { ...because(NOW, 'webhook'), operationId: 'op-3', planId: 'platinum', previousPlanId: 'gold', requestSource: undefined, timeStamp: '2026-05-01T11:30:00.000Z' },
      },
    ]);
  const seats: SubscriptionEvent = {
    type: 'QuantityChanged',
    data: { ...because(NOW, 'webhook'), operationId: 'op-q2', quantity: 9, previousQuantity: 5, timeStamp: '2026-05-01T11:00:00.000Z' },
  };
  spec(t)
    .given([...history('Subscribed'), seats])
    .when({ type: 'ApplyQuantityChange', now: NOW, source: 'webhook', operationId: 'op-q1', quantity: 7, timeStamp: '2026-05-01T10:59:59.000Z' })
    .thenError('superseded', { messageIncludes: ['ApplyQuantityChange'] });
});
