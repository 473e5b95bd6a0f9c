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
import { subscriptionCategory } from '../../domain/subscription/index.js';
import type { SubscriptionEvent } from '../../domain/subscription/index.js';
import { categoryPrefix, entityIdOf } from '../../eventstore/eventstore.js';
import type { RecordedEvent } from '../../eventstore/eventstore.js';
import type { Projection, ReadModelDb } from '../projection.js';
import { evolveRequestRow } from './change-requests.table.js';
import { OperationsBatch, readBack, unlessFinal } from './operations.rows.js';
import { batchesOf, nullable, subscriptionEventOf } from './support.js';

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

async function received(b: OperationsBatch, e: RecordedEvent): Promise<void> {
  const event = decodeNotificationEvent(e);
  if (event?.type !== 'NotificationReceived') return;
  const d = event.data;
  if (!d.operationId) return; // an unreadable delivery: no operation to file it under
  const p = d.payload; // absent when the body says nothing more we can read
  const at = d.receivedAt;
  await b.upsert(
    d.operationId,
    {
      subscription_id: nullable(d.subscriptionId),
      action: nullable(d.action),
      source: nullable(p?.operationRequestSource),
      microsoft_status: nullable(p?.status),
      plan_id: nullable(p?.planId),
      quantity: nullable(p?.quantity),
      first_received_at: at,
      last_received_at: at,
      deliveries: 1,
      outcome: 'pending',
      updated_at: at,
      position: e.position,
    },
    (row, ex) => ({
      subscription_id: row.subscription_id ?? ex.subscription_id,
      action: ex.action ?? row.action,
      source: ex.source ?? row.source,
      microsoft_status: unlessFinal(row.microsoft_status, ex.microsoft_status),
      plan_id: row.plan_id ?? ex.plan_id,
      quantity: row.quantity ?? ex.quantity,
      first_received_at: row.first_received_at ?? ex.first_received_at,
      last_received_at: ex.last_received_at,
      deliveries: row.deliveries + 1,
    }),
  );
}

async function acknowledged(b: OperationsBatch, e: RecordedEvent): Promise<void> {
  const event = decodeNotificationEvent(e);
  if (event?.type !== 'OperationAcknowledged') return;
  const d = event.data;
  await b.upsert(
    d.operationId,
    {
      subscription_id: d.subscriptionId,
      // Microsoft answered our PATCH Success with a plain 200: it completed the operation. A note (409, recovered) says less.
      microsoft_status: d.status === 'Success' && d.note === undefined ? 'Succeeded' : null,
      deliveries: 0,
      acknowledged_at: d.at,
      ack_status: d.status,
      ack_latency_ms: Math.round(d.latencyMs),
      ack_note: nullable(d.note),
      outcome: 'pending',
      updated_at: d.at,
      position: e.position,
    },
    (row, ex) => ({
      subscription_id: row.subscription_id ?? ex.subscription_id,
      microsoft_status: unlessFinal(row.microsoft_status, ex.microsoft_status),
      acknowledged_at: ex.acknowledged_at,
      ack_status: ex.ack_status,
      ack_latency_ms: ex.ack_latency_ms,
      ack_note: ex.ack_note,
    }),
  );
}

async function processed(b: OperationsBatch, e: RecordedEvent): Promise<void> {
  const event = decodeNotificationEvent(e);
  if (event?.type !== 'NotificationProcessed') return;
  const d = event.data;
  const read = nullable(d.operationStatus);
  // Applied (or nothing to change) without a status read back (no operation record, or an older history): Microsoft had completed it.
  const inferred = d.outcome === 'applied' || d.outcome === 'no-change' ? 'Succeeded' : null;
  await b.upsert(
    d.operationId,
    {
      subscription_id: nullable(d.subscriptionId),
      action: nullable(d.action),
      microsoft_status: read ?? inferred,
      deliveries: 0,
      processed_at: d.at,
      notification_outcome: d.outcome,
      outcome: d.outcome,
      outcome_detail: d.detail,
      subscription_events: d.subscriptionEvents.join(','),
      updated_at: d.at,
      position: e.position,
    },
    (row, ex) => ({
      subscription_id: row.subscription_id ?? ex.subscription_id,
      action: row.action ?? ex.action,
      microsoft_status: read !== null ? readBack(row.microsoft_status, read) : unlessFinal(row.microsoft_status, inferred),
      processed_at: ex.processed_at,
      notification_outcome: ex.notification_outcome,
      outcome: row.applied_event !== null ? 'applied' : row.outcome === 'rejected' ? 'rejected' : ex.outcome,
      outcome_detail: ex.outcome_detail,
      subscription_events: ex.subscription_events,
    }),
  );
}

/** A subscription event that applied a Microsoft operation. */
async function appliedBy(b: OperationsBatch, e: RecordedEvent, event: SubscriptionEvent, subscriptionId: string, operationId: string): Promise<void> {
  const requestSource = 'requestSource' in event.data ? event.data.requestSource : undefined;
  await b.upsert(
    operationId,
    {
      subscription_id: subscriptionId,
      action: nullable(actionOfEvent[event.type]),
      source: nullable(requestSource),
      // The publisher-change process applies only what its polling saw Succeeded; a webhook applies before acknowledging.
      microsoft_status: event.data.source === 'process' ? 'Succeeded' : null,
      deliveries: 0,
      outcome: 'applied',
      applied_event: event.type,
      applied_at: event.data.at,
      updated_at: event.data.at,
      position: e.position,
    },
    (row, ex) => ({
      subscription_id: row.subscription_id ?? ex.subscription_id,
      microsoft_status: unlessFinal(row.microsoft_status, ex.microsoft_status),
      action: row.action ?? ex.action,
      source: row.source ?? ex.source,
      outcome: 'applied',
      applied_event: row.applied_event ?? ex.applied_event,
      applied_at: row.applied_at ?? ex.applied_at,
    }),
  );
}

