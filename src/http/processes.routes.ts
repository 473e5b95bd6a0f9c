/**
 * The operator API for the process managers' held events (src/processes/parked.ts); inside the /api plugin
 * (api.plugin.ts: the operator bearer token, the problem+json 404), strict schemas.
 *
 *   GET  /api/processes                           each process: mode, checkpoint, how many keys are parked / retrying
 *   GET  /api/processes/parked                    every parked and retrying key of every process
 *   GET  /api/processes/:name/parked              the same for one process
 *   POST /api/processes/:name/parked/:key/retry   attempt the key's held events again now, in order
 *
 * A key is what a process orders its events by (a subscription's stream, or its id): when its first event fails,
 * the key waits — retried after a backoff, then parked — and its later events wait behind it, while the other
 * keys go on. A retry is recorded with the operator as actor and picked up by the instance running the process.
 */
import { operatorActorOf } from './operator-auth.js';
import { requestProvenance } from './request-provenance.js';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { StoreUnavailableError } from '../eventstore/eventstore.js';
import type { ProcessAdmin } from '../processes/parked.js';
import { operatorSecurity as security, problemResponse } from './api.plugin.js';
import { problem, problemContentType } from './problem.js';

export type ProcessesRoutesOptions = {
  /** The processes' admin; undefined while the store is not open (503). */
  processes: () => ProcessAdmin | undefined;
};

const strict = { additionalProperties: false } as const;
const TAG = 'processes';
const Mode = Type.Union([Type.Literal('catch-up'), Type.Literal('lease'), Type.Literal('persistent')]);

const HeldEvent = Type.Object(
  {
    streamId: Type.String(),
    revision: Type.String({ description: "The event's revision in its stream (decimal string)" }),
    position: Type.String({ description: "The event's global position (decimal string)" }),
    type: Type.String(),
  },
  strict,
);

const HeldKeyView = Type.Object(
  {
    process: Type.String(),
    key: Type.String({ description: 'What the process orders its events by (default the stream id); use it in the retry URL' }),
    status: Type.Union([Type.Literal('retrying'), Type.Literal('parked')]),
    attempts: Type.Integer({ minimum: 1, description: 'Failed attempts at the first event' }),
    firstFailureAt: Type.String(),
    lastFailureAt: Type.String(),
    lastError: Type.String(),
    transient: Type.Boolean({ description: 'The last failure was "retry later" (an outside system not answering): retried until `until`, not a bounded number of times' }),
    nextAttemptAt: Type.Optional(Type.String({ description: 'retrying: when the next attempt is due' })),
    until: Type.Optional(Type.String({ description: 'The deadline the handler gave; still failing then, the event is parked' })),
    events: Type.Array(HeldEvent, { description: 'The failing event first, then the events of the key waiting behind it' }),
  },
  strict,
);

const HeldList = Type.Object({ parked: Type.Array(HeldKeyView), retrying: Type.Array(HeldKeyView) }, strict);

const ProcessView = Type.Object(
  {
    name: Type.String(),
    mode: Mode,
    checkpoint: Type.Optional(Type.String({ description: 'The saved checkpoint position; absent before the first save and in persistent mode' })),
    checkpointSavedAt: Type.Optional(Type.String()),
    parked: Type.Integer({ minimum: 0 }),
    retrying: Type.Integer({ minimum: 0 }),
    heldEvents: Type.Integer({ minimum: 0, description: 'Events of held keys, and events behind the checkpoint not yet handled' }),
    problem: Type.Optional(Type.String({ description: 'Why the held keys could not be read from the checkpoint' })),
  },
  strict,
);

const Name = Type.String({ minLength: 1, maxLength: 100, pattern: '^[a-z][a-z0-9-]*$' });
const NameParams = Type.Object({ name: Name }, strict);
const RetryParams = Type.Object(
  { name: Name, key: Type.String({ minLength: 1, maxLength: 300, pattern: '^[\\x21-\\x7E]+$', description: 'The key, URL-encoded' }) },
  strict,
);
const RetryRequested = Type.Object(
  {
    process: Type.String(),
    key: Type.String(),
    status: Type.Literal('retry-requested'),
    was: Type.Union([Type.Literal('retrying'), Type.Literal('parked')]),
    events: Type.Integer({ minimum: 1, description: 'Held events of the key, attempted again in order' }),
  },
  strict,
);

