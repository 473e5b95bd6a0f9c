/**
 * The landing page a customer reaches from Microsoft after a purchase (API.md §9), and again from
 * "Manage account" with a fresh token.
 *
 *   GET  /landing?token=…                         Resolve → RecordPurchase → the details and contact form,
 *                                                 or (already activating, active, suspended, cancelled) 303 to the status page
 *   POST /landing/activate                        form: subscriptionId + sig + contact → RequestActivation → 303 status page
 *   GET  /landing/subscriptions/:id?sig=…         status/account page; polls the JSON below (meta refresh without JS)
 *   GET  /landing/subscriptions/:id/status?sig=…  { status, phase, label, title, message, final }
 *
 * The token is read from the raw query string and percent-decoded exactly once (never form-decoded:
 * a `+` stays a `+`, API.md §14.1). The form and the status links carry a short-lived HMAC
 * (`landing.signing.ts`) proving the visitor resolved a token for that subscription; a bare
 * subscription id is never trusted. Activation itself (provisioning, Microsoft's activate) is the
 * activation process manager's job: this page only records the customer's request and shows progress.
 *
 * Pages are HTML (never a stack trace, never problem+json); the JSON endpoint answers problem+json.
 */
import { randomBytes } from 'node:crypto';
import formbody from '@fastify/formbody';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { detailsFromMicrosoft } from '../application/subscription-details.js';
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import { DomainError } from '../domain/errors.js';
import type { Contact, KnownSubscription, SubscriptionState } from '../domain/subscription/index.js';
import { StoreUnavailableError } from '../eventstore/eventstore.js';
import {
  MarketplaceAuthError,
  MarketplaceBadRequestError,
  MarketplaceError,
  MarketplaceForbiddenError,
  MarketplaceNotFoundError,
} from '../marketplace/errors.js';
import type { FulfillmentClient } from '../marketplace/fulfillment-client.js';
import type { NormalisedSubscription } from '../marketplace/schemas.js';
import { problem, problemContentType } from './problem.js';
import { createLandingSigner, randomLandingSecret } from './landing.signing.js';
import type { LandingSigner } from './landing.signing.js';
import { EXPIRED_LINK_MESSAGE, REOPEN_HINT, errorPage, progressOf, purchasePage, statusPage } from './landing.views.js';
import type { ContactForm, ErrorPageModel, PageContext } from './landing.views.js';

export type LandingOptions = {
  ledger: SubscriptionLedger;
  /** Only Resolve (and Get subscription, when Resolve leaves the status out) are used. */
  marketplace: Pick<FulfillmentClient, 'resolve' | 'getSubscription'>;
  /** The product's name as customers know it (page header, titles). */
  productName?: string;
  /**
   * Key of the HMAC that ties a form or status link to a resolved token (≥ 32 bytes). Set it in
   * production: without it a random key is used, and links stop working on restart and across instances.
   */
  landingSecret?: string | Uint8Array;
  /** How long a form or status link stays valid; default 2 hours. */
  linkTtlMs?: number;
  /** How often the status page polls; default 2 s. */
  pollIntervalMs?: number;
  /** Where an active customer uses the product (a link on the account page). */
  accountUrl?: string;
  now?: () => Date;
};

