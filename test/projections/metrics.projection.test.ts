/** The metrics projection on its own: daily counters, seats, timings, trials; replays count nothing twice. */
import t from 'tap';
import { subscriptionDecider, subscriptionStream } from '../../src/domain/subscription/index.js';
import type { SubscriptionCommand, SubscriptionDetails, SubscriptionState } from '../../src/domain/subscription/index.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { metricsProjection } from '../../src/projections/views/metrics.projection.js';
import { applyAll, dump, memoryDb, recorder } from './helpers.js';

const base = (id: string, over: Partial<SubscriptionDetails> = {}): SubscriptionDetails => ({
  subscriptionId: id,
  name: id,
  offerId: 'ledger-saas',
  planId: 'standard',
  quantity: 5,
  purchaser: { emailId: 'a@b.example', tenantId: 't' },
  beneficiary: { emailId: 'a@b.example', tenantId: 't' },
  term: { termUnit: 'P1M' },
  autoRenew: true,
  isFreeTrial: false,
  isTest: false,
  allowedCustomerOperations: ['Read', 'Update', 'Delete'],
  created: '2026-03-01T09:00:00Z',
  ...over,
});

/** Several subscriptions' histories through the real decider, recorded in one global order. */
function world() {
  const record = recorder();
  const states = new Map<string, SubscriptionState>();
  const events: RecordedEvent[] = [];
  const run = (id: string, command: SubscriptionCommand) => {
    const state = states.get(id) ?? subscriptionDecider.initialState();
    const out = subscriptionDecider.decide(command, state);
    states.set(id, out.reduce(subscriptionDecider.evolve, state));
    for (const e of out) events.push(record(subscriptionStream(id), e.type, e.data));
  };
  return { run, events };
}

const daily = (db: ReturnType<typeof memoryDb>, day: string, planId: string) =>
  db.prepare('SELECT * FROM metrics_daily WHERE day = ? AND plan_id = ? AND is_test = 0').get(day, planId) as Record<string, number> | undefined;

