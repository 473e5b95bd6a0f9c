/**
 * The change-request lifecycle fold (domain/subscription/change-request.ts), the one behind the operator
 * API's `lastChange` and the `change_requests` read model: given a history, when one more event, then the
 * request. Every input is deep-frozen, so a mutation throws; an event that changes nothing returns the very
 * record it was given.
 */
import t from 'tap';
import type { Test } from 'tap';
import { fold } from '../../src/domain/decider.js';
import { evolveChangeRequest, latestChangeRequest, operationAppliedBy, subscriptionDecider } from '../../src/domain/subscription/index.js';
import type { ChangeRequest, SubscriptionEvent } from '../../src/domain/subscription/index.js';
import { asStored, deepFreeze } from '../support/given-when-then.js';
import { because, history, known, suspended } from './subscription.fixtures.js';

const at = (minute: number): string => `2026-05-01T12:${String(minute).padStart(2, '0')}:00.000Z`;

const planRequested = (requestId = 'req-1', minute = 0): SubscriptionEvent => ({
  type: 'PlanChangeRequested',
  data: { ...because(at(minute), 'operator'), requestId, planId: 'gold', previousPlanId: 'silver' },
});
/** `previousQuantity: null`: a plan without seats before. */
const quantityRequested = (requestId = 'req-1', minute = 0, previousQuantity: number | null = 5): SubscriptionEvent => ({
  type: 'QuantityChangeRequested',
  data: { ...because(at(minute), 'operator'), requestId, quantity: 10, ...(previousQuantity !== null ? { previousQuantity } : {}) },
});
const cancelRequested = (requestId = 'req-1', minute = 0, reason?: string): SubscriptionEvent => ({
  type: 'CancellationRequested',
  data: { ...because(at(minute), 'operator'), requestId, ...(reason !== undefined ? { reason } : {}) },
});
const submitted = (operationId = 'op-1', minute = 1, requestId = 'req-1'): SubscriptionEvent => ({
  type: 'ChangeSubmitted',
  data: { ...because(at(minute), 'process'), requestId, operationId },
});
const failed = (minute: number, operationId?: string, requestId = 'req-1'): SubscriptionEvent => ({
  type: 'ChangeRequestFailed',
  data: { ...because(at(minute), 'process'), requestId, ...(operationId ? { operationId } : {}), status: 'Conflict', reason: 'locked' },
});
const planChanged = (minute: number, operationId?: string): SubscriptionEvent => ({
  type: 'PlanChanged',
  data: { ...because(at(minute), 'webhook'), ...(operationId ? { operationId } : {}), planId: 'gold', previousPlanId: 'silver', requestSource: 'Partner' },
});
const quantityChanged = (minute: number, operationId?: string): SubscriptionEvent => ({
  type: 'QuantityChanged',
  data: { ...because(at(minute), 'webhook'), ...(operationId ? { operationId } : {}), quantity: 10, previousQuantity: 5, requestSource: 'Partner' },
});
const unsubscribed = (minute: number, operationId?: string): SubscriptionEvent => ({
  type: 'Unsubscribed',
  data: { ...because(at(minute), 'webhook'), ...(operationId ? { operationId } : {}) },
});

const pendingPlan: ChangeRequest = { kind: 'plan', planId: 'gold', previousPlanId: 'silver', requestId: 'req-1', requestedAt: at(0), outcome: 'pending' };
const submittedPlan: ChangeRequest = { ...pendingPlan, operationId: 'op-1', submittedAt: at(1), outcome: 'submitted' };

/** Given a history (the subscription's, so the fold sees what was applied), when one more event, then the request. */
function spec(t: Test) {
  return {
    given(events: readonly SubscriptionEvent[]) {
      const given = deepFreeze(events.map((e) => structuredClone(e)));
      const before = latestChangeRequest(given);
      return {
        when(event: SubscriptionEvent) {
          const when = deepFreeze(structuredClone(event));
          const after = latestChangeRequest([...given, when]);
          return {
            then(expected: ChangeRequest | undefined, message = `${when.type} gives ${expected?.outcome ?? 'no request'}`) {
              t.strictSame(asStored(after), asStored(expected), message);
              return after;
            },
            /** Nothing changes: the history fold gives the same request, and evolving it returns the very record. */
            thenUnchanged(message = `${when.type} changes nothing`) {
              t.strictSame(asStored(after), asStored(before), message);
              t.equal(evolveChangeRequest(before, when), before, `${when.type}: the same record back`);
            },
          };
        },
      };
    },
  };
}

