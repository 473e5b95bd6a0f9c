/**
 * The `change_requests` rows are the domain's change-request fold (evolveChangeRequest), row by row: over a
 * synthetic history written by the real decider and over hand-made histories with every outcome, including
 * Microsoft's notification applying the operation before the 202 was recorded.
 */
import t from 'tap';
import type { Test } from 'tap';
import { decodeSubscriptionEvent, evolveChangeRequest, latestChangeRequest, operationAppliedBy, subscriptionStream } from '../../src/domain/subscription/index.js';
import type { ChangeRequest, SubscriptionEvent } from '../../src/domain/subscription/index.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { operationsProjection } from '../../src/projections/views/operations.projection.js';
import { syntheticHistory } from '../support/synthetic-history.js';
import { applyAll, dump, memoryDb, recorder } from './helpers.js';

const SUB = '5d0c9a7e-1b2f-4c3d-9e8f-0a1b2c3d4e5f';
const at = (s: number) => new Date(Date.parse('2026-03-10T10:00:00.000Z') + s * 1000).toISOString();

/** One request of a history, folded on its own (the table keeps one row per request). */
function foldRequest(events: readonly SubscriptionEvent[], requestId: string): ChangeRequest | undefined {
  const applied = new Map<string, string>();
  let request: ChangeRequest | undefined;
  for (const event of events) {
    const starts = event.type === 'PlanChangeRequested' || event.type === 'QuantityChangeRequested' || event.type === 'CancellationRequested';
    const startsAnother = starts && event.data.requestId !== requestId;
    if (!startsAnother) request = evolveChangeRequest(request, event, (operationId) => applied.get(operationId));
    const operationId = operationAppliedBy(event);
    if (operationId !== undefined && !applied.has(operationId)) applied.set(operationId, event.data.at);
  }
  return request;
}

/** The columns a request fills. */
function columnsOf(subscriptionId: string, r: ChangeRequest): Record<string, unknown> {
  return {
    request_id: r.requestId,
    subscription_id: subscriptionId,
    kind: r.kind,
    plan_id: r.kind === 'plan' ? r.planId : null,
    previous_plan_id: r.kind === 'plan' ? r.previousPlanId : null,
    quantity: r.kind === 'quantity' ? r.quantity : null,
    previous_quantity: r.kind === 'quantity' ? (r.previousQuantity ?? null) : null,
    reason: r.kind === 'cancel' ? (r.reason ?? null) : null,
    requested_at: r.requestedAt,
    operation_id: r.operationId ?? null,
    submitted_at: r.submittedAt ?? null,
    outcome: r.outcome,
    failure_status: r.failure?.status ?? null,
    failure_reason: r.failure?.reason ?? null,
    settled_at: r.settledAt ?? null,
  };
}

/** Every row, against the fold of its subscription's history; the latest request of each subscription against `latestChangeRequest`. */
function checkRows(t: Test, db: ReturnType<typeof memoryDb>, recorded: readonly RecordedEvent[]): number {
  const histories = new Map<string, SubscriptionEvent[]>();
  for (const e of recorded) {
    const event = decodeSubscriptionEvent(e);
    if (!event) continue;
    const id = e.streamId.slice(e.streamId.indexOf('-') + 1);
    histories.set(id, [...(histories.get(id) ?? []), event]);
  }
  const rows = db.prepare('SELECT * FROM change_requests ORDER BY requested_at, request_id').all() as Record<string, unknown>[];
  for (const row of rows) {
    const subscriptionId = String(row.subscription_id);
    const expected = foldRequest(histories.get(subscriptionId) ?? [], String(row.request_id));
    t.ok(expected, `${String(row.request_id)} is a request of its subscription`);
    if (expected) t.match(row, columnsOf(subscriptionId, expected), `${String(row.request_id)}: ${expected.outcome}`);
  }
  for (const [subscriptionId, events] of histories) {
    const latest = latestChangeRequest(events);
    if (latest) t.match(db.prepare('SELECT * FROM change_requests WHERE request_id = ?').get(latest.requestId), columnsOf(subscriptionId, latest));
  }
  return rows.length;
}

