/**
 * The notification workflow's decisions, pure, without the emulator: given what was observed so far,
 * when the next observation arrives, then this is the next step.
 */
import t from 'tap';
import type { Test } from 'tap';
import type { NotificationPayload } from '../../src/domain/notification/index.js';
import type { KnownSubscription, SubscriptionCommand, SubscriptionDetails } from '../../src/domain/subscription/index.js';
import { decide, evolve, initialWorkflow, nextStep } from '../../src/processes/notification.workflow.js';
import type { FinalOutcome, MicrosoftSubscription, Observation, Purpose, Step, WorkflowState } from '../../src/processes/notification.workflow.js';
import { deepFreeze } from '../support/given-when-then.js';

const OP = '8f0c2a4e-6b1d-4c3f-9e7a-5d2b0c4e6f18';
const SUB = '3c1f6a2e-9b7d-4e51-8a0c-2d4f6b8e1a37';
const NOW = '2026-05-01T12:00:00.000Z';
const LATER = '2026-05-01T12:00:00.200Z';

const note = (action: string, over: Partial<NotificationPayload> = {}): NotificationPayload => ({ id: OP, subscriptionId: SUB, action, status: 'InProgress', ...over });

const details: SubscriptionDetails = {
  subscriptionId: SUB,
  name: 'Contoso',
  offerId: 'offer',
  planId: 'standard',
  quantity: 5,
  purchaser: {},
  beneficiary: {},
  term: {},
  autoRenew: true,
  isFreeTrial: false,
  isTest: false,
  allowedCustomerOperations: ['Read', 'Update', 'Delete'],
};
const microsoft = (status?: string): MicrosoftSubscription => ({ details, ...(status ? { status } : {}) });
const known = (status: 'Subscribed' | 'Suspended' = 'Subscribed'): KnownSubscription => ({
  ...details,
  status,
  purchasedAt: NOW,
  appliedOperations: [],
  settledRequests: [],
  activation: { failures: 0, attempts: 0, gaveUp: false },
  autoActivated: false,
});

// Observations, with the executor's clock.
const found = (operation: { subscriptionId?: string; action?: string; status?: string } = { status: 'InProgress' }): Observation => ({ type: 'OperationFound', operation, now: LATER });
const notFound: Observation = { type: 'OperationNotFound', now: LATER };
const loaded = (isKnown: boolean): Observation => ({ type: 'SubscriptionLoaded', known: isKnown, now: LATER });
const fetched = (status?: string): Observation => ({ type: 'SubscriptionFetched', subscription: microsoft(status), now: LATER });
const executed = (purpose: Purpose, events: string[], subscription?: KnownSubscription): Observation => ({
  type: 'CommandExecuted',
  purpose,
  events,
  ...(subscription ? { subscription } : {}),
  now: LATER,
});
const refused = (purpose: 'action' | 'reconcile', reason: string): Observation => ({ type: 'CommandRefused', purpose, reason, now: LATER });
const provisioned: Observation = { type: 'Provisioned', now: LATER };
const acknowledged: Observation = { type: 'Acknowledged', now: LATER };

const finish = (outcome: FinalOutcome, detail: string, subscriptionEvents: string[] = []): Step => ({ type: 'Finish', outcome, detail, subscriptionEvents });
const execute = (purpose: Purpose, command: SubscriptionCommand, actor = 'microsoft', refusable = purpose === 'action' || purpose === 'reconcile'): Step => ({
  type: 'Execute',
  purpose,
  command,
  actor,
  refusable,
});
const purchase = (microsoftStatus: string, operationId?: string): SubscriptionCommand => ({
  type: 'RecordPurchase',
  now: LATER,
  source: 'webhook',
  subscription: details,
  microsoftStatus,
  ...(operationId ? { operationId } : {}),
});
const reconcile = (microsoftStatus: string): SubscriptionCommand => ({ type: 'ReconcileStatus', now: LATER, source: 'reconciliation', microsoftStatus });

