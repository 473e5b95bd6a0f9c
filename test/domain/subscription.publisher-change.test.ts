/**
 * Publisher-side changes (docs/marketplace.md §7.5): we ask Microsoft first (PATCH / DELETE → 202 + operation id),
 * record the request as pending, which locks further publisher changes, and apply the change only
 * when Microsoft's notification for that operation arrives; a failure settles the request too.
 * Also: Microsoft-side changes, "revert" notifications, CSP (Read-only) subscriptions, invalid input.
 */
import t from 'tap';
import { decide, evolve, initialState } from '../../src/domain/subscription/index.js';
import type { SubscriptionCommand, SubscriptionEvent, SubscriptionState } from '../../src/domain/subscription/index.js';
import { NOW, T, because, history, known, purchased, spec } from './subscription.fixtures.js';

const at = (minute: number): string => `2026-05-01T12:${String(minute).padStart(2, '0')}:00.000Z`;

const requestPlan = (requestId: string, planId: string, now = NOW): SubscriptionCommand => ({
  type: 'RequestPlanChange',
  now,
  source: 'operator',
  requestId,
  planId,
});
const requestQuantity = (requestId: string, quantity: number, now = NOW): SubscriptionCommand => ({
  type: 'RequestQuantityChange',
  now,
  source: 'operator',
  requestId,
  quantity,
});
const requestUnsubscribe = (requestId: string, now = NOW): SubscriptionCommand => ({
  type: 'RequestUnsubscribe',
  now,
  source: 'operator',
  requestId,
});
const submitted = (requestId: string, operationId: string, now = NOW): SubscriptionCommand => ({
  type: 'RecordChangeSubmitted',
  now,
  source: 'process',
  requestId,
  operationId,
});

const planChangeRequested = (requestId = 'req-1', planId = 'gold'): SubscriptionEvent => ({
  type: 'PlanChangeRequested',
  data: { ...because(T.changeRequested, 'operator'), requestId, planId, previousPlanId: 'silver' },
});
const quantityChangeRequested = (requestId = 'req-1', quantity = 10): SubscriptionEvent => ({
  type: 'QuantityChangeRequested',
  data: { ...because(T.changeRequested, 'operator'), requestId, quantity, previousQuantity: 5 },
});
const changeSubmitted = (requestId = 'req-1', operationId = 'op-1'): SubscriptionEvent => ({
  type: 'ChangeSubmitted',
  data: { ...because(T.changeSubmitted, 'process'), requestId, operationId },
});

t.test('a publisher-side plan change, from request to settlement', async (t) => {
  const events = history('Subscribed');
  /** One step of the flow: when `command` then `expected`, which joins the history. */
  const step = (command: SubscriptionCommand, expected: SubscriptionEvent[]): SubscriptionState => {
    const state = spec(t).given(events).when(command).then(expected);
    events.push(...expected);
    return state;
  };

  // 1. The operator asks for gold.
  let state = step(requestPlan('req-1', 'gold', at(0)), [
    { type: 'PlanChangeRequested', data: { ...because(at(0), 'operator'), requestId: 'req-1', planId: 'gold', previousPlanId: 'silver' } },
  ]);
  t.match(known(state), {
    status: 'Subscribed',
    planId: 'silver',
    pendingChange: { kind: 'plan', requestId: 'req-1', planId: 'gold', requestedAt: at(0) },
  });

  // 2. Any other publisher-side change waits until it settles.
  for (const command of [requestQuantity('req-2', 10, at(1)), requestPlan('req-2', 'platinum', at(1)), requestUnsubscribe('req-2', at(1))]) {
    spec(t)
      .given(events)
      .when(command)
      .thenError('change-pending', { status: 409, messageIncludes: [command.type, 'plan change', 'request req-1'] });
  }

  // 3. Microsoft accepted the PATCH (202) with operation op-1.
  state = step(submitted('req-1', 'op-1', at(2)), [
    { type: 'ChangeSubmitted', data: { ...because(at(2), 'process'), requestId: 'req-1', operationId: 'op-1' } },
  ]);
  t.match(known(state).pendingChange, { kind: 'plan', requestId: 'req-1', operationId: 'op-1' });
  t.notOk(known(state).appliedOperations.includes('op-1'), 'submitting is not applying: the notification for op-1 is still to come');
  spec(t)
    .given(events)
    .when(requestQuantity('req-2', 10, at(3)))
    .thenError('change-pending', { messageIncludes: ['RequestQuantityChange', 'request req-1', 'operation op-1'] });

  // 4. Microsoft's ChangePlan notification for op-1 (operationRequestSource Partner) applies it and settles the request.
  state = step({ type: 'ApplyPlanChange', now: at(4), source: 'webhook', operationId: 'op-1', planId: 'gold', requestSource: 'Partner' }, [
    {
      type: 'PlanChanged',
      data: { ...because(at(4), 'webhook'), operationId: 'op-1', planId: 'gold', previousPlanId: 'silver', requestSource: 'Partner' },
    },
  ]);
  t.equal(known(state).planId, 'gold', 'on gold');
  t.equal(known(state).pendingChange, undefined, 'the pending change is settled');
  t.ok(known(state).appliedOperations.includes('op-1'), 'op-1 is applied');

  // 5. The lock is released.
  step(requestQuantity('req-2', 10, at(5)), [
    { type: 'QuantityChangeRequested', data: { ...because(at(5), 'operator'), requestId: 'req-2', quantity: 10, previousQuantity: 5 } },
  ]);
});

