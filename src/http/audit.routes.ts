/**
 * The auditors' HTTP side (issue 12), inside the /api plugin (behind the operator token), beside
 * GET /api/subscriptions/:id/events (history with provenance, operator.routes.ts):
 *
 *   GET /api/subscriptions/:id/state?at=<ISO time>   the subscription as it stood then (events recorded at or before it, folded)
 *   GET /api/events/export?subscription=&from=&to=&format=jsonl|csv   the event log, streamed (as `fulfillment-ledger export`)
 */
import { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { parseInstant, subscriptionStateAt } from '../application/audit-history.js';
import { exportText } from '../application/event-export.js';
import type { ExportFilter } from '../application/event-export.js';
import type { StoreRef } from '../application/subscription-ledger.js';
import { resolveStore } from '../application/subscription-ledger.js';
import { operatorSecurity as security, problemResponse } from './api.plugin.js';
import { problem, problemContentType } from './problem.js';

export type AuditRoutesOptions = { store: StoreRef };

const strict = { additionalProperties: false } as const;
const Instant = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}:\\d{2})$',
  description: 'ISO-8601 time with a zone, e.g. 2026-03-01T10:00:00Z',
});
const Params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9._:@-]+$' }) }, strict);
const StateQuery = Type.Object({ at: Instant }, strict);
const ExportQuery = Type.Object(
  {
    subscription: Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9._:@-]+$', description: 'only this subscription and the raw notifications behind its changes' })),
    from: Type.Optional(Instant),
    to: Type.Optional(Instant),
    format: Type.Optional(Type.Union([Type.Literal('jsonl'), Type.Literal('csv')], { description: 'default jsonl' })),
  },
  strict,
);
const StateAtView = Type.Object(
  {
    subscriptionId: Type.String(),
    at: Type.String({ description: 'the moment asked for, normalised to UTC' }),
    events: Type.Integer({ description: 'events recorded at or before it (0: the subscription did not exist yet)' }),
    revision: Type.Optional(Type.String()),
    lastEventAt: Type.Optional(Type.String()),
    state: Type.Object({}, { additionalProperties: true, description: "the folded state (the domain's SubscriptionState); status Initial before the purchase" }),
  },
  strict,
);

const problems = {
  400: problemResponse('Invalid request: a malformed id, time or parameter'),
  401: problemResponse('Missing or wrong operator bearer token'),
  404: problemResponse('No such subscription has been recorded'),
  503: problemResponse('The event store is not available yet'),
};

/** A streamed body, pulled as the client reads (Fastify pipes it with backpressure). */
function sendStream(reply: FastifyReply, type: string, filename: string, body: Readable) {
  return reply.type(type).header('content-disposition', `attachment; filename="${filename}"`).header('cache-control', 'no-store').send(body);
}

export const auditRoutes: FastifyPluginAsyncTypebox<AuditRoutesOptions> = async (app, options) => {
  app.get(
    '/subscriptions/:id/state',
    {
      schema: {
        tags: ['audit'],
        operationId: 'getSubscriptionStateAt',
        summary: 'A subscription exactly as it stood at a moment',
        description: 'Folds the events the store recorded at or before `at` (their recordedAt) with the domain\'s evolve.',
        security,
        params: Params,
        querystring: StateQuery,
        response: { 200: StateAtView, ...problems },
      },
    },
    async (request, reply) => {
      const at = parseInstant(request.query.at);
      if (at === undefined) return reply.code(400).type(problemContentType).send(problem(400, 'invalid-request', `at: not a valid time: ${request.query.at}`));
      const result = await subscriptionStateAt(resolveStore(options.store), request.params.id, at);
      if (!result) return reply.code(404).type(problemContentType).send(problem(404, 'subscription-not-found', `no subscription ${request.params.id} has been recorded`));
      return { ...result, state: { ...result.state } };
    },
  );

  app.get(
    '/events/export',
    {
      schema: {
        tags: ['audit'],
        operationId: 'exportEvents',
        summary: 'The event log, streamed as JSON Lines or CSV',
        description:
          'Every event as stored (position, recordedAt, streamId, revision, eventId, type, data, metadata), in global order: all, one subscription ' +
          "(its stream and the notification streams holding Microsoft's raw webhooks behind its changes), or recorded in [from, to). " +
          'Subscription events caused by a Microsoft operation carry `links.notificationStream`.',
        security,
        querystring: ExportQuery,
        response: {
          200: { description: 'JSON Lines (one event per line) or CSV (RFC 4180, data and metadata as JSON)', content: { 'application/x-ndjson': { schema: Type.String() }, 'text/csv': { schema: Type.String() } } },
          ...problems,
        },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const fromMs = q.from === undefined ? undefined : parseInstant(q.from);
      const toMs = q.to === undefined ? undefined : parseInstant(q.to);
      if ((q.from !== undefined && fromMs === undefined) || (q.to !== undefined && toMs === undefined) || (fromMs !== undefined && toMs !== undefined && fromMs >= toMs)) {
        return reply.code(400).type(problemContentType).send(problem(400, 'invalid-request', 'from and to must be valid times, from before to'));
      }
      const filter: ExportFilter = { ...(q.subscription ? { subscriptionId: q.subscription } : {}), ...(fromMs !== undefined ? { fromMs } : {}), ...(toMs !== undefined ? { toMs } : {}) };
      const format = q.format ?? 'jsonl';
      const store = resolveStore(options.store);
      return sendStream(reply, format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson', `events.${format}`, Readable.from(exportText(store, filter, format)));
    },
  );
};
