/**
 * The reconciler's pure parts, without Microsoft or a store: the run's decider (a run's stream), the index and
 * its claim (one run at a time), the per-subscription check, the counts, and the schedule's decision.
 */
import t from 'tap';
import {
  addCounts,
  claimRun,
  decideRun,
  decodeIndexEvent,
  decodeReconciliationEvent,
  emptyCounts,
  emptyIndex,
  evolveRun,
  initialRunState,
  releaseClaim,
  renewClaim,
} from '../../src/domain/reconciliation/index.js';
import type { ReconciliationCommand, ReconciliationEvent, RunIndex, RunState } from '../../src/domain/reconciliation/index.js';
import { DomainError } from '../../src/domain/errors.js';
import { EventDecodeError, subscriptionDecider } from '../../src/domain/subscription/index.js';
import type { MicrosoftRecord, SubscriptionDetails, SubscriptionEvent, SubscriptionState } from '../../src/domain/subscription/index.js';
import { checkSubscription, countsOf, nextScheduled, operationInProgress } from '../../src/processes/reconciliation.workflow.js';
import { RateLimiter } from '../../src/processes/rate-limit.js';
import { deepFreeze } from '../support/given-when-then.js';

const RUN = '6d2f9b1e-3a4c-4e8b-9f1d-0c7a5e3b2d19';
const A = 'host-a:1:aaaaaaaa';
const B = 'host-b:2:bbbbbbbb';
const T0 = '2026-05-01T12:00:00.000Z';
const T1 = '2026-05-01T12:00:30.000Z';
const T2 = '2026-05-01T12:01:30.000Z';
const plus = (iso: string, ms: number) => new Date(Date.parse(iso) + ms).toISOString();

function run(commands: ReconciliationCommand[], from: RunState = initialRunState()): { state: RunState; events: ReconciliationEvent[] } {
  let state = from;
  const events: ReconciliationEvent[] = [];
  for (const c of commands) {
    const out = decideRun(c, deepFreeze(state));
    for (const e of out) state = evolveRun(state, e);
    events.push(...out);
  }
  return { state, events };
}

const page = (n: number, instanceId = A, over: Partial<Extract<ReconciliationCommand, { type: 'RecordPage' }>> = {}): ReconciliationCommand => ({
  type: 'RecordPage',
  now: T1,
  instanceId,
  page: n,
  nextLink: `https://marketplaceapi.microsoft.com/api/saas/subscriptions/?continuationToken=p${n + 1}`,
  found: { ...emptyCounts(), checked: 100, calls: 1 },
  ...over,
});

t.test('a run: started, pages recorded with the link to the next, finished with the sums and its duration', async (t) => {
  const { state, events } = run([
    { type: 'StartRun', runId: RUN, trigger: 'api', now: T0, instanceId: A },
    page(1),
    page(2, A, { nextLink: undefined }),
    { type: 'FinishRun', now: T2, instanceId: A },
  ]);
  t.same(events.map((e) => e.type), ['ReconciliationStarted', 'ReconciliationPageChecked', 'ReconciliationPageChecked', 'ReconciliationFinished']);
  if (state.status === 'none') throw new Error('no run');
  t.equal(state.status, 'finished');
  t.equal(state.pages, 2);
  t.equal(state.counts.checked, 200, 'the counts are summed page by page');
  t.equal(state.counts.calls, 2);
  t.equal(state.durationMs, 90_000);
  const second = events[2];
  t.equal(second?.type === 'ReconciliationPageChecked' && second.data.link, undefined, 'the command gave no link: none recorded');
  t.equal(decideRun({ type: 'FinishRun', now: T2, instanceId: A }, state).length, 0, 'finishing twice records nothing');
});

