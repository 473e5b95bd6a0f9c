/**
 * `operations`: every Microsoft operation we know of, one row per operation id, gathered from the
 * webhook's notification streams (received, acknowledged and how fast, what processing made of it)
 * and from subscription streams (publisher-side changes submitted to Microsoft, the subscription event
 * that applied an operation). `change_requests`: every publisher-side change we asked Microsoft for,
 * and how it ended.
 *
 * Rows gather events from several streams, so the guard is the global position: every row keeps the
 * position of the last event it reflects, and an event at or before it changes nothing.
 *
 * `outcome` is what happened to the operation as a whole: once applied (a subscription event names it)
 * or refused by our policy, a later notification outcome (`no-change` from a second processing of the
 * same notification) does not overwrite it; `notification_outcome` keeps the last one as recorded.
 *
 * `microsoft_status` is Microsoft's status of the operation as last known: the notification's (weakest), then
 * `Succeeded` once Microsoft accepted our acknowledgement, once a notification was applied without a status
 * read back, or once a publisher-side change was applied after polling; a status read back with Get operation
 * (`NotificationProcessed.operationStatus`, `ChangeRequestFailed.status`) overrides those. A final status
 * (`Succeeded`, `Failed`, `Conflict`) is never replaced by one that is not (a late redelivery says `InProgress`).
 *
 * v2: a refusal is not overwritten by a later notification outcome.
 * v3: `microsoft_status` follows the acknowledgement, the outcome and Microsoft's read-back status (it stayed at
 * the notification's `InProgress` for operations Microsoft had completed).
 */
import { decodeNotificationEvent } from '../../application/notification-events.js';
import { notificationCategory } from '../../domain/notification/notification.events.js';
import { decodeSubscriptionEvent, subscriptionCategory } from '../../domain/subscription/index.js';
import type { SubscriptionEvent } from '../../domain/subscription/index.js';
import { categoryPrefix, entityIdOf } from '../../eventstore/eventstore.js';
import type { RecordedEvent } from '../../eventstore/eventstore.js';
import type { Projection, ReadModelDb } from '../projection.js';
import { evolveRequestRow, requestRow, subscriptionRequestRows } from './change-requests.table.js';
import { cached, nullable } from './support.js';

const schemaSql = `
CREATE TABLE IF NOT EXISTS operations (
  operation_id         TEXT PRIMARY KEY,
  subscription_id      TEXT,
  action               TEXT,
  source               TEXT,
  microsoft_status     TEXT,
  plan_id              TEXT,
  quantity             INTEGER,
  request_id           TEXT,
  requested_at         TEXT,
  submitted_at         TEXT,
  first_received_at    TEXT,
  last_received_at     TEXT,
  deliveries           INTEGER NOT NULL,
  acknowledged_at      TEXT,
  ack_status           TEXT,
  ack_latency_ms       INTEGER,
  ack_note             TEXT,
  processed_at         TEXT,
  notification_outcome TEXT,
  outcome              TEXT NOT NULL,
  outcome_detail       TEXT,
  subscription_events  TEXT,
  applied_event        TEXT,
  applied_at           TEXT,
  updated_at           TEXT NOT NULL,
  position             INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS operations_by_subscription ON operations (subscription_id, updated_at);
CREATE INDEX IF NOT EXISTS operations_by_received ON operations (first_received_at);
CREATE INDEX IF NOT EXISTS operations_by_action ON operations (action, source);
-- The operations still waiting for our answer (src/projections/views/deadlines.ts): few at any time, however long the history.
CREATE INDEX IF NOT EXISTS operations_unacknowledged ON operations (first_received_at) WHERE acknowledged_at IS NULL AND processed_at IS NULL;
CREATE TABLE IF NOT EXISTS change_requests (
  request_id        TEXT PRIMARY KEY,
  subscription_id   TEXT NOT NULL,
  kind              TEXT NOT NULL,
  plan_id           TEXT,
  previous_plan_id  TEXT,
  quantity          INTEGER,
  previous_quantity INTEGER,
  reason            TEXT,
  requested_at      TEXT NOT NULL,
  operation_id      TEXT,
  submitted_at      TEXT,
  outcome           TEXT NOT NULL,
  failure_status    TEXT,
  failure_reason    TEXT,
  settled_at        TEXT,
  updated_at        TEXT NOT NULL,
  position          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS change_requests_by_subscription ON change_requests (subscription_id, requested_at);
CREATE INDEX IF NOT EXISTS change_requests_by_operation ON change_requests (operation_id);
`;

/** The Microsoft action an applied subscription event stands for (used when the operation is not known otherwise). */
const actionOfEvent: Record<string, string> = {
  Purchased: 'Subscribe',
  Activated: 'Subscribe',
  PlanChanged: 'ChangePlan',
  QuantityChanged: 'ChangeQuantity',
  Suspended: 'Suspend',
  Reinstated: 'Reinstate',
  Renewed: 'Renew',
  Unsubscribed: 'Unsubscribe',
};

