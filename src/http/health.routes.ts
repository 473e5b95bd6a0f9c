import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import Type from 'typebox';
import type { EventStore } from '../eventstore/eventstore.js';

export type HealthOptions = {
  /** The store once it is open; undefined while starting. */
  store: () => EventStore | undefined;
};

const Health = Type.Object({ status: Type.String() });
const Ready = Type.Object({ status: Type.String(), store: Type.String(), detail: Type.Optional(Type.String()) });

/** /healthz: the process answers. /readyz: the event store is open and answers. */
export const healthRoutes: FastifyPluginAsyncTypebox<HealthOptions> = async (app, options) => {
  app.get('/healthz', { schema: { response: { 200: Health } } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { response: { 200: Ready, 503: Ready } } }, async (_request, reply) => {
    const store = options.store();
    if (!store) return reply.code(503).send({ status: 'starting', store: 'not open yet' });
    try {
      await store.ping();
      return { status: 'ready', store: store.kind };
    } catch (err) {
      return reply.code(503).send({ status: 'unavailable', store: store.kind, detail: (err as Error).message });
    }
  });
};