t.test('a publisher-side quantity change settles with the QuantityChanged for its operation', async (t) => {
  const state = spec(t)
    .given([...history('Subscribed'), quantityChangeRequested('req-1', 10), changeSubmitted('req-1', 'op-1')])
    .when({ type: 'ApplyQuantityChange', now: NOW, source: 'webhook', operationId: 'op-1', quantity: 10, requestSource: 'Partner' })
    .then([
      {
        type: 'QuantityChanged',
        data: { ...because(NOW, 'webhook'), operationId: 'op-1', quantity: 10, previousQuantity: 5, requestSource: 'Partner' },
      },
    ]);
  t.match(known(state), { quantity: 10, pendingChange: undefined });
});

t.test('a customer-side change during a pending publisher change is applied and does not settle it', async (t) => {
  const state = spec(t)
    .given([...history('Subscribed'), planChangeRequested('req-1', 'gold'), changeSubmitted('req-1', 'op-1')])
    .when({ type: 'ApplyQuantityChange', now: NOW, source: 'webhook', operationId: 'op-azure-7', quantity: 6, requestSource: 'Azure' })
    .then([
      {
        type: 'QuantityChanged',
        data: { ...because(NOW, 'webhook'), operationId: 'op-azure-7', quantity: 6, previousQuantity: 5, requestSource: 'Azure' },
      },
    ]);
  t.match(known(state), { quantity: 6, pendingChange: { kind: 'plan', requestId: 'req-1', operationId: 'op-1' } });
});

t.test('a failed publisher-side change settles the request and changes nothing else', async (t) => {
  t.test('refused by Microsoft before an operation existed (PATCH 400)', async (t) => {
    const state = spec(t)
      .given([...history('Subscribed'), quantityChangeRequested('req-1', 10)])
      .when({ type: 'RecordChangeRequestFailure', now: NOW, source: 'process', requestId: 'req-1', status: '400', reason: 'PATCH answered 400' })
      .then([{ type: 'ChangeRequestFailed', data: { ...because(NOW, 'process'), requestId: 'req-1', status: '400', reason: 'PATCH answered 400' } }]);
    t.match(known(state), { quantity: 5, pendingChange: undefined, appliedOperations: [] });
  });

  t.test('the operation ended Failed or Conflict at Microsoft', async (t) => {
    for (const status of ['Failed', 'Conflict']) {
      const state = spec(t)
        .given([...history('Subscribed'), planChangeRequested('req-1', 'gold'), changeSubmitted('req-1', 'op-1')])
        .when({ type: 'RecordChangeRequestFailure', now: NOW, source: 'process', requestId: 'req-1', operationId: 'op-1', status, reason: `operation ${status}` })
        .then([
          {
            type: 'ChangeRequestFailed',
            data: { ...because(NOW, 'process'), operationId: 'op-1', requestId: 'req-1', status, reason: `operation ${status}` },
          },
        ]);
      t.match(known(state), { planId: 'silver', pendingChange: undefined, appliedOperations: ['op-1'] });
      // The lock is released.
      spec(t)
        .given([
          ...history('Subscribed'),
          planChangeRequested('req-1', 'gold'),
          changeSubmitted('req-1', 'op-1'),
          { type: 'ChangeRequestFailed', data: { ...because(NOW, 'process'), operationId: 'op-1', requestId: 'req-1', status, reason: '' } },
        ])
        .when(requestPlan('req-2', 'gold'))
        .then([{ type: 'PlanChangeRequested', data: { ...because(NOW, 'operator'), requestId: 'req-2', planId: 'gold', previousPlanId: 'silver' } }]);
    }
  });

  t.test('a failure reported for a request that is not pending (settled already, or unknown) → nothing', async (t) => {
    spec(t)
      .given([...history('Subscribed'), planChangeRequested('req-1', 'gold')])
      .when({ type: 'RecordChangeRequestFailure', now: NOW, source: 'process', requestId: 'req-9', status: 'Failed', reason: '' })
      .thenNothing();
    spec(t)
      .given(history('Subscribed'))
      .when({ type: 'RecordChangeRequestFailure', now: NOW, source: 'process', requestId: 'req-1', status: 'Failed', reason: '' })
      .thenNothing();
  });
});

