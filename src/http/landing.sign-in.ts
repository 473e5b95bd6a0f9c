/**
 * The landing page's sign-in (docs/landing-sign-in.md): OpenID Connect authorization code + PKCE through
 * msal-node (sign-in/oidc-client.ts), the ID token validated with jose (sign-in/id-token.ts), a session in a
 * signed cookie (sign-in/session.ts).
 *
 *   GET  /landing?token=…             without a session: keep the token on the server under a fresh OIDC
 *                                     `state`, tie the state to this browser (a signed cookie), go to the provider
 *   GET  /landing/sign-in/callback    ?code&state (or ?error&state): check the state against the cookie and the
 *                                     store, redeem the code, validate the ID token, start the session → 303 /landing/continue
 *   GET  /landing/sign-in/retry       after "Cancel" at the provider: the same purchase token, a new sign-in
 *   GET  /landing/continue            the session's purchase token → Resolve → the purchase page (as /landing?token did)
 *   POST /landing/sign-out            csrf (+ then=sign-in: sign in again with another account, same purchase token)
 *
 * The purchase token never goes back into a URL: it waits in a bounded in-memory map keyed by `state`, then
 * under a random reference the session cookie carries. Nothing is recorded in the event store before a
 * sign-in has been verified: every refusal answers a 4xx page that says what to do next.
 */
import cookie from '@fastify/cookie';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { Type } from 'typebox';
import type { SignedInActor } from '../application/subscription-ledger.js';
import type { LandingPages } from './landing.pages.js';
import { REOPEN_HINT } from './landing.views.js';
import type { ErrorPageModel } from './landing.views.js';
import { SIGN_OUT_PATH } from './landing.sign-in.views.js';
import { ExpiringMap } from './sign-in/expiring-map.js';
import type { IdTokenProblem } from './sign-in/id-token.js';
import { SignInRedeemError } from './sign-in/oidc-client.js';
import type { SignInClient, SignInFlow } from './sign-in/oidc-client.js';
import { COOKIE_PATH, SESSION_COOKIE, SIGN_IN_COOKIE, decodeSession, encodeSession, randomToken, sameToken } from './sign-in/session.js';
import type { LandingSession, SessionCheck } from './sign-in/session.js';

export const CALLBACK_PATH = '/landing/sign-in/callback';
export const RETRY_PATH = '/landing/sign-in/retry';
export const CONTINUE_PATH = '/landing/continue';

export type LandingSignInOptions = {
  /** The OpenID client; undefined while it is not ready yet (the local provider starts after the service listens). */
  client: () => SignInClient | undefined;
  /** How long a session lasts (LANDING_SESSION_MINUTES). */
  sessionMs: number;
  /** How long a started sign-in, and the purchase token it keeps, waits (LANDING_SIGN_IN_MINUTES). */
  signInMs: number;
  /** LANDING_ALLOW_OTHER_USERS: may someone who is neither purchaser nor beneficiary activate? */
  allowOtherUsers: boolean;
  /** Cookies with Secure: the service is reached over https. */
  secureCookies: boolean;
  /** Most sign-ins under way at once (oldest forgotten first); default 10 000. */
  maxPending?: number;
};

type Pending = { token: string; flow: SignInFlow };

/** What the landing routes use of the sign-in. */
export type LandingAuth = {
  allowOtherUsers: boolean;
  session(request: FastifyRequest): SessionCheck;
  /** Keep the token, go to the provider. */
  start(request: FastifyRequest, reply: FastifyReply, rawToken: string): Promise<FastifyReply>;
  /** 401: the session is missing or over; nothing was done. */
  sessionOver(request: FastifyRequest, reply: FastifyReply, check: SessionCheck): FastifyReply;
  /** 403: a forged or stale CSRF token; nothing was done. */
  csrfRefused(request: FastifyRequest, reply: FastifyReply): FastifyReply;
};

/** Is the signed-in person the purchaser or the beneficiary Microsoft reported (email, or object id in the same tenant)? */
type PartyLike = { emailId?: string; objectId?: string; tenantId?: string };

