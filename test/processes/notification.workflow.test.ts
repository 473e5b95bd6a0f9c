/**
 * The notification workflow's decisions, pure, without the emulator: given what was observed so far,
 * when the next observation arrives, then this is the next step. The last tests drive every action ×
 * every operation status × found / not found × Microsoft's subscription state to the end and check that a
 * notification is acted on exactly when Microsoft confirms it.
 */
import t from 'tap';
import type { Test } from 'tap';
import type { NotificationPayload } from '../../src/domain/notification/index.js';
import type { KnownSubscription, SubscriptionCommand, SubscriptionDetails } from '../../src/domain/subscription/index.js';
import { decide, evolve, initialWorkflow, nextStep, waitsForUs } from '../../src/processes/notification.workflow.js';
import type { FinalOutcome, MicrosoftOperation, MicrosoftSubscription, Observation, Purpose, Step, WorkflowState } from '../../src/processes/notification.workflow.js';
import { deepFreeze } from '../support/given-when-then.js';

const OP = '8f0c2a4e-6b1d-4c3f-9e7a-5d2b0c4e6f18';
const SUB = '3c1f6a2e-9b7d-4e51-8a0c-2d4f6b8e1a37';
const NOW = '2026-05-01T12:00:00.000Z';
const LATER = '2026-05-01T12:00:00.200Z';
/** Microsoft's acknowledgement window ends 10 s after the first delivery. */
const DEADLINE = '2026-05-01T12:00:10.000Z';
const PAST = '2026-05-01T12:00:10.500Z';

const ACTIONS = ['Subscribe', 'ChangePlan', 'ChangeQuantity', 'Suspend', 'Reinstate', 'Renew', 'Unsubscribe'] as const;
const OPERATION_STATUSES = ['NotStarted', 'InProgress', 'Succeeded', 'Failed', 'Conflict', undefined, 'Cancelled'] as const;
const MICROSOFT_STATES = ['PendingFulfillmentStart', 'Subscribed', 'Suspended', 'Unsubscribed', undefined, 'missing'] as const;

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
const microsoft = (status?: string, term: SubscriptionDetails['term'] = {}): MicrosoftSubscription => ({ details: { ...details, term }, ...(status ? { status } : {}) });
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
const found = (operation: MicrosoftOperation, now = LATER): Observation => ({ type: 'OperationFound', operation, now });
const succeeded = found({ subscriptionId: SUB, status: 'Succeeded' });
const inProgress = found({ subscriptionId: SUB, status: 'InProgress' });
const notFound: Observation = { type: 'OperationNotFound', now: LATER };
const loaded = (isKnown: boolean, appliedBefore = false): Observation => ({ type: 'SubscriptionLoaded', known: isKnown, ...(appliedBefore ? { appliedBefore } : {}), now: LATER });
const fetched = (status?: string, term: SubscriptionDetails['term'] = {}): Observation => ({ type: 'SubscriptionFetched', subscription: microsoft(status, term), now: LATER });
const gone: Observation = { type: 'SubscriptionNotFound', now: LATER };
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
const ackRefused: Observation = { type: 'AcknowledgementRefused', reason: '409: a newer update is already fulfilled', now: LATER };
const ackFailed = (now = LATER): Observation => ({ type: 'AcknowledgementFailed', reason: '503 after 4 attempts', now });

const finish = (outcome: FinalOutcome, detail: string, subscriptionEvents: string[] = [], operationStatus?: string): Step => ({
  type: 'Finish',
  outcome,
  detail,
  subscriptionEvents,
  ...(operationStatus !== undefined ? { operationStatus } : {}),
});
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
const op = (action: string) => `Microsoft's ${action} operation ${OP} for subscription ${SUB}`;
const again = 'not applied; processed again if Microsoft delivers it again';

