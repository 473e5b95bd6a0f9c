/**
 * The activation workflow's decisions, pure: given the inputs a run has seen so far (folded with `evolve`),
 * when the next input arrives, then this is the next step. No emulator, no store, no clock.
 */
import t from 'tap';
import type { Test } from 'tap';
import { fold } from '../../src/domain/decider.js';
import { subscriptionDecider } from '../../src/domain/subscription/index.js';
import type { SubscriptionEvent, SubscriptionState } from '../../src/domain/subscription/index.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import type { NormalisedTerm } from '../../src/marketplace/schemas.js';
import { activationTrigger, activationWorkflow, defaultActivationPolicy } from '../../src/processes/activation.workflow.js';
import type { ActivationInput, ActivationState, ActivationStep, ActivationTrigger } from '../../src/processes/activation.workflow.js';
import { CONTACT, FIRST_TERM, T, activationRequested, because, history, known, purchased } from '../domain/subscription.fixtures.js';
import { deepFreeze } from '../support/given-when-then.js';

const flow = activationWorkflow();

// ---- the scenario's pieces ---------------------------------------------------------------------------------

const requested: ActivationTrigger = { kind: 'requested', eventId: 'ev-requested', correlationId: 'corr-1', requestedAt: T.activationRequested };
const autoActivated: ActivationTrigger = { kind: 'auto-activated', eventId: 'ev-activated', correlationId: 'corr-2' };

/** The customer confirmed gold × 7 on the activation form (bought: silver × 5). */
const requestedGold: SubscriptionEvent = {
  type: 'ActivationRequested',
  data: { ...because(T.activationRequested, 'landing'), planId: 'gold', quantity: 7, contact: CONTACT },
};
const state = (events: SubscriptionEvent[]): SubscriptionState => fold(subscriptionDecider, events);
const pending = state([purchased(), requestedGold]);
const failed = (final: boolean): SubscriptionEvent => ({
  type: 'ActivationFailed',
  data: { ...because(T.activated, 'process'), reason: 'Activate answered 503', attempt: 1, final },
});

const triggered = (trigger: ActivationTrigger = requested): ActivationInput => ({ type: 'Triggered', trigger });
const loaded = (subscription: SubscriptionState = pending): ActivationInput => ({ type: 'SubscriptionLoaded', subscription });
const provisioned: ActivationInput = { type: 'Provisioned' };
const located = (status: string | undefined): ActivationInput => ({ type: 'MicrosoftAnswered', purpose: 'locate', status, atMs: 0 });
const accepted = (atMs = 1_000): ActivationInput => ({ type: 'ActivationAccepted', atMs });
const polled = (status: string, atMs: number): ActivationInput => ({ type: 'MicrosoftAnswered', purpose: 'await', status, atMs });
const read = (term?: NormalisedTerm): ActivationInput => ({
  type: 'MicrosoftAnswered',
  purpose: 'confirm',
  status: 'Subscribed',
  ...(term ? { term } : {}),
  atMs: 0,
});
const attemptFailed = (transient: boolean, reason = 'Get subscription answered 503'): ActivationInput => ({ type: 'AttemptFailed', reason, transient });
const failureRecorded = (final: boolean): ActivationInput => ({ type: 'FailureRecorded', final });
const backedOff: ActivationInput = { type: 'BackedOff' };

/** Up to the point where Microsoft has accepted an activation in attempt 1. */
const untilAccepted = [triggered(), loaded(), provisioned, located('PendingFulfillmentStart')];
/** `n` attempts that each failed (transiently) and were recorded and backed off from. */
const failedAttempts = (n: number): ActivationInput[] =>
  Array.from({ length: n }, () => [loaded(), attemptFailed(true), failureRecorded(false), backedOff]).flat();

const recordFailure = (attempt: number, reason: string, final: boolean): ActivationStep => ({
  kind: 'record-failure',
  attempt,
  command: { type: 'RecordActivationFailure', source: 'process', reason, final },
});

/** given inputs / when input / then step; the state and input are frozen, and deciding twice gives the same. */
function given(t: Test, inputs: readonly ActivationInput[], workflow = flow) {
  const folded: ActivationState = deepFreeze(inputs.reduce(workflow.evolve, workflow.initialState()));
  return {
    state: folded,
    when(input: ActivationInput) {
      deepFreeze(input);
      const step = workflow.decide(input, folded);
      t.strictSame(workflow.decide(input, folded), step, 'the same inputs give the same step');
      return {
        then(expected: ActivationStep, message = `${input.type} → ${expected.kind}`) {
          t.strictSame(step, expected, message);
          return workflow.evolve(folded, input);
        },
      };
    },
  };
}

// ---- the triggering event ------------------------------------------------------------------------------------