t.test('RecordChangeSubmitted', async (t) => {
  const pending = [...history('Subscribed'), planChangeRequested('req-1', 'gold')];
  t.test('for a request that is not pending → no-such-request', async (t) => {
    spec(t).given(pending).when(submitted('req-9', 'op-1')).thenError('no-such-request', { messageIncludes: ['RecordChangeSubmitted', 'req-9'] });
    spec(t).given(history('Subscribed')).when(submitted('req-1', 'op-1')).thenError('no-such-request', { messageIncludes: ['req-1'] });
  });
  t.test('the same operation again → nothing; another operation → already-submitted', async (t) => {
    spec(t).given([...pending, changeSubmitted('req-1', 'op-1')]).when(submitted('req-1', 'op-1')).thenNothing();
    spec(t)
      .given([...pending, changeSubmitted('req-1', 'op-1')])
      .when(submitted('req-1', 'op-2'))
      .thenError('already-submitted', { messageIncludes: ['RecordChangeSubmitted', 'req-1', 'op-1'] });
  });
});

t.test("Microsoft's notification for our operation arrives before we recorded the 202 (a race)", async (t) => {
  // The webhook for op-1 can be processed before the process that sent the PATCH records ChangeSubmitted.
  const raced: SubscriptionEvent[] = [
    ...history('Subscribed'),
    planChangeRequested('req-1', 'gold'),
    { type: 'PlanChanged', data: { ...because(at(1), 'webhook'), operationId: 'op-1', planId: 'gold', previousPlanId: 'silver', requestSource: 'Partner' } },
  ];
  const before = raced.reduce(evolve, initialState());
  t.match(known(before), { planId: 'gold', pendingChange: { requestId: 'req-1' } }, 'the plan changed; the request is still pending');
  // Whatever the decider records for the late 202, the request must end settled: its operation has been applied.
  const after = decide(submitted('req-1', 'op-1', at(2)), before).reduce(evolve, before);
  t.equal(known(after).pendingChange, undefined, 'the request is settled');
});

t.test('a publisher-side cancellation settles with the Unsubscribe for its operation', async (t) => {
  const given: SubscriptionEvent[] = [
    ...history('Suspended'),
    { type: 'CancellationRequested', data: { ...because(T.changeRequested, 'operator'), requestId: 'req-1', reason: 'unpaid' } },
    changeSubmitted('req-1', 'op-1'),
  ];
  const state = spec(t)
    .given(given)
    .when({ type: 'Unsubscribe', now: NOW, source: 'webhook', operationId: 'op-1' })
    .then([{ type: 'Unsubscribed', data: { ...because(NOW, 'webhook'), operationId: 'op-1' } }]);
  t.match(known(state), { status: 'Unsubscribed', unsubscribedAt: NOW, pendingChange: undefined });
  t.ok(known(state).appliedOperations.includes('op-1'));
});

