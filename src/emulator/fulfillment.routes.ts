/**
 * The SaaS Fulfillment API v2 (docs/marketplace.md §3) under Microsoft's paths, registered with prefix `/api`
 * (Microsoft's base URL is `https://marketplaceapi.microsoft.com/api`).
 *
 * Thin on purpose: check `api-version`, the bearer header and the body's shape, call the
 * marketplace, shape the answer. Errors are Microsoft's `{"error":{"code","message"}}` with
 * Microsoft's status codes (not problem+json: this API imitates Microsoft's). Bodies are parsed
 * tolerantly (unknown fields ignored; an empty body with `content-type: application/json` is fine,
 * as Microsoft's docs send that header on every call). `x-ms-requestid` / `x-ms-correlationid` are
 * echoed, or generated when absent.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { UPDATE_OPERATION_STATUS_VALUES } from '../marketplace/schemas.js';
import type { UpdateOperationStatus } from '../marketplace/schemas.js';
import type { Timers } from './clock.js';
import { EmulatorError, FULFILLMENT_STATUS } from './errors.js';
import { acceptEmptyJson } from './json-body.js';
import type { FaultInjector, FulfillmentOperationName } from './faults.js';
import type { EmulatedMarketplace } from './marketplace.js';
import { toOperationPayload, toSubscriptionPayload } from './payloads.js';
import type { EmulatedMeter } from './metering.js';
import { meteringApiRoutes } from './metering.routes.js';

export const API_VERSION = '2018-08-31';

export type FulfillmentRoutesOptions = {
  marketplace: EmulatedMarketplace;
  faults: FaultInjector;
  timers: Timers;
  /** The emulator's URL (for `Operation-Location` and `@nextLink`). */
  baseUrl: () => string;
  /** Require `authorization: Bearer <something>` (any value; 403 otherwise, as Microsoft answers). */
  requireAuth: boolean;
  /** The Metering Service API (metering.routes.ts), served when given. */
  meter?: { meter: EmulatedMeter; now: () => Date };
};

/** Microsoft's error body (the spec's `FulfillmentInternalServerErrorResponse` shape). */
export function sendMicrosoftError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send({ error: { code, message } });
}

const ROUTES: Record<string, FulfillmentOperationName> = {
  'POST /api/saas/subscriptions/resolve': 'resolve',
  'POST /api/saas/subscriptions/:subscriptionId/activate': 'activate',
  'GET /api/saas/subscriptions/': 'listSubscriptions',
  'GET /api/saas/subscriptions/:subscriptionId': 'getSubscription',
  'GET /api/saas/subscriptions/:subscriptionId/listAvailablePlans': 'listAvailablePlans',
  'PATCH /api/saas/subscriptions/:subscriptionId': 'updateSubscription',
  'DELETE /api/saas/subscriptions/:subscriptionId': 'deleteSubscription',
  'GET /api/saas/subscriptions/:subscriptionId/operations': 'listOperations',
  'GET /api/saas/subscriptions/:subscriptionId/operations/:operationId': 'getOperation',
  'PATCH /api/saas/subscriptions/:subscriptionId/operations/:operationId': 'updateOperation',
  // Metering (metering.routes.ts)
  'POST /api/usageEvent': 'usageEvent',
  'POST /api/batchUsageEvent': 'batchUsageEvent',
};

function operationName(req: FastifyRequest): FulfillmentOperationName | undefined {
  return ROUTES[`${req.method} ${req.routeOptions.url ?? ''}`];
}

