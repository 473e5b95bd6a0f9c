/** The operations projection on its own: webhook operations, publisher-side changes, refusals, replays. */
import t from 'tap';
import { notificationStream } from '../../src/domain/notification/notification.events.js';
import { subscriptionStream } from '../../src/domain/subscription/index.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { operationsProjection } from '../../src/projections/views/operations.projection.js';
import { applyAll, dump, memoryDb, recorder } from './helpers.js';

const SUB = '5d0c9a7e-1b2f-4c3d-9e8f-0a1b2c3d4e5f';
const at = (s: number) => new Date(Date.parse('2026-03-10T10:00:00.000Z') + s * 1000).toISOString();

function received(record: ReturnType<typeof recorder>, op: string, action: string, seconds: number, body: Record<string, unknown> = {}): RecordedEvent {
  const payload = { id: op, subscriptionId: SUB, action, status: 'InProgress', operationRequestedSource: 'Azure', ...body }; // the emulator's spelling
  return record(notificationStream(op), 'NotificationReceived', {
    deliveryId: `d-${op}-${seconds}`,
    receivedAt: at(seconds),
    operationId: op,
    subscriptionId: SUB,
    action,
    body: JSON.stringify(payload),
    headers: {},
  });
}

function operation(db: ReturnType<typeof memoryDb>, id: string) {
  return db.prepare('SELECT * FROM operations WHERE operation_id = ?').get(id) as Record<string, unknown>;
}

t.test('a customer-side plan change: received twice, applied, acknowledged, processed', async (t) => {
  const db = memoryDb(t, operationsProjection);
  const r = recorder();
  const events = [
    received(r, 'op-1', 'ChangePlan', 0, { planId: 'premium' }),
    r(subscriptionStream(SUB), 'PlanChanged', { at: at(0.2), source: 'webhook', operationId: 'op-1', planId: 'premium', previousPlanId: 'standard', requestSource: 'Azure' }),
    r(notificationStream('op-1'), 'OperationAcknowledged', { operationId: 'op-1', subscriptionId: SUB, status: 'Success', at: at(0.35), latencyMs: 350 }),
    r(notificationStream('op-1'), 'NotificationProcessed', { operationId: 'op-1', subscriptionId: SUB, action: 'ChangePlan', outcome: 'applied', detail: 'ChangePlan applied', subscriptionEvents: ['PlanChanged'], at: at(0.4) }),
    received(r, 'op-1', 'ChangePlan', 30, { planId: 'premium' }),
  ];
  await applyAll(db, operationsProjection, events);
  t.match(operation(db, 'op-1'), {
    subscription_id: SUB,
    action: 'ChangePlan',
    source: 'Azure',
    microsoft_status: 'Succeeded',
    plan_id: 'premium',
    first_received_at: at(0),
    last_received_at: at(30),
    deliveries: 2,
    acknowledged_at: at(0.35),
    ack_status: 'Success',
    ack_latency_ms: 350,
    processed_at: at(0.4),
    notification_outcome: 'applied',
    outcome: 'applied',
    subscription_events: 'PlanChanged',
    applied_event: 'PlanChanged',
    applied_at: at(0.2),
    position: 5,
  });

  const once = await dump(db, [operationsProjection]);
  await applyAll(db, operationsProjection, events);
  await applyAll(db, operationsProjection, events.flatMap((e) => [e, e]));
  t.same(await dump(db, [operationsProjection]), once, 'replays and duplicates change nothing (deliveries stays 2)');
});

