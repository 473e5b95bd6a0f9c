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
import { MICROSOFT_ACTIVATION_WINDOW_MS, activationTrigger, activationWorkflow, backoffAfter, defaultActivationPolicy } from '../../src/processes/activation.workflow.js';
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

/** The executor's clock in the scenario: a few seconds after the request, unless a test says otherwise. */
const AT = Date.parse(T.activationRequested) + 3_000;
/** Microsoft's 30 days for activating, counted from the purchase (Microsoft's `created`). */
const DEADLINE = '2026-03-31T08:59:12.000Z';
const iso = (ms: number): string => new Date(ms).toISOString();

const triggered = (trigger: ActivationTrigger = requested): ActivationInput => ({ type: 'Triggered', trigger });
const loaded = (subscription: SubscriptionState = pending, atMs = AT): ActivationInput => ({ type: 'SubscriptionLoaded', subscription, atMs });
const provisioned: ActivationInput = { type: 'Provisioned' };
const located = (status: string | undefined): ActivationInput => ({ type: 'MicrosoftAnswered', purpose: 'locate', status, atMs: AT });
const accepted = (atMs = 1_000): ActivationInput => ({ type: 'ActivationAccepted', atMs });
const polled = (status: string, atMs: number): ActivationInput => ({ type: 'MicrosoftAnswered', purpose: 'await', status, atMs });
const read = (term?: NormalisedTerm): ActivationInput => ({
  type: 'MicrosoftAnswered',
  purpose: 'confirm',
  status: 'Subscribed',
  ...(term ? { term } : {}),
  atMs: 0,
});
const attemptFailed = (transient: boolean, reason = 'Get subscription answered 503', atMs = AT, retryAfterMs?: number): ActivationInput => ({
  type: 'AttemptFailed',
  reason,
  transient,
  atMs,
  ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
});

/** Up to the point where Microsoft has accepted an activation in attempt 1. */
const untilAccepted = [triggered(), loaded(), provisioned, located('PendingFulfillmentStart')];

/** The subscription after `n` recorded, not final, failures of this request (the last one due at `retryAt`). */
function afterFailures(n: number, retryAt?: string): SubscriptionState {
  const failures: SubscriptionEvent[] = Array.from({ length: n }, (_, i) => ({
    type: 'ActivationFailed',
    data: {
      ...because(T.activated, 'process'),
      reason: 'Get subscription answered 503',
      attempt: i + 1,
      final: false,
      ...(i === n - 1 && retryAt ? { retryAt } : {}),
    },
  }));
  return state([purchased(), requestedGold, ...failures]);
}