export const LANDING_PATH = '/landing';
const DEFAULT_PRODUCT_NAME = 'Our service';
const DEFAULT_LINK_TTL_MS = 2 * 60 * 60 * 1000;
const MAX_TOKEN_CHARS = 8192;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const EMAIL = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+\.[^\s@<>()[\]\\,;:"]+$/;

// ------------------------------------------------------------------------------------------------
// The token, from the raw query string

export type RawToken =
  | {
      kind: 'ok';
      /** As it stands in the URL (still percent-encoded): what `FulfillmentClient.resolve` takes. */
      raw: string;
      /** Percent-decoded once: what Microsoft expects in `x-ms-marketplace-token`. */
      token: string;
    }
  | { kind: 'missing' }
  | { kind: 'malformed'; reason: string };

/**
 * The `token` query parameter of a raw request URL. Read from the raw URL because a query parser
 * form-decodes it (Fastify's and URLSearchParams' parsers turn `+` into a space, API.md §14.1);
 * `token` is the value percent-decoded once, never form-decoded.
 */
export function tokenFromRawUrl(rawUrl: string | undefined): RawToken {
  const url = rawUrl ?? '';
  const q = url.indexOf('?');
  if (q < 0) return { kind: 'missing' };
  const hash = url.indexOf('#', q);
  const query = url.slice(q + 1, hash < 0 ? undefined : hash);
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const rawName = eq < 0 ? pair : pair.slice(0, eq);
    let name: string;
    try {
      name = decodeURIComponent(rawName);
    } catch {
      continue;
    }
    if (name !== 'token') continue;
    const raw = eq < 0 ? '' : pair.slice(eq + 1);
    if (raw === '') continue;
    if (raw.length > MAX_TOKEN_CHARS) return { kind: 'malformed', reason: `longer than ${MAX_TOKEN_CHARS} characters` };
    let token: string;
    try {
      token = decodeURIComponent(raw).trim();
    } catch {
      return { kind: 'malformed', reason: 'invalid percent-encoding' };
    }
    if (token === '') return { kind: 'missing' };
    // A marketplace token is printable ASCII; anything else cannot even travel in a header.
    if (!/^[\x21-\x7e]+$/.test(token)) return { kind: 'malformed', reason: 'characters a marketplace token never has' };
    return { kind: 'ok', raw, token };
  }
  return { kind: 'missing' };
}

// ------------------------------------------------------------------------------------------------

const SubscriptionParams = Type.Object({ subscriptionId: Type.String({ pattern: '^[A-Za-z0-9-]{1,100}$' }) });
const SigQuery = Type.Object({ sig: Type.Optional(Type.String({ maxLength: 200 })) });
const ActivateBody = Type.Object({
  subscriptionId: Type.Optional(Type.String({ maxLength: 200 })),
  sig: Type.Optional(Type.String({ maxLength: 200 })),
  email: Type.Optional(Type.String({ maxLength: 2000 })),
  name: Type.Optional(Type.String({ maxLength: 2000 })),
  company: Type.Optional(Type.String({ maxLength: 2000 })),
  phone: Type.Optional(Type.String({ maxLength: 2000 })),
});
const StatusResponse = Type.Object({
  subscriptionId: Type.String(),
  status: Type.String(),
  phase: Type.String(),
  label: Type.String(),
  title: Type.String(),
  message: Type.String(),
  final: Type.Boolean(),
  activationAttempts: Type.Integer(),
});
const ProblemBody = Type.Object({ type: Type.String(), title: Type.String(), status: Type.Integer(), detail: Type.Optional(Type.String()) });
const StatusResponses = { 200: StatusResponse, 400: ProblemBody, 403: ProblemBody, 404: ProblemBody, 500: ProblemBody, 503: ProblemBody };