const errors = {
  400: problemResponse('Invalid request: unknown or malformed fields or parameters'),
  401: problemResponse('Missing or wrong operator bearer token'),
  503: problemResponse('The event store is not open yet (or unavailable); retry later'),
};
const noSuchProcess = problemResponse('No process manager of this name');

export const processesRoutes: FastifyPluginAsyncTypebox<ProcessesRoutesOptions> = async (app, options) => {
  /** Until the store is open there is nothing to read: the app's error handler answers 503 with Retry-After. */
  const admin = (): ProcessAdmin => {
    const running = options.processes();
    if (!running) throw new StoreUnavailableError('the event store is not open yet');
    return running;
  };
  const unknownProcess = (name: string) => problem(404, 'process-not-found', `no process manager named ${name}`);

  app.get(
    '/processes',
    {
      schema: {
        tags: [TAG],
        operationId: 'listProcesses',
        summary: 'The process managers, their checkpoints and how many keys wait',
        security,
        response: { 200: Type.Object({ processes: Type.Array(ProcessView) }, strict), ...errors },
      },
    },
    async () => ({ processes: await admin().processes() }),
  );

  app.get(
    '/processes/parked',
    {
      schema: {
        tags: [TAG],
        operationId: 'listHeldKeys',
        summary: 'Keys whose events wait: parked for an operator, or retrying after a failure',
        description: 'Oldest failure first. As of the last checkpoint save (at once when an event is parked). Persistent mode (EventStoreDB) parks in the server instead.',
        security,
        response: { 200: HeldList, ...errors },
      },
    },
    async () => (await admin().held()) ?? { parked: [], retrying: [] },
  );

  app.get(
    '/processes/:name/parked',
    {
      schema: {
        tags: [TAG],
        operationId: 'listProcessHeldKeys',
        summary: "One process's parked and retrying keys",
        security,
        params: NameParams,
        response: { 200: HeldList, 404: noSuchProcess, ...errors },
      },
    },
    async (request, reply) => {
      const held = await admin().held(request.params.name);
      if (!held) return reply.code(404).type(problemContentType).send(unknownProcess(request.params.name));
      return held;
    },
  );

  app.post(
    '/processes/:name/parked/:key/retry',
    {
      schema: {
        tags: [TAG],
        operationId: 'retryHeldKey',
        summary: "Attempt a parked (or retrying) key's events again now",
        description:
          'The instance running the process attempts the held events of the key again, in order, with a fresh count of attempts; each one handled leaves the list, ' +
          'and one that fails again is retried and parked as before. Answers 202: watch the list to see it go.',
        security,
        params: RetryParams,
        response: {
          202: RetryRequested,
          404: problemResponse('No such process, or the key is neither parked nor retrying'),
          409: problemResponse('The process runs on EventStoreDB persistent subscriptions: parked events are replayed in EventStoreDB'),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const { name, key } = request.params;
      const actor = operatorActorOf(request);
      const done = await admin().retry(name, key, actor, requestProvenance(request));
      const send = (status: number, title: string, detail: string) => reply.code(status).type(problemContentType).send(problem(status, title, detail));
      switch (done.outcome) {
        case 'requested':
          request.log.info({ process: name, key, was: done.status, events: done.events, actor }, 'operator asked for a held key to be retried');
          return reply.code(202).send({ process: done.process, key: done.key, status: 'retry-requested' as const, was: done.status, events: done.events });
        case 'unknown-process':
          return reply.code(404).type(problemContentType).send(unknownProcess(name));
        case 'not-held':
          return send(404, 'key-not-held', `${key} is neither parked nor retrying in process ${name} (handled, or never failed)`);
        case 'persistent':
          return send(409, 'parked-in-eventstoredb', `process ${name} runs on an EventStoreDB persistent subscription: replay its parked messages in EventStoreDB (docs/several-instances.md)`);
        default: {
          const _exhaustive: never = done;
          return _exhaustive;
        }
      }
    },
  );
};
