/**
 * Usage intake for the ISV's product: `POST /api/usage`, one record or `{ records: [...] }` (up to 5000), behind
 * the operator token or USAGE_TOKEN (usage-auth.ts). Registered beside the operator API, not inside it (the
 * operator API lets only the operator token in).
 *
 * 200 when every record was recorded, late, or a repeat; 422 (problem+json with the same `results`) when some
 * were refused or conflict: the others are recorded all the same, and sending the request again is harmless (the
 * idempotency keys). 503 when Microsoft cannot say which meters a plan has, or the store is unavailable.
 * Finance's read routes (`/api/read/usage…`) register here too, behind the operator token only.
 */
import type { OperatorTokens } from './operator-auth.js';
import { requestProvenance } from './request-provenance.js';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Static } from 'typebox';
import type { UsageInput, UsageIntake, UsageResult } from '../application/usage-intake.js';
import { MarketplaceError } from '../marketplace/errors.js';
import { operatorSecurity, problemResponse } from './api.plugin.js';
import { problem, problemContentType } from './problem.js';
import { createUsageAuth } from './usage-auth.js';
import { createOperatorAuth } from './operator-auth.js';
import { usageReadRoutes } from './usage-readmodel.routes.js';
import type { UsageReadRoutesOptions } from './usage-readmodel.routes.js';

export type UsageRoutesOptions = {
  intake: UsageIntake;
  operatorToken: OperatorTokens;
  usageToken?: string;
  /** Finance's read model (usage-readmodel.routes.ts), under /api behind the operator token; not served when absent. */
  read?: UsageReadRoutesOptions;
};

export const MAX_RECORDS = 5000;

const UsageRecordBody = Type.Object(
  {
    subscriptionId: Type.String({ minLength: 1, maxLength: 100, description: 'The SaaS subscription id' }),
    dimension: Type.String({ minLength: 1, maxLength: 100, description: "A meter dimension of the subscription's plan" }),
    quantity: Type.Number({ description: 'Units used; must be above 0' }),
    effectiveTime: Type.String({ format: 'date-time', description: 'When the usage happened (UTC); within the last 24 hours' }),
    idempotencyKey: Type.String({ minLength: 1, maxLength: 200, description: 'Unique per record within its subscription and hour: a repeat records nothing' }),
  },
  { additionalProperties: false },
);
type UsageRecordBody = Static<typeof UsageRecordBody>;

const UsageBody = Type.Union([UsageRecordBody, Type.Object({ records: Type.Array(UsageRecordBody, { minItems: 1, maxItems: MAX_RECORDS }) }, { additionalProperties: false })]);

const Result = Type.Object({
  subscriptionId: Type.String(),
  idempotencyKey: Type.String(),
  outcome: Type.Union([Type.Literal('recorded'), Type.Literal('late'), Type.Literal('duplicate'), Type.Literal('conflict'), Type.Literal('refused')]),
  hour: Type.Optional(Type.String()),
  reason: Type.Optional(Type.String()),
  detail: Type.Optional(Type.String()),
});
const Counts = { recorded: Type.Integer(), late: Type.Integer(), duplicate: Type.Integer(), conflict: Type.Integer(), refused: Type.Integer() };
const UsageAnswer = Type.Object({ ...Counts, results: Type.Array(Result) });
const UsageProblem = Type.Object({ type: Type.String(), title: Type.String(), status: Type.Integer(), detail: Type.String(), ...Counts, results: Type.Array(Result) });

function countsOf(results: readonly UsageResult[]) {
  const c = { recorded: 0, late: 0, duplicate: 0, conflict: 0, refused: 0 };
  for (const r of results) c[r.outcome]++;
  return c;
}

const inputsOf = (body: UsageRecordBody | { records: UsageRecordBody[] }): UsageInput[] => ('records' in body ? body.records : [body]);

export const usageRoutes: FastifyPluginAsyncTypebox<UsageRoutesOptions> = async (app, options) => {
  const { read } = options;
  if (read) {
    await app.register(async (scope) => {
      scope.addHook('onRequest', createOperatorAuth(options.operatorToken));
      await scope.register(usageReadRoutes, read);
    }, { prefix: '/api' });
  }
  const auth = createUsageAuth(options.operatorToken, options.usageToken);
  app.post(
    '/api/usage',
    {
      onRequest: auth,
      schema: {
        tags: ['metering'],
        operationId: 'reportUsage',
        summary: 'Report metered usage: one record or { records: [...] }',
        description:
          'Each record is recorded in its subscription\'s clock hour, refused with a reason, or reported as late when its hour was already submitted ' +
          '(kept, never billed). Idempotent by key. Usage is summed per subscription, dimension and hour and sent to Microsoft after the hour closes.',
        security: [...operatorSecurity],
        body: UsageBody,
        response: {
          200: UsageAnswer,
          400: problemResponse('Malformed body'),
          401: problemResponse('Missing or wrong bearer token'),
          422: { description: 'Some records were refused or conflict (the others are recorded)', content: { 'application/problem+json': { schema: UsageProblem } } },
          503: problemResponse('Microsoft cannot say which meters a plan has, or the store is unavailable; retry later'),
        },
      },
    },
    async (request, reply) => {
      let results: UsageResult[];
      try {
        results = await options.intake.record(inputsOf(request.body), 'product', requestProvenance(request));
      } catch (err) {
        if (!(err instanceof MarketplaceError)) throw err;
        request.log.warn({ err: err.toLog() }, 'usage not recorded: the meters of a plan could not be read from Microsoft');
        return reply.header('retry-after', '30').code(503).type(problemContentType).send(problem(503, 'meters-unavailable', 'Microsoft could not be asked which meters the plan has; retry later'));
      }
      const counts = countsOf(results);
      const log = { records: results.length, ...counts };
      if (counts.refused + counts.conflict === 0) {
        request.log.info(log, 'usage reported');
        return reply.code(200).send({ ...counts, results });
      }
      request.log.warn({ ...log, refusals: results.filter((r) => r.outcome === 'refused' || r.outcome === 'conflict').slice(0, 5) }, 'usage reported, some records refused');
      const detail = `${counts.refused + counts.conflict} of ${results.length} records were not recorded (see results); the others were`;
      return reply.code(422).type(problemContentType).send({ ...problem(422, 'usage-refused', detail), detail, ...counts, results });
    },
  );
};