/** given(notification, what was seen).when(observation).then(next step); purity is checked on every case. */
function spec(t: Test) {
  return {
    given(notification: NotificationPayload, seen: Observation[] = [], options: { acknowledged?: boolean } = {}) {
      const state: WorkflowState = deepFreeze(seen.reduce(evolve, initialWorkflow(notification, options.acknowledged ?? false, NOW, DEADLINE)));
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
  spec(t).given(note('Transfer', { status: 'Succeeded' })).then(finish('ignored', 'unknown action Transfer: recorded, not acted on'));
});

t.test('verification: Get operation must find the operation, for this subscription and action', async (t) => {
  spec(t).given(note('Suspend')).then({ type: 'GetOperation' });
  spec(t).given(note('Suspend')).when(notFound).then(finish('unverified', `Microsoft has no operation ${OP} for subscription ${SUB}: ${again}`));
  spec(t).given(note('ChangePlan', { planId: 'premium' })).when(notFound).then(finish('unverified', `Microsoft has no operation ${OP} for subscription ${SUB}: ${again}`));
  spec(t).given(note('Reinstate')).when(notFound).then(finish('unverified', `Microsoft has no operation ${OP} for subscription ${SUB}: ${again}`));
  for (const action of ['Subscribe', 'Unsubscribe', 'Renew']) {
    spec(t).given(note(action)).when(notFound).then({ type: 'GetSubscription' });
  }
  spec(t)
    .given(note('Suspend'))
    .when(found({ subscriptionId: 'another-subscription', status: 'Succeeded' }))
    .then(finish('unverified', `Microsoft's operation ${OP} belongs to subscription another-subscription, not ${SUB}`, [], 'Succeeded'));
  spec(t).given(note('Suspend')).when(found({ action: 'Reinstate' })).then(finish('unverified', `Microsoft's operation ${OP} is a Reinstate, not a Suspend`));
  spec(t).given(note('Suspend')).when(found({ subscriptionId: SUB, action: 'Suspend', status: 'Succeeded' })).then({ type: 'LoadSubscription' });
  // Fields Microsoft left out are not held against it: the path already names the subscription and the operation.
  spec(t).given(note('Suspend')).when(found({ status: 'Succeeded' })).then({ type: 'LoadSubscription' });
});

t.test("verification: the operation's status says whether it happened, waits for us, failed, or is not final", async (t) => {
  for (const action of ['ChangePlan', 'ChangeQuantity', 'Reinstate']) {
    const n = note(action, { planId: 'premium', quantity: 9 });
    spec(t).given(n).when(inProgress).then({ type: 'LoadSubscription' });
    spec(t).given(n).when(succeeded).then({ type: 'LoadSubscription' });
  }
  for (const action of ['Subscribe', 'Suspend', 'Renew', 'Unsubscribe']) {
    spec(t).given(note(action)).when(succeeded).then({ type: 'LoadSubscription' });
    spec(t).given(note(action)).when(inProgress).then(finish('unverified', `${op(action)} is still InProgress: ${again}`, [], 'InProgress'));
  }
  for (const action of ACTIONS) {
    const n = note(action, { planId: 'premium', quantity: 9 });
    spec(t).given(n).when(found({ status: 'NotStarted' })).then(finish('unverified', `${op(action)} has not started: ${again}`, [], 'NotStarted'));
    spec(t).given(n).when(found({ status: 'Failed' })).then(finish('failed', `${op(action)} is Failed: it did not happen, not applied`, [], 'Failed'));
    spec(t)
      .given(n)
      .when(found({ status: 'Failed', errorMessage: 'the webhook answered 400' }))
      .then(finish('failed', `${op(action)} is Failed (the webhook answered 400): it did not happen, not applied`, [], 'Failed'));
    spec(t).given(n).when(found({ status: 'Conflict' })).then(finish('failed', `${op(action)} is Conflict: it did not happen, not applied`, [], 'Conflict'));
    spec(t).given(n).when(found({})).then(finish('unverified', `${op(action)} has no status: ${again}`));
    spec(t).given(n).when(found({ status: 'Cancelled' })).then(finish('unverified', `${op(action)} has status Cancelled, which we do not act on: ${again}`, [], 'Cancelled'));
  }
  t.ok(waitsForUs('ChangePlan') && waitsForUs('ChangeQuantity') && waitsForUs('Reinstate'), 'plan and quantity changes and Reinstate wait for us');
  t.notOk(waitsForUs('Suspend') || waitsForUs('Subscribe') || waitsForUs('Renew') || waitsForUs('Unsubscribe') || waitsForUs('Transfer'), 'the others do not');
});

t.test("no operation record: Get subscription must show what Subscribe, Unsubscribe or Renew claims", async (t) => {
  const none = (action: string) => `Microsoft has no operation ${OP} for this ${action}`;
  spec(t).given(note('Unsubscribe'), [notFound]).when(fetched('Unsubscribed')).then({ type: 'LoadSubscription' });
  spec(t)
    .given(note('Unsubscribe'), [notFound])
    .when(fetched('Subscribed'))
    .then(finish('unverified', `${none('Unsubscribe')}, and subscription ${SUB} is Subscribed at Microsoft, not Unsubscribed: ${again}`));
  spec(t).given(note('Subscribe'), [notFound]).when(fetched('Subscribed')).then({ type: 'LoadSubscription' });
  spec(t)
    .given(note('Subscribe'), [notFound])
    .when(fetched('PendingFulfillmentStart'))
    .then(finish('unverified', `${none('Subscribe')}, and subscription ${SUB} is PendingFulfillmentStart at Microsoft, not Subscribed: ${again}`));
  spec(t)
    .given(note('Subscribe'), [notFound])
    .when(fetched())
    .then(finish('unverified', `${none('Subscribe')}, and subscription ${SUB} is without a status at Microsoft, not Subscribed: ${again}`));
  for (const action of ['Subscribe', 'Unsubscribe', 'Renew']) {
    spec(t).given(note(action), [notFound]).when(gone).then(finish('unverified', `${none(action)}, and does not know subscription ${SUB}: ${again}`));
  }

  // Renew: Subscribed, with a term that moved on to (at least) the renewed one.
  const renewed = { termUnit: 'P1Y', startDate: '2026-05-01', endDate: '2027-04-30' };
  const renew = note('Renew', { status: 'Succeeded', term: renewed });
  spec(t).given(renew, [notFound]).when(fetched('Subscribed', renewed)).then({ type: 'LoadSubscription' });
  spec(t).given(renew, [notFound]).when(fetched('Subscribed', { ...renewed, startDate: '2027-05-01' })).then({ type: 'LoadSubscription' });
  spec(t).given(renew, [notFound]).when(fetched('Subscribed', { termUnit: 'PAY' })).then({ type: 'LoadSubscription' });
  spec(t).given(note('Renew'), [notFound]).when(fetched('Subscribed', renewed)).then({ type: 'LoadSubscription' });
  spec(t)
    .given(renew, [notFound])
    .when(fetched('Subscribed', { termUnit: 'P1Y', startDate: '2025-05-01', endDate: '2026-04-30' }))
    .then(finish('unverified', `${none('Renew')}, and subscription ${SUB}'s term at Microsoft starts 2025-05-01, before the renewed term's 2026-05-01: ${again}`));
  spec(t)
    .given(renew, [notFound])
    .when(fetched('Unsubscribed', renewed))
    .then(finish('unverified', `${none('Renew')}, and subscription ${SUB} is Unsubscribed at Microsoft, not Subscribed: ${again}`));

  // Confirmed: the one answer serves the purchase, the catch-up and the reconciliation.
  spec(t).given(note('Unsubscribe'), [notFound, fetched('Unsubscribed')]).when(loaded(false)).then(execute('purchase', purchase('Unsubscribed')));
  spec(t)
    .given(note('Unsubscribe'), [notFound, fetched('Unsubscribed')])
    .when(loaded(true))
    .then(execute('action', { now: LATER, source: 'webhook', operationId: OP, type: 'Unsubscribe', reason: 'Microsoft notified Unsubscribe' }));
  spec(t)
    .given(note('Unsubscribe'), [notFound, fetched('Unsubscribed'), loaded(true)])
    .when(executed('action', ['Unsubscribed']))
    .then(execute('reconcile', reconcile('Unsubscribed'), 'system:notifications'));
  spec(t).given(note('Subscribe'), [notFound, fetched('Subscribed')]).when(loaded(true)).then(execute('catch-up', purchase('Subscribed', OP)));
});

t.test('a subscription we never saw is recorded from Get subscription before the action applies', async (t) => {
  const n = note('Suspend');
  spec(t).given(n, [succeeded]).when(loaded(false)).then({ type: 'GetSubscription' });
  spec(t).given(n, [succeeded, loaded(false)]).when(fetched('Suspended')).then(execute('purchase', purchase('Suspended')));
  spec(t).given(n, [succeeded, loaded(false)]).when(fetched()).then(execute('purchase', purchase('PendingFulfillmentStart')));
  spec(t)
    .given(n, [succeeded, loaded(false), fetched('Suspended')])
    .when(executed('purchase', ['Purchased', 'Activated', 'Suspended'], known('Suspended')))
    .then(execute('action', { now: LATER, source: 'webhook', operationId: OP, type: 'Suspend' }));
  spec(t).given(n, [succeeded]).when(loaded(true)).then(execute('action', { now: LATER, source: 'webhook', operationId: OP, type: 'Suspend' }));
  // Microsoft confirms the operation but does not know the subscription: nothing to record it from.
  spec(t)
    .given(n, [succeeded, loaded(false)])
    .when(gone)
    .then(finish('unverified', `Microsoft does not know subscription ${SUB} (Get subscription: 404): ${again}`));
});

t.test('Subscribe: the purchase is recorded and caught up with Microsoft, with one Get subscription', async (t) => {
  const n = note('Subscribe', { status: 'Succeeded' });
  spec(t).given(n, [notFound, fetched('Subscribed'), loaded(false)]).then(execute('purchase', purchase('Subscribed', OP)));
  spec(t)
    .given(n, [notFound, fetched('Subscribed'), loaded(false)])
    .when(executed('purchase', ['Purchased', 'Activated'], known()))
    .then(execute('catch-up', purchase('Subscribed', OP)));
  spec(t)
    .given(n, [notFound, fetched('Subscribed'), loaded(false), executed('purchase', ['Purchased', 'Activated'])])
    .when(executed('catch-up', []))
    .then(finish('applied', 'Subscribe', ['Purchased', 'Activated']));
  spec(t).given(n, [succeeded]).when(loaded(true)).then({ type: 'GetSubscription' });
  spec(t).given(n, [succeeded, loaded(true)]).when(fetched('Subscribed')).then(execute('catch-up', purchase('Subscribed', OP)));
  spec(t).given(n, [succeeded, loaded(true), fetched('Subscribed')]).when(executed('catch-up', [])).then(finish('no-change', 'Subscribe', [], 'Succeeded'));
  spec(t).given(n, [succeeded, loaded(true), fetched('Subscribed')]).when(executed('catch-up', ['Activated'])).then(finish('applied', 'Subscribe', ['Activated'], 'Succeeded'));
  spec(t).given(n, [succeeded, loaded(true)]).when(gone).then(finish('unverified', `Microsoft does not know subscription ${SUB} (Get subscription: 404): ${again}`, [], 'Succeeded'));
});

t.test('customer-side plan and quantity changes: applied, provisioned, acknowledged while Microsoft waits', async (t) => {
  const plan = note('ChangePlan', { planId: 'premium', operationRequestSource: 'Azure', timeStamp: '2026-05-01T11:59:59.000Z' });
  const command: SubscriptionCommand = { now: LATER, source: 'webhook', operationId: OP, type: 'ApplyPlanChange', planId: 'premium', requestSource: 'Azure', timeStamp: '2026-05-01T11:59:59.000Z' };
  spec(t).given(plan, [inProgress]).when(loaded(true)).then(execute('action', command));
  spec(t).given(plan, [inProgress, loaded(true)]).when(executed('action', ['PlanChanged'], known())).then({ type: 'Provision', subscription: known(), reason: 'plan-change' });
  spec(t).given(plan, [inProgress, loaded(true), executed('action', ['PlanChanged'], known())]).when(provisioned).then({ type: 'Acknowledge' });
  spec(t)
    .given(plan, [inProgress, loaded(true), executed('action', ['PlanChanged'], known()), provisioned])
    .when(acknowledged)
    .then(finish('applied', 'ChangePlan applied', ['PlanChanged'], 'Succeeded'));
  // Already applied and acknowledged (a second processing): provisioned again (idempotent), not acknowledged again.
  spec(t).given(plan, [inProgress, loaded(true)]).when(executed('action', [], known())).then({ type: 'Provision', subscription: known(), reason: 'plan-change' });
  spec(t)
    .given(plan, [inProgress, loaded(true), executed('action', [], known())], { acknowledged: true })
    .when(provisioned)
    .then(finish('no-change', 'ChangePlan already applied or nothing to change', [], 'InProgress'));
  // Microsoft's operation no longer waits (its window ended, or our Partner change completed): no acknowledgement.
  spec(t)
    .given(plan, [succeeded, loaded(true), executed('action', ['PlanChanged'], known())])
    .when(provisioned)
    .then(finish('applied', 'ChangePlan applied', ['PlanChanged'], 'Succeeded'));
  // Not applied (out of order, superseded): neither provisioned nor acknowledged.
  spec(t).given(plan, [inProgress, loaded(true)]).when(refused('action', 'ApplyPlanChange: superseded')).then(finish('ignored', 'ApplyPlanChange: superseded', [], 'InProgress'));

  const seats = note('ChangeQuantity', { quantity: 12 });
  spec(t).given(seats, [inProgress]).when(loaded(true)).then(execute('action', { now: LATER, source: 'webhook', operationId: OP, type: 'ApplyQuantityChange', quantity: 12 }));
  spec(t).given(seats, [inProgress, loaded(true)]).when(executed('action', ['QuantityChanged'], known())).then({ type: 'Provision', subscription: known(), reason: 'quantity-change' });
  spec(t).given(note('ChangeQuantity'), [inProgress]).when(loaded(true)).then(finish('ignored', 'ChangeQuantity without the data it needs (planId/quantity)', [], 'InProgress'));
  spec(t)
    .given(note('ChangeQuantity'), [inProgress, loaded(false), fetched('Subscribed')])
    .when(executed('purchase', ['Purchased', 'Activated'], known()))
    .then(finish('ignored', 'ChangeQuantity without the data it needs (planId/quantity)', ['Purchased', 'Activated'], 'InProgress'));
  // A plan change without a planId is sent as an empty plan (the subscription decider refuses it).
  spec(t).given(note('ChangePlan'), [inProgress]).when(loaded(true)).then(execute('action', { now: LATER, source: 'webhook', operationId: OP, type: 'ApplyPlanChange', planId: '' }));
});

t.test('the acknowledgement outlasts short outages: retried until the window ends, then Microsoft is asked what it did', async (t) => {
  const plan = note('ChangePlan', { planId: 'premium' });
  const applied = [inProgress, loaded(true), executed('action', ['PlanChanged'], known()), provisioned];
  const why = '503 after 4 attempts';
  spec(t).given(plan, applied).when(ackFailed()).then({ type: 'RetryLater', reason: `acknowledging operation ${OP}: ${why}`, until: DEADLINE });
  spec(t).given(plan, applied).when(ackFailed(PAST)).then({ type: 'GetOperation' });
  spec(t)
    .given(plan, [...applied, ackFailed(PAST)])
    .when(succeeded)
    .then(finish('applied', `ChangePlan applied; our acknowledgement was not taken (${why}), Microsoft completed the operation`, ['PlanChanged'], 'Succeeded'));
  spec(t)
    .given(plan, [...applied, ackFailed(PAST)])
    .when(found({ status: 'Failed' }))
    .then(
      finish(
        'failed',
        `ChangePlan was applied here, but Microsoft ended operation ${OP} Failed after our acknowledgement was not taken (${why}): our record differs from Microsoft's until it is reconciled`,
        ['PlanChanged'],
        'Failed',
      ),
    );
  spec(t)
    .given(plan, [...applied, ackFailed(PAST)])
    .when(inProgress)
    .then({ type: 'RetryLater', reason: `Microsoft has not settled operation ${OP} (InProgress) after our acknowledgement was not taken (${why})` });
  spec(t)
    .given(plan, [...applied, ackFailed(PAST)])
    .when(notFound)
    .then(finish('applied', `ChangePlan applied here; our acknowledgement was not taken (${why}) and Microsoft no longer finds operation ${OP}`, ['PlanChanged']));

  // Microsoft answers that there is nothing to acknowledge (409): recorded, and the operation is read back.
  const conflict = '409: a newer update is already fulfilled';
  spec(t).given(plan, applied).when(ackRefused).then({ type: 'GetOperation' });
  spec(t)
    .given(plan, [...applied, ackRefused])
    .when(succeeded)
    .then(finish('applied', `ChangePlan applied; our acknowledgement was not taken (${conflict}), Microsoft completed the operation`, ['PlanChanged'], 'Succeeded'));
  spec(t)
    .given(plan, [...applied, ackRefused])
    .when(found({ status: 'Conflict' }))
    .then(
      finish(
        'failed',
        `ChangePlan was applied here, but Microsoft ended operation ${OP} Conflict after our acknowledgement was not taken (${conflict}): our record differs from Microsoft's until it is reconciled`,
        ['PlanChanged'],
        'Conflict',
      ),
    );
});

t.test('an acknowledgement Microsoft took but we did not record (stopped between the PATCH and the append) is recorded as recovered', async (t) => {
  const plan = note('ChangePlan', { planId: 'premium' });
  const recovered: Step = {
    type: 'RecordAcknowledgement',
    note:
      'recovered: an earlier run applied this change but stopped before recording its acknowledgement; ' +
      'Microsoft reports the operation Succeeded (our PATCH before the stop, or the end of its window, completed it)',
  };
  spec(t).given(plan, [succeeded, loaded(true, true), executed('action', [], known())]).when(provisioned).then(recovered);
  spec(t)
    .given(plan, [succeeded, loaded(true, true), executed('action', [], known()), provisioned])
    .when(acknowledged)
    .then(finish('applied', 'ChangePlan applied by an earlier run of this notification', [], 'Succeeded'));
  // Recorded before: nothing to recover. Never applied here before (Microsoft's window accepted it): no acknowledgement of ours.
  spec(t)
    .given(plan, [succeeded, loaded(true, true), executed('action', [], known())], { acknowledged: true })
    .when(provisioned)
    .then(finish('applied', 'ChangePlan applied by an earlier run of this notification', [], 'Succeeded'));
  spec(t).given(plan, [succeeded, loaded(true), executed('action', ['PlanChanged'], known())]).when(provisioned).then(finish('applied', 'ChangePlan applied', ['PlanChanged'], 'Succeeded'));
  // Reinstate too.
  spec(t).given(note('Reinstate'), [succeeded, loaded(true, true)]).when(executed('action', [])).then(recovered);
  // The earlier run's PATCH is known not to have got through (it retried later): Microsoft's window accepted it.
  const state = [succeeded, loaded(true, true), executed('action', [], known()), provisioned].reduce(evolve, initialWorkflow(plan, false, NOW, DEADLINE, '503 after 4 attempts'));
  t.strictSame(
    nextStep(state),
    finish('applied', 'ChangePlan applied by an earlier run of this notification; our acknowledgement did not get through (503 after 4 attempts), Microsoft completed the operation', [], 'Succeeded'),
    'not recovered: the window accepted it',
  );
  // An earlier run that stopped before its PATCH, inside the window: the PATCH is sent now.
  spec(t).given(plan, [inProgress, loaded(true, true), executed('action', [], known())]).when(provisioned).then({ type: 'Acknowledge' });
});

t.test('status actions: applied, then the status converges on what Microsoft reports', async (t) => {
  const sus = note('Suspend', { status: 'Succeeded' });
  spec(t).given(sus, [succeeded, loaded(true)]).when(executed('action', ['Suspended'], known('Suspended'))).then({ type: 'GetSubscription' });
  spec(t).given(sus, [succeeded, loaded(true), executed('action', ['Suspended'])]).when(fetched('Suspended')).then(execute('reconcile', reconcile('Suspended'), 'system:notifications'));
  spec(t)
    .given(sus, [succeeded, loaded(true), executed('action', ['Suspended']), fetched('Suspended')])
    .when(executed('reconcile', []))
    .then(finish('applied', 'Suspend applied', ['Suspended'], 'Succeeded'));
  spec(t).given(sus, [succeeded, loaded(true), executed('action', [])]).when(fetched()).then(finish('no-change', 'Suspend already applied or nothing to change', [], 'Succeeded'));
  spec(t).given(sus, [succeeded, loaded(true), executed('action', ['Suspended'])]).when(gone).then(finish('applied', 'Suspend applied', ['Suspended'], 'Succeeded'));
  spec(t)
    .given(sus, [succeeded, loaded(true), executed('action', []), fetched('Subscribed')])
    .when(refused('reconcile', 'ReconcileStatus: no way back'))
    .then(finish('no-change', 'Suspend already applied or nothing to change', [], 'Succeeded'));
  // A late Suspend after its Reinstate: suspended here, then brought back to Microsoft's Subscribed.
  spec(t)
    .given(sus, [succeeded, loaded(true), executed('action', ['Suspended']), fetched('Subscribed')])
    .when(executed('reconcile', ['Reinstated']))
    .then(finish('applied', 'Suspend applied', ['Suspended', 'Reinstated'], 'Succeeded'));
  // Not applicable here, but reconciled: applied, and the detail says why.
  const term = { termUnit: 'P1Y', startDate: '2026-05-01', endDate: '2027-04-30' };
  const renew = note('Renew', { status: 'Succeeded', term });
  spec(t).given(renew, [notFound, fetched('Subscribed', term)]).when(loaded(true)).then(execute('action', { now: LATER, source: 'webhook', operationId: OP, type: 'Renew', term }));
  spec(t)
    .given(renew, [succeeded, loaded(true), refused('action', 'Renew: the subscription is Unsubscribed'), fetched('Unsubscribed')])
    .when(executed('reconcile', []))
    .then(finish('ignored', 'Renew: the subscription is Unsubscribed', [], 'Succeeded'));
  spec(t)
    .given(note('Unsubscribe'), [notFound, fetched('Unsubscribed'), loaded(true), refused('action', 'Unsubscribe: no')])
    .when(executed('reconcile', ['Unsubscribed']))
    .then(finish('applied', "Unsubscribe: no; reconciled with Microsoft's status", ['Unsubscribed']));
});

t.test('Reinstate: acknowledged while pending (even when not applicable here), then reconciled', async (t) => {
  const rei = note('Reinstate');
  spec(t).given(rei, [inProgress, loaded(true)]).when(executed('action', ['Reinstated'], known())).then({ type: 'Acknowledge' });
  spec(t).given(rei, [inProgress, loaded(true)]).when(refused('action', 'Reinstate: not Suspended')).then({ type: 'Acknowledge' });
  spec(t).given(rei, [inProgress, loaded(true), executed('action', ['Reinstated'])]).when(acknowledged).then({ type: 'GetSubscription' });
  spec(t).given(rei, [inProgress, loaded(true), executed('action', ['Reinstated'])], { acknowledged: true }).then({ type: 'GetSubscription' });
  spec(t).given(rei, [succeeded, loaded(true)]).when(executed('action', ['Reinstated'])).then({ type: 'GetSubscription' });
  spec(t).given(rei, [inProgress, loaded(true), executed('action', ['Reinstated'])]).when(ackFailed()).then({ type: 'RetryLater', reason: `acknowledging operation ${OP}: 503 after 4 attempts`, until: DEADLINE });
  // The one answer came before our acknowledgement moved Microsoft on: it is not used to reconcile.
  spec(t)
    .given(rei, [inProgress, loaded(false), fetched('Suspended'), executed('purchase', ['Purchased', 'Activated', 'Suspended']), executed('action', ['Reinstated'])])
    .when(acknowledged)
    .then(finish('applied', 'Reinstate applied', ['Purchased', 'Activated', 'Suspended', 'Reinstated'], 'Succeeded'));
});

// ------------------------------------------------------------------------------------------------
// Every action × every operation status × found / not found × Microsoft's subscription state, to the end

type World = {
  action: string;
  /** What Get operation answers: a status (or none), or no operation at all. */
  operation: { found: true; status: string | undefined } | { found: false };
  /** Microsoft's subscription status, `undefined` for none, `missing` for 404. */
  microsoftState: (typeof MICROSOFT_STATES)[number];
  known: boolean;
};

/** The oracle: does Microsoft confirm this notification? */
function confirmed(w: World): boolean {
  if (w.operation.found) return w.operation.status === 'Succeeded' || (w.operation.status === 'InProgress' && waitsForUs(w.action));
  if (w.action === 'Unsubscribe') return w.microsoftState === 'Unsubscribed';
  if (w.action === 'Subscribe' || w.action === 'Renew') return w.microsoftState === 'Subscribed';
  return false;
}

/** Drive the workflow to the end with canned answers: what it calls, in order, and how it ends. */
function run(w: World): { calls: string[]; end: Step } {
  let state = initialWorkflow(note(w.action, { planId: 'premium', quantity: 3 }), false, NOW, DEADLINE);
  let step = nextStep(state);
  const calls: string[] = [];
  for (let i = 0; step.type !== 'Finish' && step.type !== 'RetryLater' && i < 30; i++) {
    calls.push(step.type === 'Execute' ? `Execute:${step.purpose}` : step.type);
    const answer = (): Observation => {
      switch (step.type) {
        case 'GetOperation':
          return w.operation.found ? found({ subscriptionId: SUB, action: w.action, ...(w.operation.status !== undefined ? { status: w.operation.status } : {}) }) : notFound;
        case 'LoadSubscription':
          return loaded(w.known);
        case 'GetSubscription':
          return w.microsoftState === 'missing' ? gone : fetched(w.microsoftState);
        case 'Execute':
          return executed(step.purpose, step.purpose === 'action' ? ['Changed'] : [], known());
        case 'Provision':
          return provisioned;
        default:
          return acknowledged;
      }
    };
    ({ state, step } = decide(answer(), state));
  }
  return { calls, end: step };
}

function worlds(): World[] {
  const out: World[] = [];
  for (const action of ACTIONS) {
    for (const operation of [...OPERATION_STATUSES.map((status) => ({ found: true as const, status })), { found: false as const }]) {
      for (const microsoftState of MICROSOFT_STATES) for (const isKnown of [true, false]) out.push({ action, operation, microsoftState, known: isKnown });
    }
  }
  return out;
}

t.test('acted on exactly when Microsoft confirms it; otherwise recorded as failed or unverified, and nothing is changed', async (t) => {
  let count = 0;
  for (const w of worlds()) {
    const { calls, end } = run(w);
    const what = `${w.action}, operation ${w.operation.found ? (w.operation.status ?? 'without status') : 'not found'}, Microsoft ${w.microsoftState ?? 'without status'}, ${w.known ? 'known' : 'unknown'}: ${calls.join(' → ')}`;
    const changes = calls.filter((c) => c === 'Execute:action' || c === 'Execute:purchase' || c === 'Execute:catch-up' || c === 'Provision' || c === 'Acknowledge');
    if (end.type !== 'Finish') {
      t.fail(`${what}: ends with ${end.type}`);
      continue;
    }
    // A subscription Microsoft does not know cannot be recorded (nor a Subscribe caught up) from Get subscription.
    const recordable = w.microsoftState !== 'missing' || (w.known && w.action !== 'Subscribe');
    if (confirmed(w) && recordable) {
      t.ok(changes.length > 0, `${what}: acted on`);
      t.not(end.outcome, 'unverified', `${what}: not unverified`);
      t.not(end.outcome, 'failed', `${what}: not failed`);
    } else {
      t.same(changes, [], `${what}: nothing changed`);
      const failed = w.operation.found && (w.operation.status === 'Failed' || w.operation.status === 'Conflict');
      t.equal(end.outcome, failed ? 'failed' : 'unverified', `${what}: ${end.outcome} (${end.detail})`);
    }
    t.equal(calls.filter((c) => c === 'GetOperation').length, 1, `${what}: one Get operation`);
    t.ok(calls.filter((c) => c === 'GetSubscription').length <= 1, `${what}: at most one Get subscription`);
    const acknowledgedHere = calls.includes('Acknowledge');
    t.equal(acknowledgedHere, changes.length > 0 && w.operation.found && w.operation.status === 'InProgress' && waitsForUs(w.action), `${what}: acknowledged only while Microsoft waits for us`);
    if (w.operation.found && w.operation.status !== undefined && end.operationStatus !== undefined) {
      t.equal(end.operationStatus, acknowledgedHere ? 'Succeeded' : w.operation.status, `${what}: the operation's status is recorded`);
    }
    count++;
  }
  t.equal(count, ACTIONS.length * (OPERATION_STATUSES.length + 1) * MICROSOFT_STATES.length * 2, 'every combination finishes');
});

t.test('the usual paths, call by call', async (t) => {
  const path = (w: World) => [...run(w).calls, run(w).end.type];
  t.same(path({ action: 'Suspend', operation: { found: true, status: 'Succeeded' }, microsoftState: 'Suspended', known: true }), [
    'GetOperation',
    'LoadSubscription',
    'Execute:action',
    'GetSubscription',
    'Execute:reconcile',
    'Finish',
  ]);
  t.same(path({ action: 'Subscribe', operation: { found: false }, microsoftState: 'Subscribed', known: false }), [
    'GetOperation',
    'GetSubscription',
    'LoadSubscription',
    'Execute:purchase',
    'Execute:catch-up',
    'Finish',
  ]);
  t.same(path({ action: 'ChangePlan', operation: { found: true, status: 'InProgress' }, microsoftState: 'Subscribed', known: true }), [
    'GetOperation',
    'LoadSubscription',
    'Execute:action',
    'Provision',
    'Acknowledge',
    'Finish',
  ]);
  t.same(path({ action: 'Unsubscribe', operation: { found: false }, microsoftState: 'Subscribed', known: true }), ['GetOperation', 'GetSubscription', 'Finish']);
  t.same(path({ action: 'ChangeQuantity', operation: { found: true, status: 'Conflict' }, microsoftState: 'Subscribed', known: true }), ['GetOperation', 'Finish']);
});
