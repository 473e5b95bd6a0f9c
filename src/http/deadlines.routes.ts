/**
 * `GET /api/deadlines`: every deadline that loses revenue when missed (src/projections/views/deadlines.ts),
 * the most urgent first — pending purchases near Microsoft's 30 days, activations requested but not
 * confirmed, plan/quantity changes not acknowledged, and the Microsoft credential (rejected, or a
 * certificate close to expiry). Registered inside the /api plugin: operator token, problem+json errors.
 *
 * Everything comes from the read models (indexed queries) and the credential's health in memory; the
 * answer carries `x-read-model-state` like `/api/read/…` (while catching up it may list an item the
 * event log has already resolved).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Static } from 'typebox';
import type { CredentialHealthSnapshot } from '../marketplace/credential-health.js';
import type { RunningProjections } from '../projections/runner.js';
import { DEADLINE_KINDS, SEVERITIES, defaultDeadlineSettings, formatTimeLeft, readDeadlines } from '../projections/views/deadlines.js';
import type { Deadline, DeadlineSettings } from '../projections/views/deadlines.js';
import { operatorSecurity as security, problemResponse } from './api.plugin.js';
import { problem, problemContentType } from './problem.js';

export type DeadlineRoutesOptions = {
  /** The running projections once started; the route answers 503 until then. */
  readModels: () => RunningProjections | undefined;
  /** The Microsoft credential's health, when this process talks to Microsoft. */
  credential?: () => CredentialHealthSnapshot | undefined;
  settings?: DeadlineSettings;
  /** Default: the wall clock. */
  now?: () => Date;
};

const strict = { additionalProperties: false } as const;
const S = Type.String();
const NS = Type.Union([Type.String(), Type.Null()]);
const NI = Type.Union([Type.Integer(), Type.Null()]);
const CREDENTIAL_KINDS = ['secret', 'certificate', 'static-token', 'none'] as const;

const list = (values: readonly string[]) => `^(${values.join('|')})(,(${values.join('|')}))*$`;
export const DeadlinesQuery = Type.Object(
  {
    kind: Type.Optional(Type.String({ pattern: list(DEADLINE_KINDS), description: `one kind or several, comma-separated: ${DEADLINE_KINDS.join(', ')}` })),
    severity: Type.Optional(Type.String({ pattern: list(SEVERITIES), description: 'one severity or several, comma-separated: info, warning, overdue' })),
  },
  strict,
);

const CredentialView = Type.Object(
  {
    kind: Type.Enum(CREDENTIAL_KINDS),
    consecutiveRejections: Type.Integer({ description: '401/403 (or Entra rejections) since the last accepted call' }),
    failingSince: NS,
    lastSuccessAt: NS,
    lastFailure: Type.Union([Type.Object({ at: S, call: S, status: NI, message: S }, strict), Type.Null()]),
    certificate: Type.Union([Type.Object({ notAfter: S, notBefore: S, subject: S, thumbprintSha256: S }, strict), Type.Null()]),
  },
  { ...strict, description: 'What this process has seen of the Microsoft credential (in memory, since start)' },
);
type CredentialView = Static<typeof CredentialView>;

const DeadlineItem = Type.Object(
  {
    key: Type.String({ description: '`<kind>:<id>`, stable while the item is open' }),
    kind: Type.Enum(DEADLINE_KINDS),
    subscriptionId: NS,
    since: Type.String({ description: 'when the clock started' }),
    deadline: Type.String({ description: 'ISO-8601 UTC' }),
    timeLeft: Type.String({ description: '`5d 3h`, `2h 05m`, …, or `overdue by …`' }),
    timeLeftSeconds: Type.Number({ description: 'negative once overdue' }),
    severity: Type.Enum(SEVERITIES),
    summary: S,
    action: Type.String({ description: 'what to do' }),
    rule: Type.String({ description: 'where the deadline comes from (docs/marketplace.md)' }),
    activation: Type.Union([Type.Object({ requestedAt: NS, failures: Type.Integer(), lastError: NS, gaveUp: Type.Boolean() }, strict), Type.Null()]),
    operation: Type.Union([
      Type.Object({ operationId: S, action: S, source: NS, planId: NS, quantity: NI, receivedAt: S, deliveries: Type.Integer() }, strict),
      Type.Null(),
    ]),
    credential: Type.Union([CredentialView, Type.Null()]),
  },
  strict,
);
type DeadlineItem = Static<typeof DeadlineItem>;

