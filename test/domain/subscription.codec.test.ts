/**
 * decodeSubscriptionEvent: the one way from a stored `{ type, data }` to a subscription event.
 * Every event the decider emits decodes to itself after a trip through JSON (as the stores keep it);
 * other types are not subscription events; a known type with the wrong shape is an error that says why.
 */
import t from 'tap';
import type { Test } from 'tap';
import { EventDecodeError, decide, decodeSubscriptionEvent, evolve, initialState, isSubscriptionEvent, subscriptionEventTypes } from '../../src/domain/subscription/index.js';
import type { SubscriptionEvent } from '../../src/domain/subscription/index.js';
import { syntheticHistory } from '../support/synthetic-history.js';
import { CONTACT, FIRST_TERM, NOW, SECOND_TERM, T, because, details, history, historyWithPendingCancellation, STATUSES } from './subscription.fixtures.js';

const stored = (e: { type: string; data: unknown }) => JSON.parse(JSON.stringify({ type: e.type, data: e.data })) as unknown;

function roundTrip(t: Test, e: SubscriptionEvent): void {
  const json = stored(e);
  const decoded = decodeSubscriptionEvent(e);
  t.same(decoded && stored(decoded), json, `${e.type} decodes from memory too`);
  const fromJson = decodeSubscriptionEvent(json as { type: string; data: unknown });
  t.same(fromJson, json, `${e.type} decodes to what was stored`);
}

/** One of each type, with the optional fields both present and absent. */
const samples: SubscriptionEvent[] = [
  { type: 'Purchased', data: { ...because(T.purchased, 'landing'), ...details(), microsoftStatus: 'PendingFulfillmentStart' } },
  { type: 'Purchased', data: { ...because(T.purchased, 'webhook'), operationId: 'op-1', ...details({ quantity: 5, purchaser: { puid: null } }), microsoftStatus: 'Subscribed' } },
  { type: 'ActivationRequested', data: { ...because(T.activationRequested, 'landing'), planId: 'standard', quantity: 5, contact: CONTACT } },
  { type: 'ActivationRequested', data: { ...because(T.activationRequested, 'landing'), planId: 'basic', contact: { email: 'a@b.example' } } },
  { type: 'ActivationFailed', data: { ...because(NOW, 'process'), reason: 'Microsoft is down', attempt: 2, final: false } },
  { type: 'ActivationFailed', data: { ...because(NOW, 'process'), reason: 'Microsoft is down', attempt: 3, final: false, retryAt: '2026-05-01T12:00:04.000Z' } },
  { type: 'Activated', data: { ...because(T.activated, 'process'), planId: 'standard', quantity: 5, autoActivated: false, term: FIRST_TERM } },
  { type: 'Activated', data: { ...because(T.activated, 'webhook'), planId: 'basic', autoActivated: true } },
  { type: 'PlanChangeRequested', data: { ...because(NOW, 'operator'), requestId: 'r1', planId: 'premium', previousPlanId: 'standard' } },
  { type: 'QuantityChangeRequested', data: { ...because(NOW, 'operator'), requestId: 'r2', quantity: 9 } },
  { type: 'CancellationRequested', data: { ...because(NOW, 'operator'), requestId: 'r3', reason: 'customer asked' } },
  { type: 'ChangeSubmitted', data: { ...because(NOW, 'operator'), requestId: 'r3', operationId: 'op-2' } },
  { type: 'ChangeRequestFailed', data: { ...because(NOW, 'process'), requestId: 'r1', status: 'Conflict', reason: 'Microsoft answered Conflict' } },
  { type: 'PlanChanged', data: { ...because(NOW, 'webhook'), operationId: 'op-3', planId: 'premium', previousPlanId: 'standard', requestSource: 'Azure', timeStamp: NOW } },
  { type: 'QuantityChanged', data: { ...because(NOW, 'webhook'), operationId: 'op-4', quantity: 7, previousQuantity: 5 } },
  { type: 'ChangeRejected', data: { ...because(NOW, 'webhook'), operationId: 'op-5', action: 'ChangePlan', planId: 'legacy', reason: 'plan legacy is no longer offered' } },
  { type: 'Suspended', data: { ...because(T.suspended, 'webhook'), operationId: 'op-6' } },
  { type: 'Reinstated', data: because(NOW, 'reconciliation') },
  { type: 'Renewed', data: { ...because(NOW, 'webhook'), operationId: 'op-7', term: SECOND_TERM } },
  { type: 'Unsubscribed', data: { ...because(T.unsubscribed, 'webhook'), reason: 'Microsoft reports Unsubscribed' } },
  {
    type: 'DetailsRefreshed',
    data: {
      ...because(NOW, 'reconciliation'),
      reported: { status: 'Subscribed', planId: 'standard', quantity: 5, term: SECOND_TERM, autoRenew: false },
      changes: { term: SECOND_TERM, autoRenew: false, isFreeTrial: false, allowedCustomerOperations: ['Read'] },
      previous: { term: FIRST_TERM, autoRenew: true, isFreeTrial: true, allowedCustomerOperations: ['Read', 'Update', 'Delete'] },
    },
  },
  { type: 'PlanChanged', data: { ...because(NOW, 'reconciliation'), reported: { status: 'Suspended', planId: 'premium' }, planId: 'premium', previousPlanId: 'standard' } },
];

t.test('one sample of every subscription event type round-trips', async (t) => {
  t.same([...new Set(samples.map((e) => e.type))].sort(), [...subscriptionEventTypes].sort(), 'the samples cover every type');
  for (const e of samples) roundTrip(t, e);
});