t.test('activationTrigger: which events start a run', async (t) => {
  const recorded = (event: SubscriptionEvent | { type: string; data: unknown }, correlationId?: string): RecordedEvent => ({
    id: 'ev-1',
    streamId: 'subscription-abc',
    revision: 1n,
    position: 10n,
    type: event.type,
    data: event.data,
    metadata: correlationId ? { correlationId } : {},
    recordedAt: T.activationRequested,
  });
  t.strictSame(activationTrigger(recorded(activationRequested(), 'corr-9')), {
    kind: 'requested',
    eventId: 'ev-1',
    correlationId: 'corr-9',
    requestedAt: T.activationRequested,
  });
  t.equal(activationTrigger(recorded(activationRequested()))?.correlationId, 'ev-1', 'without a correlation id: the event id');
  const [, , manual] = history('Subscribed');
  t.equal(activationTrigger(recorded(manual!)), undefined, 'Activated by us: nothing to do');
  const auto: SubscriptionEvent = { type: 'Activated', data: { ...because(T.purchased, 'webhook'), planId: 'silver', autoActivated: true } };
  t.strictSame(activationTrigger(recorded(auto)), { kind: 'auto-activated', eventId: 'ev-1', correlationId: 'ev-1' });
  t.equal(activationTrigger(recorded(purchased())), undefined, 'Purchased: nothing to do');
  t.equal(activationTrigger(recorded({ type: 'SomethingNew', data: {} })), undefined, 'an unknown event: nothing to do');
});

// ---- starting an attempt -----------------------------------------------------------------------------------

t.test('a run starts by loading the subscription', async (t) => {
  given(t, []).when(triggered()).then({ kind: 'load' });
  given(t, []).when(triggered(autoActivated)).then({ kind: 'load' });
});

t.test('a subscription we never recorded: nothing to do', async (t) => {
  given(t, [triggered()]).when(loaded(state([]))).then({ kind: 'done', outcome: 'unknown-subscription' });
  given(t, [triggered(autoActivated)]).when(loaded(state([]))).then({ kind: 'done', outcome: 'unknown-subscription' });
});

t.test('still pending and still this request: provision first (attempt 1)', async (t) => {
  const after = given(t, [triggered()]).when(loaded()).then({ kind: 'provision', subscription: known(pending) });
  t.equal(after.attempt, 1, 'the attempt is under way');
});

t.test('activated or cancelled meanwhile: stop', async (t) => {
  given(t, [triggered()]).when(loaded(state(history('Subscribed')))).then({ kind: 'done', outcome: 'not-pending' });
  given(t, [triggered()]).when(loaded(state(history('Unsubscribed')))).then({ kind: 'done', outcome: 'not-pending' });
});

t.test('superseded: a newer request, or the activation was given up on', async (t) => {
  const newer = state([purchased(), activationRequested('2026-03-01T10:00:00.000Z')]);
  given(t, [triggered()]).when(loaded(newer)).then({ kind: 'done', outcome: 'superseded' });
  given(t, [triggered()]).when(loaded(state([purchased(), requestedGold, failed(true)]))).then({ kind: 'done', outcome: 'superseded' });
  given(t, [triggered()])
    .when(loaded(state([purchased(), requestedGold, failed(false)])))
    .then({ kind: 'provision', subscription: known(state([purchased(), requestedGold, failed(false)])) }, 'a non-final failure is not giving up');
});

t.test('auto-activated at purchase: only provision', async (t) => {
  const active = state(history('Subscribed'));
  given(t, [triggered(autoActivated)]).when(loaded(active)).then({ kind: 'provision', subscription: known(active) });
  given(t, [triggered(autoActivated), loaded(active)]).when(provisioned).then({ kind: 'done', outcome: 'provisioned' });
  t.equal(given(t, [triggered(autoActivated), loaded(active)]).state.attempt, 0, 'no attempt is counted');
});

// ---- the crash-safety rule: ask Microsoft first --------------------------------------------------------------

t.test('provisioned: ask Microsoft where the subscription is before activating', async (t) => {
  given(t, [triggered(), loaded()]).when(provisioned).then({ kind: 'get-subscription', purpose: 'locate' });
});

t.test('pending at Microsoft: activate with the plan and seats the customer confirmed', async (t) => {
  given(t, [triggered(), loaded(), provisioned]).when(located('PendingFulfillmentStart')).then({ kind: 'activate', planId: 'gold', quantity: 7 });
  given(t, [triggered(), loaded(), provisioned]).when(located(undefined)).then({ kind: 'activate', planId: 'gold', quantity: 7 }, 'no status: activate');
  const flat = state([purchased({ subscription: { quantity: undefined } }), { ...requestedGold, data: { ...requestedGold.data, quantity: undefined } }]);
  given(t, [triggered(), loaded(flat), provisioned]).when(located('PendingFulfillmentStart')).then({ kind: 'activate', planId: 'gold' }, 'no seats: none sent');
});

