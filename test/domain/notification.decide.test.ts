/** The notification decider: every command, every refusal, and the policy refusal of a first delivery. */
import t from 'tap';
import { fold } from '../../src/domain/decider.js';
import { notificationDecider, policyRefusal } from '../../src/domain/notification/index.js';
import type { Delivery, NotificationEvent, NotificationPayload, NotificationReceived } from '../../src/domain/notification/index.js';
import { deciderSpec } from '../support/given-when-then.js';

const spec = deciderSpec(notificationDecider);

const OP = '8f0c2a4e-6b1d-4c3f-9e7a-5d2b0c4e6f18';
const SUB = '3c1f6a2e-9b7d-4e51-8a0c-2d4f6b8e1a37';
const RECEIVED_AT = '2026-05-01T12:00:00.000Z';
const NOW = '2026-05-01T12:00:00.350Z';

const payload = (over: Partial<NotificationPayload> = {}): NotificationPayload => ({
  id: OP,
  subscriptionId: SUB,
  action: 'ChangeQuantity',
  quantity: 30,
  status: 'InProgress',
  operationRequestSource: 'Azure',
  timeStamp: '2026-05-01T11:59:59.000Z',
  ...over,
});

const CALLER = { tokenVersion: '2.0', issuer: 'https://login.example/tenant/v2.0', caller: 'marketplace-app', tenantId: 'tenant' };

const delivery = (n = 1, body = '{"id":"…"}'): Delivery => ({
  deliveryId: `d-${n}`,
  receivedAt: n === 1 ? RECEIVED_AT : `2026-05-01T12:00:0${n}.000Z`,
  body,
  headers: { 'content-type': 'application/json', 'x-ms-correlationid': 'corr-1' },
  caller: { ...CALLER },
});

const receivedEvent = (n = 1, p: NotificationPayload = payload()): NotificationReceived => ({
  type: 'NotificationReceived',
  data: {
    deliveryId: `d-${n}`,
    receivedAt: delivery(n).receivedAt,
    operationId: p.id,
    subscriptionId: p.subscriptionId,
    action: p.action,
    body: delivery(n).body,
    headers: delivery(n).headers,
    caller: { ...CALLER },
    payload: p,
  },
});

const processedEvent = (outcome: 'applied' | 'rejected' = 'applied', detail = 'ChangeQuantity applied', events = ['QuantityChanged']): NotificationEvent => ({
  type: 'NotificationProcessed',
  data: { operationId: OP, subscriptionId: SUB, action: 'ChangeQuantity', outcome, detail, subscriptionEvents: events, at: NOW },
});

const acknowledgedEvent: NotificationEvent = {
  type: 'OperationAcknowledged',
  data: { operationId: OP, subscriptionId: SUB, status: 'Success', at: NOW, latencyMs: 350 },
};

const unreadableEvent: NotificationEvent = {
  type: 'NotificationReceived',
  data: { deliveryId: 'd-x', receivedAt: RECEIVED_AT, body: 'not json', headers: {}, unreadable: 'Unexpected token' },
};

t.test('ReceiveDelivery records every delivery verbatim, with the payload beside the body', async (t) => {
  const state = spec(t).given([]).when({ type: 'ReceiveDelivery', delivery: delivery(1), reading: { readable: true, notification: payload() } }).then([receivedEvent(1)]);
  t.match(state, { status: 'Received', deliveries: 1, first: { deliveryId: 'd-1', receivedAt: RECEIVED_AT } }, 'first delivery: received');

  const again = spec(t).given([receivedEvent(1)]).when({ type: 'ReceiveDelivery', delivery: delivery(2), reading: { readable: true, notification: payload() } }).then([receivedEvent(2)]);
  t.match(again, { status: 'Received', deliveries: 2, first: { deliveryId: 'd-1' } }, 'a repeat counts, the first delivery stays the first');

  const late = spec(t)
    .given([receivedEvent(1), processedEvent()])
    .when({ type: 'ReceiveDelivery', delivery: delivery(3), reading: { readable: true, notification: payload() } })
    .then([receivedEvent(3)]);
  t.match(late, { status: 'Processed', deliveries: 2, outcome: 'applied' }, 'a delivery after processing is recorded too');

  const unreadable = spec(t)
    .given([])
    .when({ type: 'ReceiveDelivery', delivery: { deliveryId: 'd-x', receivedAt: RECEIVED_AT, body: 'not json', headers: {} }, reading: { readable: false, reason: 'Unexpected token' } })
    .then([unreadableEvent]);
  t.match(unreadable, { status: 'Unreadable', deliveries: 1, reason: 'Unexpected token' }, 'an unreadable body is kept, as unreadable');
});

