/**
 * `GET /api/audit/verify`: the integrity chain of the event log recomputed (src/application/audit/verify-chains.ts;
 * docs/audit.md), for one subscription's stream (`?subscriptionId=`) or for every stream. Registered inside the
 * /api plugin: operator token, problem+json errors.
 *
 * The check of every stream reads the whole log once (memory: one small entry per stream); on a large store prefer
 * the command-line `verify`, which shows its progress. 200 with `ok: false` when something is wrong: the answer is
 * the report, not an error.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { verifyChains } from '../application/audit/verify-chains.js';
import { resolveStore } from '../application/subscription-ledger.js';
import type { StoreRef } from '../application/subscription-ledger.js';
import { subscriptionStream } from '../domain/subscription/index.js';
import { operatorSecurity as security, problemResponse } from './api.plugin.js';

export type AuditVerifyRoutesOptions = { store: StoreRef };

const strict = { additionalProperties: false } as const;
const S = Type.String();

const VerifyQuery = Type.Object(
  { subscriptionId: Type.Optional(Type.String({ pattern: '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$', description: "one subscription's stream; every stream when absent" })) },
  strict,
);

const Problem = Type.Object(
  {
    streamId: S,
    revision: Type.String({ description: 'the revision concerned (decimal)' }),
    eventId: Type.Optional(S),
    kind: Type.Enum(['altered', 'removed', 'inserted', 'renumbered', 'unchained', 'truncated']),
    detail: S,
  },
  strict,
);

const Report = Type.Object(
  {
    ok: Type.Boolean({ description: 'no problem found (events written before the chain existed are not problems)' }),
    streamId: Type.Optional(S),
    streams: Type.Integer(),
    events: Type.Integer(),
    verified: Type.Integer({ description: 'events whose chainHash was recomputed and matched' }),
    problems: Type.Array(Problem, { description: 'every event altered, removed or inserted (the first 10000)' }),
    problemCount: Type.Integer(),
    unchained: Type.Array(Type.Object({ streamId: S, beforeRevision: S }, strict), { description: 'streams whose first events carry no chainHash (written before the chain)' }),
    unchainedCount: Type.Integer(),
    pruned: Type.Integer({ description: 'bounded streams (keepLast) whose chain starts at their first kept event' }),
    anchors: Type.Integer(),
    anchorsMatched: Type.Integer(),
    startedAt: S,
    finishedAt: S,
  },
  { ...strict, description: 'The integrity chain report (docs/audit.md)' },
);

export const auditVerifyRoutes: FastifyPluginAsyncTypebox<AuditVerifyRoutesOptions> = async (app, options) => {
  app.get(
    '/audit/verify',
    {
      schema: {
        tags: ['audit'],
        operationId: 'verifyChains',
        summary: "Recompute the event log's integrity chain (one subscription or all)",
        description:
          "Recomputes every event's chainHash from its content and the previous event's hash and names each event altered, removed, inserted or renumbered. " +
          'Truncation of a stream’s last events is seen only against anchored head hashes (docs/audit.md).',
        security,
        querystring: VerifyQuery,
        response: { 200: Report, 400: problemResponse('Not a subscription id'), 503: problemResponse('The event store is not open yet') },
      },
    },
    async (request) => {
      const store = resolveStore(options.store);
      const { subscriptionId } = request.query;
      const report = await verifyChains(store, subscriptionId === undefined ? {} : { streamId: subscriptionStream(subscriptionId) });
      if (!report.ok) request.log.warn({ component: 'audit', problems: report.problemCount, streamId: report.streamId }, 'integrity chain verification found problems');
      return report;
    },
  );
};