export function isPurchaserOrBeneficiary(user: LandingSession['user'], s: { purchaser: PartyLike; beneficiary: PartyLike }): boolean {
  const email = user.email?.trim().toLowerCase();
  return [s.purchaser, s.beneficiary].some(
    (p) =>
      (!!email && !!p.emailId && p.emailId.trim().toLowerCase() === email) ||
      (!!p.objectId && p.objectId.toLowerCase() === user.oid.toLowerCase() && (!p.tenantId || p.tenantId.toLowerCase() === user.tid.toLowerCase())),
  );
}

export function actorOf(user: LandingSession['user']): { actor: string; signedInUser: SignedInActor } {
  return {
    actor: `customer:${user.email ?? user.oid}`,
    signedInUser: { ...(user.name ? { name: user.name } : {}), ...(user.email ? { email: user.email } : {}), oid: user.oid, tid: user.tid, issuer: user.issuer },
  };
}

function newFlow(): SignInFlow {
  const codeVerifier = randomBytes(32).toString('base64url');
  return { state: randomToken(), nonce: randomToken(), codeVerifier, codeChallenge: createHash('sha256').update(codeVerifier).digest('base64url') };
}

const PROBLEM_TEXT: Record<IdTokenProblem, string> = {
  malformed: 'The answer from the sign-in service could not be read.',
  signature: 'The sign-in could not be verified: it was not signed by the sign-in service.',
  audience: 'The sign-in was issued for another application.',
  issuer: 'The sign-in came from an identity provider we do not accept.',
  tenant: 'This kind of account cannot be used here.',
  nonce: 'The sign-in does not belong to this visit (it may have been replayed).',
  expired: 'The sign-in has expired.',
};

type Ctx = {
  opts: LandingSignInOptions;
  pages: LandingPages;
  pending: ExpiringMap<Pending>;
  purchases: ExpiringMap<string>;
  now: () => Date;
};

function refuse(c: Ctx, request: FastifyRequest, reply: FastifyReply, status: number, reason: string, model: ErrorPageModel): FastifyReply {
  request.log.warn({ component: 'landing', signIn: reason, status }, `landing sign-in refused: ${reason}`);
  return c.pages.sendError(reply.header('cache-control', 'no-store'), status, { ...model, reference: request.id });
}

function signedCookie(request: FastifyRequest, name: string): string | undefined {
  const raw = request.cookies[name];
  if (!raw) return undefined;
  const check = request.unsignCookie(raw);
  return check.valid && check.value ? check.value : undefined;
}

function cookieOptions(c: Ctx, maxAgeMs: number) {
  return { signed: true, httpOnly: true, sameSite: 'lax' as const, secure: c.opts.secureCookies, path: COOKIE_PATH, maxAge: Math.floor(maxAgeMs / 1000) };
}

function readSession(c: Ctx, request: FastifyRequest): SessionCheck {
  const raw = request.cookies[SESSION_COOKIE];
  if (!raw) return { kind: 'none' };
  const check = request.unsignCookie(raw);
  if (!check.valid || !check.value) return { kind: 'invalid' };
  return decodeSession(check.value, c.now().getTime());
}

/**
 * After a form (sign-out's "Use another account"): the provider's address is reached by a page that goes on
 * by itself, since the pages' CSP (form-action 'self') does not let a form's redirect leave this site.
 */
async function startAfterForm(c: Ctx, request: FastifyRequest, reply: FastifyReply, rawToken: string): Promise<FastifyReply> {
  const prepared = await prepare(c, request, reply, rawToken);
  if (!('url' in prepared)) return prepared;
  return c.pages.sendError(reply, 200, {
    title: 'Sign in with another account',
    paragraphs: ['Taking you to the sign-in page…'],
    action: { label: 'Continue to sign-in', href: prepared.url },
    refreshTo: prepared.url,
  });
}