t.test('ReceiveDelivery refuses a delivery that does not belong to the stream', async (t) => {
  spec(t)
    .given([receivedEvent(1)])
    .when({ type: 'ReceiveDelivery', delivery: delivery(2), reading: { readable: true, notification: payload({ id: '00000000-0000-4000-8000-000000000001' }) } })
    .thenError('notification-mismatch', { status: 400, messageIncludes: ['00000000-0000-4000-8000-000000000001'] });
  spec(t)
    .given([unreadableEvent])
    .when({ type: 'ReceiveDelivery', delivery: delivery(2), reading: { readable: true, notification: payload() } })
    .thenError('notification-mismatch', { status: 400 });
  spec(t)
    .given([receivedEvent(1)])
    .when({ type: 'ReceiveDelivery', delivery: delivery(2), reading: { readable: false, reason: 'not JSON' } })
    .thenError('notification-mismatch', { status: 400, messageIncludes: ['unreadable'] });
});

t.test('RefuseChange records a refused first delivery together with its outcome', async (t) => {
  const reason = '30 seats is more than the product supports (20)';
  const state = spec(t)
    .given([])
    .when({ type: 'RefuseChange', delivery: delivery(1), notification: payload(), reason, subscriptionEvents: ['ChangeRejected'], now: NOW })
    .then([receivedEvent(1), processedEvent('rejected', reason, ['ChangeRejected'])]);
  t.match(state, { status: 'Processed', outcome: 'rejected', detail: reason, deliveries: 1 });

  spec(t)
    .given([receivedEvent(1)])
    .when({ type: 'RefuseChange', delivery: delivery(2), notification: payload(), reason, subscriptionEvents: [], now: NOW })
    .thenError('already-received', { messageIncludes: ['RefuseChange', OP] });
  spec(t)
    .given([])
    .when({ type: 'RefuseChange', delivery: delivery(1), notification: payload({ action: 'Suspend' }), reason, subscriptionEvents: [], now: NOW })
    .thenError('not-refusable', { messageIncludes: ['Suspend'] });
  spec(t)
    .given([])
    .when({ type: 'RefuseChange', delivery: delivery(1), notification: payload({ operationRequestSource: 'Partner' }), reason, subscriptionEvents: [], now: NOW })
    .thenError('not-refusable', { messageIncludes: ['Partner'] });
});

t.test('policyRefusal judges only the first delivery of a customer-side plan or quantity change', async (t) => {
  const policy = { retiredPlans: ['legacy'], maxSeats: 20 };
  const initial = notificationDecider.initialState();
  t.equal(policyRefusal(initial, payload(), policy), '30 seats is more than the product supports (20)');
  t.equal(policyRefusal(initial, payload({ quantity: 20 }), policy), undefined, 'within the limit');
  t.equal(policyRefusal(initial, payload({ action: 'ChangePlan', planId: 'legacy', quantity: undefined }), policy), 'plan legacy is no longer offered');
  t.equal(policyRefusal(initial, payload({ operationRequestSource: 'Partner' }), policy), undefined, 'our own (Partner) change is not judged');
  t.equal(policyRefusal(initial, payload({ action: 'Suspend' }), policy), undefined, 'not a change the policy judges');
  t.equal(policyRefusal(fold(notificationDecider, [receivedEvent(1)]), payload(), policy), undefined, 'a repeat is answered as the first was');
});

