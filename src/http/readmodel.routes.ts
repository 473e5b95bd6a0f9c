/**
 * The read-model API, for operators and analysts: registered inside the /api plugin (api.plugin.ts)
 * beside the operator API, behind the same bearer token (OPERATOR_TOKEN). Everything here reads the
 * projections' target (the SQLite file, or PostgreSQL when READMODELS_URL is set); nothing reads the event store.
 *
 *   GET /api/read/status                   each projection: version, position, state
 *   GET /api/read/subscriptions            filters, sort, keyset pagination (opaque cursor)
 *   GET /api/read/operations               Microsoft operations, newest first
 *   GET /api/read/metrics                  plan and offer metrics
 *   GET /api/read/<model>.csv              subscriptions, operations, change-requests, metrics-daily, metrics-subscriptions
 *
 * JSON responses carry `x-read-model-state`: `live`, or `catching-up` / `rebuilding` while the
 * projections have not applied every event yet (the answer may then lag the event log).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { DomainError } from '../domain/errors.js';
import { csvStream } from '../projections/csv.js';
import { InvalidQueryError, columnsOf, exportableTables, iterateSubscriptions, iterateTable, listOperations, listSubscriptions, metrics } from '../projections/queries.js';
import type { ExportName, OperationRow, SubscriptionFilter, SubscriptionRow, SubscriptionSort } from '../projections/queries.js';
import type { RunningProjections } from '../projections/runner.js';
import { operatorSecurity as security, problemResponse } from './api.plugin.js';
import { problem, problemContentType } from './problem.js';
import {
  MetricsQuery,
  MetricsView,
  OperationPage,
  OperationsQuery,
  ProjectionStatusView,
  SubscriptionPage,
  SubscriptionsCsvQuery,
  SubscriptionsQuery,
} from './readmodel.schemas.js';
import type { OperationItem, SubscriptionItem } from './readmodel.schemas.js';

export type ReadModelRoutesOptions = {
  /** The running projections once started; the routes answer 503 until then. */
  readModels: () => RunningProjections | undefined;
};

const TAG = 'read-models';
const DEFAULT_LIMIT = 50;
const NoQuery = Type.Object({}, { additionalProperties: false });

const problemResponses = {
  400: problemResponse('Unknown or malformed query parameter, or a cursor issued for another sort'),
  401: problemResponse('Missing or wrong operator bearer token'),
  503: problemResponse('The read models are not open yet; retry later'),
};
const csvResponse = { description: 'CSV (RFC 4180), header row of column names as in the SQLite file', content: { 'text/csv': { schema: Type.String() } } };

class ReadModelsUnavailable extends Error {}

const bool = (v: unknown): boolean => v === 1 || v === 1n || v === true;
const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
const int = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const flag = (v: 'true' | 'false' | undefined): boolean | undefined => (v === undefined ? undefined : v === 'true');

export function toSubscriptionItem(r: SubscriptionRow): SubscriptionItem {
  return {
    subscriptionId: r.subscription_id,
    name: str(r.name),
    publisherId: str(r.publisher_id),
    offerId: String(r.offer_id),
    planId: String(r.plan_id),
    quantity: int(r.quantity),
    status: String(r.status),
    autoRenew: bool(r.auto_renew),
    isFreeTrial: bool(r.is_free_trial),
    isTest: bool(r.is_test),
    isCsp: bool(r.is_csp),
    sandboxType: str(r.sandbox_type),
    sessionMode: str(r.session_mode),
    allowedCustomerOperations: String(r.allowed_customer_operations ?? '').split(',').filter(Boolean),
    term: { termUnit: str(r.term_unit), startDate: str(r.term_start), endDate: str(r.term_end) },
    purchaser: { email: str(r.purchaser_email), tenantId: str(r.purchaser_tenant_id), objectId: str(r.purchaser_object_id) },
    beneficiary: { email: str(r.beneficiary_email), tenantId: str(r.beneficiary_tenant_id), objectId: str(r.beneficiary_object_id) },
    contact: r.contact_email ? { email: String(r.contact_email), name: str(r.contact_name), company: str(r.contact_company), phone: str(r.contact_phone) } : null,
    createdAt: String(r.created_at),
    microsoftCreated: str(r.microsoft_created),
    purchasedAt: String(r.purchased_at),
    activationRequestedAt: str(r.activation_requested_at),
    activatedAt: str(r.activated_at),
    autoActivated: bool(r.auto_activated),
    activationFailures: Number(r.activation_failures),
    activationError: str(r.activation_error),
    activationAttempts: Number(r.activation_attempts),
    activationNextAttemptAt: str(r.activation_next_attempt_at),
    activationGaveUp: bool(r.activation_gave_up),
    suspendedAt: str(r.suspended_at),
    suspensions: Number(r.suspensions),
    reinstatedAt: str(r.reinstated_at),
    reinstatements: Number(r.reinstatements),
    renewedAt: str(r.renewed_at),
    renewals: Number(r.renewals),
    cancelledAt: str(r.cancelled_at),
    cancelReason: str(r.cancel_reason),
    cancelSource: str(r.cancel_source),
    pendingChange: str(r.pending_change),
    lastOperation: r.last_operation_id
      ? { operationId: String(r.last_operation_id), event: String(r.last_operation_event), at: String(r.last_operation_at) }
      : null,
    lastEventType: String(r.last_event_type),
    updatedAt: String(r.updated_at),
    revision: r.revision,
    position: r.position_text,
  };
}