t.test('already active at Microsoft (killed after it accepted): confirm without activating again', async (t) => {
  given(t, [triggered(), loaded(), provisioned])
    .when(located('Subscribed'))
    .then({ kind: 'get-subscription', purpose: 'confirm', alreadyActive: 'Subscribed' });
  given(t, [triggered(), loaded(), provisioned])
    .when(located('Suspended'))
    .then({ kind: 'get-subscription', purpose: 'confirm', alreadyActive: 'Suspended' });
});

t.test('Unsubscribed at Microsoft: a final failure at once', async (t) => {
  given(t, [triggered(), loaded(), provisioned])
    .when(located('Unsubscribed'))
    .then(recordFailure(1, 'the subscription is Unsubscribed at Microsoft; it cannot be activated', true));
});

// ---- waiting for Subscribed ------------------------------------------------------------------------------------

t.test('activation accepted: look at once whether Microsoft reports Subscribed', async (t) => {
  given(t, untilAccepted).when(accepted()).then({ kind: 'await-subscribed', afterMs: 0 });
});

t.test('Subscribed (or Suspended) at last: Get subscription to confirm', async (t) => {
  given(t, [...untilAccepted, accepted()]).when(polled('Subscribed', 1_100)).then({ kind: 'get-subscription', purpose: 'confirm' });
  given(t, [...untilAccepted, accepted()]).when(polled('Suspended', 1_100)).then({ kind: 'get-subscription', purpose: 'confirm' });
});

t.test('not yet: look again after 250 ms, doubling up to 5 s', async (t) => {
  const seen: ActivationInput[] = [...untilAccepted, accepted(0)];
  for (const pause of [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]) {
    const input = polled('PendingFulfillmentStart', seen.length);
    given(t, seen).when(input).then({ kind: 'await-subscribed', afterMs: pause }, `look again after ${pause} ms`);
    seen.push(input);
  }
});

t.test('no Subscribed within the confirm timeout (30 s): a transient failure', async (t) => {
  // Accepted at 1 000 ms: the deadline is 31 000 ms. A look that could not happen before it ends the wait.
  given(t, [...untilAccepted, accepted(1_000)]).when(polled('PendingFulfillmentStart', 30_750)).then({ kind: 'await-subscribed', afterMs: 250 });
  given(t, [...untilAccepted, accepted(1_000)])
    .when(polled('PendingFulfillmentStart', 30_751))
    .then(recordFailure(1, 'Microsoft accepted the activation but did not report Subscribed within 30000 ms', false));
});

// ---- confirming ------------------------------------------------------------------------------------------------

t.test("confirm: record the activation with the plan, the seats and Microsoft's term", async (t) => {
  const toConfirm = [...untilAccepted, accepted(), polled('Subscribed', 1_200)];
  given(t, toConfirm)
    .when(read({ ...FIRST_TERM, chargeDuration: 'P1M' }))
    .then({
      kind: 'confirm',
      command: { type: 'ConfirmActivation', source: 'process', planId: 'gold', quantity: 7, term: { ...FIRST_TERM, chargeDuration: 'P1M' } },
    }, "Microsoft's term as the one term mapper gives it (chargeDuration included, as at purchase)");
  given(t, toConfirm).when(read()).then({ kind: 'confirm', command: { type: 'ConfirmActivation', source: 'process', planId: 'gold', quantity: 7 } }, 'no term: none recorded');
  given(t, toConfirm).when(read({ termUnit: 'P1Y' })).then(
    { kind: 'confirm', command: { type: 'ConfirmActivation', source: 'process', planId: 'gold', quantity: 7, term: { termUnit: 'P1Y' } } },
    'only the parts of the term Microsoft gave',
  );
  given(t, [...toConfirm, read(FIRST_TERM)]).when({ type: 'ActivationConfirmed' }).then({ kind: 'done', outcome: 'activated' });
});

t.test('the crash-restart path: already active → confirm → done, and Microsoft is never asked to activate', async (t) => {
  const run = [triggered(), loaded(), provisioned, located('Subscribed'), read(FIRST_TERM), { type: 'ActivationConfirmed' } as const];
  const steps: ActivationStep[] = [];
  let folded = flow.initialState();
  for (const input of run) {
    steps.push(flow.decide(input, folded));
    folded = flow.evolve(folded, input);
  }
  t.strictSame(steps.map((s) => s.kind), ['load', 'provision', 'get-subscription', 'get-subscription', 'confirm', 'done']);
  t.notOk(steps.some((s) => s.kind === 'activate'));
});

// ---- failures, retries and backoff -------------------------------------------------------------------------------

