/**
 * The reconciler against the emulator (in-process, over 127.0.0.1) and a real SQLite file: drifts repaired in
 * one append per subscription, subscriptions with an operation in progress left alone, one run at a time across
 * two instances on one file, an interrupted run resumed from its last page, Microsoft's throttling honoured,
 * and the schedule.
 */
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import { reconciliationIndexStream, reconciliationStream } from '../../src/domain/reconciliation/index.js';
import { subscriptionStream } from '../../src/domain/subscription/index.js';
import { StoreUnavailableError } from '../../src/eventstore/eventstore.js';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { MarketplaceUnavailableError } from '../../src/marketplace/errors.js';
import { Reconciler } from '../../src/processes/reconciliation.process.js';
import type { ReconcilerMarketplace, RunOutcome, RunSummary, TriggerResult } from '../../src/processes/reconciliation.process.js';
import { scheduleReconciliation } from '../../src/processes/reconciliation.schedule.js';
import { differences, known, logger, reconcileWorld } from '../support/reconcile-world.js';
import { waitFor } from '../support/wait.js';

async function finished(result: TriggerResult): Promise<RunOutcome> {
  if (result.kind === 'busy') throw new Error(`busy: ${result.runId}`);
  const outcome = await result.done;
  if (outcome.status !== 'finished') throw new Error(`run ${outcome.runId} ${outcome.status}: ${outcome.error}`);
  return outcome;
}

t.test('silent changes are repaired with one append per subscription; a second run finds nothing', async (t) => {
  const w = await reconcileWorld(t);
  const plan = await w.active();
  const seats = await w.active();
  const off = await w.active();
  const inLine = await w.active();
  w.ms.changePlan(plan, 'premium'); // P1M → P1Y: the term changes with the plan
  w.ms.changeQuantity(seats, 9);
  w.ms.autoRenew(off, false);
  const unseen = w.ms.purchase({ planId: 'basic' });
  t.equal((await differences(w.ledger, w.client)).size, 4, 'four subscriptions differ before the run');
  const before = new Map<string, bigint>();
  for (const id of [plan, seats, off, inLine]) before.set(id, (await w.store.readLastEvent(subscriptionStream(id)))?.position ?? 0n);

  const r = w.reconciler();
  const outcome = await finished(await r.trigger('api'));
  const c = outcome.run?.counts;
  t.match(c, { checked: 5, drifted: 4, repaired: 3, purchasesRecorded: 1, inFlight: 0, unrepairable: 0, errors: 0 });
  t.match(c?.drifts, { plan: 1, term: 1, quantity: 1, autoRenew: 1, unrecorded: 1, status: 0 });
  t.equal(outcome.run?.pages, 2, '5 subscriptions, 3 a page');
  t.equal(c?.calls, 2 + 2, 'two pages, and one operation list per plan or seats difference');
  t.same([...(await differences(w.ledger, w.client)).entries()], [], 'everything in line with Microsoft');

  const planEvents = (await w.store.readStream(subscriptionStream(plan))).filter((e) => e.position > (before.get(plan) ?? 0n));
  t.same(planEvents.map((e) => e.type), ['PlanChanged', 'DetailsRefreshed'], 'the plan and its new term');
  t.equal(new Set(planEvents.map((e) => e.position - BigInt(e.revision))).size, 1, 'in one append: consecutive in the stream and the store');
  t.ok(planEvents.every((e) => (e.data as { source: string }).source === 'reconciliation' && e.metadata.actor === 'system:reconciliation'));
  t.equal((await known(w.ledger, plan)).term.termUnit, 'P1Y');
  t.equal((await known(w.ledger, unseen)).status, 'PendingFulfillmentStart', 'a purchase never seen: recorded, pending fulfilment');
  t.equal((await w.store.readStream(subscriptionStream(inLine))).at(-1)?.position, before.get(inLine), 'nothing appended where nothing differed');

  const again = await finished(await r.trigger('schedule'));
  t.match(again.run?.counts, { checked: 5, drifted: 0, repaired: 0, purchasesRecorded: 0, calls: 2 }, 'the second run finds nothing');
  const runs = await r.list();
  t.same(runs.map((x) => [x.runId, x.status, x.trigger]), [[again.runId, 'finished', 'schedule'], [outcome.runId, 'finished', 'api']], 'the index: newest first');
  t.equal(runs[1]?.counts?.repaired, 3, 'with the counts its last event recorded');
  const detail = await r.get(outcome.runId);
  t.same(detail?.history.map((h) => h.type), ['ReconciliationStarted', 'ReconciliationPageChecked', 'ReconciliationPageChecked', 'ReconciliationFinished']);
  t.equal((await w.store.readStream(reconciliationIndexStream)).length, 1, 'the index keeps its last event only');
});