const recordFailure = (attempt: number, reason: string, final: boolean, retry?: { atMs: number; afterMs: number }): ActivationStep => ({
  kind: 'record-failure',
  attempt,
  command: { type: 'RecordActivationFailure', source: 'process', reason, final, ...(retry ? { retryAt: iso(retry.atMs + retry.afterMs) } : {}) },
  ...(retry ? { retry: { afterMs: retry.afterMs, until: DEADLINE } } : {}),
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
    .then(recordFailure(1, 'Microsoft accepted the activation but did not report Subscribed within 30000 ms', false, { atMs: 30_751, afterMs: 1000 }));
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

t.test('a transient failure is recorded with when the next attempt is due, and the run ends: retry later', async (t) => {
  given(t, [triggered(), loaded()]).when(attemptFailed(true)).then(recordFailure(1, 'Get subscription answered 503', false, { atMs: AT, afterMs: 1000 }));
  given(t, [triggered(), loaded(), attemptFailed(true)])
    .when({ type: 'FailureRecorded', final: false, retry: { afterMs: 1000, until: DEADLINE } })
    .then({ kind: 'retry-later', reason: 'activation attempt 1 failed', afterMs: 1000, until: DEADLINE }, 'one attempt per run: the runner comes back');
});

t.test('each run is one attempt, numbered from the failures recorded for this request', async (t) => {
  const after = given(t, [triggered()]).when(loaded(afterFailures(2))).then({ kind: 'provision', subscription: known(afterFailures(2)) });
  t.equal(after.attempt, 3, 'two failed before: this is attempt 3');
  const newRequest = state([purchased(), requestedGold, failed(true), { ...requestedGold, data: { ...requestedGold.data, at: T.activationRequested } }]);
  t.equal(given(t, [triggered(), loaded(newRequest)]).state.attempt, 1, 'a new request after giving up counts from 1 again');
});

t.test('the backoff doubles from 1 s and is capped at 15 minutes', async (t) => {
  const cases: Array<[attempt: number, afterMs: number]> = [[1, 1000], [2, 2000], [3, 4000], [10, 512_000], [11, 900_000], [12, 900_000], [500, 900_000]];
  for (const [attempt, afterMs] of cases) {
    t.equal(backoffAfter(defaultActivationPolicy, attempt), afterMs, `after attempt ${attempt}: ${afterMs} ms`);
    given(t, [triggered(), loaded(afterFailures(attempt - 1))])
      .when(attemptFailed(true))
      .then(recordFailure(attempt, 'Get subscription answered 503', false, { atMs: AT, afterMs }), `attempt ${attempt}: not final, next after ${afterMs} ms`);
  }
});

t.test('no permanent give-up after a few attempts: attempt 200, weeks into an outage, is retried', async (t) => {
  const weeksLater = Date.parse('2026-03-20T00:00:00.000Z');
  given(t, [triggered(), loaded(afterFailures(199), weeksLater)])
    .when(attemptFailed(true, 'Get subscription: network error: connect ECONNREFUSED', weeksLater))
    .then(recordFailure(200, 'Get subscription: network error: connect ECONNREFUSED', false, { atMs: weeksLater, afterMs: 900_000 }));
});

t.test("a hint to wait longer (the ISV's Retry-After) is honoured, up to the cap", async (t) => {
  given(t, [triggered(), loaded()]).when(attemptFailed(true, 'ISV answered 503', AT, 60_000)).then(recordFailure(1, 'ISV answered 503', false, { atMs: AT, afterMs: 60_000 }));
  given(t, [triggered(), loaded()]).when(attemptFailed(true, 'ISV answered 503', AT, 500)).then(recordFailure(1, 'ISV answered 503', false, { atMs: AT, afterMs: 1000 }), 'shorter than the backoff: the backoff');
  given(t, [triggered(), loaded()]).when(attemptFailed(true, 'ISV answered 503', AT, 86_400_000)).then(recordFailure(1, 'ISV answered 503', false, { atMs: AT, afterMs: 900_000 }), 'capped');
});

t.test("Microsoft's 30 days, counted from the purchase: a failure whose next attempt would miss them is final", async (t) => {
  const deadline = Date.parse(DEADLINE);
  const lastChance = deadline - 900_001;
  given(t, [triggered(), loaded(afterFailures(20), lastChance)])
    .when(attemptFailed(true, 'Activate: status 503', lastChance))
    .then(recordFailure(21, 'Activate: status 503', false, { atMs: lastChance, afterMs: 900_000 }), 'the next attempt still falls before the deadline');
  given(t, [triggered(), loaded(afterFailures(20), deadline - 900_000)])
    .when(attemptFailed(true, 'Activate: status 503', deadline - 900_000))
    .then(
      recordFailure(21, `Activate: status 503; not retried: the time for activating this purchase ends at ${DEADLINE} (Microsoft allows 30 days from the purchase)`, true),
      'the next attempt would fall on the deadline: final now',
    );
  given(t, [triggered(), loaded(afterFailures(20), deadline + 1)])
    .when(attemptFailed(true, 'Activate: status 503', deadline + 1))
    .then(
      recordFailure(21, `Activate: status 503; not retried: the time for activating this purchase ended at ${DEADLINE} (Microsoft allows 30 days from the purchase)`, true),
      'past the deadline: final',
    );
  given(t, [triggered()]).when(loaded(afterFailures(20), deadline + 1)).then({ kind: 'provision', subscription: known(afterFailures(20)) }, 'past the deadline a run still makes its attempt: Microsoft may still take it');
});

t.test("without Microsoft's `created`, the 30 days count from when we recorded the purchase", async (t) => {
  const bare = state([purchased({ subscription: { created: undefined } }), requestedGold]);
  const recordedDeadline = iso(Date.parse(T.purchased) + MICROSOFT_ACTIVATION_WINDOW_MS);
  given(t, [triggered(), loaded(bare)]).when(attemptFailed(true)).then({
    kind: 'record-failure',
    attempt: 1,
    command: { type: 'RecordActivationFailure', source: 'process', reason: 'Get subscription answered 503', final: false, retryAt: iso(AT + 1000) },
    retry: { afterMs: 1000, until: recordedDeadline },
  });
});

t.test('the next attempt not due yet (the runner came back early): no attempt, retry later at the recorded time', async (t) => {
  const due = iso(AT + 4_000);
  given(t, [triggered()])
    .when(loaded(afterFailures(3, due)))
    .then({ kind: 'retry-later', reason: `the next activation attempt is due at ${due}`, afterMs: 4_000, until: DEADLINE });
  given(t, [triggered()]).when(loaded(afterFailures(3, due), AT + 4_000)).then({ kind: 'provision', subscription: known(afterFailures(3, due)) }, 'due: the attempt');
});

t.test('a failure that is not transient is final at once', async (t) => {
  given(t, [triggered(), loaded(), provisioned]).when(attemptFailed(false, 'Activate answered 400')).then(recordFailure(1, 'Activate answered 400', true));
  given(t, [triggered(), loaded(), attemptFailed(false)]).when({ type: 'FailureRecorded', final: true }).then({ kind: 'done', outcome: 'gave-up' });
});

t.test('a new attempt waits afresh for Subscribed', async (t) => {
  const second = [triggered(), loaded(afterFailures(1)), provisioned, located('PendingFulfillmentStart')];
  given(t, second).when(accepted(50_000)).then({ kind: 'await-subscribed', afterMs: 0 });
  given(t, [...second, accepted(50_000)]).when(polled('PendingFulfillmentStart', 50_010)).then({ kind: 'await-subscribed', afterMs: 250 }, 'from 250 ms');
});

t.test('the policy is a parameter (the defaults: 1 s doubling to 15 min, 30 days, 30 s)', async (t) => {
  t.strictSame(defaultActivationPolicy, { backoffMs: 1000, maxBackoffMs: 900_000, deadlineMs: MICROSOFT_ACTIVATION_WINDOW_MS, confirmTimeoutMs: 30_000 });
  t.equal(MICROSOFT_ACTIVATION_WINDOW_MS, 30 * 24 * 3600 * 1000);
  const quick = activationWorkflow({ backoffMs: 10, maxBackoffMs: 40, deadlineMs: 60_000, confirmTimeoutMs: 100 });
  const soon = Date.parse(T.created) + 1_000;
  given(t, [triggered(), loaded(afterFailures(4), soon)], quick).when(attemptFailed(true, 'x', soon)).then({
    kind: 'record-failure',
    attempt: 5,
    command: { type: 'RecordActivationFailure', source: 'process', reason: 'x', final: false, retryAt: iso(soon + 40) },
    retry: { afterMs: 40, until: iso(Date.parse(T.created) + 60_000) },
  }, 'capped at 40 ms, a minute to go');
  given(t, untilAccepted, quick).when(accepted(0)).then({ kind: 'await-subscribed', afterMs: 0 }, 'one look at once, whatever the timeout');
  const late = Date.parse(T.created) + 60_000;
  given(t, [triggered(), loaded(pending, late), provisioned, located('PendingFulfillmentStart'), accepted(late)], quick).when(polled('PendingFulfillmentStart', late)).then({
    kind: 'record-failure',
    attempt: 1,
    command: {
      type: 'RecordActivationFailure',
      source: 'process',
      reason: `Microsoft accepted the activation but did not report Subscribed within 100 ms; not retried: the time for activating this purchase ended at ${iso(late)} (Microsoft allows 30 days from the purchase)`,
      final: true,
    },
  }, 'the next look (250 ms later) would miss the wait, and the minute is up');
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
  const outside: ActivationStep[] = [{ kind: 'load' }, recordFailure(1, 'x', false), { kind: 'retry-later', reason: 'x', afterMs: 1000, until: DEADLINE }];
  for (const step of outside) t.notOk(flow.failsTheAttempt(step, attemptState), `${step.kind}: the run fails`);
  t.notOk(flow.failsTheAttempt({ kind: 'provision', subscription: known(pending) }, autoState), 'auto-activated provisioning: the run fails');
});