/** given(notification, what was seen).when(observation).then(next step); purity is checked on every case. */
function spec(t: Test) {
  return {
    given(notification: NotificationPayload, seen: Observation[] = [], options: { acknowledged?: boolean } = {}) {
      const state: WorkflowState = deepFreeze(seen.reduce(evolve, initialWorkflow(notification, options.acknowledged ?? false, NOW)));
      const check = (step: Step, expected: Step, what: string) => t.strictSame(JSON.parse(JSON.stringify(step)), JSON.parse(JSON.stringify(expected)), what);
      return {
        /** The first step, before anything is observed (or after `seen`). */
        then(expected: Step) {
          check(nextStep(state), expected, `${notification.action}: ${expected.type}`);
        },
        when(observation: Observation) {
          deepFreeze(observation);
          const a = decide(observation, state);
          const b = decide(observation, state);
          t.strictSame(a, b, `${observation.type}: the same inputs give the same decision`);
          return {
            then(expected: Step) {
              check(a.step, expected, `${notification.action}, ${observation.type} → ${expected.type}`);
            },
          };
        },
      };
    },
  };
}

t.test('an action we do not act on is recorded as ignored, without calling Microsoft', async (t) => {
  spec(t).given(note('Transmogrify')).then(finish('ignored', 'unknown action Transmogrify: recorded, not acted on'));
});

t.test('verification with Get operation', async (t) => {
  spec(t).given(note('Suspend')).then({ type: 'GetOperation' });
  spec(t).given(note('Suspend')).when(notFound).then(finish('unverified', `Microsoft has no operation ${OP} for subscription ${SUB}`));
  spec(t).given(note('ChangePlan', { planId: 'premium' })).when(notFound).then(finish('unverified', `Microsoft has no operation ${OP} for subscription ${SUB}`));
  for (const action of ['Subscribe', 'Unsubscribe', 'Renew']) {
    spec(t).given(note(action)).when(notFound).then({ type: 'LoadSubscription' });
  }
  spec(t)
    .given(note('Suspend'))
    .when(found({ subscriptionId: 'another-subscription' }))
    .then(finish('unverified', `Microsoft's operation ${OP} belongs to subscription another-subscription, not ${SUB}`));
  spec(t).given(note('Suspend')).when(found({ action: 'Reinstate' })).then(finish('unverified', `Microsoft's operation ${OP} is a Reinstate, not a Suspend`));
  spec(t).given(note('Suspend')).when(found({ subscriptionId: SUB, action: 'Suspend', status: 'Succeeded' })).then({ type: 'LoadSubscription' });
});

t.test('a subscription we never saw is recorded from Get subscription before the action applies', async (t) => {
  const n = note('Suspend');
  spec(t).given(n, [found()]).when(loaded(false)).then({ type: 'GetSubscription' });
  spec(t).given(n, [found(), loaded(false)]).when(fetched('Suspended')).then(execute('purchase', purchase('Suspended')));
  spec(t).given(n, [found(), loaded(false)]).when(fetched()).then(execute('purchase', purchase('PendingFulfillmentStart')));
  spec(t)
    .given(n, [found(), loaded(false), fetched('Suspended')])
    .when(executed('purchase', ['Purchased', 'Activated', 'Suspended'], known('Suspended')))
    .then(execute('action', { now: LATER, source: 'webhook', operationId: OP, type: 'Suspend' }));
  spec(t).given(n, [found()]).when(loaded(true)).then(execute('action', { now: LATER, source: 'webhook', operationId: OP, type: 'Suspend' }));
});