t.test('a transient failure is recorded, not final, then backed off from (1 s, doubling)', async (t) => {
  given(t, [triggered(), loaded()]).when(attemptFailed(true)).then(recordFailure(1, 'Get subscription answered 503', false));
  given(t, [triggered(), loaded(), attemptFailed(true)]).when(failureRecorded(false)).then({ kind: 'back-off', ms: 1000 });
  given(t, [triggered(), ...failedAttempts(2), loaded(), attemptFailed(true)]).when(failureRecorded(false)).then({ kind: 'back-off', ms: 4000 }, 'attempt 3: 4 s');
  given(t, [triggered(), ...failedAttempts(1)]).when(backedOff).then({ kind: 'load' }, 'backed off: load and check again');
});

t.test('a failure that is not transient is final at once', async (t) => {
  given(t, [triggered(), loaded(), provisioned]).when(attemptFailed(false, 'Activate answered 400')).then(recordFailure(1, 'Activate answered 400', true));
  given(t, [triggered(), loaded(), attemptFailed(false)]).when(failureRecorded(true)).then({ kind: 'done', outcome: 'gave-up' });
});

t.test('the fifth attempt is the last: its failure is final', async (t) => {
  const fourFailed = [triggered(), ...failedAttempts(4)];
  const fifth = given(t, fourFailed).when(loaded()).then({ kind: 'provision', subscription: known(pending) });
  t.equal(fifth.attempt, 5);
  given(t, [...fourFailed, loaded()]).when(attemptFailed(true)).then(recordFailure(5, 'Get subscription answered 503', true));
  given(t, [...fourFailed, loaded(), provisioned, located('PendingFulfillmentStart'), accepted(0)])
    .when(polled('PendingFulfillmentStart', 30_000))
    .then(recordFailure(5, 'Microsoft accepted the activation but did not report Subscribed within 30000 ms', true), 'a timeout too');
});

t.test('a new attempt waits afresh for Subscribed', async (t) => {
  const second = [...untilAccepted, accepted(0), polled('PendingFulfillmentStart', 10), polled('PendingFulfillmentStart', 20), attemptFailed(true), failureRecorded(false), backedOff, loaded(), provisioned, located('PendingFulfillmentStart')];
  given(t, second).when(accepted(50_000)).then({ kind: 'await-subscribed', afterMs: 0 });
  given(t, [...second, accepted(50_000)]).when(polled('PendingFulfillmentStart', 50_010)).then({ kind: 'await-subscribed', afterMs: 250 }, 'from 250 ms again');
});

t.test('the policy is a parameter (the defaults are 5 attempts, 1 s, 30 s)', async (t) => {
  t.strictSame(defaultActivationPolicy, { maxAttempts: 5, backoffMs: 1000, confirmTimeoutMs: 30_000 });
  const quick = activationWorkflow({ maxAttempts: 2, backoffMs: 10, confirmTimeoutMs: 100 });
  given(t, [triggered(), loaded(), attemptFailed(true)], quick).when(failureRecorded(false)).then({ kind: 'back-off', ms: 10 });
  given(t, [triggered(), loaded(), attemptFailed(true), failureRecorded(false), backedOff, loaded()], quick)
    .when(attemptFailed(true))
    .then(recordFailure(2, 'Get subscription answered 503', true), 'attempt 2 of 2 is final');
  given(t, untilAccepted, quick).when(accepted(0)).then({ kind: 'await-subscribed', afterMs: 0 }, 'one look at once, whatever the timeout');
  given(t, [...untilAccepted, accepted(0)], quick)
    .when(polled('PendingFulfillmentStart', 0))
    .then(recordFailure(1, 'Microsoft accepted the activation but did not report Subscribed within 100 ms', false), 'the next (250 ms later) would miss the deadline');
});

t.test('which failures fail the attempt, and which end the run (for the runner to retry)', async (t) => {
  const attemptState = [triggered(), loaded()].reduce(flow.evolve, flow.initialState());
  const autoState = [triggered(autoActivated), loaded(state(history('Subscribed')))].reduce(flow.evolve, flow.initialState());
  const inAttempt: ActivationStep[] = [
    { kind: 'provision', subscription: known(pending) },
    { kind: 'get-subscription', purpose: 'locate' },
    { kind: 'activate', planId: 'gold', quantity: 7 },
    { kind: 'await-subscribed', afterMs: 250 },
    { kind: 'confirm', command: { type: 'ConfirmActivation', source: 'process' } },
  ];
  for (const step of inAttempt) t.ok(flow.failsTheAttempt(step, attemptState), `${step.kind}: the attempt fails`);
  const outside: ActivationStep[] = [{ kind: 'load' }, recordFailure(1, 'x', false), { kind: 'back-off', ms: 1000 }];
  for (const step of outside) t.notOk(flow.failsTheAttempt(step, attemptState), `${step.kind}: the run fails`);
  t.notOk(flow.failsTheAttempt({ kind: 'provision', subscription: known(pending) }, autoState), 'auto-activated provisioning: the run fails');
});