async function start(c: Ctx, request: FastifyRequest, reply: FastifyReply, rawToken: string): Promise<FastifyReply> {
  const prepared = await prepare(c, request, reply, rawToken);
  return 'url' in prepared ? reply.redirect(prepared.url, 303) : prepared;
}

/** A new sign-in for the token: kept under its state, the state's cookie set; the provider's address (or a 503 page). */
async function prepare(c: Ctx, request: FastifyRequest, reply: FastifyReply, rawToken: string): Promise<{ url: string } | FastifyReply> {
  const client = c.opts.client();
  const unavailable = (detail: string) =>
    refuse(c, request, reply.header('retry-after', '10'), 503, `sign-in unavailable: ${detail}`, {
      title: "We can't sign you in right now",
      paragraphs: ['The sign-in service is not answering. Nothing has been charged or lost.', 'Please reload this page in a minute.'],
    });
  if (!client) return unavailable('the sign-in client is not ready');
  const flow = newFlow();
  let url: string;
  try {
    url = await client.authorizationUrl(flow);
  } catch (err) {
    return unavailable(err instanceof Error ? err.message : String(err));
  }
  c.pending.set(flow.state, { token: rawToken, flow });
  request.log.info({ component: 'landing', provider: client.kind, pending: c.pending.size }, 'landing page: sign-in started');
  reply.setCookie(SIGN_IN_COOKIE, flow.state, cookieOptions(c, c.opts.signInMs)).header('cache-control', 'no-store');
  return { url };
}

function expiredSignIn(c: Ctx, request: FastifyRequest, reply: FastifyReply, reason: string): FastifyReply {
  return refuse(c, request, reply, 400, reason, {
    title: 'This sign-in has expired',
    paragraphs: ['The sign-in took too long, was already used, or the service restarted in the meantime. Nothing has been recorded.', REOPEN_HINT],
  });
}

const CallbackQuery = Type.Object({
  code: Type.Optional(Type.String({ maxLength: 4096 })),
  state: Type.Optional(Type.String({ maxLength: 200 })),
  error: Type.Optional(Type.String({ maxLength: 200 })),
  error_description: Type.Optional(Type.String({ maxLength: 2000 })),
});

type CallbackParams = { code?: string; state?: string; error?: string; error_description?: string };

/** The provider said no (?error=…): cancelled by the customer, or another refusal. */
function providerError(c: Ctx, request: FastifyRequest, reply: FastifyReply, q: CallbackParams & { state: string }): FastifyReply {
  request.log.info({ component: 'landing', error: q.error, description: q.error_description?.slice(0, 300) }, 'the sign-in provider answered with an error');
  const canRetry = c.pending.get(q.state) !== undefined;
  if (q.error === 'access_denied') {
    return refuse(c, request, reply, 401, 'cancelled', {
      title: 'You cancelled the sign-in',
      paragraphs: [
        'We need you to sign in with your Microsoft account before we show your subscription. Nothing has been recorded.',
        canRetry ? 'Sign in again to continue, or close this page.' : REOPEN_HINT,
      ],
      ...(canRetry ? { action: { label: 'Sign in again', href: RETRY_PATH } } : {}),
    });
  }
  return refuse(c, request, reply, 400, `provider error ${q.error ?? ''}`, {
    title: "We couldn't sign you in",
    paragraphs: ['The sign-in service could not sign you in. Nothing has been recorded.', REOPEN_HINT],
    ...(canRetry ? { action: { label: 'Try again', href: RETRY_PATH } } : {}),
  });
}

