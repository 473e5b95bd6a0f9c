/** The subscriptions projection on its own: each lifecycle step's row, and replays that change nothing. */
import t from 'tap';
import { subscriptionDecider, subscriptionStream } from '../../src/domain/subscription/index.js';
import type { SubscriptionCommand, SubscriptionDetails, SubscriptionState } from '../../src/domain/subscription/index.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { subscriptionsProjection } from '../../src/projections/views/subscriptions.projection.js';
import { applyAll, dump, memoryDb, recorder } from './helpers.js';

const ID = '3c1f6a2e-9b7d-4e51-8a0c-2d4f6b8e1a37';
const details: SubscriptionDetails = {
  subscriptionId: ID,
  name: 'Contoso ledger',
  publisherId: 'fabrikam',
  offerId: 'ledger-saas',
  planId: 'standard',
  quantity: 5,
  purchaser: { emailId: 'Admin@CSP.example', tenantId: 'aaaaaaaa-0000-4000-8000-000000000001', objectId: 'o1' },
  beneficiary: { emailId: 'user@contoso.example', tenantId: 'bbbbbbbb-0000-4000-8000-000000000002', objectId: 'o2', puid: null },
  term: { termUnit: 'P1M' },
  autoRenew: true,
  isFreeTrial: true,
  isTest: false,
  allowedCustomerOperations: ['Read', 'Update', 'Delete'],
  sandboxType: 'None',
  created: '2026-03-01T08:59:12Z',
};

/** Runs commands through the real decider and records the events as a store would. */
function history() {
  const record = recorder();
  let state: SubscriptionState = subscriptionDecider.initialState();
  const events: RecordedEvent[] = [];
  const run = (command: SubscriptionCommand) => {
    const out = subscriptionDecider.decide(command, state);
    state = out.reduce(subscriptionDecider.evolve, state);
    for (const e of out) events.push(record(subscriptionStream(ID), e.type, e.data, { actor: 'test' }));
    return out;
  };
  return { run, events, state: () => state };
}

function row(db: ReturnType<typeof memoryDb>) {
  return db.prepare('SELECT * FROM subscriptions WHERE subscription_id = ?').get(ID) as Record<string, unknown>;
}

t.test('each lifecycle step shows in the row', async (t) => {
  const db = memoryDb(t, subscriptionsProjection);
  const h = history();
  const step = async (command: SubscriptionCommand) => {
    const before = h.events.length;
    h.run(command);
    await applyAll(db, subscriptionsProjection, h.events.slice(before));
    return row(db);
  };

  let r = (await step({ type: 'RecordPurchase', now: '2026-03-01T09:00:00.000Z', source: 'landing', subscription: details, microsoftStatus: 'PendingFulfillmentStart' }));
  t.match(r, {
    status: 'PendingFulfillmentStart',
    offer_id: 'ledger-saas',
    plan_id: 'standard',
    quantity: 5,
    is_free_trial: 1,
    is_csp: 0,
    is_test: 0,
    allowed_customer_operations: 'Read,Update,Delete',
    purchaser_email: 'Admin@CSP.example',
    beneficiary_tenant_id: 'bbbbbbbb-0000-4000-8000-000000000002',
    created_at: '2026-03-01T08:59:12.000Z',
    microsoft_created: '2026-03-01T08:59:12Z',
    purchased_at: '2026-03-01T09:00:00.000Z',
    stream_revision: 0,
    position: 1,
    last_event_type: 'Purchased',
  });

  r = (await step({ type: 'RequestActivation', now: '2026-03-01T09:05:00.000Z', source: 'landing', contact: { email: 'it@contoso.example', name: 'Dana' } }));
  t.match(r, { contact_email: 'it@contoso.example', contact_name: 'Dana', contact_company: null, activation_requested_at: '2026-03-01T09:05:00.000Z' });

  r = (await step({ type: 'RecordActivationFailure', now: '2026-03-01T09:05:01.000Z', source: 'process', reason: 'Microsoft answered 500', final: false }));
  t.match(r, { activation_failures: 1, activation_error: 'Microsoft answered 500', activation_gave_up: 0 });

  r = (await step({ type: 'ConfirmActivation', now: '2026-03-01T09:05:02.000Z', source: 'process', term: { startDate: '2026-03-01', endDate: '2026-03-31' } }));
  t.match(r, { status: 'Subscribed', activated_at: '2026-03-01T09:05:02.000Z', term_unit: 'P1M', term_start: '2026-03-01', term_end: '2026-03-31', auto_activated: 0 });

  r = (await step({ type: 'RequestPlanChange', now: '2026-03-10T10:00:00.000Z', source: 'operator', requestId: 'req-1', planId: 'premium' }));
  t.match(r, { pending_change: 'plan:premium', pending_request_id: 'req-1', pending_operation_id: null, plan_id: 'standard' });
  r = (await step({ type: 'RecordChangeSubmitted', now: '2026-03-10T10:00:01.000Z', source: 'operator', requestId: 'req-1', operationId: 'op-1' }));
  t.match(r, { pending_operation_id: 'op-1', last_operation_id: 'op-1', last_operation_event: 'ChangeSubmitted' });
  r = (await step({ type: 'ApplyPlanChange', now: '2026-03-10T10:00:05.000Z', source: 'webhook', operationId: 'op-1', planId: 'premium', requestSource: 'Partner' }));
  t.match(r, { plan_id: 'premium', pending_change: null, pending_request_id: null, last_operation_id: 'op-1', last_operation_event: 'PlanChanged' });

  r = (await step({ type: 'ApplyQuantityChange', now: '2026-03-12T10:00:00.000Z', source: 'webhook', operationId: 'op-2', quantity: 12 }));
  t.equal(r.quantity, 12);

  r = (await step({ type: 'Suspend', now: '2026-04-02T00:10:00.000Z', source: 'webhook', operationId: 'op-3' }));
  t.match(r, { status: 'Suspended', suspended_at: '2026-04-02T00:10:00.000Z', suspensions: 1 });
  r = (await step({ type: 'Reinstate', now: '2026-04-03T00:10:00.000Z', source: 'webhook', operationId: 'op-4' }));
  t.match(r, { status: 'Subscribed', suspended_at: '2026-04-02T00:10:00.000Z', reinstated_at: '2026-04-03T00:10:00.000Z', reinstatements: 1 });
  r = (await step({ type: 'Renew', now: '2026-04-04T00:00:00.000Z', source: 'webhook', operationId: 'op-5', term: { startDate: '2026-04-01', endDate: '2026-04-30' } }));
  t.match(r, { renewed_at: '2026-04-04T00:00:00.000Z', renewals: 1, term_start: '2026-04-01', term_end: '2026-04-30' });

  r = (await step({ type: 'Unsubscribe', now: '2026-04-20T16:00:00.000Z', source: 'webhook', operationId: 'op-6', reason: 'Microsoft notified Unsubscribe' }));
  t.match(r, { status: 'Unsubscribed', cancelled_at: '2026-04-20T16:00:00.000Z', cancel_reason: 'Microsoft notified Unsubscribe', cancel_source: 'webhook', last_event_type: 'Unsubscribed' });
  t.equal(r.stream_revision, h.events.length - 1, 'the row names the stream revision it reflects');
  t.equal(r.position, h.events.length, 'and the global position');

  const state = h.state();
  if (state.status === 'Initial') throw new Error('unreachable');
  t.equal(r.status, state.status, 'status agrees with the domain state');
  t.equal(r.plan_id, state.planId);
  t.equal(r.quantity, state.quantity);
});

