/**
 * Queries over the read models, for the `/api/read` routes: filtered, sorted, keyset-paginated lists
 * (an opaque cursor carries the last row's sort key), the metrics, and row streams for CSV exports.
 * Positions and revisions leave as strings (they are bigints).
 */
import { parseJson } from '../json.js';
import { caseless, columnsSql } from './dialect.js';
import type { Dialect } from './dialect.js';
import type { ReadModelSql } from './readmodel-sql.js';

type ReadModelDb = ReadModelSql;

// ------------------------------------------------------------------------------------------------
// Cursors

export class InvalidQueryError extends Error {
  override name = 'InvalidQueryError';
}

type CursorBody = { s: string; o: 'asc' | 'desc'; k: string | number; id: string };

export function encodeCursor(body: CursorBody): string {
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string, sort: string, order: 'asc' | 'desc'): CursorBody {
  let body: unknown;
  try {
    body = parseJson(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidQueryError('cursor is not one this API issued');
  }
  const b = body as Partial<CursorBody> | null;
  if (!b || typeof b !== 'object' || typeof b.id !== 'string' || (typeof b.k !== 'string' && typeof b.k !== 'number')) {
    throw new InvalidQueryError('cursor is not one this API issued');
  }
  if (b.s !== sort || b.o !== order) {
    throw new InvalidQueryError(`cursor was issued for sort=${String(b.s)}&order=${String(b.o)}; repeat those with it (or drop the cursor)`);
  }
  return b as CursorBody;
}

/** An ISO-8601 date or date-time → `toISOString()`, comparable with the stored times. */
export function isoBound(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new InvalidQueryError(`${name} is not an ISO-8601 date or date-time: ${value}`);
  return new Date(ms).toISOString();
}

// ------------------------------------------------------------------------------------------------
// Subscriptions

export const subscriptionSorts = {
  createdAt: { expr: "coalesce(created_at, '')", numeric: false },
  activatedAt: { expr: "coalesce(activated_at, '')", numeric: false },
  cancelledAt: { expr: "coalesce(cancelled_at, '')", numeric: false },
  updatedAt: { expr: "coalesce(updated_at, '')", numeric: false },
  status: { expr: 'status', numeric: false },
  offerId: { expr: 'offer_id', numeric: false },
  planId: { expr: 'plan_id', numeric: false },
  quantity: { expr: 'coalesce(quantity, -1)', numeric: true },
  subscriptionId: { expr: 'subscription_id', numeric: false },
} as const;
export type SubscriptionSort = keyof typeof subscriptionSorts;

export type SubscriptionFilter = {
  status?: readonly string[];
  offerId?: string;
  planId?: string;
  tenantId?: string;
  email?: string;
  freeTrial?: boolean;
  test?: boolean;
  csp?: boolean;
  createdFrom?: string;
  createdTo?: string;
  activatedFrom?: string;
  activatedTo?: string;
};

type Where = { sql: string[]; params: Record<string, unknown> };

function subscriptionWhere(f: SubscriptionFilter, dialect: Dialect): Where {
  const sql: string[] = [];
  const params: Record<string, unknown> = {};
  if (f.status && f.status.length > 0) {
    sql.push(`status IN (${f.status.map((_, i) => `@status${i}`).join(', ')})`);
    f.status.forEach((s, i) => (params[`status${i}`] = s));
  }
  if (f.offerId !== undefined) (sql.push('offer_id = @offerId'), (params.offerId = f.offerId));
  if (f.planId !== undefined) (sql.push('plan_id = @planId'), (params.planId = f.planId));
  if (f.tenantId !== undefined) {
    sql.push(`(${caseless(dialect, 'purchaser_tenant_id', 'tenantId')} OR ${caseless(dialect, 'beneficiary_tenant_id', 'tenantId')})`);
    params.tenantId = f.tenantId;
  }
  if (f.email !== undefined) {
    sql.push(`(${['purchaser_email', 'beneficiary_email', 'contact_email'].map((c) => caseless(dialect, c, 'email')).join(' OR ')})`);
    params.email = f.email;
  }
  if (f.freeTrial !== undefined) (sql.push('is_free_trial = @freeTrial'), (params.freeTrial = f.freeTrial ? 1 : 0));
  if (f.test !== undefined) (sql.push('is_test = @test'), (params.test = f.test ? 1 : 0));
  if (f.csp !== undefined) (sql.push('is_csp = @csp'), (params.csp = f.csp ? 1 : 0));
  const createdFrom = isoBound('createdFrom', f.createdFrom);
  const createdTo = isoBound('createdTo', f.createdTo);
  const activatedFrom = isoBound('activatedFrom', f.activatedFrom);
  const activatedTo = isoBound('activatedTo', f.activatedTo);
  if (createdFrom) (sql.push('created_at >= @createdFrom'), (params.createdFrom = createdFrom));
  if (createdTo) (sql.push('created_at < @createdTo'), (params.createdTo = createdTo));
  if (activatedFrom) (sql.push('activated_at >= @activatedFrom'), (params.activatedFrom = activatedFrom));
  if (activatedTo) (sql.push('activated_at < @activatedTo'), (params.activatedTo = activatedTo));
  return { sql, params };
}

const whereClause = (w: Where) => (w.sql.length > 0 ? `WHERE ${w.sql.join(' AND ')}` : '');

export type SubscriptionRow = Record<string, unknown> & { subscription_id: string; sort_key: string | number; revision: string; position_text: string };

export type Page<R> = { rows: R[]; total: number; nextCursor?: string };

/** One page of subscriptions: keyset pagination on (sort key, subscription id). */
export async function listSubscriptions(
  db: ReadModelDb,
  filter: SubscriptionFilter,
  sort: SubscriptionSort,
  order: 'asc' | 'desc',
  limit: number,
  cursor?: string,
): Promise<Page<SubscriptionRow>> {
  const key = subscriptionSorts[sort].expr;
  const where = subscriptionWhere(filter, db.dialect);
  const total = n((await db.get(`SELECT count(*) AS n FROM subscriptions ${whereClause(where)}`, where.params))?.n);
  const page: Where = { sql: [...where.sql], params: { ...where.params } };
  if (cursor !== undefined) {
    const c = decodeCursor(cursor, sort, order);
    const cmp = order === 'asc' ? '>' : '<';
    page.sql.push(`(${key} ${cmp} @cursorKey OR (${key} = @cursorKey AND subscription_id ${cmp} @cursorId))`);
    page.params.cursorKey = c.k;
    page.params.cursorId = c.id;
  }
  const dir = order === 'asc' ? 'ASC' : 'DESC';
  const rows = (await db.all(
    `SELECT *, ${key} AS sort_key, CAST(stream_revision AS TEXT) AS revision, CAST(position AS TEXT) AS position_text
       FROM subscriptions ${whereClause(page)} ORDER BY ${key} ${dir}, subscription_id ${dir} LIMIT @limit`,
    { ...page.params, limit: limit + 1 },
  )) as SubscriptionRow[];
  const more = rows.length > limit;
  const shown = more ? rows.slice(0, limit) : rows;
  const last = shown[shown.length - 1];
  return {
    rows: shown,
    total,
    ...(more && last ? { nextCursor: encodeCursor({ s: sort, o: order, k: last.sort_key, id: last.subscription_id }) } : {}),
  };
}

/** Every matching subscription in order, for CSV. */
export function iterateSubscriptions(db: ReadModelDb, filter: SubscriptionFilter, sort: SubscriptionSort, order: 'asc' | 'desc'): AsyncIterable<Record<string, unknown>> {
  const key = subscriptionSorts[sort].expr;
  const where = subscriptionWhere(filter, db.dialect);
  const dir = order === 'asc' ? 'ASC' : 'DESC';
  return db.iterate(`SELECT * FROM subscriptions ${whereClause(where)} ORDER BY ${key} ${dir}, subscription_id ${dir}`, where.params);
}

// ------------------------------------------------------------------------------------------------
// Operations

export type OperationFilter = {
  subscriptionId?: string;
  action?: string;
  source?: string;
  outcome?: string;
  from?: string;
  to?: string;
};

const operationTime = 'coalesce(first_received_at, submitted_at, requested_at, applied_at, updated_at)';

function operationWhere(f: OperationFilter): Where {
  const sql: string[] = [];
  const params: Record<string, unknown> = {};
  if (f.subscriptionId !== undefined) (sql.push('subscription_id = @subscriptionId'), (params.subscriptionId = f.subscriptionId));
  if (f.action !== undefined) (sql.push('action = @action'), (params.action = f.action));
  if (f.source !== undefined) (sql.push('source = @source'), (params.source = f.source));
  if (f.outcome !== undefined) (sql.push('outcome = @outcome'), (params.outcome = f.outcome));
  const from = isoBound('from', f.from);
  const to = isoBound('to', f.to);
  if (from) (sql.push(`${operationTime} >= @from`), (params.from = from));
  if (to) (sql.push(`${operationTime} < @to`), (params.to = to));
  return { sql, params };
}

export type OperationRow = Record<string, unknown> & { operation_id: string; sort_key: string };

/** Operations, newest first by default (when we first heard of them), keyset-paginated. */
export async function listOperations(db: ReadModelDb, filter: OperationFilter, order: 'asc' | 'desc', limit: number, cursor?: string): Promise<Page<OperationRow>> {
  const where = operationWhere(filter);
  const total = n((await db.get(`SELECT count(*) AS n FROM operations ${whereClause(where)}`, where.params))?.n);
  const page: Where = { sql: [...where.sql], params: { ...where.params } };
  if (cursor !== undefined) {
    const c = decodeCursor(cursor, 'time', order);
    const cmp = order === 'asc' ? '>' : '<';
    page.sql.push(`(${operationTime} ${cmp} @cursorKey OR (${operationTime} = @cursorKey AND operation_id ${cmp} @cursorId))`);
    page.params.cursorKey = c.k;
    page.params.cursorId = c.id;
  }
  const dir = order === 'asc' ? 'ASC' : 'DESC';
  const rows = (await db.all(`SELECT *, ${operationTime} AS sort_key FROM operations ${whereClause(page)} ORDER BY sort_key ${dir}, operation_id ${dir} LIMIT @limit`, {
    ...page.params,
    limit: limit + 1,
  })) as OperationRow[];
  const more = rows.length > limit;
  const shown = more ? rows.slice(0, limit) : rows;
  const last = shown[shown.length - 1];
  return { rows: shown, total, ...(more && last ? { nextCursor: encodeCursor({ s: 'time', o: order, k: last.sort_key, id: last.operation_id }) } : {}) };
}

// ------------------------------------------------------------------------------------------------
// Metrics

export type MetricsFilter = { offerId?: string; planId?: string; from?: string; to?: string; includeTest?: boolean };

function planWhere(f: MetricsFilter, planColumn = 'plan_id'): Where {
  const sql: string[] = [];
  const params: Record<string, unknown> = {};
  if (f.offerId !== undefined) (sql.push('offer_id = @offerId'), (params.offerId = f.offerId));
  if (f.planId !== undefined) (sql.push(`${planColumn} = @planId`), (params.planId = f.planId));
  if (!f.includeTest) sql.push('is_test = 0');
  return { sql, params };
}

const dayOf = (name: string, value: string | undefined) => isoBound(name, value)?.slice(0, 10);

function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i] as number;
}