/** Redeem the code; the ID token checked; a refusal page, or the user. */
async function redeem(c: Ctx, request: FastifyRequest, reply: FastifyReply, code: string, pending: Pending): Promise<LandingSession['user'] | FastifyReply> {
  const client = c.opts.client();
  if (!client) return expiredSignIn(c, request, reply, 'no sign-in client');
  const notVerified = (problem: IdTokenProblem, detail: string) => {
    request.log.warn({ component: 'landing', idToken: problem, detail }, 'landing sign-in: the ID token was refused');
    if (problem === 'tenant') {
      return refuse(c, request, reply, 403, 'wrong kind of account', {
        title: "This account can't be used here",
        paragraphs: [detail.replace(/^./, (ch) => ch.toUpperCase()) + '.', 'Sign out of that account at Microsoft, then ' + REOPEN_HINT.replace(/^./, (ch) => ch.toLowerCase())],
      });
    }
    return refuse(c, request, reply, 401, `id token ${problem}`, {
      title: "We couldn't verify your sign-in",
      paragraphs: [PROBLEM_TEXT[problem], 'Nothing has been recorded. ' + REOPEN_HINT],
    });
  };
  try {
    const check = await client.redeem(code, pending.flow);
    return check.ok ? check.user : notVerified(check.problem, check.detail);
  } catch (err) {
    if (!(err instanceof SignInRedeemError)) throw err;
    if (err.problem === 'nonce') return notVerified('nonce', err.message);
    if (err.problem === 'unavailable') {
      request.log.error({ component: 'landing', err }, 'landing sign-in: the provider is not answering');
      return refuse(c, request, reply, 503, 'provider unavailable', {
        title: "We can't sign you in right now",
        paragraphs: ['The sign-in service is not answering. Nothing has been charged or lost.', REOPEN_HINT],
      });
    }
    request.log.warn({ component: 'landing', detail: err.message }, 'landing sign-in: the code was not redeemed');
    return refuse(c, request, reply, 400, 'code refused', {
      title: "We couldn't complete the sign-in",
      paragraphs: ['The sign-in service did not accept this sign-in (it may have been used already). Nothing has been recorded.', REOPEN_HINT],
    });
  }
}

async function callback(c: Ctx, request: FastifyRequest, reply: FastifyReply, q: CallbackParams): Promise<FastifyReply> {
  const invalidState = (reason: string) =>
    refuse(c, request, reply, 400, reason, {
      title: "This sign-in link isn't valid",
      paragraphs: ['The sign-in did not start in this browser, or the link was changed. Nothing has been recorded.', REOPEN_HINT],
    });
  if (!q.state) return invalidState('missing state');
  const ours = signedCookie(request, SIGN_IN_COOKIE);
  if (!ours) return invalidState('no sign-in under way in this browser');
  if (!sameToken(ours, q.state)) return invalidState('wrong state');
  if (q.error) return providerError(c, request, reply, { ...q, state: q.state });
  const pending = c.pending.take(q.state); // once: a replayed callback finds nothing
  if (!pending) return expiredSignIn(c, request, reply, 'state expired or already used');
  if (!q.code) return invalidState('no code');
  const user = await redeem(c, request, reply, q.code, pending);
  if (!('oid' in user)) return user;
  const purchase = randomToken();
  c.purchases.set(purchase, pending.token);
  const session: LandingSession = { v: 1, user, csrf: randomToken(), exp: c.now().getTime() + c.opts.sessionMs, purchase };
  request.log.info({ component: 'landing', oid: user.oid, tid: user.tid }, 'landing page: customer signed in');
  return reply
    .clearCookie(SIGN_IN_COOKIE, { path: COOKIE_PATH })
    .setCookie(SESSION_COOKIE, encodeSession(session), cookieOptions(c, c.opts.sessionMs))
    .header('cache-control', 'no-store')
    .redirect(CONTINUE_PATH, 303);
}

function sessionOver(c: Ctx, request: FastifyRequest, reply: FastifyReply, check: SessionCheck): FastifyReply {
  return refuse(c, request, reply.clearCookie(SESSION_COOKIE, { path: COOKIE_PATH }), 401, `session ${check.kind}`, {
    title: check.kind === 'expired' ? 'Your session has expired' : 'Please sign in first',
    paragraphs: [
      check.kind === 'expired'
        ? 'For your security, you are signed out after a while. Nothing has been recorded.'
        : 'You need to be signed in to do this. Nothing has been recorded.',
      REOPEN_HINT,
    ],
  });
}

