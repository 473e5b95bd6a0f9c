/**
 * The landing page a customer reaches from Microsoft after a purchase (docs/marketplace.md §9), and again from
 * "Manage account" with a fresh token.
 *
 *   GET  /landing?token=…                         Resolve → RecordPurchase → the details and contact form,
 *                                                 or (already activating, active, suspended, cancelled) 303 to the status page
 *   POST /landing/activate                        form: subscriptionId + sig + contact → RequestActivation → 303 status page
 *   GET  /landing/subscriptions/:id?sig=…         status/account page; polls the JSON below (meta refresh without JS)
 *   GET  /landing/subscriptions/:id/status?sig=…  { status, phase, label, title, message, final }
 *
 * The token is read from the raw query string and percent-decoded exactly once (never form-decoded:
 * a `+` stays a `+`, docs/marketplace.md §14.1). The form and the status links carry a short-lived HMAC
 * (`landing.signing.ts`) proving the visitor resolved a token for that subscription; a bare
 * subscription id is never trusted. Activation itself (provisioning, Microsoft's activate) is the
 * activation process manager's job: this page only records the customer's request and shows progress.
 *
 * Microsoft's calls (Resolve, and Get subscription when Resolve leaves the status out) share a time box
 * (`microsoftTimeoutMs`, default 5 s), not the client's whole retry budget: when Microsoft does not answer
 * within it, the customer gets a page saying so that reloads the same URL (the same token) by itself.
 *
 * Pages are HTML (never a stack trace, never problem+json); the JSON endpoint answers problem+json.
 */
import { requestProvenance } from './request-provenance.js';
import type { Provenance } from '../eventstore/provenance.js';
import formbody from '@fastify/formbody';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Static } from 'typebox';
import { detailsFromMicrosoft } from '../application/subscription-details.js';
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import { DomainError } from '../domain/errors.js';
import type { Contact, KnownSubscription, SubscriptionState } from '../domain/subscription/index.js';
import type { FulfillmentClient } from '../marketplace/fulfillment-client.js';
import type { NormalisedSubscription } from '../marketplace/schemas.js';
import { problem, problemContentType } from './problem.js';
import { pageErrorHandler, statusErrorHandler } from './landing.errors.js';
import { LANDING_PATH, createLandingPages, formFromState, microsoftEmail, needsForm } from './landing.pages.js';
import type { LandingPages } from './landing.pages.js';
import { createLandingSigner, randomLandingSecret } from './landing.signing.js';
import type { LandingSigner } from './landing.signing.js';
import { tokenFromRawUrl } from './landing.token.js';
import { sameToken } from './sign-in/session.js';
import { progressOf, statusPage } from './landing.views.js';
import type { ContactForm, PurchasePageModel } from './landing.views.js';
import { actorOf, isPurchaserOrBeneficiary, landingSignIn } from './landing.sign-in.js';
import type { LandingAuth, LandingSignInOptions } from './landing.sign-in.js';
import { otherUserNotice, signedInPanel } from './landing.sign-in.views.js';
import type { LandingSession } from './sign-in/session.js';

export { LANDING_PATH } from './landing.pages.js';
export { tokenFromRawUrl } from './landing.token.js';
export type { RawToken } from './landing.token.js';

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
  /** How long GET /landing waits for Microsoft (Resolve and Get subscription together); default 5 s. */
  microsoftTimeoutMs?: number;
  /** After Microsoft did not answer: how soon the page reloads itself (and Retry-After); default 10 s. */
  retryAfterSeconds?: number;
  /** Where an active customer uses the product (a link on the account page). */
  accountUrl?: string;
  /** Sign-in with Microsoft Entra ID (or the sandbox's provider) before the purchase is shown (landing.sign-in.ts); absent: no sign-in. */
  signIn?: LandingSignInOptions;
  now?: () => Date;
};