t.test('a plan or seats difference while Microsoft has an operation in progress is left alone, then repaired', async (t) => {
  const w = await reconcileWorld(t);
  const id = await w.active();
  w.ms.changePlan(id, 'premium');
  const op = w.ms.startQuantityChange(id, 7); // waiting for our acknowledgement (its webhook dropped)
  const r = w.reconciler();
  const first = await finished(await r.trigger('api'));
  t.match(first.run?.counts, { drifted: 1, inFlight: 1, repaired: 0 });
  t.equal((await known(w.ledger, id)).planId, 'standard', 'not touched while the operation is in progress');
  w.emulator.state.accept(op, new Date());
  const second = await finished(await r.trigger('api'));
  t.match(second.run?.counts, { drifted: 1, inFlight: 0, repaired: 1 });
  t.match(await known(w.ledger, id), { planId: 'premium', quantity: 7 });
});

t.test('what nothing may repair is counted, left as it is, and the run goes on', async (t) => {
  const w = await reconcileWorld(t);
  const id = await w.active();
  const fine = await w.active();
  await w.ledger.execute(id, { type: 'Unsubscribe', now: new Date().toISOString(), source: 'operator', reason: 'test' }, { actor: 'test' });
  w.ms.changeQuantity(fine, 8);
  const outcome = await finished(await w.reconciler().trigger('cli'));
  t.match(outcome.run?.counts, { drifted: 2, unrepairable: 1, repaired: 1, errors: 0 });
  t.equal((await known(w.ledger, id)).status, 'Unsubscribed', 'Unsubscribed stays Unsubscribed');
});

t.test('two instances on one SQLite file, triggered at once: one run', async (t) => {
  const w = await reconcileWorld(t);
  for (let i = 0; i < 6; i++) w.ms.purchase({ planId: 'basic' });
  const other = openSqliteStore({ path: w.path, pollIntervalMs: 20 });
  t.teardown(() => other.close());
  const a = w.reconciler({ instanceId: 'a' });
  const b = w.reconciler({ store: other, ledger: new SubscriptionLedger(other), instanceId: 'b' });
  const [ra, rb, ra2] = await Promise.all([a.trigger('api'), b.trigger('api'), a.trigger('api')]);
  const results = [ra, rb, ra2];
  const started = results.filter((x) => x.kind !== 'busy');
  t.equal(started.length, 1, 'exactly one trigger started a run');
  const runId = started[0]?.runId;
  t.ok(results.filter((x) => x.kind === 'busy').every((x) => x.runId === runId), 'the others were told which run is under way');
  await finished(started[0] as TriggerResult);
  t.equal((await a.list()).length, 1, 'one run recorded');
  const purchases = await Promise.all((await w.client.listSubscriptions()).map((s) => w.store.readStream(subscriptionStream(s.id))));
  t.ok(purchases.every((events) => events.filter((e) => e.type === 'Purchased').length === 1), 'each purchase recorded once');
});