t.test('AcknowledgeOperation: once, measured from the first delivery; refused before a readable delivery or after processing', async (t) => {
  const state = spec(t).given([receivedEvent(1), receivedEvent(2)]).when({ type: 'AcknowledgeOperation', status: 'Success', now: NOW }).then([acknowledgedEvent]);
  t.match(state, { status: 'Received', acknowledged: { status: 'Success', at: NOW } });
  spec(t)
    .given([receivedEvent(1)])
    .when({ type: 'AcknowledgeOperation', status: 'Success', note: 'Conflict: a newer update fulfilled', now: NOW })
    .then([{ type: 'OperationAcknowledged', data: { operationId: OP, subscriptionId: SUB, status: 'Success', at: NOW, latencyMs: 350, note: 'Conflict: a newer update fulfilled' } }]);
  spec(t).given([receivedEvent(1), acknowledgedEvent]).when({ type: 'AcknowledgeOperation', status: 'Success', now: NOW }).thenNothing();
  spec(t).given([]).when({ type: 'AcknowledgeOperation', status: 'Success', now: NOW }).thenError('not-received', { messageIncludes: ['Initial'] });
  spec(t).given([unreadableEvent]).when({ type: 'AcknowledgeOperation', status: 'Success', now: NOW }).thenError('not-received', { messageIncludes: ['Unreadable'] });
  spec(t).given([receivedEvent(1), processedEvent()]).when({ type: 'AcknowledgeOperation', status: 'Success', now: NOW }).thenError('already-processed', { messageIncludes: ['applied'] });
});

t.test('RecordOutcome: what processing made of it; the first outcome stands', async (t) => {
  const state = spec(t)
    .given([receivedEvent(1), acknowledgedEvent])
    .when({ type: 'RecordOutcome', outcome: 'applied', detail: 'ChangeQuantity applied', subscriptionEvents: ['QuantityChanged'], now: NOW })
    .then([processedEvent()]);
  t.match(state, { status: 'Processed', outcome: 'applied', acknowledged: { status: 'Success' } });
  spec(t)
    .given([receivedEvent(1, payload({ action: 'Suspend' }))])
    .when({ type: 'RecordOutcome', outcome: 'unverified', detail: `Microsoft has no operation ${OP}`, subscriptionEvents: [], now: NOW })
    .then([{ type: 'NotificationProcessed', data: { operationId: OP, subscriptionId: SUB, action: 'Suspend', outcome: 'unverified', detail: `Microsoft has no operation ${OP}`, subscriptionEvents: [], at: NOW } }]);
  spec(t).given([receivedEvent(1), processedEvent()]).when({ type: 'RecordOutcome', outcome: 'no-change', detail: 'again', subscriptionEvents: [], now: NOW }).thenNothing();
  spec(t).given([]).when({ type: 'RecordOutcome', outcome: 'ignored', detail: 'x', subscriptionEvents: [], now: NOW }).thenError('not-received');
  spec(t).given([unreadableEvent]).when({ type: 'RecordOutcome', outcome: 'ignored', detail: 'x', subscriptionEvents: [], now: NOW }).thenError('not-received');
});

t.test('evolve tolerates histories we never write: an outcome or acknowledgement without a delivery', async (t) => {
  t.match(fold(notificationDecider, [processedEvent()]), { status: 'Processed', deliveries: 0, outcome: 'applied' });
  t.same(fold(notificationDecider, [acknowledgedEvent]), { status: 'Initial' });
  t.match(fold(notificationDecider, [receivedEvent(1), processedEvent('rejected', 'no'), processedEvent('applied', 'later')]), { outcome: 'rejected', detail: 'no' }, 'the first outcome stands');
});