function csrfRefused(c: Ctx, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return refuse(c, request, reply, 403, 'csrf token mismatch', {
    title: "We couldn't accept this form",
    paragraphs: ['The form did not come from this page, or it is out of date. Nothing has been recorded.', 'Go back, reload the page and try again. ' + REOPEN_HINT],
  });
}

async function signOut(c: Ctx, request: FastifyRequest, reply: FastifyReply, body: { csrf?: string; then?: string }): Promise<FastifyReply> {
  const check = readSession(c, request);
  if (check.kind === 'ok' && !sameToken(body.csrf, check.session.csrf)) return csrfRefused(c, request, reply);
  reply.clearCookie(SESSION_COOKIE, { path: COOKIE_PATH });
  const token = check.kind === 'ok' && check.session.purchase ? c.purchases.get(check.session.purchase) : undefined;
  if (check.kind === 'ok') request.log.info({ component: 'landing', oid: check.session.user.oid, then: body.then }, 'landing page: customer signed out');
  if (body.then === 'sign-in' && token) return startAfterForm(c, request, reply, token);
  return c.pages.sendError(reply.header('cache-control', 'no-store'), 200, {
    title: 'You have signed out',
    paragraphs: ['You are signed out of this page. Your Microsoft account may still be signed in on this browser.', REOPEN_HINT],
  });
}

export type LandingSignInRoutes = {
  auth: LandingAuth;
  /** The routes; `resume` shows the purchase for a token, as GET /landing?token=… does with a session. */
  register(app: Parameters<FastifyPluginAsyncTypebox>[0], resume: (request: FastifyRequest, reply: FastifyReply, rawToken: string, session: LandingSession) => Promise<FastifyReply>): Promise<void>;
};

export function landingSignIn(opts: LandingSignInOptions, pages: LandingPages, secret: Uint8Array, now: () => Date): LandingSignInRoutes {
  const bounds = { maxEntries: opts.maxPending ?? 10_000, now: () => now().getTime() };
  const c: Ctx = {
    opts,
    pages,
    pending: new ExpiringMap<Pending>({ ...bounds, ttlMs: opts.signInMs }),
    purchases: new ExpiringMap<string>({ ...bounds, ttlMs: opts.sessionMs }),
    now,
  };
  const auth: LandingAuth = {
    allowOtherUsers: opts.allowOtherUsers,
    session: (request) => readSession(c, request),
    start: (request, reply, rawToken) => start(c, request, reply, rawToken),
    sessionOver: (request, reply, check) => sessionOver(c, request, reply, check),
    csrfRefused: (request, reply) => csrfRefused(c, request, reply),
  };
  return {
    auth,
    async register(app, resume) {
      // Its own key for the cookies, derived from the landing secret.
      await app.register(cookie, { secret: createHmac('sha256', secret).update('landing:cookies:v1').digest('base64url') });
      app.get(CALLBACK_PATH, { schema: { querystring: CallbackQuery } }, async (request, reply) => callback(c, request, reply, request.query));
      app.get(RETRY_PATH, async (request, reply) => {
        const state = signedCookie(request, SIGN_IN_COOKIE);
        const pending = state ? c.pending.take(state) : undefined;
        if (!pending) return expiredSignIn(c, request, reply, 'retry without a sign-in under way');
        return start(c, request, reply, pending.token);
      });
      app.get(CONTINUE_PATH, async (request, reply) => {
        const check = readSession(c, request);
        if (check.kind !== 'ok') return sessionOver(c, request, reply, check);
        const token = check.session.purchase ? c.purchases.get(check.session.purchase) : undefined;
        if (!token) return expiredSignIn(c, request, reply, 'the purchase token is no longer kept');
        return resume(request, reply, token, check.session);
      });
      app.post(SIGN_OUT_PATH, { schema: { body: Type.Object({ csrf: Type.Optional(Type.String({ maxLength: 200 })), then: Type.Optional(Type.String({ maxLength: 20 })) }) } }, async (request, reply) =>
        signOut(c, request, reply, request.body ?? {}),
      );
    },
  };
}