t.test('a run is resumed from its last recorded page, and only the instance that resumed it may go on', async (t) => {
  const crashed = run([{ type: 'StartRun', runId: RUN, trigger: 'schedule', now: T0, instanceId: A }, page(1)]).state;
  if (crashed.status === 'none') throw new Error('no run');
  t.equal(crashed.nextLink, 'https://marketplaceapi.microsoft.com/api/saas/subscriptions/?continuationToken=p2', 'the resume point');
  const resumed = run([{ type: 'ResumeRun', trigger: 'api', now: T1, instanceId: B }], crashed);
  const e = resumed.events[0];
  t.equal(e?.type, 'ReconciliationResumed');
  t.equal(e?.type === 'ReconciliationResumed' && e.data.fromPage, 2);
  t.equal(e?.type === 'ReconciliationResumed' && e.data.counts.checked, 100, 'the counts so far travel with it');
  t.throws(() => decideRun(page(2, A), resumed.state), { code: 'run-not-held' }, 'the old instance is fenced off');
  t.same(decideRun({ type: 'InterruptRun', now: T1, instanceId: A, reason: 'x' }, resumed.state), [], 'nor may it interrupt the run');
  t.throws(() => decideRun(page(3, B), resumed.state), { code: 'page-out-of-order' });
  t.same(decideRun(page(1, B), resumed.state), [], 'a page recorded already (a retried append) adds nothing');
  const done = run([page(2, B, { nextLink: undefined }), { type: 'FinishRun', now: T2, instanceId: B }], resumed.state).state;
  t.equal(done.status, 'finished');
  t.throws(() => decideRun({ type: 'ResumeRun', trigger: 'api', now: T2, instanceId: A }, done), { code: 'run-finished' });
});

t.test('a run refuses what does not fit: finishing with pages left, pages after the last, a second start, no run', async (t) => {
  const started = run([{ type: 'StartRun', runId: RUN, trigger: 'cli', now: T0, instanceId: A }]).state;
  t.throws(() => decideRun({ type: 'FinishRun', now: T1, instanceId: A }, started), { code: 'run-not-listed' });
  t.same(decideRun({ type: 'StartRun', runId: RUN, trigger: 'cli', now: T0, instanceId: A }, started), [], 'a repeated start (retried append) adds nothing');
  t.throws(() => decideRun({ type: 'StartRun', runId: RUN, trigger: 'cli', now: T0, instanceId: B }, started), { code: 'run-exists' });
  const listed = run([page(1, A, { nextLink: undefined })], started).state;
  t.throws(() => decideRun(page(2), listed), { code: 'run-listed' });
  t.throws(() => decideRun({ type: 'ResumeRun', trigger: 'api', now: T0, instanceId: A }, initialRunState()), { code: 'run-not-found' });
  const interrupted = run([{ type: 'InterruptRun', now: T1, instanceId: A, reason: 'Microsoft unavailable' }], listed).state;
  t.equal(interrupted.status, 'interrupted');
  t.equal(interrupted.status !== 'none' && interrupted.lastInterruption?.reason, 'Microsoft unavailable');
  t.same(decideRun({ type: 'InterruptRun', now: T1, instanceId: A, reason: 'again' }, interrupted), [], 'interrupting an interrupted run adds nothing');
});