const sumColumns = (columns: readonly string[]) => columns.map((c) => `sum(${c}) AS ${c}`).join(', ');
const n = (v: unknown): number => Number(v ?? 0);

export type ActiveByPlan = {
  offerId: string;
  planId: string;
  activeSubscriptions: number;
  activeSeats: number;
  suspendedSubscriptions: number;
  suspendedSeats: number;
  pendingSubscriptions: number;
  cancelledSubscriptions: number;
};
export type DailyCounts = {
  day: string;
  offerId: string;
  planId: string;
  purchases: number;
  activations: number;
  cancellations: number;
  suspensions: number;
  reinstatements: number;
  renewals: number;
  planChangesIn: number;
  planChangesOut: number;
  seatsAdded: number;
  seatsRemoved: number;
  trialStarts: number;
  trialConversions: number;
  trialCancellations: number;
};
export type ActivationTiming = {
  offerId: string;
  planId: string;
  activations: number;
  averageSeconds: number;
  medianSeconds: number | null;
  p90Seconds: number | null;
  maxSeconds: number | null;
};
export type SuspensionCounts = { offerId: string; planId: string; suspensions: number; reinstatements: number; currentlySuspended: number; cancelledWhileSuspended: number };
export type FreeTrialCounts = { offerId: string; planId: string; trials: number; inTrial: number; converted: number; cancelled: number; conversionRate: number | null };
export type Metrics = {
  active: ActiveByPlan[];
  daily: DailyCounts[];
  timeToActivation: ActivationTiming[];
  suspensions: SuspensionCounts[];
  freeTrials: FreeTrialCounts[];
};

