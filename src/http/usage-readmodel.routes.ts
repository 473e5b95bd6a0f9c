/**
 * Finance's read model of metered usage (docs/read-models.md, "Usage"), inside the /api plugin behind the operator
 * token; it reads the projections' SQLite file only.
 *
 *   GET /api/read/usage?period=hour|day|month&subscriptionId&dimension&from&to   JSON rows
 *   GET /api/read/usage.csv?…                                                   the same rows as CSV
 *   GET /api/read/usage/unsettled                                               not settled yet, nearest Microsoft's 24-hour limit first
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import type { Static } from 'typebox';
import { csvStream } from '../projections/csv.js';
import type { ReadModelDb } from '../projections/projection.js';
import type { RunningProjections } from '../projections/runner.js';
import { USAGE_SUMMARY_COLUMNS, unsettledUsage, usageSummary } from '../projections/usage.queries.js';
import type { UsageFilter } from '../projections/usage.queries.js';
import { operatorSecurity as security, problemResponse } from './api.plugin.js';
import { problem, problemContentType } from './problem.js';

export type UsageReadRoutesOptions = {
  readModels: () => RunningProjections | undefined;
  /** METERING_EXPIRY_WARNING_MS: unsettled usage this close to its limit is flagged `aboutToExpire`. */
  expiryWarningMs: number;
  now?: () => Date;
};

const TAG = 'metering';
const Hourish = Type.String({ pattern: '^\\d{4}(-\\d{2}(-\\d{2}(T\\d{2})?)?)?$', description: 'YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH (UTC)' });
const UsageQuery = Type.Object(
  {
    period: Type.Optional(Type.Union([Type.Literal('hour'), Type.Literal('day'), Type.Literal('month')], { default: 'day' })),
    subscriptionId: Type.Optional(Type.String({ minLength: 1 })),
    dimension: Type.Optional(Type.String({ minLength: 1 })),
    from: Type.Optional(Hourish),
    to: Type.Optional(Hourish),
  },
  { additionalProperties: false },
);
type UsageQuery = Static<typeof UsageQuery>;

const Num = Type.Number();
const SummaryRow = Type.Object({
  subscription_id: Type.String(),
  dimension: Type.String(),
  period: Type.String(),
  hours: Num,
  records: Num,
  recorded: Num,
  late_records: Num,
  late: Num,
  included: Num,
  submitted: Num,
  accepted: Num,
  rejected: Num,
  pending: Num,
  expired: Num,
});
const Unsettled = Type.Object({
  subscriptionId: Type.String(),
  dimension: Type.String(),
  hour: Type.String(),
  status: Type.String(),
  recorded: Num,
  expiresAt: Type.Union([Type.String(), Type.Null()]),
  aboutToExpire: Type.Boolean(),
});
const errors = {
  400: problemResponse('Unknown or malformed query parameter'),
  401: problemResponse('Missing or wrong operator bearer token'),
  503: problemResponse('The read models are not open yet; retry later'),
};

const filterOf = (q: UsageQuery): UsageFilter => ({
  period: q.period ?? 'day',
  ...(q.subscriptionId !== undefined ? { subscriptionId: q.subscriptionId } : {}),
  ...(q.dimension !== undefined ? { dimension: q.dimension } : {}),
  ...(q.from !== undefined ? { from: q.from } : {}),
  ...(q.to !== undefined ? { to: q.to } : {}),
});

function sendCsv(reply: FastifyReply, rows: AsyncIterable<Record<string, unknown>>): FastifyReply {
  const stream = csvStream(USAGE_SUMMARY_COLUMNS, rows);
  return reply.type('text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="usage.csv"').header('cache-control', 'no-store').send(stream);
}

export const usageReadRoutes: FastifyPluginAsyncTypebox<UsageReadRoutesOptions> = async (app, options) => {
  const db = (reply: FastifyReply): ReadModelDb | undefined => {
    const running = options.readModels();
    if (!running || !running.target.isOpen()) {
      void reply.header('retry-after', '5').code(503).type(problemContentType).send(problem(503, 'read-models-unavailable', 'the read models are not open yet; retry later'));
      return undefined;
    }
    const usage = running.status().find((s) => s.name === 'usage');
    reply.header('x-read-model-state', usage?.state === 'live' || usage?.state === 'standby' ? 'live' : (usage?.state ?? 'catching-up'));
    return running.target.read;
  };

  app.get(
    '/read/usage',
    { schema: { tags: [TAG], operationId: 'usageSummary', summary: 'Usage by subscription, dimension and hour/day/month: recorded, late, included, submitted, accepted, rejected, pending', security, querystring: UsageQuery, response: { 200: Type.Object({ rows: Type.Array(SummaryRow) }), ...errors } } },
    async (request, reply) => {
      const source = db(reply);
      if (!source) return reply;
      const rows = [];
      for await (const row of usageSummary(source, filterOf(request.query))) rows.push(row);
      return { rows };
    },
  );

  app.get(
    '/read/usage.csv',
    { schema: { tags: [TAG], operationId: 'usageSummaryCsv', summary: 'The usage summary as CSV', security, querystring: UsageQuery, response: { 200: { description: 'CSV (RFC 4180)', content: { 'text/csv': { schema: Type.String() } } }, ...errors } } },
    async (request, reply) => {
      const source = db(reply);
      if (!source) return reply;
      // `iterate` reads one consistent snapshot on a connection of its own while the client downloads.
      return sendCsv(reply, usageSummary(source, filterOf(request.query)));
    },
  );

  app.get(
    '/read/usage/unsettled',
    { schema: { tags: [TAG], operationId: 'unsettledUsage', summary: "Usage not settled with Microsoft yet, nearest its 24-hour limit first", security, querystring: Type.Object({}, { additionalProperties: false }), response: { 200: Type.Object({ items: Type.Array(Unsettled) }), ...errors } } },
    async (_request, reply) => {
      const source = db(reply);
      if (!source) return reply;
      return { items: await unsettledUsage(source, options.now?.() ?? new Date(), options.expiryWarningMs) };
    },
  );
};