t.test('Subscribe: the purchase is recorded and caught up with Microsoft, with one Get subscription', async (t) => {
  const n = note('Subscribe', { status: 'Succeeded' });
  spec(t).given(n, [notFound, loaded(false), fetched('Subscribed')]).then(execute('purchase', purchase('Subscribed', OP)));
  spec(t)
    .given(n, [notFound, loaded(false), fetched('Subscribed')])
    .when(executed('purchase', ['Purchased', 'Activated'], known()))
    .then(execute('catch-up', purchase('Subscribed', OP)));
  spec(t)
    .given(n, [notFound, loaded(false), fetched()])
    .when(executed('purchase', ['Purchased']))
    .then(execute('catch-up', purchase('Subscribed', OP)));
  spec(t)
    .given(n, [notFound, loaded(false), fetched('Subscribed'), executed('purchase', ['Purchased', 'Activated'])])
    .when(executed('catch-up', []))
    .then(finish('applied', 'Subscribe', ['Purchased', 'Activated']));
  spec(t).given(n, [found()]).when(loaded(true)).then({ type: 'GetSubscription' });
  spec(t).given(n, [found(), loaded(true)]).when(fetched('Subscribed')).then(execute('catch-up', purchase('Subscribed', OP)));
  spec(t).given(n, [found(), loaded(true), fetched('Subscribed')]).when(executed('catch-up', [])).then(finish('no-change', 'Subscribe'));
  spec(t).given(n, [found(), loaded(true), fetched('Subscribed')]).when(executed('catch-up', ['Activated'])).then(finish('applied', 'Subscribe', ['Activated']));
});

t.test('customer-side plan and quantity changes: applied, provisioned, acknowledged while pending', async (t) => {
  const plan = note('ChangePlan', { planId: 'premium', operationRequestSource: 'Azure', timeStamp: '2026-05-01T11:59:59.000Z' });
  const command: SubscriptionCommand = { now: LATER, source: 'webhook', operationId: OP, type: 'ApplyPlanChange', planId: 'premium', requestSource: 'Azure', timeStamp: '2026-05-01T11:59:59.000Z' };
  spec(t).given(plan, [found()]).when(loaded(true)).then(execute('action', command));
  spec(t).given(plan, [found(), loaded(true)]).when(executed('action', ['PlanChanged'], known())).then({ type: 'Provision', subscription: known(), reason: 'plan-change' });
  spec(t).given(plan, [found(), loaded(true), executed('action', ['PlanChanged'], known())]).when(provisioned).then({ type: 'Acknowledge' });
  spec(t).given(plan, [found(), loaded(true), executed('action', ['PlanChanged'], known()), provisioned]).when(acknowledged).then(finish('applied', 'ChangePlan applied', ['PlanChanged']));
  // Already applied (a second processing): provisioned again (idempotent), acknowledged only if not yet.
  spec(t).given(plan, [found(), loaded(true)]).when(executed('action', [], known())).then({ type: 'Provision', subscription: known(), reason: 'plan-change' });
  spec(t).given(plan, [found(), loaded(true), executed('action', [], known())], { acknowledged: true }).when(provisioned).then(finish('no-change', 'ChangePlan already applied or nothing to change'));
  // Microsoft's operation is no longer pending: no acknowledgement.
  spec(t).given(plan, [found({ status: 'Succeeded' }), loaded(true), executed('action', ['PlanChanged'], known())]).when(provisioned).then(finish('applied', 'ChangePlan applied', ['PlanChanged']));
  // Not applied (out of order, superseded): neither provisioned nor acknowledged.
  spec(t).given(plan, [found(), loaded(true)]).when(refused('action', 'ApplyPlanChange: superseded')).then(finish('ignored', 'ApplyPlanChange: superseded'));

  const seats = note('ChangeQuantity', { quantity: 12 });
  spec(t).given(seats, [found()]).when(loaded(true)).then(execute('action', { now: LATER, source: 'webhook', operationId: OP, type: 'ApplyQuantityChange', quantity: 12 }));
  spec(t).given(seats, [found(), loaded(true)]).when(executed('action', ['QuantityChanged'], known())).then({ type: 'Provision', subscription: known(), reason: 'quantity-change' });
  spec(t).given(note('ChangeQuantity'), [found()]).when(loaded(true)).then(finish('ignored', 'ChangeQuantity without the data it needs (planId/quantity)'));
  spec(t)
    .given(note('ChangeQuantity'), [found(), loaded(false), fetched('Subscribed')])
    .when(executed('purchase', ['Purchased', 'Activated'], known()))
    .then(finish('ignored', 'ChangeQuantity without the data it needs (planId/quantity)', ['Purchased', 'Activated']));
  // A plan change without a planId is sent as an empty plan (the subscription decider refuses it).
  spec(t).given(note('ChangePlan'), [found()]).when(loaded(true)).then(execute('action', { now: LATER, source: 'webhook', operationId: OP, type: 'ApplyPlanChange', planId: '' }));
});

