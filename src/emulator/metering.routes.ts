/**
 * The Metering Service API (docs/marketplace.md §11) as Microsoft serves it, registered inside the fulfillment
 * routes (same `/api` base, api-version, bearer check and injected API faults, as operations `usageEvent` and
 * `batchUsageEvent`), and `GET /emulator/usage`: what was accepted, for tests.
 *
 *   POST /api/usageEvent        200 accepted · 400 BadArgument (also expired, inactive, unknown dimension) · 409 Conflict with the original
 *   POST /api/batchUsageEvent   1–25 events: 200 with a status per item (a duplicate item carries the Conflict body as `error`) · 400 otherwise
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { EmulatedMeter, UsageOutcome } from './metering.js';

type Api = Parameters<FastifyPluginAsyncTypebox>[0];

const VersionQuery = Type.Object({ 'api-version': Type.Optional(Type.String()) });
const MAX_BATCH = 25;

function badRequest(message: string, target: string, code = 'BadArgument'): Record<string, unknown> {
  return { message, target, details: [{ message, target, code }], code: 'BadArgument' };
}

function batchItem(outcome: UsageOutcome, messageTime: string): Record<string, unknown> {
  switch (outcome.status) {
    case 'Accepted':
      return outcome.accepted;
    case 'Duplicate':
      return { status: 'Duplicate', messageTime, ...outcome.echo, error: outcome.conflict };
    default:
      return { status: outcome.status, messageTime, ...outcome.echo, error: { message: outcome.message, target: outcome.target, code: outcome.status } };
  }
}

/** Inside the fulfillment plugin (its hooks and error handler apply). */
export function meteringApiRoutes(app: Api, meter: EmulatedMeter, now: () => Date): void {
  app.post('/usageEvent', { schema: { querystring: VersionQuery } }, async (req, reply) => {
    const outcome = meter.submit(req.body);
    if (outcome.status === 'Accepted') return reply.code(200).send(outcome.accepted);
    if (outcome.status === 'Duplicate') return reply.code(409).send(outcome.conflict);
    return reply.code(400).send(badRequest(outcome.message, outcome.target, outcome.status));
  });

  app.post('/batchUsageEvent', { schema: { querystring: VersionQuery } }, async (req, reply) => {
    const body = req.body;
    const request = typeof body === 'object' && body !== null && 'request' in body ? body.request : undefined;
    if (!Array.isArray(request) || request.length === 0) return reply.code(400).send(badRequest('The request must carry 1 to 25 usage events in `request`.', 'request'));
    if (request.length > MAX_BATCH) {
      return reply.code(400).send(badRequest(`Batch events request payload count is more than ${MAX_BATCH}: ${request.length}.`, 'request'));
    }
    const messageTime = now().toISOString();
    const result = request.map((item: unknown) => batchItem(meter.submit(item), messageTime));
    return reply.code(200).send({ count: result.length, result });
  });
}

const UsageListQuery = Type.Object({ resourceId: Type.Optional(Type.String()), dimension: Type.Optional(Type.String()) }, { additionalProperties: false });

/** GET /emulator/usage: the usage events Microsoft accepted (and would bill). */
export function meteringControlRoutes(meter: EmulatedMeter): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get('/emulator/usage', { schema: { querystring: UsageListQuery } }, async (req) => {
      const q = req.query;
      return { accepted: meter.accepted({ ...(q.resourceId ? { resourceId: q.resourceId } : {}), ...(q.dimension ? { dimension: q.dimension } : {}) }) };
    });
  };
}