t.test('a request starts pending, with what was asked for', async (t) => {
  spec(t).given([]).when(planRequested()).then(pendingPlan);
  spec(t)
    .given(history('Subscribed'))
    .when(quantityRequested())
    .then({ kind: 'quantity', quantity: 10, previousQuantity: 5, requestId: 'req-1', requestedAt: at(0), outcome: 'pending' });
  spec(t)
    .given([])
    .when(quantityRequested('req-1', 0, null))
    .then({ kind: 'quantity', quantity: 10, requestId: 'req-1', requestedAt: at(0), outcome: 'pending' }, 'no previous quantity: none recorded');
  spec(t)
    .given([])
    .when(cancelRequested('req-1', 0, 'customer asked by phone'))
    .then({ kind: 'cancel', reason: 'customer asked by phone', requestId: 'req-1', requestedAt: at(0), outcome: 'pending' });
  spec(t).given([]).when(cancelRequested()).then({ kind: 'cancel', requestId: 'req-1', requestedAt: at(0), outcome: 'pending' }, 'a cancellation without a reason');
  spec(t).given([planRequested()]).when(planRequested('req-1', 5)).thenUnchanged('a repeat of the same request id changes nothing');
  spec(t)
    .given([planRequested(), submitted(), planChanged(2, 'op-1')])
    .when(cancelRequested('req-2', 10))
    .then({ kind: 'cancel', requestId: 'req-2', requestedAt: at(10), outcome: 'pending' }, 'a new request is the latest one');
});

t.test('submitted: Microsoft accepted it (202) and named the operation', async (t) => {
  spec(t).given([planRequested()]).when(submitted()).then(submittedPlan);
  spec(t).given([planRequested()]).when(submitted('op-1', 1, 'req-other')).thenUnchanged('the submission of another request');
  spec(t).given([planRequested(), submitted()]).when(submitted('op-2', 2)).thenUnchanged('a second submission of a submitted request');
  spec(t).given([planRequested(), failed(1)]).when(submitted('op-1', 2)).thenUnchanged('a settled request is not submitted again');
  spec(t).given([]).when(submitted()).then(undefined, 'no request yet: none');
});

t.test("applied: the event of its operation, or Microsoft's notification before the 202 was recorded", async (t) => {
  spec(t).given([planRequested(), submitted()]).when(planChanged(3, 'op-1')).then({ ...submittedPlan, outcome: 'applied', settledAt: at(3) });
  spec(t)
    .given([quantityRequested(), submitted()])
    .when(quantityChanged(3, 'op-1'))
    .then({ kind: 'quantity', quantity: 10, previousQuantity: 5, requestId: 'req-1', requestedAt: at(0), operationId: 'op-1', submittedAt: at(1), outcome: 'applied', settledAt: at(3) });
  spec(t).given([planRequested(), submitted()]).when(planChanged(3, 'op-customer')).thenUnchanged("another operation's change");
  spec(t).given([planRequested(), submitted()]).when(planChanged(3)).thenUnchanged('a change that names no operation');
  spec(t).given([planRequested()]).when(planChanged(3, 'op-1')).thenUnchanged('before the 202 the operation is not known to be ours');

  // The case the two folds used to disagree on: the projection said applied, the API's lastChange stayed pending.
  // The domain state settles the request at ChangeSubmitted (subscription.state.ts), and so does the fold.
  const early = [...history('Subscribed'), planRequested('req-1', 0), planChanged(1, 'op-x')];
  spec(t)
    .given(early)
    .when(submitted('op-x', 2))
    .then({ ...pendingPlan, operationId: 'op-x', submittedAt: at(2), outcome: 'applied', settledAt: at(1) }, 'applied, settled when the notification applied it');
  const state = known(fold(subscriptionDecider, [...early, submitted('op-x', 2)]));
  t.equal(state.pendingChange, undefined, 'the domain state has no pending change either');
  t.ok(state.settledRequests.includes('req-1'), 'and counts the request as settled');

  t.equal(
    evolveChangeRequest(pendingPlan, submitted('op-x', 2), (op) => (op === 'op-x' ? at(1) : undefined))?.outcome,
    'applied',
    'evolveChangeRequest asks the caller when the operation was applied',
  );
  t.equal(evolveChangeRequest(pendingPlan, submitted('op-x', 2))?.outcome, 'submitted', 'by default no operation was applied');
});

t.test('failed: Microsoft refused it, or its operation failed', async (t) => {
  spec(t)
    .given([planRequested()])
    .when(failed(1))
    .then({ ...pendingPlan, outcome: 'failed', settledAt: at(1), failure: { status: 'Conflict', reason: 'locked' } }, 'refused before it was accepted: no operation');
  spec(t)
    .given([planRequested()])
    .when(failed(1, 'op-f'))
    .then({ ...pendingPlan, operationId: 'op-f', outcome: 'failed', settledAt: at(1), failure: { status: 'Conflict', reason: 'locked' } }, 'the failure names the operation');
  spec(t)
    .given([planRequested(), submitted()])
    .when(failed(4, 'op-other'))
    .then({ ...submittedPlan, outcome: 'failed', settledAt: at(4), failure: { status: 'Conflict', reason: 'locked' } }, 'the submitted operation id stays');
  spec(t).given([planRequested(), submitted()]).when(failed(4, 'op-1', 'req-other')).thenUnchanged('the failure of another request');
});