export function toOperationItem(r: OperationRow): OperationItem {
  return {
    operationId: r.operation_id,
    subscriptionId: str(r.subscription_id),
    action: str(r.action),
    source: str(r.source),
    microsoftStatus: str(r.microsoft_status),
    planId: str(r.plan_id),
    quantity: int(r.quantity),
    requestId: str(r.request_id),
    requestedAt: str(r.requested_at),
    submittedAt: str(r.submitted_at),
    firstReceivedAt: str(r.first_received_at),
    lastReceivedAt: str(r.last_received_at),
    deliveries: Number(r.deliveries),
    acknowledgedAt: str(r.acknowledged_at),
    ackStatus: str(r.ack_status),
    ackLatencyMs: int(r.ack_latency_ms),
    ackNote: str(r.ack_note),
    processedAt: str(r.processed_at),
    notificationOutcome: str(r.notification_outcome),
    outcome: String(r.outcome),
    outcomeDetail: str(r.outcome_detail),
    subscriptionEvents: String(r.subscription_events ?? '').split(',').filter(Boolean),
    appliedEvent: str(r.applied_event),
    appliedAt: str(r.applied_at),
    updatedAt: String(r.updated_at),
  };
}

/**
 * A CSV export reads one consistent snapshot without holding the projections' connection busy while the client
 * downloads: `iterate` reads from a connection of its own (readmodel-sql.ts), closed when the stream ends.
 */
function sendCsv(reply: FastifyReply, name: string, columns: string[], rows: AsyncIterable<Record<string, unknown>>) {
  const stream = csvStream(columns, rows);
  return reply
    .type('text/csv; charset=utf-8')
    .header('content-disposition', `attachment; filename="${name}.csv"`)
    .header('cache-control', 'no-store')
    .send(stream);
}

type Api = Parameters<FastifyPluginAsyncTypebox<ReadModelRoutesOptions>>[0];
/** The running read models (and their state in the reply's `x-read-model-state` header); throws ReadModelsUnavailable (a 503) before they are open. */
type Running = (reply: FastifyReply) => RunningProjections;

const subscriptionFilter = (q: SubscriptionsCsvQuery): SubscriptionFilter => ({
  ...(q.status ? { status: q.status.split(',') } : {}),
  ...(q.offerId !== undefined ? { offerId: q.offerId } : {}),
  ...(q.planId !== undefined ? { planId: q.planId } : {}),
  ...(q.tenantId !== undefined ? { tenantId: q.tenantId } : {}),
  ...(q.email !== undefined ? { email: q.email } : {}),
  ...(q.freeTrial !== undefined ? { freeTrial: flag(q.freeTrial) } : {}),
  ...(q.test !== undefined ? { test: flag(q.test) } : {}),
  ...(q.csp !== undefined ? { csp: flag(q.csp) } : {}),
  ...(q.createdFrom !== undefined ? { createdFrom: q.createdFrom } : {}),
  ...(q.createdTo !== undefined ? { createdTo: q.createdTo } : {}),
  ...(q.activatedFrom !== undefined ? { activatedFrom: q.activatedFrom } : {}),
  ...(q.activatedTo !== undefined ? { activatedTo: q.activatedTo } : {}),
});