const actionOfRequest: Record<string, string> = { plan: 'ChangePlan', quantity: 'ChangeQuantity', cancel: 'Unsubscribe' };

const ifNewer = 'WHERE excluded.position > operations.position';

const finalStatuses = "('Succeeded', 'Failed', 'Conflict')";
/** `microsoft_status` from a weaker source (the notification, an inference): only where none is final yet. */
const unlessFinal = (value: string) =>
  `CASE WHEN operations.microsoft_status IN ${finalStatuses} THEN operations.microsoft_status ELSE coalesce(${value}, operations.microsoft_status) END`;
/** `microsoft_status` read back from Microsoft: replaces anything, but a final status only with a final one. */
const readBack = (value: string) =>
  `CASE WHEN ${value} IS NULL THEN operations.microsoft_status
        WHEN operations.microsoft_status IN ${finalStatuses} AND ${value} NOT IN ${finalStatuses} THEN operations.microsoft_status
        ELSE ${value} END`;

function received(db: ReadModelDb, e: RecordedEvent): void {
  const event = decodeNotificationEvent(e);
  if (event?.type !== 'NotificationReceived') return;
  const d = event.data;
  if (!d.operationId) return; // an unreadable delivery: no operation to file it under
  const p = d.payload; // absent when the body says nothing more we can read
  cached(
    db,
    `INSERT INTO operations (operation_id, subscription_id, action, source, microsoft_status, plan_id, quantity, first_received_at, last_received_at,
       deliveries, outcome, updated_at, position)
     VALUES (@id, @subscriptionId, @action, @source, @status, @planId, @quantity, @at, @at, 1, 'pending', @at, @position)
     ON CONFLICT (operation_id) DO UPDATE SET
       subscription_id = coalesce(operations.subscription_id, excluded.subscription_id),
       action = coalesce(excluded.action, operations.action),
       source = coalesce(excluded.source, operations.source),
       microsoft_status = ${unlessFinal('excluded.microsoft_status')},
       plan_id = coalesce(operations.plan_id, excluded.plan_id),
       quantity = coalesce(operations.quantity, excluded.quantity),
       first_received_at = coalesce(operations.first_received_at, excluded.first_received_at),
       last_received_at = excluded.last_received_at,
       deliveries = operations.deliveries + 1,
       updated_at = excluded.updated_at, position = excluded.position
     ${ifNewer}`,
  ).run({
    id: d.operationId,
    subscriptionId: nullable(d.subscriptionId),
    action: nullable(d.action),
    source: nullable(p?.operationRequestSource),
    status: nullable(p?.status),
    planId: nullable(p?.planId),
    quantity: nullable(p?.quantity),
    at: d.receivedAt,
    position: e.position,
  });
}

function acknowledged(db: ReadModelDb, e: RecordedEvent): void {
  const event = decodeNotificationEvent(e);
  if (event?.type !== 'OperationAcknowledged') return;
  const d = event.data;
  cached(
    db,
    `INSERT INTO operations (operation_id, subscription_id, microsoft_status, deliveries, acknowledged_at, ack_status, ack_latency_ms, ack_note, outcome, updated_at, position)
     VALUES (@id, @subscriptionId, @taken, 0, @at, @status, @latency, @note, 'pending', @at, @position)
     ON CONFLICT (operation_id) DO UPDATE SET
       subscription_id = coalesce(operations.subscription_id, excluded.subscription_id),
       microsoft_status = ${unlessFinal('excluded.microsoft_status')},
       acknowledged_at = excluded.acknowledged_at, ack_status = excluded.ack_status,
       ack_latency_ms = excluded.ack_latency_ms, ack_note = excluded.ack_note,
       updated_at = excluded.updated_at, position = excluded.position
     ${ifNewer}`,
  ).run({
    id: d.operationId,
    subscriptionId: d.subscriptionId,
    // Microsoft answered our PATCH Success with a plain 200: it completed the operation. A note (409, recovered) says less.
    taken: d.status === 'Success' && d.note === undefined ? 'Succeeded' : null,
    at: d.at,
    status: d.status,
    latency: Math.round(d.latencyMs),
    note: nullable(d.note),
    position: e.position,
  });
}