t.test('the index: one claim at a time; a vanished holder is taken over and its run resumed; the list is bounded', async (t) => {
  const req = (at: string, instanceId: string, newRunId: string) => ({ at, until: plus(at, 60_000), instanceId, newRunId, trigger: 'api' as const });
  const first = claimRun(deepFreeze(emptyIndex()), req(T0, A, RUN));
  t.equal(first.kind, 'start');
  if (first.kind === 'busy') throw new Error('busy');
  const held: RunIndex = { runs: first.update.runs, ...(first.update.claim ? { claim: first.update.claim } : {}) };
  const second = claimRun(deepFreeze(held), req(T1, B, 'other'));
  t.equal(second.kind, 'busy', 'a live claim: busy');
  t.equal(second.kind === 'busy' && second.claim.runId, RUN, 'naming the run under way');

  const takeover = claimRun(deepFreeze(held), req(plus(T0, 60_001), B, 'other'));
  t.equal(takeover.kind, 'resume', 'the claim expired: the run is resumed, not a new one started');
  t.equal(takeover.kind === 'resume' && takeover.runId, RUN);
  t.equal(takeover.kind === 'resume' && takeover.update.claim?.instanceId, B);

  const renewed = renewClaim(held, { at: T1, until: plus(T1, 60_000), runId: RUN, instanceId: A });
  t.equal(renewed.claim?.until, plus(T1, 60_000));
  t.throws(() => renewClaim(held, { at: T1, until: T2, runId: RUN, instanceId: B }), DomainError, 'only the holder renews');

  const released = releaseClaim(held, { at: T2, runId: RUN, instanceId: A, status: 'finished' });
  t.equal(released?.claim, undefined, 'released: no claim');
  t.equal(released?.runs[0]?.status, 'finished');
  t.equal(releaseClaim(held, { at: T2, runId: RUN, instanceId: B, status: 'finished' }), undefined, 'not the holder: nothing to write');

  const interrupted: RunIndex = { runs: [{ ...first.update.runs[0]!, status: 'interrupted', at: T1 }] };
  const resume = claimRun(interrupted, req(T2, B, 'other'));
  t.equal(resume.kind === 'resume' && resume.runId, RUN, 'an interrupted run is resumed by the next trigger');

  let index: RunIndex = emptyIndex();
  for (let i = 0; i < 5; i++) {
    const d = claimRun(index, { ...req(plus(T0, i * 1000), A, `run-${i}`), keep: 3 });
    if (d.kind !== 'start') throw new Error(d.kind);
    const rel = releaseClaim({ runs: d.update.runs, ...(d.update.claim ? { claim: d.update.claim } : {}) }, { at: plus(T0, i * 1000 + 500), runId: d.runId, instanceId: A, status: 'finished' });
    index = { runs: rel?.runs ?? [] };
  }
  t.same(index.runs.map((r) => r.runId), ['run-4', 'run-3', 'run-2'], 'the last runs, newest first, bounded');
});

const details: SubscriptionDetails = {
  subscriptionId: '3c1f6a2e-9b7d-4e51-8a0c-2d4f6b8e1a37',
  name: 'Contoso',
  offerId: 'ledger-saas',
  planId: 'standard',
  quantity: 5,
  purchaser: {},
  beneficiary: {},
  term: { termUnit: 'P1M', startDate: '2026-04-01T00:00:00Z', endDate: '2026-04-30T00:00:00Z' },
  autoRenew: true,
  isFreeTrial: false,
  isTest: false,
  allowedCustomerOperations: ['Read', 'Update', 'Delete'],
};

function recorded(microsoftStatus: string, extra: SubscriptionEvent[] = []): SubscriptionState {
  const events = subscriptionDecider.decide({ type: 'RecordPurchase', now: T0, source: 'landing', subscription: details, microsoftStatus }, subscriptionDecider.initialState());
  return [...events, ...extra].reduce(subscriptionDecider.evolve, subscriptionDecider.initialState());
}
const ms = (status: string, over: Partial<SubscriptionDetails> = {}): MicrosoftRecord => ({ status, details: { ...details, ...over } });