t.test('the canonical histories of every status decode to themselves', async (t) => {
  for (const status of STATUSES) {
    for (const e of [...history(status), ...(status === 'Initial' || status === 'Unsubscribed' ? [] : historyWithPendingCancellation(status))]) roundTrip(t, e);
  }
});

t.test('every subscription event of a synthetic history decodes', async (t) => {
  let decoded = 0;
  for (const append of syntheticHistory({ subscriptions: 40, months: 6 })) {
    for (const e of append.events) {
      const out = decodeSubscriptionEvent(stored(e) as { type: string; data: unknown });
      if (out) decoded++;
      else t.notOk(isSubscriptionEvent(e), `${e.type} is not a subscription event`);
    }
  }
  t.ok(decoded > 200, `${decoded} subscription events decoded`);
});

t.test('other event types are not subscription events', async (t) => {
  for (const type of ['NotificationReceived', 'CheckpointStored', 'LeaseAcquired', 'constructor', '__proto__', 'toString', '']) {
    t.equal(decodeSubscriptionEvent({ type, data: {} }), undefined, JSON.stringify(type));
  }
});

t.test('fields written by a newer version are kept', async (t) => {
  const e = { type: 'Suspended', data: { at: NOW, source: 'webhook', operationId: 'op-8', reasonCode: 'nonpayment' } };
  t.same(decodeSubscriptionEvent(e), e);
});

t.test('a plan or quantity change stored with Microsoft\'s time as occurredAt decodes with timeStamp', async (t) => {
  const older = '2026-05-01T11:00:00.000Z';
  const plan = { type: 'PlanChanged', data: { at: NOW, source: 'webhook', operationId: 'op-3', planId: 'premium', previousPlanId: 'standard', requestSource: 'Azure', occurredAt: older } };
  const seats = { type: 'QuantityChanged', data: { at: NOW, source: 'webhook', operationId: 'op-4', quantity: 7, previousQuantity: 5, occurredAt: older } };
  t.same(decodeSubscriptionEvent(plan), { type: 'PlanChanged', data: { at: NOW, source: 'webhook', operationId: 'op-3', planId: 'premium', previousPlanId: 'standard', requestSource: 'Azure', timeStamp: older } });
  t.same(decodeSubscriptionEvent(seats), { type: 'QuantityChanged', data: { at: NOW, source: 'webhook', operationId: 'op-4', quantity: 7, previousQuantity: 5, timeStamp: older } });
  for (const e of [plan, seats]) {
    const decoded = decodeSubscriptionEvent(e);
    t.notOk(decoded && 'occurredAt' in decoded.data, `${e.type}: the old name is not carried along`);
    t.same(decoded && decodeSubscriptionEvent(stored(decoded) as { type: string; data: unknown }), decoded, `${e.type}: stored again under the new name, it decodes the same`);
  }
  const withoutTime = { type: 'PlanChanged', data: { at: NOW, source: 'webhook', planId: 'premium', previousPlanId: 'standard' } };
  t.same(decodeSubscriptionEvent(withoutTime), withoutTime, 'a change stored without Microsoft\'s time has none');

  // The fold and the decider read the old time as they read the new one.
  const folded = [...history('Subscribed').map((e) => decodeSubscriptionEvent(stored(e) as { type: string; data: unknown })), decodeSubscriptionEvent(plan), decodeSubscriptionEvent(seats)]
    .reduce((state, e) => (e ? evolve(state, e) : state), initialState());
  t.match(folded, { status: 'Subscribed', planTimeStamp: older, quantityTimeStamp: older });
  t.throws(
    () => decide({ type: 'ApplyPlanChange', now: NOW, source: 'webhook', operationId: 'op-5', planId: 'gold', timeStamp: '2026-05-01T10:00:00.000Z' }, folded),
    { code: 'superseded' },
    'a plan change older than the stored one is superseded',
  );
  t.throws(
    () => decide({ type: 'ApplyQuantityChange', now: NOW, source: 'webhook', operationId: 'op-6', quantity: 9, timeStamp: '2026-05-01T10:00:00.000Z' }, folded),
    { code: 'superseded' },
    'a quantity change older than the stored one is superseded',
  );
});

t.test('a known type with the wrong shape is an EventDecodeError naming the type and the field', async (t) => {
  const cases: { e: { type: string; data: unknown }; mentions: string }[] = [
    { e: { type: 'PlanChanged', data: { at: NOW, source: 'webhook', previousPlanId: 'a' } }, mentions: 'planId' },
    { e: { type: 'QuantityChanged', data: { at: NOW, source: 'webhook', quantity: '7' } }, mentions: 'quantity' },
    { e: { type: 'Suspended', data: { at: NOW, source: 'somewhere' } }, mentions: 'source' },
    { e: { type: 'ChangeSubmitted', data: { at: NOW, source: 'operator', requestId: 'r' } }, mentions: 'operationId' },
    { e: { type: 'Activated', data: null }, mentions: 'Activated' },
  ];
  for (const { e, mentions } of cases) {
    t.throws(() => decodeSubscriptionEvent(e), EventDecodeError, `${e.type} refused`);
    try {
      decodeSubscriptionEvent(e);
    } catch (err) {
      t.match((err as Error).message, e.type);
      t.match((err as Error).message, mentions, `the message points at ${mentions}`);
    }
  }
});