const DEFAULT_PRODUCT_NAME = 'Our service';
const DEFAULT_LINK_TTL_MS = 2 * 60 * 60 * 1000;
const DEFAULT_MICROSOFT_TIMEOUT_MS = 5000;
const DEFAULT_RETRY_AFTER_SECONDS = 10;
const EMAIL = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+\.[^\s@<>()[\]\\,;:"]+$/;

const SubscriptionParams = Type.Object({ subscriptionId: Type.String({ pattern: '^[A-Za-z0-9-]{1,100}$' }) });
const SigQuery = Type.Object({ sig: Type.Optional(Type.String({ maxLength: 200 })) });
const ActivateBody = Type.Object({
  subscriptionId: Type.Optional(Type.String({ maxLength: 200 })),
  sig: Type.Optional(Type.String({ maxLength: 200 })),
  /** The session's CSRF token (with sign-in). */
  csrf: Type.Optional(Type.String({ maxLength: 200 })),
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
  /** Failed attempts of the current activation request. */
  activationAttempts: Type.Integer(),
  /** When the next attempt is due (ISO-8601 UTC), while retrying. */
  nextAttemptAt: Type.Optional(Type.String()),
});
const ProblemBody = Type.Object({ type: Type.String(), title: Type.String(), status: Type.Integer(), detail: Type.Optional(Type.String()) });
const StatusResponses = { 200: StatusResponse, 400: ProblemBody, 403: ProblemBody, 404: ProblemBody, 500: ProblemBody, 503: ProblemBody };

/** What every handler of the landing page works with. */
type Landing = {
  ledger: SubscriptionLedger;
  marketplace: LandingOptions['marketplace'];
  signer: LandingSigner;
  pages: LandingPages;
  now: () => Date;
  pollIntervalMs: number;
  microsoftTimeoutMs: number;
  accountUrl?: string;
  /** The sign-in, when configured. */
  auth?: LandingAuth;
};

function trimmed(value: string | undefined, max: number): string {
  return (value ?? '').trim().slice(0, max);
}

/** The request is the unit of work and the cause (request-provenance.ts). */
const correlationOf = (request: FastifyRequest): Provenance => requestProvenance(request);

const known = (state: SubscriptionState): KnownSubscription | undefined => (state.status === 'Initial' ? undefined : state);

// ------------------------------------------------------------------------------------------------
// GET /landing?token=…

async function openLanding(l: Landing, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const raw = tokenFromRawUrl(request.raw.url);
  if (raw.kind !== 'ok') {
    request.log.info({ token: raw.kind, ...(raw.kind === 'malformed' ? { reason: raw.reason } : {}) }, 'landing page without a usable token');
    return l.pages.invalidLink(reply);
  }
  if (!l.auth) return showPurchase(l, request, reply, raw.raw, undefined);
  // Signed in already (a second visit within the session): straight on; else sign in first, nothing recorded before.
  const check = l.auth.session(request);
  if (check.kind === 'ok') return showPurchase(l, request, reply, raw.raw, check.session);
  return l.auth.start(request, reply, raw.raw);
}

/** 403, nothing recorded: signed in as neither purchaser nor beneficiary, and LANDING_ALLOW_OTHER_USERS=false. */
function wrongAccount(l: Landing, request: FastifyRequest, reply: FastifyReply, session: LandingSession, parties: { purchaser: { emailId?: string }; beneficiary: { emailId?: string } }): FastifyReply {
  request.log.warn({ component: 'landing', oid: session.user.oid, tid: session.user.tid }, 'landing page: signed in as neither purchaser nor beneficiary; nothing recorded');
  const named = [parties.purchaser.emailId, parties.beneficiary.emailId].filter((e, i, all): e is string => !!e && all.indexOf(e) === i);
  return l.pages.sendError(reply, 403, {
    top: signedInPanel(session),
    title: 'This subscription was bought for someone else',
    paragraphs: [
      `You are signed in as ${session.user.email ?? session.user.name ?? session.user.oid}, but Microsoft says this subscription was bought ${named.length ? `by or for ${named.join(' and ')}` : 'by another account'}. Nothing has been recorded.`,
      'Choose "Use another account" and sign in as the purchaser or the person it was bought for.',
    ],
    reference: request.id,
  });
}

/** What the signed-in person sees above the form, and whether they may activate. */
function signedInForm(l: Landing, s: KnownSubscription, session: LandingSession | undefined): PurchasePageModel['signedIn'] {
  if (!session) return undefined;
  const panel = signedInPanel(session);
  if (isPurchaserOrBeneficiary(session.user, s)) return { panel, csrf: session.csrf, blocked: false };
  const allowed = l.auth?.allowOtherUsers ?? true;
  return { panel, csrf: session.csrf, notice: otherUserNotice(session, s, allowed), blocked: !allowed };
}

/** Resolve the token (as it stands in the URL, still percent-encoded), record the purchase, show the form or the status page. */
async function showPurchase(l: Landing, request: FastifyRequest, reply: FastifyReply, rawToken: string, session: LandingSession | undefined): Promise<FastifyReply> {
  const correlation = correlationOf(request);
  // One time box for Microsoft's calls: what is left of it when each starts (the error handler turns running out
  // of it into the page that retries by itself).
  const deadline = Date.now() + l.microsoftTimeoutMs;
  const boxed = () => ({ correlationId: correlation.correlationId, budgetMs: Math.max(1, deadline - Date.now()) });
  // The client percent-decodes the value exactly once (decodeMarketplaceToken); giving it the
  // still-encoded form keeps that true even for a token that decodes to something with a `%`.
  const resolved = await l.marketplace.resolve(rawToken, boxed());
  let sub: NormalisedSubscription | undefined = resolved.subscription;
  if (!sub?.saasSubscriptionStatus) sub = await l.marketplace.getSubscription(resolved.id, boxed());
  const details = detailsFromMicrosoft({ ...sub, id: resolved.id, name: sub.name ?? resolved.subscriptionName ?? '' });
  if (!details.offerId && resolved.offerId) details.offerId = resolved.offerId;
  if (!details.planId && resolved.planId) details.planId = resolved.planId;
  if (details.quantity === undefined && resolved.quantity !== undefined) details.quantity = resolved.quantity;
  const microsoftStatus = (sub.saasSubscriptionStatus ?? 'PendingFulfillmentStart').trim();
  if (session && l.auth && !l.auth.allowOtherUsers && !isPurchaserOrBeneficiary(session.user, details)) return wrongAccount(l, request, reply, session, details);
  const who = details.purchaser.emailId ?? details.purchaser.objectId ?? details.beneficiary.emailId ?? 'unknown';

  const result = await l.ledger.execute(
    resolved.id,
    { type: 'RecordPurchase', now: l.now().toISOString(), source: 'landing', subscription: details, microsoftStatus },
    { ...(session ? actorOf(session.user) : { actor: `customer:${who}` }), ...correlation },
  );
  const s = known(result.state);
  if (!s) throw new Error('RecordPurchase left the subscription unknown');
  request.log.info(
    { subscriptionId: s.subscriptionId, microsoftStatus, status: s.status, recorded: result.events.map((e) => e.type) },
    'landing page resolved a subscription',
  );
  if (needsForm(s)) {
    const signedIn = signedInForm(l, s, session);
    return l.pages.renderForm(reply, signedIn?.blocked ? 403 : 200, s, formFromState(s), {}, signedIn);
  }
  return reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer').redirect(l.pages.statusPageUrl(s.subscriptionId), 303);
}

// ------------------------------------------------------------------------------------------------
// POST /landing/activate

/** The contact the form gives (or the page for the form again, with what is wrong). */
function contactFrom(
  l: Landing,
  reply: FastifyReply,
  s: KnownSubscription,
  body: Static<typeof ActivateBody>,
  signedIn: PurchasePageModel['signedIn'],
): { contact: Contact } | { page: FastifyReply } {
  const form: ContactForm = {
    email: trimmed(body.email, 254),
    name: trimmed(body.name, 200),
    company: trimmed(body.company, 200),
    phone: trimmed(body.phone, 50),
  };
  const email = form.email || microsoftEmail(s) || '';
  if (!email) {
    return { page: l.pages.renderForm(reply, 400, s, form, { email: 'Enter an email address so that we can contact you about your account' }, signedIn) };
  }
  if (!EMAIL.test(email) || (body.email ?? '').trim().length > 254) {
    return { page: l.pages.renderForm(reply, 400, s, form, { email: 'Enter an email address in the correct format, like name@example.com' }, signedIn) };
  }
  const contact: Contact = {
    email,
    ...(form.name ? { name: form.name } : {}),
    ...(form.company ? { company: form.company } : {}),
    ...(form.phone ? { phone: form.phone } : {}),
  };
  return { contact };
}

async function activate(
  l: Landing,
  request: FastifyRequest,
  reply: FastifyReply,
  body: Static<typeof ActivateBody>,
): Promise<FastifyReply> {
  const subscriptionId = (body.subscriptionId ?? '').trim();
  let session: LandingSession | undefined;
  if (l.auth) {
    const signedIn = l.auth.session(request);
    if (signedIn.kind !== 'ok') return l.auth.sessionOver(request, reply, signedIn);
    if (!sameToken(body.csrf, signedIn.session.csrf)) return l.auth.csrfRefused(request, reply);
    session = signedIn.session;
  }
  const check = l.signer.verify('activate', subscriptionId, body.sig);
  if (check !== 'ok') {
    request.log.warn({ subscriptionId: subscriptionId.slice(0, 100), signature: check }, 'activation form refused: bad or expired signature');
    return l.pages.expiredPage(reply);
  }
  const s = known((await l.ledger.load(subscriptionId)).state);
  if (!s) return l.pages.notFoundPage(reply);
  // Already activating or further on (a second tab, a double click, a back button): never twice.
  if (!needsForm(s)) return reply.redirect(l.pages.statusPageUrl(subscriptionId), 303);
  const signedIn = signedInForm(l, s, session);
  if (signedIn?.blocked) {
    request.log.warn({ component: 'landing', subscriptionId, oid: session?.user.oid }, 'activation refused: signed in as neither purchaser nor beneficiary');
    return l.pages.renderForm(reply, 403, s, formFromState(s), {}, signedIn);
  }

  const given = contactFrom(l, reply, s, body, signedIn);
  if ('page' in given) return given.page;
  const { contact } = given;
  try {
    const result = await l.ledger.execute(
      subscriptionId,
      { type: 'RequestActivation', now: l.now().toISOString(), source: 'landing', contact },
      { ...(session ? actorOf(session.user) : { actor: `customer:${contact.email}` }), ...correlationOf(request) },
    );
    request.log.info(
      { subscriptionId, recorded: result.events.map((e) => e.type) },
      'customer requested activation',
    );
  } catch (err) {
    // Raced by another tab or by Microsoft (auto-activation, cancellation): show where it stands.
    if (!(err instanceof DomainError) || !['already-active', 'illegal-transition'].includes(err.code)) throw err;
    request.log.info({ subscriptionId, code: err.code }, 'activation not requested: the subscription moved on');
  }
  return reply.redirect(l.pages.statusPageUrl(subscriptionId), 303);
}

// ------------------------------------------------------------------------------------------------
// GET /landing/subscriptions/:id  (status / account page)

async function showStatusPage(l: Landing, request: FastifyRequest, reply: FastifyReply, id: string, sig: string | undefined): Promise<FastifyReply> {
  if (l.signer.verify('status', id, sig) !== 'ok') return l.pages.expiredPage(reply);
  const s = known((await l.ledger.load(id)).state);
  if (!s) return l.pages.notFoundPage(reply);
  const check = l.auth?.session(request);
  const session = check?.kind === 'ok' ? check.session : undefined;
  if (s.status === 'PendingFulfillmentStart' && !s.activation.requestedAt) {
    // The form only to someone signed in.
    if (l.auth && check && !session) return l.auth.sessionOver(request, reply, check);
    const signedIn = signedInForm(l, s, session);
    return l.pages.renderForm(reply, signedIn?.blocked ? 403 : 200, s, formFromState(s), {}, signedIn);
  }
  return l.pages.sendPage(reply, 200, (ctx) =>
    statusPage(ctx, {
      subscription: s,
      progress: progressOf(s),
      statusUrl: `${l.pages.statusPath(id)}/status?sig=${encodeURIComponent(sig ?? '')}`,
      pollIntervalMs: l.pollIntervalMs,
      ...(l.accountUrl ? { accountUrl: l.accountUrl } : {}),
      ...(s.contact ? { contact: s.contact } : {}),
      ...(session ? { signedInPanel: signedInPanel(session) } : {}),
    }),
  );
}

// ------------------------------------------------------------------------------------------------
// GET /landing/subscriptions/:id/status  (what the status page polls)

async function statusOf(
  l: Landing,
  reply: FastifyReply,
  id: string,
  sig: string | undefined,
): Promise<Static<typeof StatusResponse> | FastifyReply> {
  const check = l.signer.verify('status', id, sig);
  reply.header('cache-control', 'no-store');
  if (check !== 'ok') {
    return reply.code(403).type(problemContentType).send(problem(403, 'forbidden', `the status link is ${check === 'expired' ? 'expired' : 'not valid'}`));
  }
  const s = known((await l.ledger.load(id)).state);
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
    activationAttempts: s.activation.attempts,
    ...(s.activation.nextAttemptAt ? { nextAttemptAt: s.activation.nextAttemptAt } : {}),
  };
}