t.test('one subscription: in line, never seen, differing, differing in plan or seats, or beyond repair', async (t) => {
  t.same(checkSubscription(recorded('Subscribed'), ms('Subscribed'), T1), { kind: 'in-line' });

  const unseen = checkSubscription(subscriptionDecider.initialState(), ms('PendingFulfillmentStart'), T1);
  t.equal(unseen.kind, 'record-purchase');
  t.match(unseen, { command: { type: 'RecordPurchase', source: 'reconciliation', microsoftStatus: 'PendingFulfillmentStart' } }, 'recorded as pending, with source reconciliation');

  const suspended = checkSubscription(recorded('Subscribed'), ms('Suspended'), T1);
  t.match(suspended, { kind: 'converge', drift: ['status'], checkOperations: false, command: { type: 'ConvergeOnMicrosoft', source: 'reconciliation' } });

  const plan = checkSubscription(recorded('Subscribed'), ms('Subscribed', { planId: 'premium', term: { termUnit: 'P1Y', startDate: '2026-04-15T00:00:00Z', endDate: '2027-04-14T00:00:00Z' } }), T1);
  t.match(plan, { kind: 'converge', drift: ['plan', 'term'], checkOperations: true }, 'a plan change: ask Microsoft about operations in progress first');
  t.match(checkSubscription(recorded('Subscribed'), ms('Subscribed', { quantity: 9 }), T1), { kind: 'converge', drift: ['quantity'], checkOperations: true });
  t.match(checkSubscription(recorded('Subscribed'), ms('Subscribed', { autoRenew: false }), T1), { kind: 'converge', drift: ['autoRenew'], checkOperations: false });

  const requested = recorded('Subscribed', [{ type: 'PlanChangeRequested', data: { at: T0, source: 'operator', requestId: 'r-1', planId: 'premium', previousPlanId: 'standard' } }]);
  t.same(checkSubscription(requested, ms('Subscribed', { planId: 'premium' }), T1), { kind: 'ours-pending', drift: ['plan'], requestId: 'r-1' }, 'our own plan change pending: left to the publisher-changes service');
  t.match(checkSubscription(requested, ms('Suspended'), T1), { kind: 'converge', drift: ['status'] }, 'a status difference is still repaired');

  const gone = recorded('Unsubscribed');
  t.same(checkSubscription(gone, ms('Subscribed'), T1), { kind: 'unrepairable', drift: ['status'] }, 'Unsubscribed here stays Unsubscribed');
  t.same(checkSubscription(recorded('Subscribed'), ms('PendingFulfillmentStart'), T1), { kind: 'unrepairable', drift: ['status'] }, 'no way back to pending');
});

t.test('an operation is in progress unless Microsoft says it is final', async (t) => {
  t.equal(operationInProgress([]), false);
  t.equal(operationInProgress([{ status: 'Succeeded' }, { status: 'Failed' }, { status: 'Conflict' }]), false);
  t.equal(operationInProgress([{ status: 'InProgress' }]), true);
  t.equal(operationInProgress([{ status: 'NotStarted' }]), true);
  t.equal(operationInProgress([{}]), true, 'no status: assume it is under way');
});

t.test('counts per outcome add up by kind', async (t) => {
  const all = [
    countsOf({ kind: 'in-line', calls: 0 }),
    countsOf({ kind: 'purchase-recorded', calls: 0 }),
    countsOf({ kind: 'converged', drift: ['plan', 'term'], appended: 2, remaining: [], calls: 1 }),
    countsOf({ kind: 'converged', drift: ['status', 'plan'], appended: 1, remaining: ['status'], calls: 1 }),
    countsOf({ kind: 'converged', drift: ['quantity'], appended: 0, remaining: [], calls: 1 }),
    countsOf({ kind: 'in-flight', drift: ['quantity'], calls: 1 }),
    countsOf({ kind: 'unrepairable', drift: ['status'], calls: 0 }),
    countsOf({ kind: 'error', drift: [], calls: 0 }),
  ].reduce(addCounts, emptyCounts());
  t.equal(all.checked, 8);
  t.equal(all.drifted, 6);
  t.same(all.drifts, { status: 2, plan: 2, quantity: 2, term: 1, autoRenew: 0, isFreeTrial: 0, allowedCustomerOperations: 0, unrecorded: 1 });
  t.equal(all.repaired, 2, 'a convergence that appended nothing (the webhook got there first) is not a repair');
  t.equal(all.purchasesRecorded, 1);
  t.equal(all.inFlight, 1);
  t.equal(all.unrepairable, 2, 'beyond repair, whole or in part');
  t.equal(all.errors, 1);
  t.equal(all.calls, 4);
});