type Row = Record<string, unknown>;

export async function metrics(db: ReadModelDb, f: MetricsFilter): Promise<Metrics> {
  const plans = planWhere(f);
  const active = (
    (await db.all(`SELECT offer_id, plan_id, ${sumColumns(['active_subscriptions', 'active_seats', 'suspended_subscriptions', 'suspended_seats', 'pending_subscriptions', 'cancelled_subscriptions'])}
         FROM metrics_active_by_plan ${whereClause(plans)} GROUP BY offer_id, plan_id ORDER BY offer_id, plan_id`, plans.params)) as Row[]
  ).map((r) => ({
    offerId: String(r.offer_id),
    planId: String(r.plan_id),
    activeSubscriptions: n(r.active_subscriptions),
    activeSeats: n(r.active_seats),
    suspendedSubscriptions: n(r.suspended_subscriptions),
    suspendedSeats: n(r.suspended_seats),
    pendingSubscriptions: n(r.pending_subscriptions),
    cancelledSubscriptions: n(r.cancelled_subscriptions),
  }));

  const days: Where = { sql: [...plans.sql], params: { ...plans.params } };
  const from = dayOf('from', f.from);
  const to = dayOf('to', f.to);
  if (from) (days.sql.push('day >= @from'), (days.params.from = from));
  if (to) (days.sql.push('day < @to'), (days.params.to = to));
  const counters = ['purchases', 'activations', 'cancellations', 'suspensions', 'reinstatements', 'renewals', 'plan_changes_in', 'plan_changes_out', 'seats_added', 'seats_removed', 'trial_starts', 'trial_conversions', 'trial_cancellations'];
  const daily = (
    (await db.all(`SELECT day, offer_id, plan_id, ${sumColumns(counters)} FROM metrics_daily ${whereClause(days)} GROUP BY day, offer_id, plan_id ORDER BY day, offer_id, plan_id`, days.params)) as Row[]
  ).map((r) => ({
    day: String(r.day),
    offerId: String(r.offer_id),
    planId: String(r.plan_id),
    purchases: n(r.purchases),
    activations: n(r.activations),
    cancellations: n(r.cancellations),
    suspensions: n(r.suspensions),
    reinstatements: n(r.reinstatements),
    renewals: n(r.renewals),
    planChangesIn: n(r.plan_changes_in),
    planChangesOut: n(r.plan_changes_out),
    seatsAdded: n(r.seats_added),
    seatsRemoved: n(r.seats_removed),
    trialStarts: n(r.trial_starts),
    trialConversions: n(r.trial_conversions),
    trialCancellations: n(r.trial_cancellations),
  }));

  const activation = planWhere(f, 'purchased_plan_id');
  activation.sql.push('activated_at IS NOT NULL', 'auto_activated = 0', 'purchase_to_activation_s IS NOT NULL');
  const activationFrom = isoBound('from', f.from);
  const activationTo = isoBound('to', f.to);
  if (activationFrom) (activation.sql.push('activated_at >= @aFrom'), (activation.params.aFrom = activationFrom));
  if (activationTo) (activation.sql.push('activated_at < @aTo'), (activation.params.aTo = activationTo));
  const timings = (await db.all(`SELECT offer_id, purchased_plan_id AS plan_id, purchase_to_activation_s AS s FROM metrics_subscriptions ${whereClause(activation)} ORDER BY offer_id, plan_id, s`, activation.params)) as Array<{ offer_id: string; plan_id: string; s: number }>;
  const grouped = new Map<string, { offerId: string; planId: string; values: number[] }>();
  for (const t of timings) {
    const k = JSON.stringify([t.offer_id, t.plan_id]);
    let g = grouped.get(k);
    if (!g) grouped.set(k, (g = { offerId: t.offer_id, planId: t.plan_id, values: [] }));
    g.values.push(t.s);
  }
  const timeToActivation = [...grouped.values()].map(({ offerId, planId, values }) => ({
    offerId,
    planId,
    activations: values.length,
    averageSeconds: Math.round((values.reduce((a, b) => a + b, 0) / values.length) * 1000) / 1000,
    medianSeconds: percentile(values, 0.5),
    p90Seconds: percentile(values, 0.9),
    maxSeconds: values[values.length - 1] ?? null,
  }));

  const suspensions = (
    (await db.all(`SELECT offer_id, plan_id, ${sumColumns(['suspensions', 'reinstatements', 'currently_suspended', 'cancelled_while_suspended'])} FROM metrics_suspensions ${whereClause(plans)} GROUP BY offer_id, plan_id ORDER BY offer_id, plan_id`, plans.params)) as Row[]
  ).map((r) => ({
    offerId: String(r.offer_id),
    planId: String(r.plan_id),
    suspensions: n(r.suspensions),
    reinstatements: n(r.reinstatements),
    currentlySuspended: n(r.currently_suspended),
    cancelledWhileSuspended: n(r.cancelled_while_suspended),
  }));

  const freeTrials = (
    (await db.all(`SELECT offer_id, plan_id, ${sumColumns(['trials', 'in_trial', 'converted', 'cancelled'])} FROM metrics_free_trials ${whereClause(plans)} GROUP BY offer_id, plan_id ORDER BY offer_id, plan_id`, plans.params)) as Row[]
  ).map((r) => {
    const converted = n(r.converted);
    const done = converted + n(r.cancelled);
    return {
      offerId: String(r.offer_id),
      planId: String(r.plan_id),
      trials: n(r.trials),
      inTrial: n(r.in_trial),
      converted,
      cancelled: n(r.cancelled),
      conversionRate: done > 0 ? Math.round((converted / done) * 10_000) / 10_000 : null,
    };
  });

  return { active, daily, timeToActivation, suspensions, freeTrials };
}