t.test('an unverified outcome is reopened by the next delivery and processed again; any other outcome stands', async (t) => {
  const unverified: NotificationEvent = {
    type: 'NotificationProcessed',
    data: { operationId: OP, subscriptionId: SUB, action: 'ChangeQuantity', outcome: 'unverified', detail: 'not final yet', subscriptionEvents: [], operationStatus: 'NotStarted', at: NOW },
  };
  t.match(fold(notificationDecider, [receivedEvent(1), unverified]), { status: 'Processed', outcome: 'unverified' });
  const reopened = spec(t)
    .given([receivedEvent(1), unverified])
    .when({ type: 'ReceiveDelivery', delivery: delivery(2), reading: { readable: true, notification: payload() } })
    .then([receivedEvent(2)]);
  t.match(reopened, { status: 'Received', deliveries: 2, first: { deliveryId: 'd-1', receivedAt: RECEIVED_AT }, reopened: { outcome: 'unverified', detail: 'not final yet' } }, 'received again');

  // Processed again: a new outcome (with Microsoft's status) is recorded, and that one stands.
  const applied = spec(t)
    .given([receivedEvent(1), unverified, receivedEvent(2)])
    .when({ type: 'RecordOutcome', outcome: 'applied', detail: 'ChangeQuantity applied', subscriptionEvents: ['QuantityChanged'], operationStatus: 'Succeeded', now: NOW })
    .then([{ type: 'NotificationProcessed', data: { operationId: OP, subscriptionId: SUB, action: 'ChangeQuantity', outcome: 'applied', detail: 'ChangeQuantity applied', subscriptionEvents: ['QuantityChanged'], operationStatus: 'Succeeded', at: NOW } }]);
  t.match(applied, { status: 'Processed', outcome: 'applied', deliveries: 2 });
  t.notOk('reopened' in applied, 'the reopening is over once processed');
  const later = fold(notificationDecider, [receivedEvent(1), unverified, receivedEvent(2), processedEvent(), receivedEvent(3)]);
  t.match(later, { status: 'Processed', outcome: 'applied', deliveries: 3 }, 'an applied notification is never processed again');

  // The acknowledgement recorded before the reopening is kept (it is not sent twice).
  t.match(fold(notificationDecider, [receivedEvent(1), acknowledgedEvent, unverified, receivedEvent(2)]), { status: 'Received', acknowledged: { status: 'Success' } });
  spec(t).given([receivedEvent(1), acknowledgedEvent, unverified, receivedEvent(2)]).when({ type: 'AcknowledgeOperation', status: 'Success', now: NOW }).thenNothing();

  for (const outcome of ['applied', 'no-change', 'rejected', 'ignored', 'failed'] as const) {
    const done: NotificationEvent = { type: 'NotificationProcessed', data: { operationId: OP, subscriptionId: SUB, action: 'ChangeQuantity', outcome, detail: outcome, subscriptionEvents: [], at: NOW } };
    t.match(fold(notificationDecider, [receivedEvent(1), done, receivedEvent(2)]), { status: 'Processed', outcome, deliveries: 2 }, `${outcome}: stands`);
  }
  // A history with an outcome but no delivery is reopened by the delivery that brings the notification.
  t.match(fold(notificationDecider, [unverified, receivedEvent(2)]), { status: 'Received', notification: { id: OP }, first: { deliveryId: 'd-2' } });
});

t.test('RecordOutcome: failed, with the status Microsoft reported', async (t) => {
  spec(t)
    .given([receivedEvent(1)])
    .when({ type: 'RecordOutcome', outcome: 'failed', detail: 'Microsoft ended it Failed', subscriptionEvents: [], operationStatus: 'Failed', now: NOW })
    .then([{ type: 'NotificationProcessed', data: { operationId: OP, subscriptionId: SUB, action: 'ChangeQuantity', outcome: 'failed', detail: 'Microsoft ended it Failed', subscriptionEvents: [], operationStatus: 'Failed', at: NOW } }]);
});
