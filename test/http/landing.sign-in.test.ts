/**
 * The landing page's sign-in through inject(): the real app (buildApp) with the landing routes and the
 * sign-in, a real SQLite store, the marketplace emulator over HTTP, and msal-node redeeming codes at a
 * scripted OpenID provider on 127.0.0.1 whose token endpoint answers the ID token each test crafts
 * (signed with the provider's key, or tampered, for another audience, with another nonce …).
 *
 * Every refusal answers a page and a 4xx, and records nothing (read back from the store).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import type { Test } from 'tap';
import { SignJWT, createLocalJWKSet, exportJWK, generateKeyPair } from 'jose';
import type { JWK } from 'jose';
import { buildApp } from '../../src/app.js';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { startEmulator } from '../../src/emulator/emulator.js';
import { createLogger } from '../../src/logger.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { createSignInClient } from '../../src/http/sign-in/oidc-client.js';
import { createIdTokenValidator, PERSONAL_ACCOUNTS_TENANT } from '../../src/http/sign-in/id-token.js';
import { ExpiringMap } from '../../src/http/sign-in/expiring-map.js';

const SECRET = 'landing-test-secret-0123456789-abcdefghijklmnop';
const CLIENT_ID = '11111111-2222-4333-8444-555555555555';
const TENANT = '6b3c2e1a-0f4d-4e5b-9a8c-7d6e5f4a3b2c';
const SESSION_MS = 30 * 60_000;
const silent = createLogger('silent');

type Claims = Record<string, unknown>;

/** An OpenID provider whose token endpoint answers what the test says. */
async function scriptedProvider(t: Test) {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const other = await generateKeyPair('RS256', { extractable: true });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  let answer: (body: URLSearchParams) => Promise<string> = async () => '';
  const server = createServer((req, res) => {
    if (req.url === '/jwks') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    let body = '';
    req.on('data', (c: Buffer) => (body += String(c)));
    req.on('end', () => {
      answer(new URLSearchParams(body)).then(
        (idToken) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token_type: 'Bearer', access_token: 'at', expires_in: 3600, scope: 'openid profile email', id_token: idToken })),
        () => res.writeHead(500).end(),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const sign = (claims: Claims, key = privateKey) =>
    new SignJWT({ iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600, ...claims }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(key);
  return {
    issuer,
    metadata: { issuer, authorization_endpoint: `${issuer}/authorize`, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks` },
    sign,
    otherKey: other.privateKey,
    /** What the token endpoint answers next: claims → a signed ID token (or any string). */
    answer(fn: (nonce: string) => Promise<string>) {
      answer = async () => fn(lastNonce);
    },
  };
}
let lastNonce = '';

async function setup(t: Test, options: { allowOtherUsers?: boolean; purchaseTokenTtlMs?: number } = {}) {
  const emulator = await startEmulator({ operationDelayMs: 10, ...(options.purchaseTokenTtlMs ? { purchaseTokenTtlMs: options.purchaseTokenTtlMs } : {}) });
  t.teardown(() => emulator.close());
  const store: EventStore = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const ledger = new SubscriptionLedger(store);
  const marketplace = new FulfillmentClient({ baseUrl: emulator.apiBaseUrl, tokenProvider: new StaticTokenProvider('x'), logger: silent, retry: { maxAttempts: 1 } });
  const op = await scriptedProvider(t);
  const client = createSignInClient({ kind: 'local', authority: op.issuer, clientId: CLIENT_ID, clientSecret: 'client-secret', redirectUri: 'http://127.0.0.1/landing/sign-in/callback', metadata: op.metadata });
  const clock = { offsetMs: 0 };
  const app = await buildApp({
    logger: silent,
    store: () => store,
    landing: {
      ledger,
      marketplace,
      landingSecret: SECRET,
      now: () => new Date(Date.now() + clock.offsetMs),
      signIn: { client: () => client, sessionMs: SESSION_MS, signInMs: 10 * 60_000, allowOtherUsers: options.allowOtherUsers ?? false, secureCookies: false },
    },
  });
  t.teardown(() => app.close());
  const good = (nonce: string, extra: Claims = {}) =>
    op.sign({ iss: op.issuer, aud: CLIENT_ID, sub: 'u1', oid: 'a0a0a0a0-0000-4000-8000-000000000001', tid: TENANT, name: 'Ada Lovelace', email: 'ada@fabrikam.example', nonce, ...extra });
  op.answer((nonce) => good(nonce));
  const allEvents = async () => {
    const out: string[] = [];
    for await (const e of store.readAll()) out.push(e.type);
    return out;
  };
  return { app, ledger, emulator, op, good, clock, allEvents };
}

type Jar = Record<string, string>;
const cookieHeader = (jar: Jar) => Object.entries(jar).map(([k, v]) => `${k}=${v}`).join('; ');
function keep(jar: Jar, setCookie: string | string[] | undefined): Jar {
  for (const c of [setCookie ?? []].flat()) {
    const [pair = ''] = c.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (/Expires=Thu, 01 Jan 1970/.test(c) || value === '') delete jar[name];
    else jar[name] = value;
  }
  return jar;
}

/** GET /landing?token=… without a session: the provider's address (state, nonce) and the cookie. */
async function startSignIn(s: Awaited<ReturnType<typeof setup>>, token: string, jar: Jar = {}) {
  const res = await s.app.inject({ method: 'GET', url: `/landing?token=${encodeURIComponent(token)}`, headers: { cookie: cookieHeader(jar) } });
  const location = new URL(String(res.headers.location));
  lastNonce = location.searchParams.get('nonce') ?? '';
  return { res, location, state: location.searchParams.get('state') ?? '', nonce: lastNonce, jar: keep(jar, res.headers['set-cookie']) };
}

function callback(s: Awaited<ReturnType<typeof setup>>, query: string, jar: Jar) {
  return s.app.inject({ method: 'GET', url: `/landing/sign-in/callback?${query}`, headers: { cookie: cookieHeader(jar) } });
}

/** Signed in and on the purchase page: the session cookie and the form's fields. */
async function signedIn(s: Awaited<ReturnType<typeof setup>>, token: string) {
  const started = await startSignIn(s, token);
  const cb = await callback(s, `code=c1&state=${started.state}`, started.jar);
  const jar = keep(started.jar, cb.headers['set-cookie']);
  const page = await s.app.inject({ method: 'GET', url: '/landing/continue', headers: { cookie: cookieHeader(jar) } });
  const field = (name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(page.body)?.[1] ?? '';
  return { jar, cb, page, csrf: field('csrf'), sig: field('sig'), subscriptionId: field('subscriptionId') };
}

const form = (body: Record<string, string>) => ({ 'content-type': 'application/x-www-form-urlencoded', payload: new URLSearchParams(body).toString() });

t.test('the happy path: sign-in first, nothing recorded before; the user is the actor', async (t) => {
  const s = await setup(t);
  const bought = s.emulator.marketplace.purchase({ planId: 'standard', quantity: 3, beneficiary: { emailId: 'ada@fabrikam.example' } });
  t.match(bought.token, /[+/=]/);
  const started = await startSignIn(s, bought.token);
  t.equal(started.res.statusCode, 303, 'to the provider');
  t.equal(started.location.origin, s.op.issuer);
  t.equal(started.location.searchParams.get('code_challenge_method'), 'S256', 'PKCE');
  t.notOk(started.location.href.includes(encodeURIComponent(bought.token)) || started.location.href.includes(bought.token), 'the token is not in the provider URL');
  t.same(await s.allEvents(), [], 'nothing recorded before the sign-in');
  const setCookie = String(started.res.headers['set-cookie']);
  t.match(setCookie, /HttpOnly/);
  t.match(setCookie, /SameSite=Lax/);

  const ok = await signedIn(s, bought.token);
  t.equal(ok.cb.statusCode, 303);
  t.equal(ok.cb.headers.location, '/landing/continue');
  t.match(String(ok.cb.headers['set-cookie']), /landing_session=.*Max-Age=1800.*Path=\/landing.*HttpOnly.*SameSite=Lax/);
  t.equal(ok.page.statusCode, 200);
  t.match(ok.page.body, /Signed in as/);
  t.ok(ok.csrf.length > 20, 'a CSRF token in the form');
  const res = await s.app.inject({ method: 'POST', url: '/landing/activate', headers: { cookie: cookieHeader(ok.jar), ...form({}) }, ...form({ subscriptionId: ok.subscriptionId, sig: ok.sig, csrf: ok.csrf }) });
  t.equal(res.statusCode, 303);
  const events = (await s.ledger.load(bought.subscription.id)).events;
  t.same(events.map((e) => e.type), ['Purchased', 'ActivationRequested']);
  t.match(events[1]?.metadata, { actor: 'customer:ada@fabrikam.example', signedInUser: { name: 'Ada Lovelace', email: 'ada@fabrikam.example', oid: 'a0a0a0a0-0000-4000-8000-000000000001', tid: TENANT } });
});

t.test('ID token refusals: tampered, wrong audience, replayed nonce, other issuer, expired, wrong key: 401 pages, nothing recorded', async (t) => {
  const s = await setup(t);
  let previousNonce = '';
  const cases: Array<[string, (nonce: string) => Promise<string>, RegExp]> = [
    [
      'tampered',
      async (nonce) => {
        const [h, p, sig] = (await s.good(nonce)).split('.');
        const claims = JSON.parse(Buffer.from(p ?? '', 'base64url').toString()) as Claims;
        return [h, Buffer.from(JSON.stringify({ ...claims, email: 'mallory@evil.example' })).toString('base64url'), sig].join('.');
      },
      /not signed by the sign-in service/,
    ],
    ['wrong audience', (nonce) => s.good(nonce, { aud: 'another-app' }), /issued for another application/],
    ['replayed nonce', () => s.good(previousNonce), /does not belong to this visit/],
    ['other issuer', (nonce) => s.good(nonce, { iss: 'https://evil.example' }), /identity provider we do not accept/],
    ['expired', (nonce) => s.good(nonce, { exp: Math.floor(Date.now() / 1000) - 3600 }), /has expired/],
    ['wrong key', (nonce) => s.op.sign({ iss: s.op.issuer, aud: CLIENT_ID, sub: 'u', tid: TENANT, nonce }, s.op.otherKey), /not signed by the sign-in service/],
  ];
  // A nonce of an earlier sign-in, for the replay.
  previousNonce = (await startSignIn(s, 'unused-token')).nonce;
  for (const [name, answer, text] of cases) {
    const bought = s.emulator.marketplace.purchase({ planId: 'standard', quantity: 1 });
    s.op.answer(answer);
    const started = await startSignIn(s, bought.token);
    const res = await callback(s, `code=c&state=${started.state}`, started.jar);
    t.equal(res.statusCode, 401, `${name}: 401`);
    t.match(res.headers['content-type'], /text\/html/, `${name}: a page`);
    t.match(res.body, /We couldn(&#39;|')t verify your sign-in/, `${name}: says so`);
    t.match(res.body, text, `${name}: and why`);
    t.notMatch(String(res.headers['set-cookie'] ?? ''), /landing_session=[^;]/, `${name}: no session`);
  }
  t.same(await s.allEvents(), [], 'nothing recorded in the store');
});

t.test('state: missing, not this browser\'s, replayed callback; cancelled sign-in; provider error: 4xx pages, nothing recorded', async (t) => {
  const s = await setup(t);
  const bought = s.emulator.marketplace.purchase({ planId: 'standard', quantity: 1 });
  const started = await startSignIn(s, bought.token);
  const missing = await callback(s, 'code=c', started.jar);
  t.equal(missing.statusCode, 400, 'missing state');
  t.match(missing.body, /sign-in link isn(&#39;|')t valid/);
  t.equal((await callback(s, `code=c&state=${started.state}x`, started.jar)).statusCode, 400, 'wrong state');
  t.equal((await callback(s, `code=c&state=${started.state}`, {})).statusCode, 400, 'the right state without this browser\'s cookie');
  const other = await startSignIn(s, bought.token);
  t.equal((await callback(s, `code=c&state=${started.state}`, other.jar)).statusCode, 400, 'another sign-in\'s state');

  const cancelled = await callback(s, `error=access_denied&error_description=cancelled&state=${started.state}`, started.jar);
  t.equal(cancelled.statusCode, 401, 'cancelled');
  t.match(cancelled.body, /You cancelled the sign-in/);
  t.match(cancelled.body, /href="\/landing\/sign-in\/retry"/, 'with "sign in again"');
  const retry = await s.app.inject({ method: 'GET', url: '/landing/sign-in/retry', headers: { cookie: cookieHeader(started.jar) } });
  t.equal(retry.statusCode, 303, 'sign in again: a new sign-in for the same token');
  t.notOk(String(retry.headers.location).includes('token='), 'the token stays on the server');

  const refused = await callback(s, `error=server_error&state=${other.state}`, other.jar);
  t.equal(refused.statusCode, 400, 'another provider error');
  t.match(refused.body, /We couldn(&#39;|')t sign you in/);

  const third = await startSignIn(s, bought.token);
  t.equal((await callback(s, `code=c&state=${third.state}`, third.jar)).statusCode, 303, 'a good callback');
  const replay = await callback(s, `code=c&state=${third.state}`, third.jar);
  t.equal(replay.statusCode, 400, 'the same callback again');
  t.match(replay.body, /This sign-in has expired/);
  t.same(await s.allEvents(), [], 'nothing recorded (the good sign-in did not go on to the page)');
});

t.test('forged CSRF, expired session, wrong account, expired purchase token: 4xx pages, nothing recorded', async (t) => {
  const s = await setup(t, { purchaseTokenTtlMs: 60 * 60_000 });
  const bought = s.emulator.marketplace.purchase({ planId: 'standard', quantity: 1, beneficiary: { emailId: 'ada@fabrikam.example' } });
  const ok = await signedIn(s, bought.token);
  const post = (csrf: string, jar = ok.jar) =>
    s.app.inject({ method: 'POST', url: '/landing/activate', headers: { cookie: cookieHeader(jar), 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams({ subscriptionId: ok.subscriptionId, sig: ok.sig, csrf }).toString() });
  const forged = await post('forged-csrf-token-0123456789abc');
  t.equal(forged.statusCode, 403, 'forged CSRF');
  t.match(forged.body, /We couldn(&#39;|')t accept this form/);
  t.equal((await post('')).statusCode, 403, 'no CSRF token');
  t.equal((await post(ok.csrf, {})).statusCode, 401, 'no session');
  const tampered = { landing_session: ok.jar['landing_session']?.replace(/^./, (c) => (c === 'a' ? 'b' : 'a')) ?? '' };
  t.equal((await post(ok.csrf, tampered)).statusCode, 401, 'a tampered session cookie');
  s.clock.offsetMs = SESSION_MS + 1000;
  const expired = await post(ok.csrf);
  t.equal(expired.statusCode, 401, 'expired session');
  t.match(expired.body, /Your session has expired/);
  t.equal((await s.app.inject({ method: 'GET', url: '/landing/continue', headers: { cookie: cookieHeader(ok.jar) } })).statusCode, 401, 'continue with an expired session');
  s.clock.offsetMs = 0;
  t.same((await s.ledger.load(bought.subscription.id)).events.map((e) => e.type), ['Purchased'], 'no activation requested');

  // Someone else signs in for a subscription bought for grace@: refused before anything is recorded.
  const forGrace = s.emulator.marketplace.purchase({ planId: 'standard', quantity: 1, beneficiary: { emailId: 'grace@contoso.example' } });
  const wrong = await signedIn(s, forGrace.token);
  t.equal(wrong.page.statusCode, 403, 'wrong account');
  t.match(wrong.page.body, /bought for someone else/);
  t.match(wrong.page.body, /Use another account/);
  t.same((await s.ledger.load(forGrace.subscription.id)).events, [], 'nothing recorded for the wrong account');

  // The purchase token expired at Microsoft while the customer was signing in.
  const late = s.emulator.marketplace.purchase({ planId: 'standard', quantity: 1, beneficiary: { emailId: 'ada@fabrikam.example' } });
  const started = await startSignIn(s, late.token);
  const cb = await callback(s, `code=c&state=${started.state}`, started.jar);
  s.emulator.marketplace.advanceClock(2 * 60 * 60_000);
  const page = await s.app.inject({ method: 'GET', url: '/landing/continue', headers: { cookie: cookieHeader(keep(started.jar, cb.headers['set-cookie'])) } });
  t.equal(page.statusCode, 400, 'expired purchase token');
  t.match(page.body, /expired or is not valid/);
  t.same((await s.ledger.load(late.subscription.id)).events, [], 'nothing recorded');
});

t.test('other users allowed by configuration: a notice, and activation goes ahead', async (t) => {
  const s = await setup(t, { allowOtherUsers: true });
  const bought = s.emulator.marketplace.purchase({ planId: 'standard', quantity: 1, beneficiary: { emailId: 'grace@contoso.example' } });
  const ok = await signedIn(s, bought.token);
  t.equal(ok.page.statusCode, 200);
  t.match(ok.page.body, /id="other-user"/);
  t.match(ok.page.body, /You can still activate it/);
});

t.test('the ID token validator: issuer per tenant, personal accounts, organizations', async (t) => {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const keys = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k', alg: 'RS256' }] });
  const template = 'https://login.microsoftonline.com/{tenantid}/v2.0';
  const token = (tid: string, iss = `https://login.microsoftonline.com/${tid}/v2.0`) =>
    new SignJWT({ iss, aud: CLIENT_ID, tid, oid: 'o', nonce: 'n' }).setProtectedHeader({ alg: 'RS256', kid: 'k' }).setIssuedAt().setExpirationTime('5m').sign(privateKey);
  const common = createIdTokenValidator({ issuer: template, jwksUri: 'http://unused', clientId: CLIENT_ID, tenants: 'any', keys });
  const orgs = createIdTokenValidator({ issuer: template, jwksUri: 'http://unused', clientId: CLIENT_ID, tenants: 'organizations', keys });
  t.match(await common(await token(TENANT), 'n'), { ok: true, user: { tid: TENANT } }, 'a work account');
  t.match(await common(await token(PERSONAL_ACCOUNTS_TENANT), 'n'), { ok: true, user: { tid: PERSONAL_ACCOUNTS_TENANT } }, 'a personal account');
  t.match(await orgs(await token(PERSONAL_ACCOUNTS_TENANT), 'n'), { ok: false, problem: 'tenant' }, 'organizations: no personal accounts');
  t.match(await common(await token(TENANT, `https://login.microsoftonline.com/${PERSONAL_ACCOUNTS_TENANT}/v2.0`), 'n'), { ok: false, problem: 'issuer' }, 'the issuer must be the token\'s own tenant');
  t.match(await common(await token(TENANT), 'other'), { ok: false, problem: 'nonce' });
});

t.test('the bounded store of sign-ins: expiry, once, oldest out first', async (t) => {
  let now = 0;
  const m = new ExpiringMap<string>({ ttlMs: 100, maxEntries: 2, now: () => now });
  m.set('a', '1');
  m.set('b', '2');
  m.set('c', '3');
  t.equal(m.get('a'), undefined, 'the oldest went');
  t.equal(m.take('b'), '2');
  t.equal(m.take('b'), undefined, 'taken once');
  now = 150;
  t.equal(m.get('c'), undefined, 'expired');
});