/** Every request of the subscription, evolved with an event that names no request (the fold settles the ones it concerns). */
async function settleRequests(db: ReadModelDb, b: OperationsBatch, e: RecordedEvent, event: SubscriptionEvent, subscriptionId: string): Promise<void> {
  for (const row of [...(await b.requests.of(subscriptionId))]) b.requests.written(subscriptionId, await evolveRequestRow(db, e, event, subscriptionId, row));
}

/** When a subscription event applied the operation (its `applied_at`), if one did: of a row the batch has read (the upsert before). */
function appliedAtOf(b: OperationsBatch, operationId: string): string | undefined {
  const row = b.loaded(operationId);
  return row && row.applied_event !== null && typeof row.applied_at === 'string' ? row.applied_at : undefined;
}

async function submitted(
  db: ReadModelDb,
  b: OperationsBatch,
  e: RecordedEvent,
  event: Extract<SubscriptionEvent, { type: 'ChangeSubmitted' }>,
  subscriptionId: string,
): Promise<void> {
  const d = event.data;
  const row = await b.requests.one(subscriptionId, d.requestId);
  const request = row?.request;
  await b.upsert(
    d.operationId,
    {
      subscription_id: subscriptionId,
      action: nullable(request ? actionOfRequest[request.kind] : undefined),
      source: 'Partner',
      plan_id: request?.kind === 'plan' ? request.planId : null,
      quantity: request?.kind === 'quantity' ? request.quantity : null,
      request_id: d.requestId,
      requested_at: request?.requestedAt ?? null,
      submitted_at: d.at,
      deliveries: 0,
      outcome: 'pending',
      updated_at: d.at,
      position: e.position,
    },
    (old, ex) => ({
      subscription_id: old.subscription_id ?? ex.subscription_id,
      action: old.action ?? ex.action,
      source: old.source ?? ex.source,
      plan_id: old.plan_id ?? ex.plan_id,
      quantity: old.quantity ?? ex.quantity,
      request_id: ex.request_id,
      requested_at: ex.requested_at,
      submitted_at: ex.submitted_at,
    }),
  );
  // Microsoft's notification may have applied the operation before its 202 was recorded: the fold settles the request then.
  b.requests.written(subscriptionId, await evolveRequestRow(db, e, event, subscriptionId, row, (operationId) => appliedAtOf(b, operationId)));
}

async function subscriptionEvent(db: ReadModelDb, b: OperationsBatch, e: RecordedEvent): Promise<void> {
  const event = subscriptionEventOf(e);
  if (!event) return;
  const subscriptionId = entityIdOf(e.streamId);
  const at = event.data.at;
  switch (event.type) {
    case 'PlanChangeRequested':
    case 'QuantityChangeRequested':
    case 'CancellationRequested':
      b.requests.written(subscriptionId, await evolveRequestRow(db, e, event, subscriptionId, await b.requests.one(subscriptionId, event.data.requestId)));
      return;
    case 'ChangeSubmitted':
      return submitted(db, b, e, event, subscriptionId);
    case 'ChangeRequestFailed': {
      const d = event.data;
      b.requests.written(subscriptionId, await evolveRequestRow(db, e, event, subscriptionId, await b.requests.one(subscriptionId, d.requestId)));
      if (d.operationId) {
        await b.upsert(
          d.operationId,
          { subscription_id: subscriptionId, source: 'Partner', microsoft_status: d.status, request_id: d.requestId, deliveries: 0, outcome: 'failed', outcome_detail: d.reason, updated_at: at, position: e.position },
          (row, ex) => ({
            subscription_id: row.subscription_id ?? ex.subscription_id,
            source: row.source ?? ex.source,
            microsoft_status: ex.microsoft_status,
            request_id: row.request_id ?? ex.request_id,
            outcome: 'failed',
            outcome_detail: ex.outcome_detail,
          }),
        );
      }
      return;
    }
    case 'ChangeRejected': {
      const d = event.data;
      await b.upsert(
        d.operationId,
        { subscription_id: subscriptionId, action: d.action, plan_id: nullable(d.planId), quantity: nullable(d.quantity), deliveries: 0, outcome: 'rejected', outcome_detail: d.reason, updated_at: at, position: e.position },
        (row, ex) => ({
          subscription_id: row.subscription_id ?? ex.subscription_id,
          action: row.action ?? ex.action,
          plan_id: row.plan_id ?? ex.plan_id,
          quantity: row.quantity ?? ex.quantity,
          outcome: 'rejected',
          outcome_detail: ex.outcome_detail,
        }),
      );
      return;
    }
    default: {
      const operationId = event.data.operationId;
      if (operationId && actionOfEvent[event.type]) await appliedBy(b, e, event, subscriptionId, operationId);
      await settleRequests(db, b, e, event, subscriptionId);
    }
  }
}

function applyTo(db: ReadModelDb, b: OperationsBatch, e: RecordedEvent): Promise<void> {
  switch (e.type) {
    case 'NotificationReceived':
      return received(b, e);
    case 'OperationAcknowledged':
      return acknowledged(b, e);
    case 'NotificationProcessed':
      return processed(b, e);
    default:
      return subscriptionEvent(db, b, e);
  }
}

const batches = batchesOf((db) => new OperationsBatch(db));

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
  apply: (db, event) => batches.use(db, (batch) => applyTo(db, batch, event)),
  beginBatch: (db) => batches.begin(db),
};
