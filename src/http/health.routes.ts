import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import Type from 'typebox';
import type { EventStore } from '../eventstore/eventstore.js';
import { StoreNotWritableError } from '../eventstore/write-health.js';

export type HealthOptions = {
  /** The store once it is open; undefined while starting. */
  store: () => EventStore | undefined;
};

const Health = Type.Object({ status: Type.Literal('ok') });
const Ready = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('starting'), Type.Literal('not-ready'), Type.Literal('unavailable')], {
    description: 'ready; starting (the store is not open yet); not-ready (the store answers but cannot write); unavailable (the store does not answer)',
  }),
  store: Type.String({ description: "The store's kind (sqlite, eventstoredb), or 'not open yet'" }),
  reason: Type.Optional(Type.String({ description: 'not-ready: why the store cannot write, e.g. "cannot write: disk full"' })),
  since: Type.Optional(Type.String({ description: 'not-ready: when writes started failing (ISO-8601)' })),
  detail: Type.Optional(Type.String({ description: 'unavailable: the error the store answered with' })),
});

/**
 * /healthz: the process answers (nothing else is looked at, so it stays instant whatever the store does).
 * /readyz: the event store is open, answers, and can write (see EventStore.ping; SQLite: write-health.ts).
 */
export const healthRoutes: FastifyPluginAsyncTypebox<HealthOptions> = async (app, options) => {
  app.get('/healthz', { schema: { response: { 200: Health } } }, async () => ({ status: 'ok' as const }));

  app.get('/readyz', { schema: { response: { 200: Ready, 503: Ready } } }, async (_request, reply) => {
    const store = options.store();
    if (!store) return reply.code(503).send({ status: 'starting', store: 'not open yet' });
    try {
      await store.ping();
      return { status: 'ready' as const, store: store.kind };
    } catch (err) {
      if (err instanceof StoreNotWritableError) {
        return reply.code(503).send({ status: 'not-ready', store: store.kind, reason: err.reason, since: err.since });
      }
      return reply.code(503).send({ status: 'unavailable', store: store.kind, detail: (err as Error).message });
    }
  });
};
