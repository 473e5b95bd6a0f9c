/**
 * POST /webhook — Microsoft's notifications (API.md §7–§8).
 *
 * 1. Authenticate the bearer JWT (before the body is even read): 401 and a log line with the reason.
 * 2. Record the delivery verbatim in `notification-<operation id>` before anything acts on it; if the
 *    store cannot take it, answer 503 so that Microsoft retries: never 200 for what is not durable.
 * 3. Customer-side plan and quantity changes that the ISV's policy refuses get a 4xx now, inside
 *    Microsoft's 10-second window: the refusal goes on the subscription (ChangeRejected), then the
 *    delivery and its outcome are appended in one write, so nothing can act on it in between.
 *    A body that is not a readable notification (not JSON, no GUID `id`/`subscriptionId`) is kept
 *    too, and answered 400.
 * 4. Answer 200. Verifying the operation with Microsoft, applying it and acknowledging it is the
 *    notification process's job (src/processes/notification.process.ts), which reads the recorded
 *    delivery: nothing slow happens before the response, and a crash loses nothing.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger, FastifyReply } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import Type from 'typebox';
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import { evaluateChange } from '../domain/change-policy.js';
import type { ChangePolicyConfig } from '../domain/change-policy.js';
import { acknowledgeableActions, handledActions, notificationStream } from '../domain/notification/notification.events.js';
import type { NotificationEvent, NotificationReceived } from '../domain/notification/notification.events.js';
import { DomainError } from '../domain/errors.js';
import { resolveStore } from '../application/subscription-ledger.js';
import type { StoreRef } from '../application/subscription-ledger.js';
import type { NewEvent } from '../eventstore/eventstore.js';
import { parseWebhookPayload } from '../marketplace/schemas.js';
import type { NormalisedWebhookPayload } from '../marketplace/schemas.js';
import { problem, problemContentType } from './problem.js';
import type { Problem } from './problem.js';
import { WebhookAuthError } from './webhook-auth.js';
import type { WebhookAuthenticator, WebhookCaller } from './webhook-auth.js';

export type WebhookOptions = {
  store: StoreRef;
  ledger: SubscriptionLedger;
  authenticator: WebhookAuthenticator;
  policy: ChangePolicyConfig;
  now?: () => Date;
};

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Headers worth keeping with a delivery (never the bearer token itself). */
const keptHeaders = ['content-type', 'content-length', 'user-agent', 'x-ms-requestid', 'x-ms-correlationid', 'x-forwarded-for', 'traceparent'];

const Accepted = Type.Object({
  status: Type.Union([Type.Literal('accepted'), Type.Literal('duplicate')]),
  operationId: Type.Optional(Type.String()),
  deliveryId: Type.String(),
});

declare module 'fastify' {
  interface FastifyRequest {
    webhookCaller?: WebhookCaller;
  }
}