const DeadlinesView = Type.Object(
  {
    now: S,
    counts: Type.Object({ info: Type.Integer(), warning: Type.Integer(), overdue: Type.Integer() }, { ...strict, description: 'of the items listed' }),
    items: Type.Array(DeadlineItem),
    credential: Type.Union([CredentialView, Type.Null()]),
  },
  strict,
);

function credentialView(c: CredentialHealthSnapshot): CredentialView {
  return {
    kind: c.kind,
    consecutiveRejections: c.consecutiveRejections,
    failingSince: c.failingSince ?? null,
    lastSuccessAt: c.lastSuccessAt ?? null,
    lastFailure: c.lastFailure ? { at: c.lastFailure.at, call: c.lastFailure.call, status: c.lastFailure.status ?? null, message: c.lastFailure.message } : null,
    certificate: c.certificate ? { ...c.certificate } : null,
  };
}

function itemView(d: Deadline): DeadlineItem {
  return {
    key: d.key,
    kind: d.kind,
    subscriptionId: d.subscriptionId,
    since: d.since,
    deadline: d.deadline,
    timeLeft: formatTimeLeft(d.timeLeftMs),
    timeLeftSeconds: Math.round(d.timeLeftMs / 1000),
    severity: d.severity,
    summary: d.summary,
    action: d.action,
    rule: d.rule,
    activation: d.activation,
    operation: d.operation,
    credential: d.credential ? credentialView(d.credential) : null,
  };
}

const selected = (value: string | undefined) => (value === undefined ? undefined : new Set(value.split(',')));

class ReadModelsUnavailable extends Error {}

function readModelState(r: RunningProjections): string {
  const states = r.status().map((s) => (s.state === 'standby' ? 'live' : s.state));
  if (states.includes('rebuilding')) return 'rebuilding';
  if (states.every((s) => s === 'live')) return 'live';
  return states.includes('failing') ? 'failing' : 'catching-up';
}

export const deadlineRoutes: FastifyPluginAsyncTypebox<DeadlineRoutesOptions> = async (app, options) => {
  const settings = options.settings ?? defaultDeadlineSettings;
  const now = options.now ?? (() => new Date());

  app.setErrorHandler((error, _request, reply) => {
    if (error instanceof ReadModelsUnavailable) {
      return reply.header('retry-after', '5').code(503).type(problemContentType).send(problem(503, 'read-models-unavailable', 'the read models are not open yet; retry later'));
    }
    throw error; // the app's handler: validation errors, 500s
  });

  app.get(
    '/deadlines',
    {
      schema: {
        tags: ['deadlines'],
        operationId: 'listDeadlines',
        summary: 'Deadlines that lose revenue: pending purchases, unconfirmed activations, unacknowledged changes, the Microsoft credential',
        description:
          'Overdue first, then warnings, then the rest, each by deadline. `warning` inside the lead time (DEADLINES_* settings), `overdue` once past. ' +
          'Filters combine with AND. See docs/deadlines.md.',
        security,
        querystring: DeadlinesQuery,
        response: {
          200: DeadlinesView,
          400: problemResponse('Unknown or malformed query parameter'),
          401: problemResponse('Missing or wrong operator bearer token'),
          503: problemResponse('The read models are not open yet; retry later'),
        },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const running = options.readModels();
      if (!running || !running.target.isOpen()) throw new ReadModelsUnavailable();
      reply.header('x-read-model-state', readModelState(running));
      const at = now();
      const credential = options.credential?.();
      const kinds = selected(q.kind);
      const severities = selected(q.severity);
      const items = (await readDeadlines(running.target.read, credential, at, settings)).filter(
        (d) => (!kinds || kinds.has(d.kind)) && (!severities || severities.has(d.severity)),
      );
      const counts = { info: 0, warning: 0, overdue: 0 };
      for (const d of items) counts[d.severity] += 1;
      return { now: at.toISOString(), counts, items: items.map(itemView), credential: credential ? credentialView(credential) : null };
    },
  );
};