function processed(db: ReadModelDb, e: RecordedEvent): void {
  const event = decodeNotificationEvent(e);
  if (event?.type !== 'NotificationProcessed') return;
  const d = event.data;
  cached(
    db,
    `INSERT INTO operations (operation_id, subscription_id, action, microsoft_status, deliveries, processed_at, notification_outcome, outcome, outcome_detail, subscription_events, updated_at, position)
     VALUES (@id, @subscriptionId, @action, coalesce(@readBack, @inferred), 0, @at, @outcome, @outcome, @detail, @events, @at, @position)
     ON CONFLICT (operation_id) DO UPDATE SET
       subscription_id = coalesce(operations.subscription_id, excluded.subscription_id),
       action = coalesce(operations.action, excluded.action),
       microsoft_status = CASE WHEN @readBack IS NOT NULL THEN ${readBack('@readBack')} ELSE ${unlessFinal('@inferred')} END,
       processed_at = excluded.processed_at,
       notification_outcome = excluded.notification_outcome,
       outcome = CASE WHEN operations.applied_event IS NOT NULL THEN 'applied' WHEN operations.outcome = 'rejected' THEN 'rejected' ELSE excluded.outcome END,
       outcome_detail = excluded.outcome_detail,
       subscription_events = excluded.subscription_events,
       updated_at = excluded.updated_at, position = excluded.position
     ${ifNewer}`,
  ).run({
    id: d.operationId,
    subscriptionId: nullable(d.subscriptionId),
    action: nullable(d.action),
    at: d.at,
    outcome: d.outcome,
    detail: d.detail,
    events: d.subscriptionEvents.join(','),
    readBack: nullable(d.operationStatus),
    // Applied (or nothing to change) without a status read back (no operation record, or an older history): Microsoft had completed it.
    inferred: d.outcome === 'applied' || d.outcome === 'no-change' ? 'Succeeded' : null,
    position: e.position,
  });
}

/** A subscription event that applied a Microsoft operation. */
function appliedBy(db: ReadModelDb, e: RecordedEvent, event: SubscriptionEvent, subscriptionId: string, operationId: string): void {
  const requestSource = 'requestSource' in event.data ? event.data.requestSource : undefined;
  cached(
    db,
    `INSERT INTO operations (operation_id, subscription_id, action, source, microsoft_status, deliveries, outcome, applied_event, applied_at, updated_at, position)
     VALUES (@id, @subscriptionId, @action, @source, @status, 0, 'applied', @event, @at, @at, @position)
     ON CONFLICT (operation_id) DO UPDATE SET
       subscription_id = coalesce(operations.subscription_id, excluded.subscription_id),
       microsoft_status = ${unlessFinal('excluded.microsoft_status')},
       action = coalesce(operations.action, excluded.action),
       source = coalesce(operations.source, excluded.source),
       outcome = 'applied',
       applied_event = coalesce(operations.applied_event, excluded.applied_event),
       applied_at = coalesce(operations.applied_at, excluded.applied_at),
       updated_at = excluded.updated_at, position = excluded.position
     ${ifNewer}`,
  ).run({
    id: operationId,
    subscriptionId,
    action: nullable(actionOfEvent[event.type]),
    source: nullable(requestSource),
    // The publisher-change process applies only what its polling saw Succeeded; a webhook applies before acknowledging.
    status: event.data.source === 'process' ? 'Succeeded' : null,
    event: event.type,
    at: event.data.at,
    position: e.position,
  });
}

/** Every request of the subscription, evolved with an event that names no request (the fold settles the ones it concerns). */
function settleRequests(db: ReadModelDb, e: RecordedEvent, event: SubscriptionEvent, subscriptionId: string): void {
  for (const row of subscriptionRequestRows(db, subscriptionId)) evolveRequestRow(db, e, event, subscriptionId, row);
}

/** When a subscription event applied the operation (its `applied_at`), if one did. */
function appliedAtOf(db: ReadModelDb, operationId: string): string | undefined {
  const at: unknown = cached(db, 'SELECT applied_at FROM operations WHERE operation_id = ? AND applied_event IS NOT NULL').pluck().get(operationId);
  return typeof at === 'string' ? at : undefined;
}