t.test('a publisher-side change: requested, submitted, applied by its Partner notification; another fails', async (t) => {
  const db = memoryDb(t, operationsProjection);
  const r = recorder();
  const stream = subscriptionStream(SUB);
  await applyAll(db, operationsProjection, [
    r(stream, 'QuantityChangeRequested', { at: at(0), source: 'operator', requestId: 'req-1', quantity: 9, previousQuantity: 5 }),
    r(stream, 'ChangeSubmitted', { at: at(1), source: 'operator', requestId: 'req-1', operationId: 'op-p' }),
  ]);
  t.match(db.prepare("SELECT * FROM change_requests WHERE request_id = 'req-1'").get(), { kind: 'quantity', quantity: 9, previous_quantity: 5, operation_id: 'op-p', outcome: 'submitted', settled_at: null });
  t.match(operation(db, 'op-p'), { action: 'ChangeQuantity', source: 'Partner', quantity: 9, request_id: 'req-1', requested_at: at(0), submitted_at: at(1), outcome: 'pending', deliveries: 0 });

  await applyAll(db, operationsProjection, [
    received(r, 'op-p', 'ChangeQuantity', 3, { quantity: 9, operationRequestSource: 'Partner' }),
    r(stream, 'QuantityChanged', { at: at(3.1), source: 'webhook', operationId: 'op-p', quantity: 9, previousQuantity: 5, requestSource: 'Partner' }),
    r(notificationStream('op-p'), 'NotificationProcessed', { operationId: 'op-p', subscriptionId: SUB, action: 'ChangeQuantity', outcome: 'applied', detail: 'applied', subscriptionEvents: ['QuantityChanged'], at: at(3.2) }),
  ]);
  t.match(db.prepare("SELECT * FROM change_requests WHERE request_id = 'req-1'").get(), { outcome: 'applied', settled_at: at(3.1) });
  t.match(operation(db, 'op-p'), { source: 'Partner', deliveries: 1, outcome: 'applied', applied_event: 'QuantityChanged' });

  await applyAll(db, operationsProjection, [
    r(stream, 'PlanChangeRequested', { at: at(10), source: 'operator', requestId: 'req-2', planId: 'gold', previousPlanId: 'standard' }),
    r(stream, 'ChangeSubmitted', { at: at(11), source: 'operator', requestId: 'req-2', operationId: 'op-f' }),
    r(stream, 'ChangeRequestFailed', { at: at(15), source: 'process', requestId: 'req-2', operationId: 'op-f', status: 'Conflict', reason: 'plan unchanged' }),
    r(stream, 'CancellationRequested', { at: at(20), source: 'operator', requestId: 'req-3' }),
    r(stream, 'ChangeRequestFailed', { at: at(21), source: 'operator', requestId: 'req-3', status: '400', reason: 'Microsoft refused' }),
  ]);
  t.match(db.prepare("SELECT * FROM change_requests WHERE request_id = 'req-2'").get(), { kind: 'plan', plan_id: 'gold', previous_plan_id: 'standard', outcome: 'failed', failure_status: 'Conflict' });
  t.match(operation(db, 'op-f'), { action: 'ChangePlan', source: 'Partner', microsoft_status: 'Conflict', outcome: 'failed', outcome_detail: 'plan unchanged' });
  t.match(db.prepare("SELECT * FROM change_requests WHERE request_id = 'req-3'").get(), { kind: 'cancel', operation_id: null, outcome: 'failed', failure_status: '400' });
  t.equal(db.prepare('SELECT count(*) FROM operations').pluck().get(), 2, 'a request Microsoft never accepted is not an operation');
});

t.test('the Partner notification applied before the 202 was recorded; a pending cancel settled by Unsubscribed', async (t) => {
  const db = memoryDb(t, operationsProjection);
  const r = recorder();
  const stream = subscriptionStream(SUB);
  await applyAll(db, operationsProjection, [
    r(stream, 'PlanChangeRequested', { at: at(0), source: 'operator', requestId: 'req-1', planId: 'gold', previousPlanId: 'standard' }),
    received(r, 'op-x', 'ChangePlan', 1, { planId: 'gold', operationRequestSource: 'Partner' }),
    r(stream, 'PlanChanged', { at: at(1.1), source: 'webhook', operationId: 'op-x', planId: 'gold', previousPlanId: 'standard', requestSource: 'Partner' }),
    r(stream, 'ChangeSubmitted', { at: at(2), source: 'operator', requestId: 'req-1', operationId: 'op-x' }),
    r(stream, 'CancellationRequested', { at: at(10), source: 'operator', requestId: 'req-2' }),
    r(stream, 'ChangeSubmitted', { at: at(11), source: 'operator', requestId: 'req-2', operationId: 'op-c' }),
    r(stream, 'Unsubscribed', { at: at(12), source: 'process', operationId: 'op-c' }),
  ]);
  t.match(db.prepare("SELECT * FROM change_requests WHERE request_id = 'req-1'").get(), { outcome: 'applied', settled_at: at(1.1), operation_id: 'op-x' });
  t.match(operation(db, 'op-x'), { request_id: 'req-1', outcome: 'applied', applied_event: 'PlanChanged', source: 'Partner' });
  t.match(db.prepare("SELECT * FROM change_requests WHERE request_id = 'req-2'").get(), { outcome: 'applied', settled_at: at(12) });
  t.match(operation(db, 'op-c'), { action: 'Unsubscribe', outcome: 'applied', applied_event: 'Unsubscribed' });
});