t.test('a run stopped mid-way is interrupted, then resumed from its last recorded page; nothing half-applied', async (t) => {
  const w = await reconcileWorld(t, { pageSize: 2 });
  const ids: string[] = [];
  for (let i = 0; i < 8; i++) ids.push(await w.active());
  for (const id of ids) {
    w.ms.suspend(id);
    w.ms.unsubscribe(id); // two status steps: Suspended and Unsubscribed at once, or neither
  }
  let pages = 0;
  const gate = new AbortController();
  const slow: ReconcilerMarketplace = {
    listSubscriptionsPage: async (link, options) => {
      if (++pages === 3) await new Promise((_, reject) => gate.signal.addEventListener('abort', () => reject(gate.signal.reason)));
      return w.client.listSubscriptionsPage(link, options);
    },
    listOperations: (id, options) => w.client.listOperations(id, options),
  };
  const first = w.reconciler({ marketplace: slow, instanceId: 'first' });
  const started = await first.trigger('api');
  if (started.kind === 'busy') throw new Error('busy');
  await waitFor('two pages recorded', async () => (await w.store.readStream(reconciliationStream(started.runId))).filter((e) => e.type === 'ReconciliationPageChecked').length === 2);
  const stopping = first.close(); // the service shuts down mid-run
  gate.abort(new Error('the listing was cut off'));
  await stopping;
  const stopped = await started.done;
  t.equal(stopped.status, 'interrupted');
  t.match(stopped.run, { status: 'interrupted', pages: 2, counts: { repaired: 4 } });
  for (const id of ids) {
    const events = (await w.store.readStream(subscriptionStream(id))).map((e) => e.type);
    t.ok(events.at(-1) !== 'Suspended', `${id.slice(0, 8)}: never left half-way (Suspended without its Unsubscribed)`);
  }

  const second = w.reconciler({ instanceId: 'second' });
  const resumed = await second.trigger('schedule');
  t.equal(resumed.kind, 'resumed', 'the next trigger resumes the interrupted run');
  t.equal(resumed.kind !== 'busy' && resumed.runId, started.runId, 'the same run');
  const done = await finished(resumed);
  t.match(done.run, { pages: 4, resumes: 1, counts: { checked: 8, repaired: 8 } }, 'pages 3 and 4 checked by the second instance only');
  t.same([...(await differences(w.ledger, w.client)).entries()], []);
  const history = (await second.get(started.runId))?.history ?? [];
  t.same(history.map((h) => `${h.type}${h.page ? ` ${h.page}` : ''}@${h.instanceId}`), [
    'ReconciliationStarted@first',
    'ReconciliationPageChecked 1@first',
    'ReconciliationPageChecked 2@first',
    'ReconciliationInterrupted@first',
    'ReconciliationResumed@second',
    'ReconciliationPageChecked 3@second',
    'ReconciliationPageChecked 4@second',
    'ReconciliationFinished@second',
  ]);
});

t.test('an instance that cannot renew its claim stops; another takes the run over and finishes it', async (t) => {
  const w = await reconcileWorld(t, { pageSize: 2 });
  for (let i = 0; i < 6; i++) w.ms.purchase({ planId: 'basic' });
  let partitioned = false;
  const store: EventStore = Object.create(w.store, {
    appendToStream: {
      value: (stream: string, events: Parameters<EventStore['appendToStream']>[1], options: Parameters<EventStore['appendToStream']>[2]) => {
        if (partitioned) return Promise.reject(new StoreUnavailableError('cut off from the store'));
        return w.store.appendToStream(stream, events, options);
      },
    },
  });
  let pages = 0;
  const hanging: ReconcilerMarketplace = {
    listSubscriptionsPage: async (link, options) => {
      if (++pages === 2) {
        await new Promise((_, reject) => options?.signal?.addEventListener('abort', () => reject(options.signal?.reason)));
      }
      return w.client.listSubscriptionsPage(link, options);
    },
    listOperations: (id, options) => w.client.listOperations(id, options),
  };
  const a = w.reconciler({ store, ledger: new SubscriptionLedger(store), marketplace: hanging, instanceId: 'a', takeoverAfterMs: 600 });
  const started = await a.trigger('api');
  if (started.kind === 'busy') throw new Error('busy');
  await waitFor('a page recorded', async () => (await w.store.readStream(reconciliationStream(started.runId))).some((e) => e.type === 'ReconciliationPageChecked'));
  partitioned = true;
  const outcome = await started.done;
  t.equal(outcome.status, 'lost', 'the instance gave the run up when it could not renew its claim in time');
  t.match(outcome.error, /could not be renewed in time/);

  const b = w.reconciler({ instanceId: 'b', takeoverAfterMs: 600 });
  const resumed = await waitFor('the claim to expire', async () => {
    const r = await b.trigger('api');
    return r.kind === 'busy' ? undefined : r;
  });
  t.equal(resumed.kind, 'resumed');
  const done = await finished(resumed);
  t.match(done.run, { instanceId: 'b', resumes: 1, counts: { purchasesRecorded: 6 } });
});

