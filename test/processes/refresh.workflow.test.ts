/** Which changes ask for Microsoft's record to be read back, and when an open operation at Microsoft makes it wait. */
import t from 'tap';
import { evolve, initialState } from '../../src/domain/subscription/index.js';
import type { SubscriptionEvent, SubscriptionState } from '../../src/domain/subscription/index.js';
import { afterOperations, isOpen, wantsRefresh } from '../../src/processes/refresh.workflow.js';
import { NOW, history } from '../domain/subscription.fixtures.js';

const fold = (events: SubscriptionEvent[]): SubscriptionState => events.reduce(evolve, initialState());
const at = { at: NOW, source: 'webhook' as const };

t.test('changes we applied ask for a refresh; converged ones, purchases and cancellations do not', async (t) => {
  const active = fold(history('Subscribed'));
  for (const e of [
    { type: 'PlanChanged', data: { ...at, planId: 'gold', previousPlanId: 'silver' } },
    { type: 'QuantityChanged', data: { ...at, quantity: 9 } },
    { type: 'Renewed', data: at },
    { type: 'Suspended', data: at },
    { type: 'Reinstated', data: at },
    { type: 'Activated', data: { ...at, planId: 'silver', autoActivated: false } },
  ] satisfies SubscriptionEvent[]) {
    t.ok(wantsRefresh(e, active), `${e.type} asks`);
  }
  const reported = { status: 'Subscribed', planId: 'gold' };
  t.notOk(wantsRefresh({ type: 'PlanChanged', data: { ...at, reported, planId: 'gold', previousPlanId: 'silver' } }, active), 'an event that converged on Microsoft does not ask again (no loop)');
  t.notOk(wantsRefresh({ type: 'Activated', data: { ...at, source: 'reconciliation', reported, planId: 'silver', autoActivated: true } }, active), "nor what the reconciler recorded from Microsoft's list");
  t.ok(wantsRefresh({ type: 'Unsubscribed', data: { ...at, source: 'reconciliation' } }, fold(history('Unsubscribed'))), 'a status reconciled alone (ReconcileStatus) is read back in full');
  t.notOk(wantsRefresh({ type: 'DetailsRefreshed', data: { ...at, changes: {}, previous: {} } }, active), 'DetailsRefreshed does not');
  t.notOk(wantsRefresh({ type: 'ActivationRequested', data: { ...at, planId: 'silver', contact: { email: 'a@b.example' } } }, active), 'requests do not');
  t.notOk(wantsRefresh({ type: 'Renewed', data: at }, fold(history('Unsubscribed'))), 'nothing else after Unsubscribed');
  t.ok(wantsRefresh({ type: 'Unsubscribed', data: at }, fold(history('Unsubscribed'))), "the cancellation itself asks (Microsoft's final record)");
  t.notOk(wantsRefresh({ type: 'Renewed', data: at }, initialState()), 'nothing for an unknown subscription');
});

t.test('open operations at Microsoft: wait, then leave it to reconciliation', async (t) => {
  t.same(afterOperations([], NOW, NOW), { type: 'Converge' });
  const open = [{ id: 'op-1', action: 'ChangePlan', status: 'InProgress' }];
  const wait = afterOperations(open, NOW, new Date(Date.parse(NOW) + 1000).toISOString(), 60_000);
  t.match(wait, { type: 'Wait', untilMs: Date.parse(NOW) + 60_000 });
  t.match(wait, { reason: /ChangePlan op-1 InProgress/ });
  t.match(afterOperations(open, NOW, new Date(Date.parse(NOW) + 60_000).toISOString(), 60_000), { type: 'LeaveToReconciliation', reason: /still open at Microsoft after 1 min/ });
  t.ok(isOpen('InProgress') && isOpen('NotStarted'));
  t.notOk(isOpen('Succeeded') || isOpen('Failed') || isOpen('Conflict') || isOpen(undefined));
});