// ------------------------------------------------------------------------------------------------
// CSV exports

/** The read models that can be exported, by the name in `/api/read/<name>.csv`. */
export const exportableTables = {
  subscriptions: { table: 'subscriptions', order: 'created_at, subscription_id' },
  operations: { table: 'operations', order: `${operationTime}, operation_id` },
  'change-requests': { table: 'change_requests', order: 'requested_at, request_id' },
  'metrics-subscriptions': { table: 'metrics_subscriptions', order: 'created_at, subscription_id' },
  'metrics-daily': { table: 'metrics_daily', order: 'day, offer_id, plan_id, is_test' },
} as const;
export type ExportName = keyof typeof exportableTables;

export async function columnsOf(db: ReadModelDb, table: string): Promise<string[]> {
  return (await db.all(columnsSql(db.dialect), { table })).map((c) => String(c.name));
}

export async function iterateTable(db: ReadModelDb, name: ExportName): Promise<{ columns: string[]; rows: AsyncIterable<Record<string, unknown>> }> {
  const { table, order } = exportableTables[name];
  return { columns: await columnsOf(db, table), rows: db.iterate(`SELECT * FROM ${table} ORDER BY ${order}`) };
}

// ------------------------------------------------------------------------------------------------
// Deadlines (src/projections/views/deadlines.ts): the rows whose clock runs against us