t.test('a recorded link Microsoft no longer accepts: the resumed run lists again from the first page', async (t) => {
  const w = await reconcileWorld(t, { pageSize: 2 });
  for (let i = 0; i < 5; i++) w.ms.purchase({ planId: 'basic' });
  let calls = 0;
  const failing: ReconcilerMarketplace = {
    listSubscriptionsPage: async (link, options) => {
      if (++calls === 2) throw new MarketplaceUnavailableError({ call: 'listSubscriptions', method: 'GET', url: String(link), requestId: 'r', correlationId: 'c', reason: 'test' });
      return w.client.listSubscriptionsPage(link, options);
    },
    listOperations: (id, options) => w.client.listOperations(id, options),
  };
  const first = await w.reconciler({ marketplace: failing }).trigger('api');
  if (first.kind === 'busy') throw new Error('busy');
  t.match(await first.done, { status: 'interrupted', run: { pages: 1 } });

  let resumedCalls = 0;
  const expired: ReconcilerMarketplace = {
    // The link recorded before the interruption has expired; the links Microsoft gives now work.
    listSubscriptionsPage: (link, options) =>
      w.client.listSubscriptionsPage(++resumedCalls === 1 ? link?.replace(/continuationToken=[^&]+/, 'continuationToken=expired') : link, options),
    listOperations: (id, options) => w.client.listOperations(id, options),
  };
  const resumed = await w.reconciler({ marketplace: expired }).trigger('api');
  t.equal(resumed.kind, 'resumed');
  const done = await finished(resumed);
  t.match(done.run?.counts, { purchasesRecorded: 5 }, 'every subscription checked after all');
  t.same([...(await differences(w.ledger, w.client)).entries()], []);
});

t.test('Microsoft unavailable: the run is interrupted with the reason and resumed later; 429s are waited out', async (t) => {
  const w = await reconcileWorld(t);
  for (let i = 0; i < 5; i++) w.ms.purchase({ planId: 'basic' });
  w.emulator.faults.set({ api: { serverError: { operations: ['listSubscriptions'] } } });
  const r = w.reconciler();
  const result = await r.trigger('api');
  if (result.kind === 'busy') throw new Error('busy');
  const outcome = await result.done;
  t.equal(outcome.status, 'interrupted');
  t.match(outcome.error, /status 500/);
  t.equal((await r.index()).claim, undefined, 'the claim is released');

  w.emulator.faults.set({ api: { throttle: { retryAfterSeconds: 1, times: 2, operations: ['listSubscriptions'] } } });
  const resumed = await r.trigger('api');
  t.equal(resumed.kind, 'resumed');
  const done = await finished(resumed);
  t.match(done.run?.counts, { purchasesRecorded: 5, calls: 2 }, 'two pages; the throttled attempts were retried by the client');
  t.equal(w.emulator.faults.fired.throttle, 2, 'Microsoft throttled twice, and was waited for');
});

