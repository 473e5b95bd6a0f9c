/**
 * The operator API for reconciliation (docs/reconciliation.md); inside the /api plugin (api.plugin.ts: the
 * operator bearer token, problem+json), strict schemas.
 *
 *   POST /api/reconcile              start a run now (or resume the unfinished one) → 202 { runId };
 *                                    409 with the run under way (on this instance or another)
 *   GET  /api/reconciliations        the last runs, newest first, with their counts
 *   GET  /api/reconciliations/:id    one run: its counts, where it is, and its history
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { RunCountsSchema } from '../domain/reconciliation/index.js';
import { StoreUnavailableError } from '../eventstore/eventstore.js';
import type { Reconciler } from '../processes/reconciliation.process.js';
import { operatorSecurity as security, problemResponse } from './api.plugin.js';
import { problem, problemContentType } from './problem.js';

export type ReconciliationRoutesOptions = {
  /** The reconciler; undefined while the store is not open (503). */
  reconciler: () => Pick<Reconciler, 'trigger' | 'list' | 'get'> | undefined;
};

const strict = { additionalProperties: false } as const;
const TAG = 'reconciliation';

const Trigger = Type.Union([Type.Literal('schedule'), Type.Literal('api'), Type.Literal('cli')], { description: 'What started the run' });
const Status = Type.Union([Type.Literal('running'), Type.Literal('interrupted'), Type.Literal('finished')], {
  description: 'interrupted: stopped before its last page (Microsoft or the store unavailable, a shutdown); the next trigger resumes it',
});

const RunSummaryView = Type.Object(
  {
    runId: Type.String(),
    trigger: Trigger,
    status: Status,
    startedAt: Type.String(),
    at: Type.String({ description: 'When its status last changed' }),
    pages: Type.Optional(Type.Integer({ minimum: 0, description: 'Pages of List subscriptions checked' })),
    counts: Type.Optional(RunCountsSchema),
    durationMs: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  strict,
);

const RunList = Type.Object({ runs: Type.Array(RunSummaryView) }, strict);

const HistoryEntry = Type.Object(
  {
    type: Type.String({ description: 'ReconciliationStarted, …Resumed, …PageChecked, …Interrupted, …Finished' }),
    at: Type.String(),
    instanceId: Type.String(),
    page: Type.Optional(Type.Integer({ minimum: 1 })),
    reason: Type.Optional(Type.String()),
  },
  strict,
);

const RunDetail = Type.Object(
  {
    runId: Type.String(),
    trigger: Trigger,
    status: Status,
    startedAt: Type.String(),
    instanceId: Type.String({ description: 'The instance running it, or that ran it last' }),
    pages: Type.Integer({ minimum: 0 }),
    listed: Type.Boolean({ description: 'The last page has been checked' }),
    counts: RunCountsSchema,
    resumes: Type.Integer({ minimum: 0 }),
    lastInterruption: Type.Optional(Type.Object({ at: Type.String(), reason: Type.String() }, strict)),
    finishedAt: Type.Optional(Type.String()),
    durationMs: Type.Optional(Type.Integer({ minimum: 0 })),
    history: Type.Array(HistoryEntry),
  },
  strict,
);

const Triggered = Type.Object(
  {
    runId: Type.String(),
    status: Type.Union([Type.Literal('started'), Type.Literal('resumed')], { description: 'resumed: an unfinished run goes on from its last recorded page' }),
    location: Type.String({ description: 'Where to follow the run' }),
  },
  strict,
);

const RunParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }) }, strict);

const errors = {
  401: problemResponse('Missing or wrong operator bearer token'),
  503: problemResponse('The event store is not open yet (or unavailable); retry later'),
};

export const reconciliationRoutes: FastifyPluginAsyncTypebox<ReconciliationRoutesOptions> = async (app, options) => {
  const reconciler = () => {
    const r = options.reconciler();
    if (!r) throw new StoreUnavailableError('the event store is not open yet');
    return r;
  };

  app.post(
    '/reconcile',
    {
      schema: {
        tags: [TAG],
        operationId: 'reconcile',
        summary: 'Reconcile every subscription with Microsoft now',
        description:
          'Starts a run in the background (or resumes the unfinished one) and answers 202 with its id; follow it at `location`. ' +
          'Only one run at a time, across instances: while one is under way the answer is 409 naming it.',
        security,
        response: { 202: Triggered, 409: problemResponse('A run is under way (`runId`, `instanceId`, `until`)'), ...errors },
      },
    },
    async (request, reply) => {
      const result = await reconciler().trigger('api');
      if (result.kind === 'busy') {
        return reply
          .code(409)
          .type(problemContentType)
          .send(
            problem(409, 'reconciliation-running', `run ${result.runId} is under way on ${result.instanceId}`, {
              runId: result.runId,
              instanceId: result.instanceId,
              until: result.until,
            }),
          );
      }
      void result.done.then((outcome) => request.log.info({ runId: outcome.runId, status: outcome.status }, 'reconciliation requested by an operator ended'));
      const location = `/api/reconciliations/${result.runId}`;
      return reply.code(202).header('location', location).send({ runId: result.runId, status: result.kind, location });
    },
  );

  app.get(
    '/reconciliations',
    {
      schema: {
        tags: [TAG],
        operationId: 'listReconciliations',
        summary: 'The last reconciliation runs, newest first',
        security,
        response: { 200: RunList, ...errors },
      },
    },
    async () => ({ runs: await reconciler().list() }),
  );

  app.get(
    '/reconciliations/:id',
    {
      schema: {
        tags: [TAG],
        operationId: 'getReconciliation',
        summary: 'One reconciliation run: counts, progress, history',
        security,
        params: RunParams,
        response: { 200: RunDetail, 404: problemResponse('No run with this id'), ...errors },
      },
    },
    async (request, reply) => {
      const found = await reconciler().get(request.params.id);
      if (!found) return reply.code(404).type(problemContentType).send(problem(404, 'reconciliation-not-found', `no reconciliation run ${request.params.id}`));
      const { run, history } = found;
      return {
        runId: run.runId,
        trigger: run.trigger,
        status: run.status,
        startedAt: run.startedAt,
        instanceId: run.instanceId,
        pages: run.pages,
        listed: run.listed,
        counts: run.counts,
        resumes: run.resumes,
        ...(run.lastInterruption ? { lastInterruption: run.lastInterruption } : {}),
        ...(run.finishedAt ? { finishedAt: run.finishedAt } : {}),
        ...(run.durationMs !== undefined ? { durationMs: run.durationMs } : {}),
        history,
      };
    },
  );
};