export const webhookRoutes: FastifyPluginAsyncTypebox<WebhookOptions> = async (app, options) => {
  const now = () => (options.now?.() ?? new Date()).toISOString();

  // Keep the body as the exact string Microsoft sent; parse it ourselves, tolerantly.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: 256 * 1024 }, (_request, body, done) => done(null, body));

  app.addHook('onRequest', async (request, reply) => {
    try {
      request.webhookCaller = await options.authenticator.authenticate(request.headers.authorization);
    } catch (err) {
      const reason = err instanceof WebhookAuthError ? err.reason : 'error';
      const keysDown = reason === 'keys-unavailable';
      request.log[keysDown ? 'error' : 'warn'](
        { reason, detail: (err as Error).message, ip: request.ip, userAgent: request.headers['user-agent'] },
        keysDown ? 'webhook: cannot verify tokens (signing keys unavailable)' : 'webhook: rejected authentication',
      );
      // Keys we cannot fetch are our problem, not the caller's: 503 makes Microsoft retry.
      const status = keysDown ? 503 : 401;
      return reply
        .code(status)
        .header('www-authenticate', 'Bearer')
        .type(problemContentType)
        .send(problem(status, keysDown ? 'keys-unavailable' : 'unauthorized', keysDown ? 'token signing keys are unavailable; retry later' : `authentication failed: ${reason}`));
    }
  });

  app.post('/webhook', { schema: { response: { 200: Accepted } } }, async (request, reply) => {
    const receivedAt = now();
    const deliveryId = randomUUID();
    const raw = typeof request.body === 'string' ? request.body : '';
    const headers: Record<string, string> = {};
    for (const h of keptHeaders) {
      const v = request.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }

    let payload: NormalisedWebhookPayload | undefined;
    let unreadable: string | undefined;
    try {
      payload = parseWebhookPayload(JSON.parse(raw) as unknown);
      if (!GUID.test(payload.id) || !GUID.test(payload.subscriptionId)) {
        unreadable = `id and subscriptionId must be GUIDs (got ${JSON.stringify(payload.id).slice(0, 80)}, ${JSON.stringify(payload.subscriptionId).slice(0, 80)})`;
        payload = undefined;
      }
    } catch (err) {
      unreadable = (err as Error).message.slice(0, 500);
    }
    const caller = request.webhookCaller;
    const received: NotificationReceived = {
      type: 'NotificationReceived',
      data: {
        deliveryId,
        receivedAt,
        ...(payload ? { operationId: payload.id, subscriptionId: payload.subscriptionId, action: payload.action } : {}),
        body: raw,
        headers,
        ...(caller ? { caller: { tokenVersion: caller.tokenVersion, issuer: caller.issuer, caller: caller.caller, tenantId: caller.tenantId } } : {}),
        ...(unreadable ? { unreadable } : {}),
      },
    };
    const stream = notificationStream(payload?.id ?? `unreadable-${deliveryId}`);
    const store = resolveStore(options.store);
    const history = await store.readStream(stream);
    const log = request.log.child({ deliveryId, operationId: payload?.id, subscriptionId: payload?.subscriptionId, action: payload?.action });
    const receivedEvent: NewEvent = { ...received, id: deliveryId, metadata: { actor: 'microsoft', correlationId: headers['x-ms-correlationid'] ?? deliveryId } };
    const earlier = history.map((e) => e.type as NotificationEvent['type']);

    // A first delivery of a customer-side change the product cannot serve: refuse it now, inside the
    // 10-second window. The delivery and its refusal are appended together, so the notification
    // process can never see the delivery without the refusal and apply the change.
    const source = payload?.operationRequestSource;
    const decision =
      payload && !earlier.includes('NotificationReceived') && (acknowledgeableActions as readonly string[]).includes(payload.action) && source !== 'Partner'
        ? evaluateChange(options.policy, {
            action: payload.action,
            ...(payload.planId ? { planId: payload.planId } : {}),
            ...(payload.quantity !== undefined ? { quantity: payload.quantity } : {}),
          })
        : { accept: true as const };
    if (payload && !decision.accept) {
      const subscriptionEvents = await recordRejection(options.ledger, payload, decision.reason, receivedAt, deliveryId, log);
      const processed: NewEvent = {
        type: 'NotificationProcessed',
        data: {
          operationId: payload.id,
          subscriptionId: payload.subscriptionId,
          action: payload.action,
          outcome: 'rejected',
          detail: decision.reason,
          subscriptionEvents,
          at: now(),
        },
        metadata: { actor: 'system:webhook', causationId: deliveryId },
      };
      await store.appendToStream(stream, [receivedEvent, processed]);
      log.warn({ reason: decision.reason }, 'webhook: change refused by policy');
      return refuse(reply, decision.reason);
    }

    await store.appendToStream(stream, [receivedEvent]);
    if (!payload) {
      // Kept for people to look at; a 4xx tells the sender it was not understood (Microsoft's are always readable).
      log.warn({ unreadable }, 'webhook: unreadable notification recorded, not processed');
      return sendProblem(reply, problem(400, 'unreadable-notification', `not a notification: ${unreadable ?? 'unreadable'}`, { deliveryId }));
    }
    if (earlier.includes('NotificationReceived')) {
      log.info({ deliveries: earlier.filter((t) => t === 'NotificationReceived').length + 1 }, 'webhook: repeated delivery recorded; nothing new to do');
      if (earlier.includes('NotificationProcessed')) {
        const processed = history.find((e) => e.type === 'NotificationProcessed')?.data as { outcome?: string; detail?: string } | undefined;
        if (processed?.outcome === 'rejected') return refuse(reply, processed.detail ?? 'refused by policy');
      }
      return { status: 'duplicate' as const, operationId: payload.id, deliveryId };
    }

    if (!handledActions.includes(payload.action)) {
      log.warn('webhook: unknown action recorded; answering 200 so Microsoft does not retry');
    } else {
      log.info('webhook: notification recorded');
    }
    return { status: 'accepted' as const, operationId: payload.id, deliveryId };
  });
};

function sendProblem(reply: FastifyReply, body: Problem) {
  return reply.code(body.status).type(problemContentType).send(body);
}

function refuse(reply: FastifyReply, reason: string) {
  return sendProblem(reply, problem(400, 'change-refused', reason));
}

/** Record the refusal on the subscription; an unknown subscription is refused all the same. */
async function recordRejection(
  ledger: SubscriptionLedger,
  payload: NormalisedWebhookPayload,
  reason: string,
  at: string,
  deliveryId: string,
  log: FastifyBaseLogger,
): Promise<string[]> {
  try {
    const result = await ledger.execute(
      payload.subscriptionId,
      {
        type: 'RejectChange',
        now: at,
        source: 'webhook',
        operationId: payload.id,
        action: payload.action as 'ChangePlan' | 'ChangeQuantity',
        ...(payload.planId ? { planId: payload.planId } : {}),
        ...(payload.quantity !== undefined ? { quantity: payload.quantity } : {}),
        reason,
      },
      { actor: 'system:policy', causationId: deliveryId },
    );
    return result.events.map((e) => e.type);
  } catch (err) {
    if (!(err instanceof DomainError)) throw err;
    log.warn({ code: err.code, detail: err.message }, 'webhook: refusal not recorded on the subscription');
    return [];
  }
}