t.test('the schedule: an interval after the last start; a live claim waits; an unfinished run is resumed', async (t) => {
  const HOUR = 3_600_000;
  const now = Date.parse(T2);
  const at = { now, since: now - 1000, intervalMs: HOUR, retryMs: 60_000 };
  t.same(nextScheduled(emptyIndex(), at), { kind: 'wait', ms: HOUR - 1000 }, 'a store with no run: an interval after the schedule began');
  t.same(nextScheduled(emptyIndex(), { ...at, since: now - HOUR }), { kind: 'run' });
  const finished = (startedAt: string): RunIndex => ({ runs: [{ runId: RUN, trigger: 'schedule', startedAt, status: 'finished', at: startedAt }] });
  t.same(nextScheduled(finished(plus(T2, -HOUR + 5000)), at), { kind: 'wait', ms: 5000 });
  t.same(nextScheduled(finished(plus(T2, -HOUR - 5000)), at), { kind: 'run' });
  const live: RunIndex = { runs: [{ runId: RUN, trigger: 'api', startedAt: T1, status: 'running', at: T1 }], claim: { runId: RUN, instanceId: A, until: plus(T2, 20_000) } };
  t.same(nextScheduled(live, at), { kind: 'wait', ms: 20_000 }, 'a run under way: wait for it');
  t.same(nextScheduled({ runs: live.runs, claim: { runId: RUN, instanceId: A, until: T1 } }, at), { kind: 'run' }, 'its instance vanished: resume at once');
  const interrupted: RunIndex = { runs: [{ runId: RUN, trigger: 'api', startedAt: T0, status: 'interrupted', at: plus(T2, -30_000) }] };
  t.same(nextScheduled(interrupted, at), { kind: 'wait', ms: 30_000 }, 'interrupted: resumed after the retry delay');
});

t.test('stored events decode through one schema; a wrong shape is an error, another type is not ours', async (t) => {
  const { events } = run([{ type: 'StartRun', runId: RUN, trigger: 'api', now: T0, instanceId: A }, page(1)]);
  for (const e of events) t.same(decodeReconciliationEvent(JSON.parse(JSON.stringify(e))), e, `${e.type} round-trips`);
  t.equal(decodeReconciliationEvent({ type: 'Purchased', data: {} }), undefined);
  t.throws(() => decodeReconciliationEvent({ type: 'ReconciliationPageChecked', data: { at: T0, instanceId: A, page: 'one' } }), EventDecodeError);
  const claimed = claimRun(emptyIndex(), { at: T0, until: T1, instanceId: A, newRunId: RUN, trigger: 'cli' });
  if (claimed.kind === 'busy') throw new Error('busy');
  const stored = { type: 'ReconciliationIndexUpdated', data: JSON.parse(JSON.stringify(claimed.update)) };
  t.same(decodeIndexEvent(stored)?.data, claimed.update);
  t.equal(decodeIndexEvent(undefined), undefined);
  t.throws(() => decodeIndexEvent({ type: 'ReconciliationIndexUpdated', data: { at: T0, change: 'exploded', runs: [] } }), EventDecodeError);
});

t.test('the call rate: calls spaced 1/rate apart, no burst; a pause lets the next call go at once', async (t) => {
  let clock = 1_000;
  const waits: number[] = [];
  const limiter = new RateLimiter(10, () => clock, async (ms) => {
    waits.push(ms);
    clock += ms;
  });
  for (let i = 0; i < 4; i++) await limiter.take();
  t.same(waits, [100, 100, 100], 'the first at once, then one every 100 ms');
  clock += 5_000;
  await limiter.take();
  t.same(waits, [100, 100, 100], 'after a quiet spell: no wait, and no burst saved up');
  await limiter.take();
  t.same(waits, [100, 100, 100, 100]);
  t.throws(() => new RateLimiter(0), RangeError);
  const aborted = AbortSignal.abort(new Error('stop'));
  await t.rejects(limiter.take(aborted), /stop/);
});