t.test('CSP purchases (allowedCustomerOperations ["Read"]) cannot be changed or cancelled by the publisher', async (t) => {
  const csp = [purchased({ subscription: { allowedCustomerOperations: ['Read'] } }), ...history('Subscribed').slice(1)];
  spec(t)
    .given(csp)
    .when(requestPlan('req-1', 'gold'))
    .thenError('operation-not-allowed', { status: 422, messageIncludes: ['RequestPlanChange', "'Update'", 'Read'] });
  spec(t)
    .given(csp)
    .when(requestQuantity('req-1', 10))
    .thenError('operation-not-allowed', { status: 422, messageIncludes: ['RequestQuantityChange', "'Update'", 'Read'] });
  spec(t)
    .given(csp)
    .when(requestUnsubscribe('req-1'))
    .thenError('operation-not-allowed', { status: 422, messageIncludes: ['RequestUnsubscribe', "'Delete'", 'Read'] });

  t.test('Update without Delete: changes allowed, cancellation refused', async (t) => {
    const noDelete = [purchased({ subscription: { allowedCustomerOperations: ['Read', 'Update'] } }), ...history('Subscribed').slice(1)];
    spec(t)
      .given(noDelete)
      .when(requestPlan('req-1', 'gold'))
      .then([{ type: 'PlanChangeRequested', data: { ...because(NOW, 'operator'), requestId: 'req-1', planId: 'gold', previousPlanId: 'silver' } }]);
    spec(t).given(noDelete).when(requestUnsubscribe('req-1')).thenError('operation-not-allowed', { messageIncludes: ["'Delete'"] });
  });

  t.test('none at all', async (t) => {
    const none = [purchased({ subscription: { allowedCustomerOperations: [] } }), ...history('Subscribed').slice(1)];
    spec(t).given(none).when(requestPlan('req-1', 'gold')).thenError('operation-not-allowed', { messageIncludes: ['none'] });
  });

  t.test('changes made at Microsoft (by the CSP partner) are still applied', async (t) => {
    spec(t)
      .given(csp)
      .when({ type: 'ApplyPlanChange', now: NOW, source: 'webhook', operationId: 'op-csp-1', planId: 'gold', requestSource: 'Partner' })
      .then([
        {
          type: 'PlanChanged',
          data: { ...because(NOW, 'webhook'), operationId: 'op-csp-1', planId: 'gold', previousPlanId: 'silver', requestSource: 'Partner' },
        },
      ]);
  });
});

t.test('requests that change nothing, and invalid input', async (t) => {
  spec(t)
    .given(history('Subscribed'))
    .when(requestPlan('req-1', 'silver'))
    .thenError('same-plan', { status: 400, messageIncludes: ['RequestPlanChange', 'silver'] });
  spec(t)
    .given(history('Subscribed'))
    .when(requestQuantity('req-1', 5))
    .thenError('same-quantity', { status: 400, messageIncludes: ['RequestQuantityChange', '5'] });
  spec(t)
    .given(history('Subscribed'))
    .when(requestPlan('req-1', ''))
    .thenError('invalid-plan', { status: 400, messageIncludes: ['RequestPlanChange'] });

  for (const quantity of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    spec(t)
      .given(history('Subscribed'))
      .when(requestQuantity('req-1', quantity))
      .thenError('invalid-quantity', { status: 400, messageIncludes: ['RequestQuantityChange', String(quantity)] });
    spec(t)
      .given(history('Subscribed'))
      .when({ type: 'ApplyQuantityChange', now: NOW, source: 'webhook', operationId: 'op-q', quantity })
      .thenError('invalid-quantity', { status: 400, messageIncludes: ['ApplyQuantityChange', String(quantity)] });
  }

  t.test('a plan change notification without a plan (older payload shapes had none) is refused', async (t) => {
    spec(t)
      .given(history('Subscribed'))
      .when({ type: 'ApplyPlanChange', now: NOW, source: 'webhook', operationId: 'op-p', planId: '' })
      .thenError('invalid-plan', {
        status: 400,
        messageIncludes: ['ApplyPlanChange'],
      });
  });

  t.test('the smallest valid quantity is 1', async (t) => {
    spec(t)
      .given(history('Subscribed'))
      .when(requestQuantity('req-1', 1))
      .then([{ type: 'QuantityChangeRequested', data: { ...because(NOW, 'operator'), requestId: 'req-1', quantity: 1, previousQuantity: 5 } }]);
  });
});

t.test('"revert" notifications (to the current plan or quantity) → nothing', async (t) => {
  const plan = spec(t)
    .given(history('Subscribed'))
    .when({ type: 'ApplyPlanChange', now: NOW, source: 'webhook', operationId: 'op-revert-1', planId: 'silver', requestSource: 'Azure' });
  const before = JSON.stringify(plan.state);
  t.equal(JSON.stringify(plan.thenNothing()), before, 'the state is unchanged');
  spec(t)
    .given(history('Subscribed'))
    .when({ type: 'ApplyQuantityChange', now: NOW, source: 'webhook', operationId: 'op-revert-2', quantity: 5, requestSource: 'Azure' })
    .thenNothing();
  // After a change, a notification back to the previous value is a real change, not a revert.
  spec(t)
    .given([
      ...history('Subscribed'),
      { type: 'PlanChanged', data: { ...because(T.changeRequested, 'webhook'), operationId: 'op-1', planId: 'gold', previousPlanId: 'silver' } },
    ])
    .when({ type: 'ApplyPlanChange', now: NOW, source: 'webhook', operationId: 'op-2', planId: 'silver' })
    .then([{ type: 'PlanChanged', data: { ...because(NOW, 'webhook'), operationId: 'op-2', planId: 'silver', previousPlanId: 'gold' } }]);
});