t.test('a refused change, an unverified notification, an unreadable delivery', async (t) => {
  const db = memoryDb(t, operationsProjection);
  const r = recorder();
  await applyAll(db, operationsProjection, [
    received(r, 'op-r', 'ChangeQuantity', 0, { quantity: 90 }),
    r(subscriptionStream(SUB), 'ChangeRejected', { at: at(0.1), source: 'webhook', operationId: 'op-r', action: 'ChangeQuantity', quantity: 90, reason: '90 seats is more than the product supports (20)' }),
    r(notificationStream('op-r'), 'NotificationProcessed', { operationId: 'op-r', subscriptionId: SUB, action: 'ChangeQuantity', outcome: 'rejected', detail: '90 seats is more than the product supports (20)', subscriptionEvents: ['ChangeRejected'], at: at(0.1) }),
    received(r, 'op-u', 'Suspend', 5),
    r(notificationStream('op-u'), 'NotificationProcessed', { operationId: 'op-u', subscriptionId: SUB, action: 'Suspend', outcome: 'unverified', detail: 'Microsoft has no operation op-u', subscriptionEvents: [], at: at(6) }),
    r(notificationStream('unreadable-1'), 'NotificationReceived', { deliveryId: '1', receivedAt: at(7), body: 'not json', headers: {}, unreadable: 'Unexpected token' }),
  ]);
  t.match(operation(db, 'op-r'), { action: 'ChangeQuantity', quantity: 90, outcome: 'rejected', notification_outcome: 'rejected', applied_event: null });
  // The notification process may also process the delivery the webhook refused (it raced the refusal): no change, still refused.
  await applyAll(db, operationsProjection, [
    r(notificationStream('op-r'), 'NotificationProcessed', { operationId: 'op-r', subscriptionId: SUB, action: 'ChangeQuantity', outcome: 'no-change', detail: 'already applied', subscriptionEvents: [], at: at(0.5) }),
  ]);
  t.match(operation(db, 'op-r'), { outcome: 'rejected', notification_outcome: 'no-change' }, 'a refusal stays a refusal');
  t.match(operation(db, 'op-u'), { action: 'Suspend', outcome: 'unverified', applied_event: null });
  t.equal(db.prepare('SELECT count(*) FROM operations').pluck().get(), 2, 'an unreadable delivery has no operation to file it under');
});