/** GET /read/subscriptions, /read/operations, /read/metrics. */
function queryRoutes(app: Api, running: Running): void {
  app.get(
    '/read/subscriptions',
    {
      schema: {
        tags: [TAG],
        operationId: 'listSubscriptions',
        summary: 'Subscriptions from the read model: filter, sort, page',
        description:
          'Filters combine with AND; `…From` bounds are inclusive, `…To` exclusive. Pages are keyset-based: pass `nextCursor` as `cursor` with the same `sort` and `order` ' +
          '(the filters may be repeated; rows that changed meanwhile can move). `total` counts every matching row.',
        security,
        querystring: SubscriptionsQuery,
        response: { 200: SubscriptionPage, ...problemResponses },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const sort: SubscriptionSort = q.sort ?? 'createdAt';
      const order = q.order ?? 'desc';
      const limit = q.limit ? Number(q.limit) : DEFAULT_LIMIT;
      const page = await listSubscriptions(running(reply).target.read, subscriptionFilter(q), sort, order, limit, q.cursor);
      return {
        items: page.rows.map(toSubscriptionItem),
        total: page.total,
        ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}),
        sort,
        order,
        limit,
      };
    },
  );

  app.get(
    '/read/operations',
    {
      schema: {
        tags: [TAG],
        operationId: 'listOperations',
        summary: 'Microsoft operations we know of: received, acknowledged (and how fast), outcome',
        description: 'Ordered by when we first heard of each (webhook receipt, or submission of a publisher-side change), newest first by default.',
        security,
        querystring: OperationsQuery,
        response: { 200: OperationPage, ...problemResponses },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const order = q.order ?? 'desc';
      const limit = q.limit ? Number(q.limit) : DEFAULT_LIMIT;
      const page = await listOperations(
        running(reply).target.read,
        {
          ...(q.subscriptionId !== undefined ? { subscriptionId: q.subscriptionId } : {}),
          ...(q.action !== undefined ? { action: q.action } : {}),
          ...(q.source !== undefined ? { source: q.source } : {}),
          ...(q.outcome !== undefined ? { outcome: q.outcome } : {}),
          ...(q.from !== undefined ? { from: q.from } : {}),
          ...(q.to !== undefined ? { to: q.to } : {}),
        },
        order,
        limit,
        q.cursor,
      );
      return { items: page.rows.map(toOperationItem), total: page.total, ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}), order, limit };
    },
  );

  app.get(
    '/read/metrics',
    {
      schema: {
        tags: [TAG],
        operationId: 'readMetrics',
        summary: 'Plan and offer metrics',
        description:
          'Active subscriptions and seats by offer and plan; activations, cancellations and the rest per UTC day; time from purchase to activation; ' +
          'suspensions and reinstatements; free-trial conversions. Test subscriptions are left out unless `includeTest=true`.',
        security,
        querystring: MetricsQuery,
        response: { 200: MetricsView, ...problemResponses },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const includeTest = q.includeTest === 'true';
      const m = await metrics(running(reply).target.read, {
        ...(q.offerId !== undefined ? { offerId: q.offerId } : {}),
        ...(q.planId !== undefined ? { planId: q.planId } : {}),
        ...(q.from !== undefined ? { from: q.from } : {}),
        ...(q.to !== undefined ? { to: q.to } : {}),
        includeTest,
      });
      return { filters: { offerId: q.offerId ?? null, planId: q.planId ?? null, from: q.from ?? null, to: q.to ?? null, includeTest }, ...m };
    },
  );
}

/** GET /read/<table>.csv: every exportable read model, from a snapshot of the file. */
function csvExportRoutes(app: Api, running: Running): void {
  app.get(
    '/read/subscriptions.csv',
    {
      schema: {
        tags: [TAG],
        operationId: 'exportSubscriptions',
        summary: 'The subscriptions read model as CSV (same filters and sort as the list, every row)',
        security,
        querystring: SubscriptionsCsvQuery,
        response: { 200: csvResponse, ...problemResponses },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const source = running(reply).target.read;
      const filter = subscriptionFilter(q);
      const columns = await columnsOf(source, 'subscriptions');
      return sendCsv(reply, 'subscriptions', columns, iterateSubscriptions(source, filter, q.sort ?? 'createdAt', q.order ?? 'asc'));
    },
  );

  for (const name of Object.keys(exportableTables).filter((n) => n !== 'subscriptions') as ExportName[]) {
    app.get(
      `/read/${name}.csv`,
      {
        schema: {
          tags: [TAG],
          operationId: `export${name.replace(/(^|-)([a-z])/g, (_, _d: string, c: string) => c.toUpperCase())}`,
          summary: `The ${exportableTables[name].table} read model as CSV`,
          security,
          querystring: NoQuery,
          response: { 200: csvResponse, ...problemResponses },
        },
      },
      async (_request, reply) => {
        const { columns, rows } = await iterateTable(running(reply).target.read, name);
        return sendCsv(reply, name, columns, rows);
      },
    );
  }
}

export const readModelRoutes: FastifyPluginAsyncTypebox<ReadModelRoutesOptions> = async (app, options) => {
  const running = (reply: FastifyReply): RunningProjections => {
    const r = options.readModels();
    if (!r || !r.target.isOpen()) throw new ReadModelsUnavailable();
    const states = r.status().map((s) => (s.state === 'standby' ? 'live' : s.state));
    const state = states.includes('rebuilding') ? 'rebuilding' : states.every((s) => s === 'live') ? 'live' : states.includes('failing') ? 'failing' : 'catching-up';
    reply.header('x-read-model-state', state);
    return r;
  };

  app.setErrorHandler((error, request, reply) => {
    if (error instanceof ReadModelsUnavailable) {
      return reply.header('retry-after', '5').code(503).type(problemContentType).send(problem(503, 'read-models-unavailable', 'the read models are not open yet; retry later'));
    }
    if (error instanceof InvalidQueryError) return reply.code(400).type(problemContentType).send(problem(400, 'invalid-query', error.message));
    throw error; // the app's handler: validation errors, 500s
  });

  app.get(
    '/read/status',
    {
      schema: {
        tags: [TAG],
        operationId: 'readModelStatus',
        summary: 'The projections: code version, last position applied, state',
        security,
        querystring: NoQuery,
        response: { 200: ProjectionStatusView, ...problemResponses },
      },
    },
    async (_request, reply) => ({ projections: running(reply).status() }),
  );

  queryRoutes(app, running);
  csvExportRoutes(app, running);
};
