/** The one reading of a webhook body, and the one decoder from a recorded event to a notification event. */
import t from 'tap';
import { decodeNotificationEvent, readNotification } from '../../src/application/notification-events.js';
import { parseOperation, parseSubscription } from '../../src/marketplace/schemas.js';

const OP = '8f0c2a4e-6b1d-4c3f-9e7a-5d2b0c4e6f18';
const SUB = '3c1f6a2e-9b7d-4e51-8a0c-2d4f6b8e1a37';
const body = JSON.stringify({
  'id ': OP,
  subscriptionId: SUB,
  action: ' changeplan ',
  planId: 'premium',
  quantity: '12',
  status: 'inprogress',
  operationRequestedSource: 'Azure',
  timeStamp: '2026-05-01T11:59:59.000Z',
  subscription: { id: SUB, term: { termUnit: 'p1y', startDate: '2026-05-01', endDate: null } },
  purchaseToken: null,
});
const expected = {
  id: OP,
  subscriptionId: SUB,
  action: 'ChangePlan',
  planId: 'premium',
  quantity: 12,
  timeStamp: '2026-05-01T11:59:59.000Z',
  status: 'InProgress',
  operationRequestSource: 'Azure',
  term: { termUnit: 'P1Y', startDate: '2026-05-01' },
};

t.test('readNotification: tolerant, normalised, GUID ids', async (t) => {
  t.same(readNotification(body), { readable: true, notification: expected });
  const notJson = readNotification('not json');
  t.equal(notJson.readable, false);
  t.match(notJson, { reason: /JSON|token/ });
  t.match(readNotification(JSON.stringify({ id: 'x', subscriptionId: SUB, action: 'Suspend' })), { readable: false, reason: /must be GUIDs/ });
  t.match(readNotification(JSON.stringify({ id: OP, action: 'Suspend' })), { readable: false, reason: /WebhookPayload payload does not match/ });
});

t.test('decodeNotificationEvent: old deliveries have their body read; new ones carry the payload', async (t) => {
  const old = { deliveryId: 'd-1', receivedAt: '2026-05-01T12:00:00.000Z', operationId: OP, subscriptionId: SUB, action: 'ChangePlan', body, headers: {} };
  t.same(decodeNotificationEvent({ type: 'NotificationReceived', data: old }), { type: 'NotificationReceived', data: { ...old, payload: expected } }, 'an old delivery: read from its body');
  const stored = { ...old, body: '{}', payload: { ...expected, planId: 'gold' } };
  t.same(decodeNotificationEvent({ type: 'NotificationReceived', data: stored }), { type: 'NotificationReceived', data: stored }, 'a new one: the stored payload, the body is not read');
  const unreadable = { deliveryId: 'd-2', receivedAt: '2026-05-01T12:00:00.000Z', body: JSON.stringify({ id: 'x', subscriptionId: 'y', action: 'Suspend' }), headers: {}, unreadable: 'id and subscriptionId must be GUIDs' };
  t.same(decodeNotificationEvent({ type: 'NotificationReceived', data: unreadable }), { type: 'NotificationReceived', data: unreadable }, 'an unreadable one stays without a payload');
  const garbled = { ...old, body: 'not json' };
  t.same(decodeNotificationEvent({ type: 'NotificationReceived', data: garbled }), { type: 'NotificationReceived', data: garbled }, 'an old body that cannot be read: no payload');

  const ack = { operationId: OP, subscriptionId: SUB, status: 'Success', at: '2026-05-01T12:00:00.350Z', latencyMs: 350 };
  t.same(decodeNotificationEvent({ type: 'OperationAcknowledged', data: ack }), { type: 'OperationAcknowledged', data: ack });
  const processed = { operationId: OP, subscriptionId: SUB, action: 'ChangePlan', outcome: 'applied', detail: 'ChangePlan applied', subscriptionEvents: ['PlanChanged'], at: '2026-05-01T12:00:00.400Z' };
  t.same(decodeNotificationEvent({ type: 'NotificationProcessed', data: processed }), { type: 'NotificationProcessed', data: processed });

  const failed = { ...processed, outcome: 'failed', detail: 'Microsoft ended it Conflict', subscriptionEvents: [], operationStatus: 'Conflict' };
  t.same(decodeNotificationEvent({ type: 'NotificationProcessed', data: failed }), { type: 'NotificationProcessed', data: failed }, 'failed, with Microsoft\'s status');
  t.equal(decodeNotificationEvent({ type: 'NotificationProcessed', data: { ...processed, operationStatus: 3 } }), undefined, 'a status is a string');

  t.equal(decodeNotificationEvent({ type: 'PlanChanged', data: {} }), undefined, 'not a notification event');
  t.equal(decodeNotificationEvent({ type: 'NotificationProcessed', data: { ...processed, outcome: 'exploded' } }), undefined, 'not the shape we write');
  t.equal(decodeNotificationEvent({ type: 'OperationAcknowledged', data: { ...ack, latencyMs: '350' } }), undefined, 'not the shape we write');
  t.equal(decodeNotificationEvent({ type: 'NotificationReceived', data: { deliveryId: 'd-3' } }), undefined, 'not the shape we write');
});