function subscriptionEvent(db: ReadModelDb, e: RecordedEvent): void {
  const event = decodeSubscriptionEvent(e);
  if (!event) return;
  const subscriptionId = entityIdOf(e.streamId);
  const at = event.data.at;
  switch (event.type) {
    case 'PlanChangeRequested':
    case 'QuantityChangeRequested':
    case 'CancellationRequested':
      evolveRequestRow(db, e, event, subscriptionId, requestRow(db, event.data.requestId));
      return;
    case 'ChangeSubmitted': {
      const d = event.data;
      const row = requestRow(db, d.requestId);
      const request = row?.request;
      cached(
        db,
        `INSERT INTO operations (operation_id, subscription_id, action, source, plan_id, quantity, request_id, requested_at, submitted_at, deliveries, outcome, updated_at, position)
         VALUES (@id, @subscriptionId, @action, 'Partner', @planId, @quantity, @requestId, @requestedAt, @at, 0, 'pending', @at, @position)
         ON CONFLICT (operation_id) DO UPDATE SET
           subscription_id = coalesce(operations.subscription_id, excluded.subscription_id),
           action = coalesce(operations.action, excluded.action),
           source = coalesce(operations.source, excluded.source),
           plan_id = coalesce(operations.plan_id, excluded.plan_id),
           quantity = coalesce(operations.quantity, excluded.quantity),
           request_id = excluded.request_id, requested_at = excluded.requested_at, submitted_at = excluded.submitted_at,
           updated_at = excluded.updated_at, position = excluded.position
         ${ifNewer}`,
      ).run({
        id: d.operationId,
        subscriptionId,
        action: nullable(request ? actionOfRequest[request.kind] : undefined),
        planId: request?.kind === 'plan' ? request.planId : null,
        quantity: request?.kind === 'quantity' ? request.quantity : null,
        requestId: d.requestId,
        requestedAt: request?.requestedAt ?? null,
        at,
        position: e.position,
      });
      // Microsoft's notification may have applied the operation before its 202 was recorded: the fold settles the request then.
      evolveRequestRow(db, e, event, subscriptionId, row, (operationId) => appliedAtOf(db, operationId));
      return;
    }
    case 'ChangeRequestFailed': {
      const d = event.data;
      evolveRequestRow(db, e, event, subscriptionId, requestRow(db, d.requestId));
      if (d.operationId) {
        cached(
          db,
          `INSERT INTO operations (operation_id, subscription_id, source, microsoft_status, request_id, deliveries, outcome, outcome_detail, updated_at, position)
           VALUES (@id, @subscriptionId, 'Partner', @status, @requestId, 0, 'failed', @reason, @at, @position)
           ON CONFLICT (operation_id) DO UPDATE SET
             subscription_id = coalesce(operations.subscription_id, excluded.subscription_id),
             source = coalesce(operations.source, excluded.source),
             microsoft_status = excluded.microsoft_status,
             request_id = coalesce(operations.request_id, excluded.request_id),
             outcome = 'failed', outcome_detail = excluded.outcome_detail,
             updated_at = excluded.updated_at, position = excluded.position
           ${ifNewer}`,
        ).run({ id: d.operationId, subscriptionId, status: d.status, requestId: d.requestId, reason: d.reason, at, position: e.position });
      }
      return;
    }
    case 'ChangeRejected': {
      const d = event.data;
      cached(
        db,
        `INSERT INTO operations (operation_id, subscription_id, action, plan_id, quantity, deliveries, outcome, outcome_detail, updated_at, position)
         VALUES (@id, @subscriptionId, @action, @planId, @quantity, 0, 'rejected', @reason, @at, @position)
         ON CONFLICT (operation_id) DO UPDATE SET
           subscription_id = coalesce(operations.subscription_id, excluded.subscription_id),
           action = coalesce(operations.action, excluded.action),
           plan_id = coalesce(operations.plan_id, excluded.plan_id),
           quantity = coalesce(operations.quantity, excluded.quantity),
           outcome = 'rejected', outcome_detail = excluded.outcome_detail,
           updated_at = excluded.updated_at, position = excluded.position
         ${ifNewer}`,
      ).run({ id: d.operationId, subscriptionId, action: d.action, planId: nullable(d.planId), quantity: nullable(d.quantity), reason: d.reason, at, position: e.position });
      return;
    }
    default: {
      const operationId = event.data.operationId;
      if (operationId && actionOfEvent[event.type]) appliedBy(db, e, event, subscriptionId, operationId);
      settleRequests(db, e, event, subscriptionId);
    }
  }
}

function apply(db: ReadModelDb, e: RecordedEvent): void {
  switch (e.type) {
    case 'NotificationReceived':
      return received(db, e);
    case 'OperationAcknowledged':
      return acknowledged(db, e);
    case 'NotificationProcessed':
      return processed(db, e);
    default:
      return subscriptionEvent(db, e);
  }
}

export const operationsProjection: Projection = {
  name: 'operations',
  version: 3,
  description: "Every Microsoft operation we know of (webhook deliveries, acknowledgements, outcomes; publisher-side changes) and every publisher-side change request",
  schemaSql,
  tables: ['operations', 'change_requests'],
  views: [],
  streamPrefixes: [categoryPrefix(notificationCategory), categoryPrefix(subscriptionCategory)],
  handles: new Set([
    'NotificationReceived',
    'OperationAcknowledged',
    'NotificationProcessed',
    'PlanChangeRequested',
    'QuantityChangeRequested',
    'CancellationRequested',
    'ChangeSubmitted',
    'ChangeRequestFailed',
    'ChangeRejected',
    'Purchased',
    'Activated',
    'PlanChanged',
    'QuantityChanged',
    'Suspended',
    'Reinstated',
    'Renewed',
    'Unsubscribed',
  ]),
  apply,
};