/** A subscription still PendingFulfillmentStart: Microsoft gives 30 days to activate it (docs/marketplace.md §5). */
export type PendingSubscriptionRow = {
  subscriptionId: string;
  offerId: string;
  planId: string;
  quantity: number | null;
  /** Microsoft's `created`, else when we recorded the purchase. */
  createdAt: string;
  purchasedAt: string;
  activationRequestedAt: string | null;
  activationFailures: number;
  activationError: string | null;
  activationGaveUp: boolean;
  /** The contact's email, else the purchaser's, else the beneficiary's. */
  email: string | null;
  isTest: boolean;
};

const text = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

export const pendingSubscriptionsSql = `SELECT subscription_id, offer_id, plan_id, quantity, created_at, purchased_at, activation_requested_at, activation_failures,
    activation_error, activation_gave_up, coalesce(contact_email, purchaser_email, beneficiary_email) AS email, is_test
  FROM subscriptions WHERE status = 'PendingFulfillmentStart' ORDER BY created_at, subscription_id`;

/** Every PendingFulfillmentStart subscription, oldest first (index `subscriptions_by_status`). */
export async function pendingSubscriptions(db: ReadModelDb): Promise<PendingSubscriptionRow[]> {
  const rows = await db.all(pendingSubscriptionsSql);
  return rows.map((r) => ({
    subscriptionId: String(r.subscription_id),
    offerId: String(r.offer_id),
    planId: String(r.plan_id),
    quantity: r.quantity === null || r.quantity === undefined ? null : Number(r.quantity),
    createdAt: String(r.created_at),
    purchasedAt: String(r.purchased_at),
    activationRequestedAt: text(r.activation_requested_at),
    activationFailures: n(r.activation_failures),
    activationError: text(r.activation_error),
    activationGaveUp: n(r.activation_gave_up) === 1,
    email: text(r.email),
    isTest: n(r.is_test) === 1,
  }));
}