t.test('counters per day and plan, seats, time to activation, suspensions, trials', async (t) => {
  const db = memoryDb(t, metricsProjection);
  const w = world();
  const purchase = (id: string, over: Partial<SubscriptionDetails> = {}, now = '2026-03-01T09:10:00.000Z') =>
    w.run(id, { type: 'RecordPurchase', now, source: 'landing', subscription: base(id, over), microsoftStatus: 'PendingFulfillmentStart' });
  const activate = (id: string, requested: string, confirmed: string) => {
    w.run(id, { type: 'RequestActivation', now: requested, source: 'landing', contact: { email: 'a@b.example' } });
    w.run(id, { type: 'ConfirmActivation', now: confirmed, source: 'process' });
  };

  purchase('a');
  activate('a', '2026-03-01T09:20:00.000Z', '2026-03-01T09:20:30.000Z'); // 20.5 min after created
  purchase('b', { isFreeTrial: true, quantity: 10 });
  activate('b', '2026-03-01T10:00:00.000Z', '2026-03-01T10:00:10.000Z');
  purchase('c', { planId: 'premium', quantity: 20 });
  activate('c', '2026-03-02T08:00:00.000Z', '2026-03-02T08:00:05.000Z');
  purchase('d', { isFreeTrial: true, quantity: 3 });
  activate('d', '2026-03-01T11:00:00.000Z', '2026-03-01T11:00:10.000Z');
  purchase('test', { isTest: true });
  w.run('auto', { type: 'RecordPurchase', now: '2026-03-01T09:00:05.000Z', source: 'webhook', subscription: base('auto', { planId: 'premium', quantity: 7 }), microsoftStatus: 'Subscribed', operationId: 'op-auto' });

  w.run('a', { type: 'ApplyPlanChange', now: '2026-03-05T12:00:00.000Z', source: 'webhook', operationId: 'op-1', planId: 'premium' });
  w.run('a', { type: 'ApplyQuantityChange', now: '2026-03-05T13:00:00.000Z', source: 'webhook', operationId: 'op-2', quantity: 8 });
  w.run('b', { type: 'Suspend', now: '2026-03-06T00:00:00.000Z', source: 'webhook', operationId: 'op-3' });
  w.run('b', { type: 'Reinstate', now: '2026-03-07T00:00:00.000Z', source: 'webhook', operationId: 'op-4' });
  w.run('b', { type: 'Renew', now: '2026-04-01T00:00:00.000Z', source: 'webhook', operationId: 'op-5' }); // trial converts
  w.run('d', { type: 'Unsubscribe', now: '2026-03-20T00:00:00.000Z', source: 'webhook', operationId: 'op-6' }); // trial cancelled
  w.run('c', { type: 'Suspend', now: '2026-03-21T00:00:00.000Z', source: 'webhook', operationId: 'op-7' });
  w.run('c', { type: 'Unsubscribe', now: '2026-03-22T00:00:00.000Z', source: 'webhook', operationId: 'op-8' });

  await applyAll(db, metricsProjection, w.events);

  t.match(daily(db, '2026-03-01', 'standard'), { purchases: 3, activations: 3, trial_starts: 2, seats_added: 18 }, 'purchases counted on the day Microsoft created them');
  t.match(daily(db, '2026-03-01', 'premium'), { purchases: 2, activations: 1, seats_added: 7 });
  t.match(daily(db, '2026-03-02', 'premium'), { activations: 1, seats_added: 20 });
  t.match(daily(db, '2026-03-05', 'standard'), { plan_changes_out: 1, seats_removed: 5 });
  t.match(daily(db, '2026-03-05', 'premium'), { plan_changes_in: 1, seats_added: 5 + 3 }, 'seats follow the plan change, then the quantity change');
  t.match(daily(db, '2026-03-06', 'standard'), { suspensions: 1 });
  t.match(daily(db, '2026-03-07', 'standard'), { reinstatements: 1 });
  t.match(daily(db, '2026-04-01', 'standard'), { renewals: 1, trial_conversions: 1 });
  t.match(daily(db, '2026-03-20', 'standard'), { cancellations: 1, trial_cancellations: 1, seats_removed: 3 });
  t.match(daily(db, '2026-03-22', 'premium'), { cancellations: 1, seats_removed: 20 });
  t.match(db.prepare("SELECT * FROM metrics_daily WHERE is_test = 1").get(), { plan_id: 'standard', purchases: 1 }, 'test purchases are counted apart');

  const active = db.prepare('SELECT * FROM metrics_active_by_plan WHERE is_test = 0 ORDER BY plan_id').all();
  t.same(active, [
    { offer_id: 'ledger-saas', plan_id: 'premium', is_test: 0, active_subscriptions: 2, active_seats: 15, suspended_subscriptions: 0, suspended_seats: 0, pending_subscriptions: 0, cancelled_subscriptions: 1 },
    { offer_id: 'ledger-saas', plan_id: 'standard', is_test: 0, active_subscriptions: 1, active_seats: 10, suspended_subscriptions: 0, suspended_seats: 0, pending_subscriptions: 0, cancelled_subscriptions: 1 },
  ]);
  const seatFlows = db.prepare("SELECT plan_id, sum(seats_added) - sum(seats_removed) AS net FROM metrics_daily WHERE is_test = 0 GROUP BY plan_id ORDER BY plan_id").all();
  t.same(seatFlows, [{ plan_id: 'premium', net: 15 }, { plan_id: 'standard', net: 10 }], 'the daily seat flows add up to the seats held now');

  t.match(db.prepare("SELECT * FROM metrics_subscriptions WHERE subscription_id = 'a'").get(), { purchase_to_activation_s: 20.5 * 60, request_to_activation_s: 30, plan_id: 'premium', purchased_plan_id: 'standard', plan_changes: 1, quantity: 8 });
  t.match(db.prepare("SELECT * FROM metrics_subscriptions WHERE subscription_id = 'auto'").get(), { auto_activated: 1, status: 'Subscribed' });
  t.match(db.prepare("SELECT * FROM metrics_activation_time WHERE plan_id = 'standard' AND is_test = 0").get(), { activations: 3, max_seconds: 2 * 3600 + 10 });
  t.equal(db.prepare("SELECT count(*) FROM metrics_activation_time WHERE plan_id = 'premium'").pluck().get(), 1, 'auto-activated purchases are left out of activation times');
  t.same(db.prepare("SELECT suspensions, reinstatements, currently_suspended, cancelled_while_suspended FROM metrics_suspensions WHERE plan_id = 'premium' AND is_test = 0").get(), {
    suspensions: 1,
    reinstatements: 0,
    currently_suspended: 0,
    cancelled_while_suspended: 1,
  });
  t.same(db.prepare("SELECT trials, in_trial, converted, cancelled, conversion_rate FROM metrics_free_trials WHERE plan_id = 'standard'").get(), {
    trials: 2,
    in_trial: 0,
    converted: 1,
    cancelled: 1,
    conversion_rate: 0.5,
  });

  const once = await dump(db, [metricsProjection]);
  await applyAll(db, metricsProjection, w.events);
  await applyAll(db, metricsProjection, w.events.flatMap((e) => [e, e]));
  t.same(await dump(db, [metricsProjection]), once, 'replays and duplicates count nothing twice');
});