/** The pages' security headers: nothing external, inline style/script only with this response's nonce. */
function pageHeaders(reply: FastifyReply, nonce: string): FastifyReply {
  return reply
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('referrer-policy', 'no-referrer')
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header(
      'content-security-policy',
      `default-src 'none'; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; ` +
        `form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
    );
}

function microsoftEmail(s: KnownSubscription): string | undefined {
  return s.beneficiary.emailId || s.purchaser.emailId || undefined;
}

function trimmed(value: string | undefined, max: number): string {
  return (value ?? '').trim().slice(0, max);
}

export const landingRoutes: FastifyPluginAsyncTypebox<LandingOptions> = async (app, opts) => {
  const { ledger, marketplace } = opts;
  const productName = opts.productName?.trim() || DEFAULT_PRODUCT_NAME;
  const now = opts.now ?? (() => new Date());
  const pollIntervalMs = opts.pollIntervalMs ?? 2000;
  if (!opts.landingSecret) {
    app.log.warn(
      { component: 'landing' },
      'no landingSecret configured: using a random one; landing-page links stop working on restart and across instances',
    );
  }
  const signer: LandingSigner = createLandingSigner({
    secret: opts.landingSecret ?? randomLandingSecret(),
    ttlMs: opts.linkTtlMs ?? DEFAULT_LINK_TTL_MS,
    now,
  });

  await app.register(formbody, { bodyLimit: 16 * 1024 });

  const statusPath = (id: string): string => `${LANDING_PATH}/subscriptions/${encodeURIComponent(id)}`;
  const statusPageUrl = (id: string): string => `${statusPath(id)}?sig=${encodeURIComponent(signer.sign('status', id))}`;
  const correlationOf = (request: FastifyRequest): { correlationId?: string } =>
    UUID.test(request.id) ? { correlationId: request.id } : {};

  const sendPage = (reply: FastifyReply, status: number, render: (ctx: PageContext) => string): FastifyReply => {
    const nonce = randomBytes(16).toString('base64');
    return pageHeaders(reply, nonce).code(status).send(render({ productName, nonce }));
  };
  const sendError = (reply: FastifyReply, status: number, model: ErrorPageModel): FastifyReply =>
    sendPage(reply, status, (ctx) => errorPage(ctx, model));

  const invalidLink = (reply: FastifyReply): FastifyReply =>
    sendError(reply, 400, {
      title: "We couldn't open your subscription",
      paragraphs: [EXPIRED_LINK_MESSAGE, "Links from Microsoft to this page are valid for 24 hours."],
    });
  const expiredPage = (reply: FastifyReply): FastifyReply =>
    sendError(reply, 403, {
      title: 'This page has expired',
      paragraphs: ['For your security, this page is valid only for a short time after you open it from Microsoft.', REOPEN_HINT],
    });
  const notFoundPage = (reply: FastifyReply): FastifyReply =>
    sendError(reply, 404, { title: "We couldn't find this subscription", paragraphs: [REOPEN_HINT] });

  const renderForm = (
    reply: FastifyReply,
    status: number,
    s: KnownSubscription,
    form: ContactForm,
    errors: { email?: string },
  ): FastifyReply =>
    sendPage(reply, status, (ctx) =>
      purchasePage(ctx, {
        subscription: s,
        microsoftEmail: microsoftEmail(s),
        form,
        errors,
        action: `${LANDING_PATH}/activate`,
        signature: signer.sign('activate', s.subscriptionId),
        ...(s.activation.gaveUp ? { previousFailure: s.activation.lastError ?? 'unknown reason' } : {}),
      }),
    );

  const formFromState = (s: KnownSubscription): ContactForm => ({
    email: s.contact?.email ?? microsoftEmail(s) ?? '',
    name: s.contact?.name ?? '',
    company: s.contact?.company ?? '',
    phone: s.contact?.phone ?? '',
  });

  /** A new purchase (or a failed activation to retry) shows the form; anything else the status page. */
  const needsForm = (s: KnownSubscription): boolean =>
    s.status === 'PendingFulfillmentStart' && (!s.activation.requestedAt || s.activation.gaveUp);

  const known = (state: SubscriptionState): KnownSubscription | undefined => (state.status === 'Initial' ? undefined : state);

  // Every page error is an HTML page in plain words; the details go to the log.
  app.setErrorHandler((error: FastifyError | Error, request, reply) => {
    const log = request.log.child({ component: 'landing' });
    if ((error as FastifyError).validation) return invalidLink(reply);
    if (error instanceof MarketplaceBadRequestError || error instanceof MarketplaceNotFoundError) {
      log.info({ marketplace: error.toLog() }, 'marketplace token did not resolve');
      return invalidLink(reply);
    }
    if (error instanceof DomainError) {
      log.warn({ code: error.code, detail: error.message }, 'landing command refused');
      return sendError(reply, error.status, {
        title: "We couldn't complete this step",
        paragraphs: ['Your subscription could not be updated from this page.', REOPEN_HINT],
        reference: request.id,
      });
    }
    const marketplaceDown =
      error instanceof MarketplaceError || error instanceof MarketplaceAuthError || error.name === 'PayloadShapeError';
    if (marketplaceDown || error instanceof StoreUnavailableError) {
      if (error instanceof MarketplaceForbiddenError || error instanceof MarketplaceAuthError) {
        log.error({ err: error }, 'marketplace refused our credentials: check the app registration (API.md §14.3)');
      } else {
        log.error({ err: error, ...(error instanceof MarketplaceError ? { marketplace: error.toLog() } : {}) }, 'landing page dependency unavailable');
      }
      reply.header('retry-after', '30');
      return sendError(reply, 503, {
        title: "We can't confirm your subscription right now",
        paragraphs: [
          marketplaceDown
            ? "We couldn't reach Microsoft to confirm your purchase. Nothing has been charged or lost."
            : 'Our service is busy starting up or briefly unavailable. Nothing has been charged or lost.',
          'Please reload this page in a minute. If the link has expired by then: ' + REOPEN_HINT,
        ],
        reference: request.id,
      });
    }
    // Fastify's own 4xx (unparseable body, wrong content type, too large): the request's fault.
    const status = (error as FastifyError).statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      log.info({ code: (error as FastifyError).code, status, detail: error.message }, 'landing request refused');
      return sendError(reply, status, {
        title: "We couldn't read that request",
        paragraphs: ['Please go back and submit the form again.', REOPEN_HINT],
        reference: request.id,
      });
    }
    log.error({ err: error }, 'landing page failed');
    return sendError(reply, 500, {
      title: 'Something went wrong',
      paragraphs: ['We could not show this page. Please try again in a few minutes.', REOPEN_HINT],
      reference: request.id,
    });
  });

  // ----------------------------------------------------------------------------------------------
  // GET /landing?token=…

  app.get(LANDING_PATH, { exposeHeadRoute: false }, async (request, reply) => {
    const raw = tokenFromRawUrl(request.raw.url);
    if (raw.kind !== 'ok') {
      request.log.info({ component: 'landing', token: raw.kind, ...(raw.kind === 'malformed' ? { reason: raw.reason } : {}) }, 'landing page without a usable token');
      return invalidLink(reply);
    }
    const correlation = correlationOf(request);
    // The client percent-decodes the value exactly once (decodeMarketplaceToken); giving it the
    // still-encoded form keeps that true even for a token that decodes to something with a `%`.
    const resolved = await marketplace.resolve(raw.raw, correlation);
    let sub: NormalisedSubscription | undefined = resolved.subscription;
    if (!sub?.saasSubscriptionStatus) sub = await marketplace.getSubscription(resolved.id, correlation);
    const details = detailsFromMicrosoft({ ...sub, id: resolved.id, name: sub.name ?? resolved.subscriptionName ?? '' });
    if (!details.offerId && resolved.offerId) details.offerId = resolved.offerId;
    if (!details.planId && resolved.planId) details.planId = resolved.planId;
    if (details.quantity === undefined && resolved.quantity !== undefined) details.quantity = resolved.quantity;
    const microsoftStatus = (sub.saasSubscriptionStatus ?? 'PendingFulfillmentStart').trim();
    const who = details.purchaser.emailId ?? details.purchaser.objectId ?? details.beneficiary.emailId ?? 'unknown';

    const result = await ledger.execute(
      resolved.id,
      { type: 'RecordPurchase', now: now().toISOString(), source: 'landing', subscription: details, microsoftStatus },
      { actor: `customer:${who}`, ...correlation },
    );
    const s = known(result.state);
    if (!s) throw new Error('RecordPurchase left the subscription unknown');
    request.log.info(
      { component: 'landing', subscriptionId: s.subscriptionId, microsoftStatus, status: s.status, recorded: result.events.map((e) => e.type) },
      'landing page resolved a subscription',
    );
    if (needsForm(s)) return renderForm(reply, 200, s, formFromState(s), {});
    return reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer').redirect(statusPageUrl(s.subscriptionId), 303);
  });

  // ----------------------------------------------------------------------------------------------
  // POST /landing/activate

  app.post(`${LANDING_PATH}/activate`, { schema: { body: ActivateBody } }, async (request, reply) => {
    const body = request.body ?? {};
    const subscriptionId = (body.subscriptionId ?? '').trim();
    const check = signer.verify('activate', subscriptionId, body.sig);
    if (check !== 'ok') {
      request.log.warn({ component: 'landing', subscriptionId: subscriptionId.slice(0, 100), signature: check }, 'activation form refused: bad or expired signature');
      return expiredPage(reply);
    }
    const s = known((await ledger.load(subscriptionId)).state);
    if (!s) return notFoundPage(reply);
    // Already activating or further on (a second tab, a double click, a back button): never twice.
    if (!needsForm(s)) return reply.redirect(statusPageUrl(subscriptionId), 303);

    const form: ContactForm = {
      email: trimmed(body.email, 254),
      name: trimmed(body.name, 200),
      company: trimmed(body.company, 200),
      phone: trimmed(body.phone, 50),
    };
    const email = form.email || microsoftEmail(s) || '';
    if (!email) {
      return renderForm(reply, 400, s, form, { email: 'Enter an email address so that we can contact you about your account' });
    }
    if (!EMAIL.test(email) || (body.email ?? '').trim().length > 254) {
      return renderForm(reply, 400, s, form, { email: 'Enter an email address in the correct format, like name@example.com' });
    }
    const contact: Contact = {
      email,
      ...(form.name ? { name: form.name } : {}),
      ...(form.company ? { company: form.company } : {}),
      ...(form.phone ? { phone: form.phone } : {}),
    };
    try {
      const result = await ledger.execute(
        subscriptionId,
        { type: 'RequestActivation', now: now().toISOString(), source: 'landing', contact },
        { actor: `customer:${email}`, ...correlationOf(request) },
      );
      request.log.info(
        { component: 'landing', subscriptionId, recorded: result.events.map((e) => e.type) },
        'customer requested activation',
      );
    } catch (err) {
      // Raced by another tab or by Microsoft (auto-activation, cancellation): show where it stands.
      if (!(err instanceof DomainError) || !['already-active', 'illegal-transition'].includes(err.code)) throw err;
      request.log.info({ component: 'landing', subscriptionId, code: err.code }, 'activation not requested: the subscription moved on');
    }
    return reply.redirect(statusPageUrl(subscriptionId), 303);
  });

  // ----------------------------------------------------------------------------------------------
  // GET /landing/subscriptions/:id  (status / account page)

  app.get(
    `${LANDING_PATH}/subscriptions/:subscriptionId`,
    { schema: { params: SubscriptionParams, querystring: SigQuery } },
    async (request, reply) => {
      const id = request.params.subscriptionId;
      const sig = request.query.sig;
      if (signer.verify('status', id, sig) !== 'ok') return expiredPage(reply);
      const s = known((await ledger.load(id)).state);
      if (!s) return notFoundPage(reply);
      if (s.status === 'PendingFulfillmentStart' && !s.activation.requestedAt) return renderForm(reply, 200, s, formFromState(s), {});
      return sendPage(reply, 200, (ctx) =>
        statusPage(ctx, {
          subscription: s,
          progress: progressOf(s),
          statusUrl: `${statusPath(id)}/status?sig=${encodeURIComponent(sig ?? '')}`,
          pollIntervalMs,
          ...(opts.accountUrl ? { accountUrl: opts.accountUrl } : {}),
          ...(s.contact ? { contact: s.contact } : {}),
        }),
      );
    },
  );

  // ----------------------------------------------------------------------------------------------
  // GET /landing/subscriptions/:id/status  (what the status page polls)

  app.get(
    `${LANDING_PATH}/subscriptions/:subscriptionId/status`,
    {
      schema: { params: SubscriptionParams, querystring: SigQuery, response: StatusResponses },
      errorHandler: (error, request, reply) => {
        const send = (status: 400 | 500 | 503, title: string, detail: string) =>
          reply.code(status).header('cache-control', 'no-store').type(problemContentType).send(problem(status, title, detail));
        if ((error as FastifyError).validation) return send(400, 'invalid-request', error.message);
        if (error instanceof StoreUnavailableError) {
          reply.header('retry-after', '5');
          return send(503, 'store-unavailable', 'the event store is unavailable; retry later');
        }
        request.log.error({ err: error, component: 'landing' }, 'landing status failed');
        return send(500, 'internal-error', 'an unexpected error occurred');
      },
    },
    async (request, reply) => {
      const id = request.params.subscriptionId;
      const check = signer.verify('status', id, request.query.sig);
      reply.header('cache-control', 'no-store');
      if (check !== 'ok') {
        return reply.code(403).type(problemContentType).send(problem(403, 'forbidden', `the status link is ${check === 'expired' ? 'expired' : 'not valid'}`));
      }
      const s = known((await ledger.load(id)).state);
      if (!s) return reply.code(404).type(problemContentType).send(problem(404, 'not-found', 'no such subscription'));
      const p = progressOf(s);
      return {
        subscriptionId: s.subscriptionId,
        status: s.status,
        phase: p.phase,
        label: p.label,
        title: p.title,
        message: p.message,
        final: p.final,
        activationAttempts: s.activation.failures,
      };
    },
  );
};