/** A plan or quantity change Microsoft notified and waits for us to answer (docs/marketplace.md §7.1–7.2). */
export type UnacknowledgedOperationRow = {
  operationId: string;
  subscriptionId: string | null;
  action: string;
  source: string | null;
  planId: string | null;
  quantity: number | null;
  firstReceivedAt: string;
  lastReceivedAt: string | null;
  deliveries: number;
};

export const unacknowledgedOperationsSql = `SELECT operation_id, subscription_id, action, source, plan_id, quantity, first_received_at, last_received_at, deliveries
  FROM operations INDEXED BY operations_unacknowledged
  WHERE acknowledged_at IS NULL AND processed_at IS NULL AND first_received_at IS NOT NULL
    AND action IN ('ChangePlan', 'ChangeQuantity')
  ORDER BY first_received_at, operation_id`;

/**
 * ChangePlan/ChangeQuantity notifications neither acknowledged (`OperationAcknowledged`) nor settled
 * (`NotificationProcessed`: the notification process acknowledges before it finishes, or found nothing to
 * acknowledge; a change refused at the webhook is recorded processed at once). The conditions repeat the
 * partial index `operations_unacknowledged`, so SQLite reads only the open ones.
 */
export async function unacknowledgedOperations(db: ReadModelDb): Promise<UnacknowledgedOperationRow[]> {
  const rows = await db.all(unacknowledgedOperationsSql);
  return rows.map((r) => ({
    operationId: String(r.operation_id),
    subscriptionId: text(r.subscription_id),
    action: String(r.action),
    source: text(r.source),
    planId: text(r.plan_id),
    quantity: r.quantity === null || r.quantity === undefined ? null : Number(r.quantity),
    firstReceivedAt: String(r.first_received_at),
    lastReceivedAt: text(r.last_received_at),
    deliveries: n(r.deliveries),
  }));
}

// ------------------------------------------------------------------------------------------------
// Pending publisher-side changes (what `PublisherChanges.resumeAll` resumes at startup)

export const pendingPublisherChangesSql = 'SELECT subscription_id FROM subscriptions WHERE pending_change IS NOT NULL ORDER BY subscription_id';

/** The subscriptions whose state has a pending publisher-side change (a plan, seat or cancel request not settled). */
export async function subscriptionsWithPendingChange(db: ReadModelDb): Promise<string[]> {
  return (await db.all(pendingPublisherChangesSql)).map((row) => String(row.subscription_id));
}