t.test('replayed and duplicate events change nothing', async (t) => {
  const db = memoryDb(t, subscriptionsProjection);
  const h = history();
  h.run({ type: 'RecordPurchase', now: '2026-03-01T09:00:00.000Z', source: 'landing', subscription: details, microsoftStatus: 'PendingFulfillmentStart' });
  h.run({ type: 'RequestActivation', now: '2026-03-01T09:05:00.000Z', source: 'landing', contact: { email: 'it@contoso.example' } });
  h.run({ type: 'ConfirmActivation', now: '2026-03-01T09:05:02.000Z', source: 'process' });
  h.run({ type: 'Suspend', now: '2026-04-02T00:10:00.000Z', source: 'webhook', operationId: 'op-3' });
  await applyAll(db, subscriptionsProjection, h.events);
  const once = await dump(db, [subscriptionsProjection]);

  await applyAll(db, subscriptionsProjection, h.events); // the whole history again
  t.same(await dump(db, [subscriptionsProjection]), once, 'a full replay is a no-op');
  for (const e of h.events) await applyAll(db, subscriptionsProjection, [e, e]); // each event twice
  t.same(await dump(db, [subscriptionsProjection]), once, 'duplicates are no-ops');
  const suspend = h.events[h.events.length - 1] as RecordedEvent;
  await applyAll(db, subscriptionsProjection, [suspend, suspend, suspend]);
  t.equal(row(db).suspensions, 1, 'a counter does not move on a repeated event');
});

t.test('an auto-activated CSP purchase, and a stream that did not start with a purchase', async (t) => {
  const db = memoryDb(t, subscriptionsProjection);
  const h = history();
  h.run({ type: 'RecordPurchase', now: '2026-03-01T09:00:00.000Z', source: 'webhook', subscription: { ...details, allowedCustomerOperations: ['Read'] }, microsoftStatus: 'Subscribed', operationId: 'sub-op' });
  await applyAll(db, subscriptionsProjection, h.events);
  t.match(row(db), { status: 'Subscribed', auto_activated: 1, is_csp: 1, allowed_customer_operations: 'Read', activated_at: '2026-03-01T09:00:00.000Z', last_operation_id: 'sub-op' });

  const record = recorder(100n);
  await applyAll(db, subscriptionsProjection, [record('subscription-orphan', 'Suspended', { at: '2026-03-02T00:00:00.000Z', source: 'webhook' })]);
  t.equal(db.prepare("SELECT count(*) AS n FROM subscriptions WHERE subscription_id = 'orphan'").pluck().get(), 0, 'no row without a purchase');
});