// ------------------------------------------------------------------------------------------------

export const landingRoutes: FastifyPluginAsyncTypebox<LandingOptions> = async (app, opts) => {
  const productName = opts.productName?.trim() || DEFAULT_PRODUCT_NAME;
  const now = opts.now ?? (() => new Date());
  if (!opts.landingSecret) {
    app.log.warn(
      { component: 'landing' },
      'no landingSecret configured: using a random one; landing-page links stop working on restart and across instances',
    );
  }
  const signingKey = typeof opts.landingSecret === 'string' ? Buffer.from(opts.landingSecret, 'utf8') : Buffer.from(opts.landingSecret ?? randomLandingSecret());
  const signer: LandingSigner = createLandingSigner({
    secret: signingKey,
    ttlMs: opts.linkTtlMs ?? DEFAULT_LINK_TTL_MS,
    now,
  });
  const pages = createLandingPages(productName, signer);
  const signIn = opts.signIn ? landingSignIn(opts.signIn, pages, signingKey, now) : undefined;
  const l: Landing = {
    ledger: opts.ledger,
    marketplace: opts.marketplace,
    signer,
    pages,
    now,
    pollIntervalMs: opts.pollIntervalMs ?? 2000,
    microsoftTimeoutMs: opts.microsoftTimeoutMs ?? DEFAULT_MICROSOFT_TIMEOUT_MS,
    ...(opts.accountUrl ? { accountUrl: opts.accountUrl } : {}),
    ...(signIn ? { auth: signIn.auth } : {}),
  };

  await app.register(formbody, { bodyLimit: 16 * 1024 });
  await signIn?.register(app, (request, reply, rawToken, session) => showPurchase(l, request, reply, rawToken, session));
  app.setErrorHandler(pageErrorHandler(pages, { retryAfterSeconds: opts.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS }));

  app.get(LANDING_PATH, { exposeHeadRoute: false }, async (request, reply) => openLanding(l, request, reply));
  app.post(`${LANDING_PATH}/activate`, { schema: { body: ActivateBody } }, async (request, reply) =>
    activate(l, request, reply, request.body ?? {}),
  );
  app.get(
    `${LANDING_PATH}/subscriptions/:subscriptionId`,
    { schema: { params: SubscriptionParams, querystring: SigQuery } },
    async (request, reply) => showStatusPage(l, request, reply, request.params.subscriptionId, request.query.sig),
  );
  app.get(
    `${LANDING_PATH}/subscriptions/:subscriptionId/status`,
    { schema: { params: SubscriptionParams, querystring: SigQuery, response: StatusResponses }, errorHandler: statusErrorHandler },
    async (request, reply) => statusOf(l, reply, request.params.subscriptionId, request.query.sig),
  );
};
