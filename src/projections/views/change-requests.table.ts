/**
 * The operations projection's `change_requests` rows: one publisher-side change request per row, as the
 * domain's `evolveChangeRequest` folds it (domain/subscription/change-request.ts). A row is read, evolved
 * with one event and written back only when the fold changed it; a row whose position is at or after the
 * event's already reflects it and is left alone, so a replayed event changes nothing.
 */
import Type from 'typebox';
import type { Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { evolveChangeRequest } from '../../domain/subscription/index.js';
import type { AppliedAt, ChangeRequest, SubscriptionEvent } from '../../domain/subscription/index.js';
import type { RecordedEvent } from '../../eventstore/eventstore.js';
import type { ReadModelDb } from '../projection.js';
import { nullable } from './support.js';

const Text = Type.Union([Type.String(), Type.Null()]);
const Integer = Type.Union([Type.Number(), Type.Null()]);

const RequestRow = Type.Object({
  request_id: Type.String(),
  kind: Type.Union([Type.Literal('plan'), Type.Literal('quantity'), Type.Literal('cancel')]),
  plan_id: Text,
  previous_plan_id: Text,
  quantity: Integer,
  previous_quantity: Integer,
  reason: Text,
  requested_at: Type.String(),
  operation_id: Text,
  submitted_at: Text,
  outcome: Type.Union([
    Type.Literal('pending'),
    Type.Literal('submitted'),
    Type.Literal('applied'),
    Type.Literal('failed'),
    Type.Literal('abandoned'),
  ]),
  failure_status: Text,
  failure_reason: Text,
  settled_at: Text,
  position: Type.Union([Type.Number(), Type.BigInt()]),
});
type RequestRow = Static<typeof RequestRow>;

const compileRow = () => Compile(RequestRow);
let validator: ReturnType<typeof compileRow> | undefined;
/** Compiled on first use, like the event decoder. */
const rowValidator = (): ReturnType<typeof compileRow> => (validator ??= compileRow());

/** A change request as stored, with the global position of the last event the row reflects. */
export type StoredRequest = { request: ChangeRequest; position: bigint };

const columns =
  'request_id, kind, plan_id, previous_plan_id, quantity, previous_quantity, reason, requested_at, operation_id, submitted_at, outcome, failure_status, failure_reason, settled_at, position';

function requestOf(row: RequestRow): ChangeRequest {
  const lifecycle = {
    requestId: row.request_id,
    requestedAt: row.requested_at,
    outcome: row.outcome,
    ...(row.operation_id !== null ? { operationId: row.operation_id } : {}),
    ...(row.submitted_at !== null ? { submittedAt: row.submitted_at } : {}),
    ...(row.settled_at !== null ? { settledAt: row.settled_at } : {}),
    ...(row.failure_status !== null ? { failure: { status: row.failure_status, reason: row.failure_reason ?? '' } } : {}),
  };
  switch (row.kind) {
    case 'plan':
      if (row.plan_id === null || row.previous_plan_id === null) throw new Error(`change_requests ${row.request_id}: a plan change without its plans`);
      return { kind: 'plan', planId: row.plan_id, previousPlanId: row.previous_plan_id, ...lifecycle };
    case 'quantity':
      if (row.quantity === null) throw new Error(`change_requests ${row.request_id}: a quantity change without its quantity`);
      return {
        kind: 'quantity',
        quantity: row.quantity,
        ...(row.previous_quantity !== null ? { previousQuantity: row.previous_quantity } : {}),
        ...lifecycle,
      };
    case 'cancel':
      return { kind: 'cancel', ...(row.reason !== null ? { reason: row.reason } : {}), ...lifecycle };
  }
}

function stored(row: unknown): StoredRequest {
  const check = rowValidator();
  if (!check.Check(row)) {
    const first = check.Errors(row)[0];
    throw new Error(`change_requests row does not have the table's shape: ${first ? `${first.instancePath} ${first.message}` : 'invalid'}`);
  }
  return { request: requestOf(row), position: BigInt(row.position) };
}

/** The row of one request, if it has one. */
export async function requestRow(db: ReadModelDb, requestId: string): Promise<StoredRequest | undefined> {
  const row: unknown = await db.get(`SELECT ${columns} FROM change_requests WHERE request_id = @requestId`, { requestId });
  return row === undefined ? undefined : stored(row);
}

/** Every request of a subscription, oldest first. */
export async function subscriptionRequestRows(db: ReadModelDb, subscriptionId: string): Promise<StoredRequest[]> {
  const rows: unknown[] = await db.all(`SELECT ${columns} FROM change_requests WHERE subscription_id = @subscriptionId ORDER BY requested_at, request_id`, { subscriptionId });
  return rows.map(stored);
}

async function write(db: ReadModelDb, subscriptionId: string, request: ChangeRequest, at: string, position: bigint): Promise<void> {
  await db.run(
    `INSERT INTO change_requests (request_id, subscription_id, kind, plan_id, previous_plan_id, quantity, previous_quantity, reason, requested_at,
       operation_id, submitted_at, outcome, failure_status, failure_reason, settled_at, updated_at, position)
     VALUES (@requestId, @subscriptionId, @kind, @planId, @previousPlanId, @quantity, @previousQuantity, @reason, @requestedAt,
       @operationId, @submittedAt, @outcome, @failureStatus, @failureReason, @settledAt, @at, @position)
     ON CONFLICT (request_id) DO UPDATE SET
       kind = excluded.kind, plan_id = excluded.plan_id, previous_plan_id = excluded.previous_plan_id,
       quantity = excluded.quantity, previous_quantity = excluded.previous_quantity, reason = excluded.reason,
       requested_at = excluded.requested_at, operation_id = excluded.operation_id, submitted_at = excluded.submitted_at,
       outcome = excluded.outcome, failure_status = excluded.failure_status, failure_reason = excluded.failure_reason,
       settled_at = excluded.settled_at, updated_at = excluded.updated_at, position = excluded.position
     WHERE excluded.position > change_requests.position`,
    {
    requestId: request.requestId,
    subscriptionId,
    kind: request.kind,
    planId: request.kind === 'plan' ? request.planId : null,
    previousPlanId: request.kind === 'plan' ? request.previousPlanId : null,
    quantity: request.kind === 'quantity' ? request.quantity : null,
    previousQuantity: request.kind === 'quantity' ? nullable(request.previousQuantity) : null,
    reason: request.kind === 'cancel' ? nullable(request.reason) : null,
    requestedAt: request.requestedAt,
    operationId: nullable(request.operationId),
    submittedAt: nullable(request.submittedAt),
    outcome: request.outcome,
    failureStatus: nullable(request.failure?.status),
    failureReason: nullable(request.failure?.reason),
    settledAt: nullable(request.settledAt),
    at,
    position,
  },
  );
}

/**
 * Evolve the request `row` holds (undefined: no row yet) with one subscription event and write it back
 * when it changed (the row written is returned). `e` is the event as recorded (its global position), `event`
 * the same event decoded.
 */
export async function evolveRequestRow(
  db: ReadModelDb,
  e: RecordedEvent,
  event: SubscriptionEvent,
  subscriptionId: string,
  row: StoredRequest | undefined,
  appliedAt?: AppliedAt,
): Promise<StoredRequest | undefined> {
  if (row && row.position >= e.position) return undefined;
  const before = row?.request;
  const after = evolveChangeRequest(before, event, appliedAt);
  if (after === undefined || after === before) return undefined;
  await write(db, subscriptionId, after, event.data.at, e.position);
  return { request: after, position: e.position };
}

/**
 * The change requests of the subscriptions a batch touched, read once per subscription and kept as they are
 * written (`evolveRequestRow` writes at once; `written` records it here), so a batch reads a subscription's
 * requests once instead of once per event.
 */
export class RequestRows {
  private readonly bySubscription = new Map<string, StoredRequest[]>();
  constructor(private readonly db: ReadModelDb) {}

  /** Every request of a subscription, oldest first (as `subscriptionRequestRows` orders them). */
  async of(subscriptionId: string): Promise<StoredRequest[]> {
    let rows = this.bySubscription.get(subscriptionId);
    if (!rows) {
      const read = await subscriptionRequestRows(this.db, subscriptionId);
      rows = this.bySubscription.get(subscriptionId) ?? read;
      this.bySubscription.set(subscriptionId, rows);
    }
    return rows;
  }

  /** One request of the subscription; a request this batch does not know is read by its id. */
  async one(subscriptionId: string, requestId: string): Promise<StoredRequest | undefined> {
    return (await this.of(subscriptionId)).find((r) => r.request.requestId === requestId) ?? requestRow(this.db, requestId);
  }

  written(subscriptionId: string, row: StoredRequest | undefined): void {
    const rows = row && this.bySubscription.get(subscriptionId);
    if (!row || !rows) return;
    const i = rows.findIndex((r) => r.request.requestId === row.request.requestId);
    if (i >= 0) rows[i] = row;
    else rows.push(row);
    const key = (r: StoredRequest) => [r.request.requestedAt, r.request.requestId] as const;
    rows.sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0;
    });
  }

  clear(): void {
    this.bySubscription.clear();
  }
}