function headerString(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

const VersionQuery = Type.Object({ 'api-version': Type.Optional(Type.String()) });
const SubscriptionParams = Type.Object({ subscriptionId: Type.String() });
const OperationParams = Type.Object({ subscriptionId: Type.String(), operationId: Type.String() });

/** A JSON body as Microsoft would read it: absent, or an object whose known fields have the right types. */
function bodyObject(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) {
    throw new EmulatorError('bad-request', 'BadArgument', 'the request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new EmulatorError('bad-request', 'BadArgument', `${field} must be a string`);
  return v;
}

function optionalInteger(body: Record<string, unknown>, field: string): number | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new EmulatorError('bad-request', 'BadArgument', `${field} must be an integer`);
  return v;
}

type Api = Parameters<FastifyPluginAsyncTypebox<FulfillmentRoutesOptions>>[0];

/** Every error in Microsoft's shape (`{ error: { code, message } }`); 500s logged. */
function fulfillmentErrorHandler(err: FastifyError, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (err instanceof EmulatorError) {
    const code = err.code === 'InvalidJson' ? 'BadArgument' : err.code;
    return sendMicrosoftError(reply, FULFILLMENT_STATUS[err.kind], code, err.message);
  }
  const e = err as { statusCode?: number; message: string; validation?: unknown };
  if (e.validation !== undefined) return sendMicrosoftError(reply, 400, 'BadArgument', e.message);
  const status = e.statusCode ?? 500;
  if (status >= 500) {
    req.log.error({ err }, 'fulfillment route failed');
    return sendMicrosoftError(reply, 500, 'InternalServerError', 'An internal error occurred.');
  }
  return sendMicrosoftError(reply, status, 'BadArgument', e.message);
}

/**
 * Before every fulfillment call: Microsoft's request and correlation id headers, the api-version, the bearer
 * token when required, and the injected faults (delay, throttling, server errors).
 */
function requestGate(opts: FulfillmentRoutesOptions): (req: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined> {
  const { faults, timers } = opts;
  return async (req, reply) => {
    reply.header('x-ms-requestid', headerString(req.headers['x-ms-requestid']) ?? randomUUID());
    reply.header('x-ms-correlationid', headerString(req.headers['x-ms-correlationid']) ?? randomUUID());
    const query = req.query as Record<string, string | string[] | undefined>;
    const version = headerString(query['api-version']);
    if (version !== API_VERSION) {
      return sendMicrosoftError(
        reply,
        400,
        'InvalidApiVersion',
        version === undefined
          ? `The api-version query parameter is required; use api-version=${API_VERSION}`
          : `api-version ${version} is not supported; use api-version=${API_VERSION}`,
      );
    }
    if (opts.requireAuth && !/^Bearer\s+\S+/i.test(headerString(req.headers.authorization) ?? '')) {
      return sendMicrosoftError(
        reply,
        403,
        'Forbidden',
        'The authentication token was not provided or is invalid (expected authorization: Bearer <Entra ID token>).',
      );
    }
    const name = operationName(req);
    if (name === undefined) return;
    const delay = faults.apiDelayMs(name);
    if (delay > 0) await timers.sleep(delay);
    const retryAfter = faults.throttle(name);
    if (retryAfter !== undefined) {
      reply.header('retry-after', String(retryAfter));
      return sendMicrosoftError(reply, 429, 'TooManyRequests', `Too many requests; retry after ${retryAfter} s (injected fault).`);
    }
    if (faults.serverError(name)) {
      return sendMicrosoftError(reply, 500, 'InternalServerError', 'An internal error occurred (injected fault).');
    }
  };
}

/** 3.9 – 3.11: a subscription's operations. */
function operationRoutes(app: Api, marketplace: EmulatedMarketplace): void {
  // 3.9 List outstanding operations (`{}` when nothing is pending: "empty JSON")
  app.get(
    '/saas/subscriptions/:subscriptionId/operations',
    { schema: { querystring: VersionQuery, params: SubscriptionParams } },
    async (req, reply) => {
      const pending = marketplace.state.pendingOperations(req.params.subscriptionId);
      return reply.code(200).send(pending.length === 0 ? {} : { operations: pending.map(toOperationPayload) });
    },
  );

  // 3.10 Get operation status
  app.get(
    '/saas/subscriptions/:subscriptionId/operations/:operationId',
    { schema: { querystring: VersionQuery, params: OperationParams } },
    async (req, reply) =>
      reply.code(200).send(toOperationPayload(marketplace.state.operation(req.params.subscriptionId, req.params.operationId))),
  );

  // 3.11 Update operation status (planId/quantity, which the spec allows, are accepted and ignored)
  app.patch(
    '/saas/subscriptions/:subscriptionId/operations/:operationId',
    { schema: { querystring: VersionQuery, params: OperationParams } },
    async (req, reply) => {
      const body = bodyObject(req.body);
      const status = body.status;
      if (!(UPDATE_OPERATION_STATUS_VALUES as readonly unknown[]).includes(status)) {
        throw new EmulatorError(
          'bad-request',
          'BadArgument',
          `status must be "Success" or "Failure" (got ${JSON.stringify(status)}); "Succeeded"/"Failed" are operation statuses, not PATCH values`,
        );
      }
      optionalString(body, 'planId');
      optionalInteger(body, 'quantity');
      marketplace.updateOperation(req.params.subscriptionId, req.params.operationId, status as UpdateOperationStatus);
      return reply.code(200).send();
    },
  );
}

export const fulfillmentRoutes: FastifyPluginAsyncTypebox<FulfillmentRoutesOptions> = async (app, opts) => {
  const { marketplace } = opts;
  const operationLocation = (subscriptionId: string, operationId: string): string =>
    `${opts.baseUrl()}/api/saas/subscriptions/${subscriptionId}/operations/${operationId}?api-version=${API_VERSION}`;

  acceptEmptyJson(app);

  app.setErrorHandler(fulfillmentErrorHandler);

  app.addHook('onRequest', requestGate(opts));
  if (opts.meter) meteringApiRoutes(app, opts.meter.meter, opts.meter.now);

  // 3.1 Resolve
  app.post('/saas/subscriptions/resolve', { schema: { querystring: VersionQuery } }, async (req, reply) => {
    const token = headerString(req.headers['x-ms-marketplace-token']);
    return reply.code(200).send(marketplace.resolve(token));
  });

  // 3.2 Activate
  app.post(
    '/saas/subscriptions/:subscriptionId/activate',
    { schema: { querystring: VersionQuery, params: SubscriptionParams } },
    async (req, reply) => {
      const body = bodyObject(req.body);
      const plan: { planId?: string; quantity?: number } = {};
      const planId = optionalString(body, 'planId');
      const quantity = optionalInteger(body, 'quantity');
      if (planId !== undefined) plan.planId = planId;
      if (quantity !== undefined) plan.quantity = quantity;
      marketplace.activate(req.params.subscriptionId, plan);
      return reply.code(200).send();
    },
  );

  // 3.3 List subscriptions (an empty body when there are none, as Microsoft does)
  app.get(
    '/saas/subscriptions/',
    { schema: { querystring: Type.Object({ 'api-version': Type.Optional(Type.String()), continuationToken: Type.Optional(Type.String()) }) } },
    async (req, reply) => {
      const page = marketplace.state.listSubscriptions(req.query.continuationToken);
      if (page.subscriptions.length === 0 && req.query.continuationToken === undefined) {
        return reply.code(200).type('application/json; charset=utf-8').send('');
      }
      const body: { subscriptions: unknown[]; '@nextLink'?: string } = {
        subscriptions: page.subscriptions.map(toSubscriptionPayload),
      };
      if (page.continuationToken !== undefined) {
        const next = new URL(`${opts.baseUrl()}/api/saas/subscriptions/`);
        next.searchParams.set('continuationToken', page.continuationToken);
        next.searchParams.set('api-version', API_VERSION);
        body['@nextLink'] = next.toString();
      }
      return reply.code(200).send(body);
    },
  );

  // 3.4 Get subscription
  app.get(
    '/saas/subscriptions/:subscriptionId',
    { schema: { querystring: VersionQuery, params: SubscriptionParams } },
    async (req, reply) => reply.code(200).send(toSubscriptionPayload(marketplace.state.subscription(req.params.subscriptionId))),
  );

  // 3.5 List available plans
  app.get(
    '/saas/subscriptions/:subscriptionId/listAvailablePlans',
    {
      schema: {
        querystring: Type.Object({ 'api-version': Type.Optional(Type.String()), planId: Type.Optional(Type.String()) }),
        params: SubscriptionParams,
      },
    },
    async (req, reply) =>
      reply.code(200).send({ plans: marketplace.state.availablePlans(req.params.subscriptionId, req.query.planId) }),
  );

  // 3.6 / 3.7 Change plan or quantity
  app.patch(
    '/saas/subscriptions/:subscriptionId',
    { schema: { querystring: VersionQuery, params: SubscriptionParams } },
    async (req, reply) => {
      const body = bodyObject(req.body);
      const op = marketplace.updateSubscription(req.params.subscriptionId, { planId: body.planId, quantity: body.quantity });
      return reply.code(202).header('operation-location', operationLocation(op.subscriptionId, op.id)).send();
    },
  );

  // 3.8 Cancel
  app.delete(
    '/saas/subscriptions/:subscriptionId',
    { schema: { querystring: VersionQuery, params: SubscriptionParams } },
    async (req, reply) => {
      const op = marketplace.deleteSubscription(req.params.subscriptionId);
      return reply.code(202).header('operation-location', operationLocation(op.subscriptionId, op.id)).send();
    },
  );

  operationRoutes(app, marketplace);
};