t.test('status actions: applied, then the status converges on what Microsoft reports', async (t) => {
  const sus = note('Suspend', { status: 'Succeeded' });
  spec(t).given(sus, [found({ status: 'Succeeded' }), loaded(true)]).when(executed('action', ['Suspended'], known('Suspended'))).then({ type: 'GetSubscription' });
  spec(t).given(sus, [found({ status: 'Succeeded' }), loaded(true), executed('action', ['Suspended'])]).when(fetched('Suspended')).then(execute('reconcile', reconcile('Suspended'), 'system:notifications'));
  spec(t)
    .given(sus, [found({ status: 'Succeeded' }), loaded(true), executed('action', ['Suspended']), fetched('Suspended')])
    .when(executed('reconcile', []))
    .then(finish('applied', 'Suspend applied', ['Suspended']));
  spec(t).given(sus, [found({ status: 'Succeeded' }), loaded(true), executed('action', [])]).when(fetched()).then(finish('no-change', 'Suspend already applied or nothing to change'));
  spec(t)
    .given(sus, [found({ status: 'Succeeded' }), loaded(true), executed('action', []), fetched('Subscribed')])
    .when(refused('reconcile', 'ReconcileStatus: no way back'))
    .then(finish('no-change', 'Suspend already applied or nothing to change'));
  // A late Suspend after its Reinstate: suspended here, then brought back to Microsoft's Subscribed.
  spec(t)
    .given(sus, [found({ status: 'Succeeded' }), loaded(true), executed('action', ['Suspended']), fetched('Subscribed')])
    .when(executed('reconcile', ['Reinstated']))
    .then(finish('applied', 'Suspend applied', ['Suspended', 'Reinstated']));
  // Not applicable here, but reconciled: applied, and the detail says why.
  const renew = note('Renew', { status: 'Succeeded', term: { termUnit: 'P1Y', startDate: '2026-05-01', endDate: '2027-04-30' } });
  spec(t).given(renew, [notFound]).when(loaded(true)).then(execute('action', { now: LATER, source: 'webhook', operationId: OP, type: 'Renew', term: { termUnit: 'P1Y', startDate: '2026-05-01', endDate: '2027-04-30' } }));
  spec(t)
    .given(renew, [notFound, loaded(true), refused('action', 'Renew: the subscription is Unsubscribed'), fetched('Unsubscribed')])
    .when(executed('reconcile', []))
    .then(finish('ignored', 'Renew: the subscription is Unsubscribed'));
  spec(t)
    .given(note('Unsubscribe'), [notFound, loaded(true), refused('action', 'Unsubscribe: no'), fetched('Unsubscribed')])
    .when(executed('reconcile', ['Unsubscribed']))
    .then(finish('applied', "Unsubscribe: no; reconciled with Microsoft's status", ['Unsubscribed']));
  spec(t).given(note('Unsubscribe'), [notFound]).when(loaded(true)).then(execute('action', { now: LATER, source: 'webhook', operationId: OP, type: 'Unsubscribe', reason: 'Microsoft notified Unsubscribe' }));
});