t.test('Unsubscribed settles an open request: a cancellation applied, anything else abandoned', async (t) => {
  spec(t)
    .given([cancelRequested(), submitted()])
    .when(unsubscribed(5, 'op-1'))
    .then({ kind: 'cancel', requestId: 'req-1', requestedAt: at(0), operationId: 'op-1', submittedAt: at(1), outcome: 'applied', settledAt: at(5) });
  spec(t).given([cancelRequested()]).when(unsubscribed(5)).then({ kind: 'cancel', requestId: 'req-1', requestedAt: at(0), outcome: 'applied', settledAt: at(5) }, 'even before the 202');
  spec(t).given([planRequested(), submitted()]).when(unsubscribed(5, 'op-azure')).then({ ...submittedPlan, outcome: 'abandoned', settledAt: at(5) });
  spec(t).given([planRequested()]).when(unsubscribed(5)).then({ ...pendingPlan, outcome: 'abandoned', settledAt: at(5) });
});

t.test('applied, failed and abandoned are final', async (t) => {
  const settled: Array<[string, SubscriptionEvent[]]> = [
    ['applied', [planRequested(), submitted(), planChanged(2, 'op-1')]],
    ['failed', [planRequested(), submitted(), failed(2, 'op-1')]],
    ['abandoned', [planRequested(), submitted(), unsubscribed(2)]],
  ];
  for (const [outcome, events] of settled) {
    t.equal(latestChangeRequest(events)?.outcome, outcome);
    for (const event of [submitted('op-1', 3), failed(3, 'op-1'), planChanged(3, 'op-1'), quantityChanged(3, 'op-1'), unsubscribed(3, 'op-1')]) {
      spec(t).given(events).when(event).thenUnchanged(`${outcome}, then ${event.type}: unchanged`);
    }
  }
});

t.test('events that are not about a request change nothing', async (t) => {
  const others: SubscriptionEvent[] = [
    suspended('op-1'),
    { type: 'Reinstated', data: { ...because(at(4), 'webhook'), operationId: 'op-1' } },
    { type: 'Renewed', data: { ...because(at(4), 'webhook'), operationId: 'op-1' } },
    { type: 'ChangeRejected', data: { ...because(at(4), 'webhook'), operationId: 'op-1', action: 'ChangePlan', planId: 'gold', reason: 'policy' } },
  ];
  for (const event of others) spec(t).given([planRequested(), submitted()]).when(event).thenUnchanged(`${event.type}: unchanged`);
  t.equal(latestChangeRequest(history('Subscribed')), undefined, 'a history without a request has none');
  t.equal(latestChangeRequest([]), undefined);
});

t.test('operationAppliedBy: the events that carry out a Microsoft operation', async (t) => {
  t.equal(operationAppliedBy(planChanged(1, 'op-1')), 'op-1');
  t.equal(operationAppliedBy(quantityChanged(1, 'op-2')), 'op-2');
  t.equal(operationAppliedBy(unsubscribed(1, 'op-3')), 'op-3');
  t.equal(operationAppliedBy(suspended('op-4')), 'op-4');
  t.equal(operationAppliedBy(planChanged(1)), undefined, 'one that names no operation');
  t.equal(operationAppliedBy(failed(1, 'op-5')), undefined, 'a failure applies nothing');
  t.equal(operationAppliedBy(submitted('op-6')), undefined, 'a submission applies nothing');
});

t.test("the fold agrees with the domain state's pending change at every step", async (t) => {
  const lives: SubscriptionEvent[][] = [
    [...history('Subscribed'), planRequested(), submitted(), planChanged(2, 'op-1'), quantityRequested('req-2', 3), failed(4, undefined, 'req-2')],
    [...history('Subscribed'), planRequested(), planChanged(1, 'op-x'), submitted('op-x', 2), cancelRequested('req-3', 5), submitted('op-c', 6, 'req-3'), unsubscribed(7, 'op-c')],
    [...history('Subscribed'), quantityRequested(), submitted(), unsubscribed(2, 'op-azure')],
  ];
  for (const life of lives) {
    for (let n = history('Subscribed').length; n <= life.length; n++) {
      const prefix = life.slice(0, n);
      const request = latestChangeRequest(prefix);
      const state = known(fold(subscriptionDecider, prefix));
      const open = request?.outcome === 'pending' || request?.outcome === 'submitted';
      t.equal(open ? request?.requestId : undefined, state.pendingChange?.requestId, `after ${prefix.at(-1)?.type}: open request = pending change`);
      if (open) t.equal(request?.operationId, state.pendingChange?.operationId, 'with the same operation id');
    }
  }
});
