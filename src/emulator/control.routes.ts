/**
 * The emulator's own API, under `/emulator`: make purchases, act as the customer (or as Microsoft),
 * inject faults, and look at what was sent. Strict TypeBox schemas (unknown fields are errors, not
 * silently dropped) and `application/problem+json` errors.
 *
 *   GET    /emulator                                      configuration, URLs, timings
 *   GET    /emulator/catalogue                            offers and plans
 *   POST   /emulator/purchases                            buy: → subscription, token, landing-page URL
 *                                                         ({ silent: true }: no webhook goes out)
 *   POST   /emulator/purchases/bulk                       { count, planId, status?, … } → { count, subscriptionIds }, no webhooks
 *   GET    /emulator/subscriptions                        every subscription Microsoft has, oldest first
 *   GET    /emulator/subscriptions/:id                    subscription + all its operations (revertOf, injected) + deliveries
 *   POST   /emulator/subscriptions/:id/landing-token      a fresh token ("Manage account")
 *   POST   /emulator/subscriptions/:id/change-plan        { planId }   → ChangePlan webhook, ack window
 *   POST   /emulator/subscriptions/:id/change-quantity    { quantity } → ChangeQuantity webhook, ack window
 *   POST   /emulator/subscriptions/:id/suspend | reinstate | renew | unsubscribe
 *   PUT    /emulator/subscriptions/:id/auto-renew         { autoRenew }
 *   POST   /emulator/subscriptions/:id/silent             { status?, planId?, quantity?, termUnit?, startDate?, endDate?,
 *                                                           autoRenew? }: Microsoft's record changes, no webhook (drift)
 *   POST   /emulator/notifications                        { subscriptionId, action, operationId?, status?, planId?, quantity?,
 *                                                           offerId?, termUnit?, source?, record? }: a signed webhook for anything
 *                                                           (record 'none': Get operation 404; else an operation in that status;
 *                                                           the subscription is never changed and need not exist)
 *   GET    /emulator/clock                                Microsoft's calendar: { now, offsetMs }
 *   POST   /emulator/clock/advance                        { days?, hours?, ms? } → { now, offsetMs, events }: renewals (Renew),
 *                                                           term ends with autoRenew off and 30-day suspensions (Unsubscribe),
 *                                                           pending purchases past 30 days (Unsubscribed, no webhook)
 *   GET    /emulator/deliveries[?subscriptionId=&operationId=]
 *   GET | PUT | DELETE /emulator/faults                 webhook { duplicate, reorder, delayMs, token, drop }, api { throttle,
 *                                                           serverError, delay, failActivation } (faults.ts)
 *   PUT    /emulator/settings                             { webhookUrl?, landingPageUrl?, pageSize? }
 *   GET    /emulator/landing?token=…                      stand-in landing page when none is configured
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { SANDBOX_TYPE_VALUES, SESSION_MODE_VALUES } from '../marketplace/schemas.js';
import { EmulatorError, CONTROL_STATUS } from './errors.js';
import { FaultConfigSchema } from './faults.js';
import { acceptEmptyJson } from './json-body.js';
import type { CalendarClock } from './clock.js';
import type { FaultInjector } from './faults.js';
import type { EmulatedMarketplace } from './marketplace.js';
import { toOperationPayload, toSubscriptionPayload } from './payloads.js';
import type { OperationRecord, SilentChange } from './state.js';

export type ControlRoutesOptions = {
  marketplace: EmulatedMarketplace;
  faults: FaultInjector;
  clock: CalendarClock;
  info: () => Record<string, unknown>;
  setWebhookUrl: (url: string | undefined) => void;
  setLandingPageUrl: (url: string | undefined) => void;
};

export type Problem = {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: { in: string; path: string; message: string }[];
};

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
};

export function sendProblem(reply: FastifyReply, problem: Omit<Problem, 'type' | 'title'> & { title?: string }): FastifyReply {
  const body: Problem = {
    type: `urn:marketplace-emulator:problem:${problem.code}`,
    title: problem.title ?? TITLES[problem.status] ?? 'Error',
    ...problem,
  };
  return reply.code(problem.status).type('application/problem+json; charset=utf-8').send(body);
}

const Uuid = Type.String({ format: 'uuid' });
const Identity = Type.Object(
  {
    emailId: Type.Optional(Type.String({ minLength: 1 })),
    objectId: Type.Optional(Uuid),
    tenantId: Type.Optional(Uuid),
    puid: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

export const PurchaseBody = Type.Object(
  {
    offerId: Type.Optional(Type.String({ minLength: 1 })),
    planId: Type.String({ minLength: 1 }),
    quantity: Type.Optional(Type.Integer({ minimum: 1 })),
    subscriptionName: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    freeTrial: Type.Optional(Type.Boolean()),
    isTest: Type.Optional(Type.Boolean()),
    autoRenew: Type.Optional(Type.Boolean()),
    beneficiary: Type.Optional(Identity),
    purchaser: Type.Optional(Identity),
    csp: Type.Optional(Type.Boolean()),
    sandboxType: Type.Optional(Type.Enum(SANDBOX_TYPE_VALUES)),
    sessionMode: Type.Optional(Type.Enum(SESSION_MODE_VALUES)),
    autoActivate: Type.Optional(Type.Boolean()),
    /** No webhook goes out for this purchase (the `Subscribe` of an auto-activated plan is recorded, not sent). */
    silent: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const Status = Type.Enum(['PendingFulfillmentStart', 'Subscribed', 'Suspended', 'Unsubscribed']);