t.test('Reinstate: acknowledged while pending (even when not applicable here), then reconciled', async (t) => {
  const rei = note('Reinstate');
  spec(t).given(rei, [found(), loaded(true)]).when(executed('action', ['Reinstated'], known())).then({ type: 'Acknowledge' });
  spec(t).given(rei, [found(), loaded(true)]).when(refused('action', 'Reinstate: not Suspended')).then({ type: 'Acknowledge' });
  spec(t).given(rei, [found(), loaded(true), executed('action', ['Reinstated'])]).when(acknowledged).then({ type: 'GetSubscription' });
  spec(t).given(rei, [found(), loaded(true), executed('action', ['Reinstated'])], { acknowledged: true }).then({ type: 'GetSubscription' });
  spec(t).given(rei, [found({ status: 'Succeeded' }), loaded(true)]).when(executed('action', ['Reinstated'])).then({ type: 'GetSubscription' });
  // Not read back from Microsoft: pending unless the notification says otherwise.
  spec(t).given(note('Reinstate', { status: undefined }), [found({}), loaded(true)]).when(executed('action', [])).then({ type: 'GetSubscription' });
  // The one answer came before our acknowledgement moved Microsoft on: it is not used to reconcile.
  spec(t)
    .given(rei, [found(), loaded(false), fetched('Suspended'), executed('purchase', ['Purchased', 'Activated', 'Suspended']), executed('action', ['Reinstated'])])
    .when(acknowledged)
    .then(finish('applied', 'Reinstate applied', ['Purchased', 'Activated', 'Suspended', 'Reinstated']));
});

/** Drive the workflow to the end with canned answers: what it calls, in order. */
function run(notification: NotificationPayload, answers: { operation: 'found' | 'missing'; known: boolean; status?: string; refuse?: boolean }): string[] {
  let state = initialWorkflow(notification, false, NOW);
  let step = nextStep(state);
  const calls: string[] = [];
  for (let i = 0; step.type !== 'Finish' && i < 20; i++) {
    calls.push(step.type === 'Execute' ? `Execute:${step.purpose}` : step.type);
    const observation: Observation =
      step.type === 'GetOperation'
        ? answers.operation === 'found' ? found() : notFound
        : step.type === 'LoadSubscription'
          ? loaded(answers.known)
          : step.type === 'GetSubscription'
            ? fetched(answers.status)
            : step.type === 'Execute'
              ? answers.refuse && step.purpose === 'action' ? refused('action', 'no') : executed(step.purpose, [], known())
              : step.type === 'Provision' ? provisioned : acknowledged;
    ({ state, step } = decide(observation, state));
  }
  calls.push(step.type);
  return calls;
}

t.test('every notification costs at most one Get operation and one Get subscription', async (t) => {
  for (const action of ['Subscribe', 'ChangePlan', 'ChangeQuantity', 'Suspend', 'Reinstate', 'Renew', 'Unsubscribe']) {
    for (const isKnown of [true, false]) {
      for (const operation of ['found', 'missing'] as const) {
        for (const refuse of [false, true]) {
          const calls = run(note(action, { planId: 'premium', quantity: 3 }), { operation, known: isKnown, status: 'Subscribed', refuse });
          const what = `${action}, ${isKnown ? 'known' : 'unknown'}, operation ${operation}${refuse ? ', refused' : ''}: ${calls.join(' → ')}`;
          t.ok(calls.filter((c) => c === 'GetOperation').length === 1, `${what}: one Get operation`);
          t.ok(calls.filter((c) => c === 'GetSubscription').length <= 1, `${what}: at most one Get subscription`);
          t.equal(calls.at(-1), 'Finish', `${what}: finishes`);
        }
      }
    }
  }
  t.same(run(note('Suspend'), { operation: 'found', known: true, status: 'Suspended' }), ['GetOperation', 'LoadSubscription', 'Execute:action', 'GetSubscription', 'Execute:reconcile', 'Finish']);
  t.same(run(note('Subscribe'), { operation: 'missing', known: false, status: 'Subscribed' }), [
    'GetOperation',
    'LoadSubscription',
    'GetSubscription',
    'Execute:purchase',
    'Execute:catch-up',
    'Finish',
  ]);
  t.same(run(note('ChangePlan', { planId: 'premium' }), { operation: 'found', known: true }), ['GetOperation', 'LoadSubscription', 'Execute:action', 'Provision', 'Acknowledge', 'Finish']);
});