t.test('actions and term units we do not know are read, kept as sent, and decoded again from the store', async (t) => {
  const transfer = JSON.stringify({
    id: OP,
    subscriptionId: SUB,
    action: ' Transfer ',
    status: 'Succeeded',
    subscription: { id: SUB, saasSubscriptionStatus: 'Subscribed', term: { termUnit: 'PAY', startDate: '2026-05-01', endDate: '2026-05-31', chargeDuration: 'PAY' } },
  });
  const reading = readNotification(transfer);
  t.same(reading, {
    readable: true,
    notification: { id: OP, subscriptionId: SUB, action: 'Transfer', status: 'Succeeded', term: { termUnit: 'PAY', startDate: '2026-05-01', endDate: '2026-05-31', chargeDuration: 'PAY' } },
  });
  if (!reading.readable) return;
  const stored = { deliveryId: 'd-9', receivedAt: '2026-05-01T12:00:00.000Z', operationId: OP, subscriptionId: SUB, action: 'Transfer', body: transfer, headers: {}, payload: reading.notification };
  t.same(decodeNotificationEvent({ type: 'NotificationReceived', data: stored }), { type: 'NotificationReceived', data: stored }, 'stored and decoded as it was read');
  t.same(decodeNotificationEvent({ type: 'NotificationReceived', data: { ...stored, payload: undefined } }), { type: 'NotificationReceived', data: stored }, 'or read again from the body');
  const renew = readNotification(JSON.stringify({ id: OP, subscriptionId: SUB, action: 'Renew', status: 'Succeeded', subscription: { id: SUB, term: { termUnit: 'P7Y' } } }));
  t.match(renew, { readable: true, notification: { action: 'Renew', term: { termUnit: 'P7Y' } } }, 'a new term unit on a known action');
});

t.test("Microsoft's answers the notification process reads: unknown actions, statuses and term units pass the edge", async (t) => {
  t.same(parseOperation({ id: OP, subscriptionId: SUB, action: 'Transfer', status: ' Cancelled ', quantity: null }), { id: OP, subscriptionId: SUB, action: 'Transfer', status: 'Cancelled' });
  t.match(parseOperation({ 'id  ': OP, action: 'changeplan', status: 'success', errorStatusCode: 400, errorMessage: 'refused' }), { id: OP, action: 'ChangePlan', status: 'Succeeded', errorMessage: 'refused' });
  t.match(parseSubscription({ id: SUB, saasSubscriptionStatus: ' Subscribed ', term: { termUnit: 'PAY', startDate: '2026-05-01', endDate: null, chargeDuration: 'PAY' } }), {
    id: SUB,
    saasSubscriptionStatus: 'Subscribed',
    term: { termUnit: 'PAY', startDate: '2026-05-01', chargeDuration: 'PAY' },
  });
});