/** A term unit Microsoft sells (`P1M` … `P5Y`) or one it may start sending (`PAY`). */
const TermUnit = Type.String({ pattern: '^[A-Za-z0-9]{1,16}$' });
const DateTime = Type.String({ format: 'date-time' });

export const BulkPurchaseBody = Type.Object(
  {
    count: Type.Integer({ minimum: 1, maximum: 100_000 }),
    offerId: Type.Optional(Type.String({ minLength: 1 })),
    planId: Type.String({ minLength: 1 }),
    quantity: Type.Optional(Type.Integer({ minimum: 1 })),
    /** Default Subscribed (with a term started today). */
    status: Type.Optional(Status),
    autoRenew: Type.Optional(Type.Boolean()),
    isTest: Type.Optional(Type.Boolean()),
    freeTrial: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const SilentChangeBody = Type.Object(
  {
    status: Type.Optional(Type.Enum(['Subscribed', 'Suspended', 'Unsubscribed'])),
    planId: Type.Optional(Type.String({ minLength: 1 })),
    quantity: Type.Optional(Type.Integer({ minimum: 1 })),
    termUnit: Type.Optional(TermUnit),
    startDate: Type.Optional(DateTime),
    endDate: Type.Optional(DateTime),
    autoRenew: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const NotificationBody = Type.Object(
  {
    /** Need not be a subscription Microsoft knows. */
    subscriptionId: Type.String({ minLength: 1 }),
    /** Any action, also ones Microsoft does not send yet (`Transfer`). */
    action: Type.String({ minLength: 1, maxLength: 64 }),
    operationId: Type.Optional(Type.String({ minLength: 1 })),
    /** The webhook's `status`, any string. */
    status: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    planId: Type.Optional(Type.String({ minLength: 1 })),
    quantity: Type.Optional(Type.Integer({ minimum: 0 })),
    offerId: Type.Optional(Type.String({ minLength: 1 })),
    /** Replaces `subscription.term.termUnit` in the webhook (`PAY`). */
    termUnit: Type.Optional(TermUnit),
    source: Type.Optional(Type.Enum(['Azure', 'Partner'])),
    /** What Get operation will answer: 404 (`none`) or an operation in this status. */
    record: Type.Optional(Type.Enum(['none', 'Succeeded', 'Failed', 'Conflict', 'InProgress'])),
  },
  { additionalProperties: false },
);

export const AdvanceClockBody = Type.Object(
  {
    days: Type.Optional(Type.Integer({ minimum: 0, maximum: 36_500 })),
    hours: Type.Optional(Type.Integer({ minimum: 0, maximum: 876_000 })),
    ms: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false, minProperties: 1 },
);

const SubscriptionParams = Type.Object({ subscriptionId: Type.String({ minLength: 1 }) }, { additionalProperties: false });
/** No body, or an empty JSON object. */
const NoBody = Type.Union([Type.Undefined(), Type.Null(), Type.Object({}, { additionalProperties: false })]);

function operationResponse(op: OperationRecord): { operation: ReturnType<typeof toOperationPayload>; source: string } {
  return { operation: toOperationPayload(op), source: op.source };
}

type Api = Parameters<FastifyPluginAsyncTypebox<ControlRoutesOptions>>[0];

/** Emulator errors with their status, validation errors listed one by one, the rest as Fastify says (500s logged). */
function controlErrorHandler(err: FastifyError, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (err instanceof EmulatorError) {
    return sendProblem(reply, { status: CONTROL_STATUS[err.kind], code: err.code, detail: err.message });
  }
  const e = err as {
    statusCode?: number;
    code?: string;
    message: string;
    validation?: { instancePath?: string; message?: string; params?: Record<string, unknown> }[];
    validationContext?: string;
  };
  if (e.validation !== undefined) {
    const seen = new Set<string>();
    const errors = e.validation
      .map((v) => {
        const extra = v.params?.additionalProperties;
        const allowed = v.params?.allowedValues;
        const message = Array.isArray(extra)
          ? `must not have additional properties: ${extra.join(', ')}`
          : Array.isArray(allowed)
            ? `must be one of: ${allowed.map((a) => JSON.stringify(a)).join(', ')}`
            : (v.message ?? 'is invalid');
        return { in: e.validationContext ?? 'body', path: v.instancePath || '/', message };
      })
      .filter((x) => x.message !== 'schema is false')
      .filter((x) => {
        const key = `${x.in}${x.path}${x.message}`;
        if (seen.has(key)) return false;
        seen.add(key);
        return true;
      });
    const detail = errors.map((x) => `${x.in}${x.path === '/' ? '' : x.path} ${x.message}`).join('; ');
    return sendProblem(reply, { status: 400, code: 'ValidationFailed', detail, errors });
  }
  const status = e.statusCode ?? 500;
  if (status >= 500) {
    req.log.error({ err }, 'emulator control route failed');
    return sendProblem(reply, { status: 500, code: 'InternalError', detail: 'An internal error occurred; see the emulator log.' });
  }
  if (status === 415) {
    return sendProblem(reply, { status, code: 'UnsupportedMediaType', detail: 'send the body as application/json' });
  }
  return sendProblem(reply, { status, code: e.code ?? 'BadRequest', detail: e.message });
}

/** What the customer (or Microsoft) does to a subscription: a fresh landing token, changes, status, auto-renew. */
function subscriptionActionRoutes(app: Api, marketplace: EmulatedMarketplace): void {
  app.post(
    '/emulator/subscriptions/:subscriptionId/landing-token',
    { schema: { params: SubscriptionParams, body: NoBody } },
    async (req, reply) => {
      const t = marketplace.newLandingToken(req.params.subscriptionId);
      return reply.code(201).send({ token: t.token, tokenExpiresAt: t.tokenExpiresAt.toISOString(), landingPageUrl: t.landingPageUrl });
    },
  );

  app.post(
    '/emulator/subscriptions/:subscriptionId/change-plan',
    {
      schema: {
        params: SubscriptionParams,
        body: Type.Object({ planId: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
      },
    },
    async (req, reply) => reply.code(202).send(operationResponse(marketplace.changePlan(req.params.subscriptionId, req.body.planId))),
  );

  app.post(
    '/emulator/subscriptions/:subscriptionId/change-quantity',
    {
      schema: {
        params: SubscriptionParams,
        body: Type.Object({ quantity: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
      },
    },
    async (req, reply) =>
      reply.code(202).send(operationResponse(marketplace.changeQuantity(req.params.subscriptionId, req.body.quantity))),
  );

  const simpleActions = {
    suspend: (id: string) => marketplace.suspend(id),
    reinstate: (id: string) => marketplace.reinstate(id),
    renew: (id: string) => marketplace.renew(id),
    unsubscribe: (id: string) => marketplace.unsubscribe(id),
  } as const;
  for (const [name, act] of Object.entries(simpleActions)) {
    app.post(
      `/emulator/subscriptions/:subscriptionId/${name}`,
      { schema: { params: SubscriptionParams, body: NoBody } },
      async (req, reply) => reply.code(202).send(operationResponse(act(req.params.subscriptionId))),
    );
  }

  app.put(
    '/emulator/subscriptions/:subscriptionId/auto-renew',
    {
      schema: {
        params: SubscriptionParams,
        body: Type.Object({ autoRenew: Type.Boolean() }, { additionalProperties: false }),
      },
    },
    async (req) => toSubscriptionPayload(marketplace.setAutoRenew(req.params.subscriptionId, req.body.autoRenew)),
  );
}

/** Drift and load: purchases in bulk, changes at Microsoft that no webhook announces. */
function driftRoutes(app: Api, marketplace: EmulatedMarketplace): void {
  app.post('/emulator/purchases/bulk', { schema: { body: BulkPurchaseBody } }, async (req, reply) => {
    const { count, status, ...input } = req.body;
    const bought = marketplace.purchaseMany(input, count, status ?? 'Subscribed');
    return reply.code(201).send({ count: bought.length, subscriptionIds: bought.map((s) => s.id) });
  });

  app.post(
    '/emulator/subscriptions/:subscriptionId/silent',
    { schema: { params: SubscriptionParams, body: SilentChangeBody } },
    async (req) => {
      const { startDate, endDate, ...rest } = req.body;
      const change: SilentChange = { ...rest };
      if (startDate !== undefined) change.startDate = new Date(startDate);
      if (endDate !== undefined) change.endDate = new Date(endDate);
      return { subscription: toSubscriptionPayload(marketplace.silentChange(req.params.subscriptionId, change)) };
    },
  );
}

/** A webhook for anything: other statuses, unknown actions, unknown subscriptions, operations Microsoft has no record of. */
function notificationRoutes(app: Api, marketplace: EmulatedMarketplace): void {
  app.post('/emulator/notifications', { schema: { body: NotificationBody } }, async (req, reply) => {
    const { termUnit, ...input } = req.body;
    const { injected, delivery } = marketplace.sendNotification(input, termUnit === undefined ? {} : { termUnit });
    return reply.code(202).send({
      operationId: injected.operation.id,
      recorded: injected.recorded,
      operation: injected.recorded ? toOperationPayload(injected.operation) : null,
      deliveryId: delivery.id,
      webhook: delivery.payload,
    });
  });
}

/** Microsoft's calendar: where it stands, and moving it on (renewals, term ends, the 30-day limits). */
function clockRoutes(app: Api, marketplace: EmulatedMarketplace, clock: CalendarClock): void {
  const view = (): { now: string; offsetMs: number } => ({ now: clock.now().toISOString(), offsetMs: clock.offsetMs });

  app.get('/emulator/clock', async () => view());

  app.post('/emulator/clock/advance', { schema: { body: AdvanceClockBody } }, async (req) => {
    const { days = 0, hours = 0, ms = 0 } = req.body;
    const { events } = marketplace.advanceClock(days * 86_400_000 + hours * 3_600_000 + ms);
    return {
      ...view(),
      events: events.map((e) => ({
        kind: e.kind,
        subscriptionId: e.subscriptionId,
        at: e.at.toISOString(),
        ...(e.operation ? { operationId: e.operation.id, action: e.operation.action } : {}),
      })),
    };
  });
}

export const controlRoutes: FastifyPluginAsyncTypebox<ControlRoutesOptions> = async (app, opts) => {
  const { marketplace, faults } = opts;
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  acceptEmptyJson(app);

  app.setErrorHandler(controlErrorHandler);

  app.get('/emulator', async () => opts.info());

  app.get('/emulator/catalogue', async () => marketplace.state.catalogue);

  app.post('/emulator/purchases', { schema: { body: PurchaseBody } }, async (req, reply) => {
    const { silent, ...input } = req.body;
    const result = marketplace.purchase(input, { silent: silent ?? false });
    const body: Record<string, unknown> = {
      subscriptionId: result.subscription.id,
      token: result.token,
      tokenExpiresAt: result.tokenExpiresAt.toISOString(),
      landingPageUrl: result.landingPageUrl,
      subscription: toSubscriptionPayload(result.subscription),
    };
    if (result.operation) body.operation = toOperationPayload(result.operation);
    return reply.code(201).send(body);
  });

  // Microsoft's subscriptions, oldest first, as Get subscription shows them (the walkthrough's "what is there").
  app.get('/emulator/subscriptions', async () => ({ subscriptions: marketplace.state.subscriptions().map((s) => toSubscriptionPayload(s)) }));

  app.get('/emulator/subscriptions/:subscriptionId', { schema: { params: SubscriptionParams } }, async (req) => {
    const id = req.params.subscriptionId;
    const sub = marketplace.state.subscription(id);
    return {
      subscription: toSubscriptionPayload(sub),
      locked: marketplace.state.isLocked(id),
      operations: marketplace.state.operations(id).map((op) => ({
        ...toOperationPayload(op),
        operationRequestSource: op.source,
        ...(op.revertOf !== undefined ? { revertOf: op.revertOf } : {}),
        ...(op.injected ? { injected: true } : {}),
      })),
      deliveries: marketplace.deliveries({ subscriptionId: id }),
    };
  });

  subscriptionActionRoutes(app, marketplace);
  driftRoutes(app, marketplace);
  notificationRoutes(app, marketplace);
  clockRoutes(app, marketplace, opts.clock);

  app.get(
    '/emulator/deliveries',
    {
      schema: {
        querystring: Type.Object(
          { subscriptionId: Type.Optional(Type.String()), operationId: Type.Optional(Type.String()) },
          { additionalProperties: false },
        ),
      },
    },
    async (req) => {
      const filter: { subscriptionId?: string; operationId?: string } = {};
      if (req.query.subscriptionId !== undefined) filter.subscriptionId = req.query.subscriptionId;
      if (req.query.operationId !== undefined) filter.operationId = req.query.operationId;
      return { deliveries: marketplace.deliveries(filter) };
    },
  );

  app.get('/emulator/faults', async () => ({ faults: faults.config, fired: faults.fired }));

  app.put('/emulator/faults', { schema: { body: FaultConfigSchema } }, async (req) => {
    faults.set(req.body);
    if (!faults.reorder()) marketplace.webhooks.flushHeld();
    return { faults: faults.config, fired: faults.fired };
  });

  app.delete('/emulator/faults', async (_req, reply) => {
    faults.clear();
    marketplace.webhooks.flushHeld();
    return reply.code(204).send();
  });

  app.put(
    '/emulator/settings',
    {
      schema: {
        body: Type.Object(
          {
            webhookUrl: Type.Optional(Type.Union([Type.String({ format: 'uri' }), Type.Null()])),
            landingPageUrl: Type.Optional(Type.Union([Type.String({ format: 'uri' }), Type.Null()])),
            /** List subscriptions page size from now on. */
            pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (req) => {
      if (req.body.webhookUrl !== undefined) opts.setWebhookUrl(req.body.webhookUrl ?? undefined);
      if (req.body.landingPageUrl !== undefined) opts.setLandingPageUrl(req.body.landingPageUrl ?? undefined);
      if (req.body.pageSize !== undefined) marketplace.state.setPageSize(req.body.pageSize);
      return opts.info();
    },
  );

  app.get(
    '/emulator/landing',
    { schema: { querystring: Type.Object({ token: Type.Optional(Type.String()) }, { additionalProperties: false }) } },
    async (req) => ({
      message:
        'This is the emulator stand-in for your landing page. Configure EMULATOR_LANDING_PAGE_URL (or PUT /emulator/settings) to send buyers to your own.',
      token: req.query.token ?? null,
      resolveWith: 'POST /api/saas/subscriptions/resolve?api-version=2018-08-31 with header x-ms-marketplace-token: <token>',
    }),
  );
};
