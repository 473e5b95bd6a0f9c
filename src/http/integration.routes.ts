/**
 * The operator API for integration events that the ISV's application did not acknowledge; inside the
 * /api plugin (api.plugin.ts: the operator bearer token), problem+json errors, strict schemas.
 *
 *   GET  /api/integration/dead-letters                    every dead letter (?subscriptionId=)
 *   POST /api/integration/dead-letters/:eventId/retry     deliver it again now (a new round of attempts)
 *   POST /api/integration/dead-letters/:eventId/skip      give up on it { reason? }; the events behind it go on
 *   GET  /api/integration/status                          queue counts
 *
 * A dead letter blocks the later events of its subscription (delivery is in order per
 * subscription): `blockedEvents` says how many wait behind it. Both actions are recorded with the
 * operator as actor in the subscription's outbox stream.
 */
import { operatorActorOf } from './operator-auth.js';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { StoreUnavailableError } from '../eventstore/eventstore.js';
import type { DeadLetterAdmin } from '../integration/dispatcher.js';
import { operatorSecurity as security, problemResponse } from './api.plugin.js';
import { problem, problemContentType } from './problem.js';

export type IntegrationRoutesOptions = {
  /** The running integration; undefined while the store is not open (503). */
  integration: () => DeadLetterAdmin | undefined;
};

const strict = { additionalProperties: false } as const;
const TAG = 'integration';

const DeadLetterView = Type.Object(
  {
    eventId: Type.String({ description: 'The integration event id: its idempotency key' }),
    subscriptionId: Type.String(),
    type: Type.String({ description: 'e.g. subscription.activated' }),
    sequence: Type.Integer({ minimum: 0, description: "The event's place in its subscription's stream" }),
    occurredAt: Type.String(),
    attempts: Type.Integer({ minimum: 0, description: 'Attempts in the last round' }),
    deadLetteredAt: Type.String(),
    lastError: Type.String(),
    lastStatus: Type.Optional(Type.Integer({ description: "The receiver's last HTTP status, when it answered" })),
    blockedEvents: Type.Integer({ minimum: 0, description: 'Later events of the same subscription held back by this one' }),
  },
  strict,
);

const DeadLetterList = Type.Object(
  {
    enabled: Type.Boolean({ description: 'False when PROVISIONING_WEBHOOK_URL is not set: nothing is delivered, so nothing is ever dead-lettered' }),
    deadLetters: Type.Array(DeadLetterView),
  },
  strict,
);

const StatusView = Type.Object(
  {
    enabled: Type.Boolean(),
    subscriptions: Type.Integer({ description: 'Subscriptions with undelivered events' }),
    pending: Type.Integer({ description: 'Undelivered events' }),
    retrying: Type.Integer({ description: 'Subscriptions whose next event failed at least once and waits for its next attempt' }),
    deadLettered: Type.Integer(),
    inFlight: Type.Integer(),
  },
  strict,
);

const ListQuery = Type.Object({ subscriptionId: Type.Optional(Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' })) }, strict);
const EventParams = Type.Object({ eventId: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }) }, strict);
const SkipBody = Type.Object({ reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })) }, strict);
const Resolved = Type.Object(
  {
    eventId: Type.String(),
    subscriptionId: Type.String(),
    status: Type.Union([Type.Literal('retrying'), Type.Literal('skipped')]),
  },
  strict,
);

const errors = {
  400: problemResponse('Invalid request: unknown or malformed fields or parameters'),
  401: problemResponse('Missing or wrong operator bearer token'),
  503: problemResponse('The event store is not open yet (or unavailable); retry later'),
};
const notADeadLetter = problemResponse('No dead letter with this event id (never dead-lettered, or already retried, skipped or delivered)');

export const integrationRoutes: FastifyPluginAsyncTypebox<IntegrationRoutesOptions> = async (app, options) => {
  /** Until the store is open there is no integration: the app's error handler answers 503 with Retry-After. */
  const admin = (): DeadLetterAdmin => {
    const running = options.integration();
    if (!running) throw new StoreUnavailableError('the event store is not open yet');
    return running;
  };
  const notFound = (eventId: string) => problem(404, 'dead-letter-not-found', `${eventId} is not a dead-lettered integration event`);

  app.get(
    '/integration/dead-letters',
    {
      schema: {
        tags: [TAG],
        operationId: 'listDeadLetters',
        summary: 'Integration events the ISV application did not acknowledge after every attempt',
        description: 'Oldest first. Each blocks the later events of its subscription until it is retried or skipped.',
        security,
        querystring: ListQuery,
        response: { 200: DeadLetterList, ...errors },
      },
    },
    async (request) => {
      const a = admin();
      return { enabled: a.enabled, deadLetters: await a.deadLetters(request.query.subscriptionId !== undefined ? { subscriptionId: request.query.subscriptionId } : {}) };
    },
  );

  app.get(
    '/integration/status',
    {
      schema: {
        tags: [TAG],
        operationId: 'integrationStatus',
        summary: 'How many integration events wait, retry, or are dead-lettered',
        security,
        response: { 200: StatusView, ...errors },
      },
    },
    async () => {
      const a = admin();
      return { enabled: a.enabled, ...(await a.status()) };
    },
  );

  app.post(
    '/integration/dead-letters/:eventId/retry',
    {
      schema: {
        tags: [TAG],
        operationId: 'retryDeadLetter',
        summary: 'Deliver a dead-lettered integration event again',
        description:
          'Starts a new round of attempts at once (same idempotency key). When it is acknowledged, the events of the same subscription behind it follow in order. ' +
          'Answers 202: watch the dead-letter list or the status to see it go.',
        security,
        params: EventParams,
        response: { 202: Resolved, 404: notADeadLetter, ...errors },
      },
    },
    async (request, reply) => {
      const done = await admin().retry(request.params.eventId, operatorActorOf(request));
      if (!done) return reply.code(404).type(problemContentType).send(notFound(request.params.eventId));
      return reply.code(202).send({ ...done, status: 'retrying' as const });
    },
  );

  app.post(
    '/integration/dead-letters/:eventId/skip',
    {
      schema: {
        tags: [TAG],
        operationId: 'skipDeadLetter',
        summary: 'Give up on a dead-lettered integration event; the events behind it are delivered',
        description: 'The ISV application never receives this event from the ledger; use it when the application got it another way or does not need it.',
        security,
        params: EventParams,
        body: SkipBody,
        response: { 200: Resolved, 404: notADeadLetter, ...errors },
      },
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
    },
    async (request, reply) => {
      const done = await admin().skip(request.params.eventId, operatorActorOf(request), request.body.reason);
      if (!done) return reply.code(404).type(problemContentType).send(notFound(request.params.eventId));
      return reply.code(200).send({ ...done, status: 'skipped' as const });
    },
  );
};