t.test('a synthetic history: every row is the fold of its request', async (t) => {
  const r = recorder();
  const recorded = syntheticHistory({ subscriptions: 60, seed: 7 }).flatMap((a) => a.events.map((e) => r(a.streamId, e.type, e.data, e.metadata)));
  const db = memoryDb(t, operationsProjection);
  await applyAll(db, operationsProjection, recorded);
  const n = checkRows(t, db, recorded);
  t.ok(n > 5, `${n} change requests`);
  const outcomes = db.prepare('SELECT DISTINCT outcome FROM change_requests ORDER BY outcome').pluck().all();
  t.same(outcomes, ['applied', 'failed'], 'applied and failed ones');

  const once = await dump(db, [operationsProjection]);
  await applyAll(db, operationsProjection, recorded);
  t.same(await dump(db, [operationsProjection]), once, 'a replay changes nothing');
});

t.test('every outcome, and the notification applied before the 202 was recorded', async (t) => {
  const r = recorder();
  const stream = subscriptionStream(SUB);
  const recorded = [
    // applied before its 202: applied, settled when the notification applied it
    r(stream, 'PlanChangeRequested', { at: at(0), source: 'operator', requestId: 'req-1', planId: 'gold', previousPlanId: 'standard' }),
    r(stream, 'PlanChanged', { at: at(1), source: 'webhook', operationId: 'op-1', planId: 'gold', previousPlanId: 'standard', requestSource: 'Partner' }),
    r(stream, 'ChangeSubmitted', { at: at(2), source: 'operator', requestId: 'req-1', operationId: 'op-1' }),
    // submitted, then applied by its notification
    r(stream, 'QuantityChangeRequested', { at: at(10), source: 'operator', requestId: 'req-2', quantity: 9 }),
    r(stream, 'ChangeSubmitted', { at: at(11), source: 'operator', requestId: 'req-2', operationId: 'op-2' }),
    r(stream, 'QuantityChanged', { at: at(12), source: 'webhook', operationId: 'op-2', quantity: 9, requestSource: 'Partner' }),
    // refused before it was accepted
    r(stream, 'CancellationRequested', { at: at(20), source: 'operator', requestId: 'req-3', reason: 'asked by phone' }),
    r(stream, 'ChangeRequestFailed', { at: at(21), source: 'operator', requestId: 'req-3', status: '409', reason: 'locked' }),
    // submitted, then its operation failed
    r(stream, 'PlanChangeRequested', { at: at(30), source: 'operator', requestId: 'req-4', planId: 'premium', previousPlanId: 'gold' }),
    r(stream, 'ChangeSubmitted', { at: at(31), source: 'operator', requestId: 'req-4', operationId: 'op-4' }),
    r(stream, 'ChangeRequestFailed', { at: at(35), source: 'process', requestId: 'req-4', operationId: 'op-4', status: 'Failed', reason: 'Microsoft reported Failed' }),
    // submitted, then Microsoft unsubscribed for another reason: abandoned
    r(stream, 'PlanChangeRequested', { at: at(40), source: 'operator', requestId: 'req-5', planId: 'premium', previousPlanId: 'gold' }),
    r(stream, 'ChangeSubmitted', { at: at(41), source: 'operator', requestId: 'req-5', operationId: 'op-5' }),
    r(stream, 'Unsubscribed', { at: at(42), source: 'webhook', operationId: 'op-azure' }),
  ];
  const db = memoryDb(t, operationsProjection);
  await applyAll(db, operationsProjection, recorded);
  t.equal(checkRows(t, db, recorded), 5);
  const outcome = (id: string) => db.prepare('SELECT outcome, settled_at, submitted_at FROM change_requests WHERE request_id = ?').get(id);
  t.same(outcome('req-1'), { outcome: 'applied', settled_at: at(1), submitted_at: at(2) }, 'applied before its 202');
  t.same(outcome('req-2'), { outcome: 'applied', settled_at: at(12), submitted_at: at(11) });
  t.same(outcome('req-3'), { outcome: 'failed', settled_at: at(21), submitted_at: null });
  t.same(outcome('req-4'), { outcome: 'failed', settled_at: at(35), submitted_at: at(31) });
  t.same(outcome('req-5'), { outcome: 'abandoned', settled_at: at(42), submitted_at: at(41) });

  const once = await dump(db, [operationsProjection]);
  await applyAll(db, operationsProjection, recorded.flatMap((e) => [e, e]));
  t.same(await dump(db, [operationsProjection]), once, 'replays and duplicates change nothing');
});