t.test("Microsoft's status follows what we learned: acknowledged, read back, applied; a final status does not go back", async (t) => {
  const db = memoryDb(t, operationsProjection);
  const r = recorder();
  const stream = subscriptionStream(SUB);
  const processed = (op: string, outcome: string, operationStatus?: string, seconds = 1) =>
    r(notificationStream(op), 'NotificationProcessed', {
      operationId: op,
      subscriptionId: SUB,
      action: 'ChangePlan',
      outcome,
      detail: outcome,
      subscriptionEvents: [],
      ...(operationStatus ? { operationStatus } : {}),
      at: at(seconds),
    });
  const acked = (op: string, note?: string) =>
    r(notificationStream(op), 'OperationAcknowledged', { operationId: op, subscriptionId: SUB, status: 'Success', at: at(0.5), latencyMs: 500, ...(note ? { note } : {}) });

  // Acknowledged (200), then a late redelivery still saying InProgress.
  await applyAll(db, operationsProjection, [received(r, 'op-a', 'ChangePlan', 0, { planId: 'premium' }), acked('op-a')]);
  t.match(operation(db, 'op-a'), { microsoft_status: 'Succeeded' }, 'after our accepted acknowledgement');
  await applyAll(db, operationsProjection, [received(r, 'op-a', 'ChangePlan', 60, { planId: 'premium' })]);
  t.match(operation(db, 'op-a'), { microsoft_status: 'Succeeded', deliveries: 2 }, 'a redelivery does not take it back to InProgress');

  // A 409 says nothing certain; the read-back that follows does.
  await applyAll(db, operationsProjection, [received(r, 'op-b', 'ChangePlan', 0), acked('op-b', 'Conflict (409)')]);
  t.match(operation(db, 'op-b'), { microsoft_status: 'InProgress' });
  await applyAll(db, operationsProjection, [processed('op-b', 'failed', 'Conflict')]);
  t.match(operation(db, 'op-b'), { microsoft_status: 'Conflict', outcome: 'failed', notification_outcome: 'failed' });

  // Microsoft failed it: read back as Failed, not applied.
  await applyAll(db, operationsProjection, [received(r, 'op-c', 'ChangePlan', 0), processed('op-c', 'failed', 'Failed')]);
  t.match(operation(db, 'op-c'), { microsoft_status: 'Failed', outcome: 'failed', applied_event: null });

  // Not final yet (unverified), then confirmed by a redelivery's processing.
  await applyAll(db, operationsProjection, [received(r, 'op-d', 'ChangeQuantity', 0), processed('op-d', 'unverified', 'NotStarted')]);
  t.match(operation(db, 'op-d'), { microsoft_status: 'NotStarted', outcome: 'unverified' });
  await applyAll(db, operationsProjection, [received(r, 'op-d', 'ChangeQuantity', 30), processed('op-d', 'applied', 'Succeeded', 31)]);
  t.match(operation(db, 'op-d'), { microsoft_status: 'Succeeded', outcome: 'applied', notification_outcome: 'applied', deliveries: 2 });
  await applyAll(db, operationsProjection, [processed('op-d', 'unverified', 'InProgress', 40)]);
  t.match(operation(db, 'op-d'), { microsoft_status: 'Succeeded' }, 'a read-back that is not final does not replace a final one');

  // An older history: applied without a status read back (Microsoft's window had accepted it).
  await applyAll(db, operationsProjection, [received(r, 'op-e', 'ChangePlan', 0), processed('op-e', 'applied')]);
  t.match(operation(db, 'op-e'), { microsoft_status: 'Succeeded' });
  await applyAll(db, operationsProjection, [received(r, 'op-f', 'Suspend', 0), processed('op-f', 'unverified')]);
  t.match(operation(db, 'op-f'), { microsoft_status: 'InProgress' }, 'unverified without a status: as the notification said');

  // A publisher-side change applied after polling saw Succeeded (no notification processed yet).
  await applyAll(db, operationsProjection, [
    r(stream, 'QuantityChangeRequested', { at: at(0), source: 'operator', requestId: 'req-9', quantity: 9, previousQuantity: 5 }),
    r(stream, 'ChangeSubmitted', { at: at(1), source: 'operator', requestId: 'req-9', operationId: 'op-g' }),
    r(stream, 'QuantityChanged', { at: at(3), source: 'process', operationId: 'op-g', quantity: 9, previousQuantity: 5, requestSource: 'Partner' }),
  ]);
  t.match(operation(db, 'op-g'), { microsoft_status: 'Succeeded', outcome: 'applied' });
  await applyAll(db, operationsProjection, [received(r, 'op-g', 'ChangeQuantity', 4, { quantity: 9, operationRequestSource: 'Partner' })]);
  t.match(operation(db, 'op-g'), { microsoft_status: 'Succeeded' }, "the Partner notification's InProgress comes too late to count");
});