t.test('the schedule runs on its own, an interval after the last start, and resumes a vanished run', async (t) => {
  const w = await reconcileWorld(t);
  w.ms.purchase({ planId: 'basic' });
  const r = w.reconciler();
  const schedule = scheduleReconciliation({ reconciler: r, intervalMs: 400, logger });
  t.teardown(() => schedule.stop());
  const runs = await waitFor('two scheduled runs', async () => {
    const list = await r.list();
    return list.length >= 2 && list.every((x) => x.status === 'finished') ? list : undefined;
  });
  t.ok(runs.every((x) => x.trigger === 'schedule'));
  const [second, first] = runs;
  t.ok(Date.parse(second?.startedAt ?? '') - Date.parse(first?.startedAt ?? '') >= 400, 'one interval apart at least');
  schedule.stop();

  // An instance that claimed a run and vanished: the schedule resumes the run once the claim has expired.
  await w.store.appendToStream(reconciliationIndexStream, [{ type: 'ReconciliationIndexUpdated', data: {
    at: new Date().toISOString(),
    change: 'started',
    runs: [{ runId: '1f7e3c2a-5b9d-4f60-8e1a-3c5b7d9f0a24', trigger: 'api', startedAt: new Date().toISOString(), status: 'running', at: new Date().toISOString() }, ...runs],
    claim: { runId: '1f7e3c2a-5b9d-4f60-8e1a-3c5b7d9f0a24', instanceId: 'vanished', until: new Date(Date.now() + 300).toISOString() },
  } }], { keepLast: 1 });
  const again = scheduleReconciliation({ reconciler: r, intervalMs: 60_000, logger });
  t.teardown(() => again.stop());
  const run = await waitFor('the vanished run resumed and finished', async () => (await r.list()).find((x) => x.runId === '1f7e3c2a-5b9d-4f60-8e1a-3c5b7d9f0a24' && x.status === 'finished'));
  t.equal(run.trigger, 'api', 'the run keeps what started it');
  t.equal((await r.get(run.runId))?.run.instanceId, r.instanceId);
});

t.test('close() with nothing running, and triggers after close', async (t) => {
  const w = await reconcileWorld(t);
  const r = new Reconciler({ store: w.store, ledger: w.ledger, marketplace: w.client, logger });
  await r.close();
  await t.rejects(r.trigger('api'), /shutting down/);
  t.equal(await r.get('no-such-run'), undefined);
});

t.test('the operator API: 503 until the store is open, and the routes documented', async (t) => {
  const app = await buildApp({
    logger,
    store: () => undefined,
    api: { operatorToken: 'operator-token-0123456789', reconciliation: { reconciler: () => undefined } },
  });
  t.teardown(() => app.close());
  const headers = { authorization: 'Bearer operator-token-0123456789' };
  const res = await app.inject({ method: 'POST', url: '/api/reconcile', headers });
  t.equal(res.statusCode, 503);
  t.match(res.headers['content-type'], /application\/problem\+json/);
  t.equal((await app.inject({ method: 'GET', url: '/api/reconciliations' })).statusCode, 401, 'behind the operator token');
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<{ paths: Record<string, Record<string, { operationId: string }>> }>();
  t.equal(doc.paths['/api/reconcile']?.post?.operationId, 'reconcile');
  t.equal(doc.paths['/api/reconciliations']?.get?.operationId, 'listReconciliations');
  t.equal(doc.paths['/api/reconciliations/{id}']?.get?.operationId, 'getReconciliation');
});

t.test('scheduled on two instances of one SQLite file: the runs never overlap', async (t) => {
  const w = await reconcileWorld(t);
  for (let i = 0; i < 4; i++) w.ms.purchase({ planId: 'basic' });
  const other = openSqliteStore({ path: w.path, pollIntervalMs: 20 });
  t.teardown(() => other.close());
  const a = w.reconciler({ instanceId: 'a' });
  const b = w.reconciler({ store: other, ledger: new SubscriptionLedger(other), instanceId: 'b' });
  const schedules = [a, b].map((reconciler) => scheduleReconciliation({ reconciler, intervalMs: 300, logger }));
  t.teardown(() => schedules.forEach((s) => s.stop()));
  const runs = await waitFor('three scheduled runs finished', async () => {
    const list = await a.list();
    return list.filter((x) => x.status === 'finished').length >= 3 ? list : undefined;
  }, 20_000);
  schedules.forEach((s) => s.stop());
  const done = runs.filter((x) => x.status === 'finished').sort((x, y) => Date.parse(x.startedAt) - Date.parse(y.startedAt));
  for (let i = 1; i < done.length; i++) {
    const previous = done[i - 1] as RunSummary;
    const end = Date.parse(previous.startedAt) + (previous.durationMs ?? 0);
    t.ok(Date.parse((done[i] as RunSummary).startedAt) >= end, `run ${i + 1} started after run ${i} ended`);
  }
  t.ok(done.every((x) => x.trigger === 'schedule'), 'all started by the schedules');
});
