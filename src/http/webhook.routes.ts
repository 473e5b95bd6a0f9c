/**
 * POST /webhook — Microsoft's notifications (docs/marketplace.md §7–§8).
 *
 * 1. Authenticate the bearer JWT (before the body is even read): 401 and a log line with the reason
 *    (503 when the signing keys cannot be fetched, so that Microsoft retries).
 * 2. Read the body once, tolerantly (the webhook schema, GUID ids): a notification, or why it is not one.
 * 3. One command to the notification inbox (src/application/notification-inbox.ts), which records the
 *    delivery verbatim in `notification-<operation id>` before anything acts on it, and refuses now a
 *    customer-side change the ISV's policy does not allow.
 * 4. Map its outcome: 200 accepted / duplicate; 400 refused or unreadable (kept all the same); a store
 *    that cannot take the delivery throws StoreUnavailableError, which the app answers 503: never 200 for
 *    what is not durable. Verifying, applying and acknowledging is the notification process's job
 *    (src/processes/notification.process.ts): nothing slow happens before the response, and a crash loses nothing.
 */
import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import Type from 'typebox';
import { NotificationInbox } from '../application/notification-inbox.js';
import { readNotification } from '../application/notification-events.js';
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import type { StoreRef } from '../application/subscription-ledger.js';
import type { ChangePolicyConfig } from '../domain/change-policy.js';
import { problem, problemContentType } from './problem.js';
import type { Problem } from './problem.js';
import { WebhookAuthError } from './webhook-auth.js';
import type { WebhookAuthenticator, WebhookCaller } from './webhook-auth.js';
import type { Metrics } from '../metrics/metrics.js';

export type WebhookOptions = {
  store: StoreRef;
  ledger: SubscriptionLedger;
  authenticator: WebhookAuthenticator;
  policy: ChangePolicyConfig;
  now?: () => Date;
  metrics?: Pick<Metrics, 'webhookReceived' | 'webhookAuthFailed'>;
};

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
  const inbox = new NotificationInbox(options);

  // Keep the body as the exact string Microsoft sent; parse it ourselves, tolerantly.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: 256 * 1024 }, (_request, body, done) => done(null, body));

  app.addHook('onRequest', async (request, reply) => {
    try {
      request.webhookCaller = await options.authenticator.authenticate(request.headers.authorization);
    } catch (err) {
      const reason = err instanceof WebhookAuthError ? err.reason : 'error';
      const keysDown = reason === 'keys-unavailable';
      options.metrics?.webhookAuthFailed(reason);
      request.log[keysDown ? 'error' : 'warn'](
        { reason, detail: err instanceof Error ? err.message : String(err), ip: request.ip, userAgent: request.headers['user-agent'] },
        keysDown ? 'webhook: cannot verify tokens (signing keys unavailable)' : 'webhook: unauthenticated request',
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
    const body = typeof request.body === 'string' ? request.body : '';
    const headers: Record<string, string> = {};
    for (const h of keptHeaders) {
      const v = request.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    const c = request.webhookCaller;
    const reading = readNotification(body);
    const outcome = await inbox.receive(
      {
        body,
        headers,
        ...(c ? { caller: { tokenVersion: c.tokenVersion, issuer: c.issuer, caller: c.caller, tenantId: c.tenantId } } : {}),
        reading,
      },
      request.log,
    );
    options.metrics?.webhookReceived(reading.readable ? reading.notification.action : 'unreadable', outcome.kind);
    switch (outcome.kind) {
      case 'accepted':
      case 'duplicate':
        return { status: outcome.kind, operationId: outcome.operationId, deliveryId: outcome.deliveryId };
      case 'refused':
        return sendProblem(reply, problem(400, 'change-refused', outcome.reason));
      case 'unreadable':
        return sendProblem(reply, problem(400, 'unreadable-notification', `not a notification: ${outcome.reason}`, { deliveryId: outcome.deliveryId }));
    }
  });
};

function sendProblem(reply: FastifyReply, body: Problem) {
  return reply.code(body.status).type(problemContentType).send(body);
}
