/**
 * The landing page through inject(): the real app (buildApp) with the landing routes, a real
 * SQLite store (in memory), and the Fulfillment client talking HTTP to the marketplace emulator or
 * to a recording server on 127.0.0.1.
 */
import t from 'tap';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.js';
import type { App } from '../../src/app.js';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { tokenFromRawUrl } from '../../src/http/landing.routes.js';
import type { LandingOptions } from '../../src/http/landing.routes.js';
import { createLandingSigner } from '../../src/http/landing.signing.js';
import { EXPIRED_LINK_MESSAGE, escapeHtml, html } from '../../src/http/landing.views.js';
import { createLogger } from '../../src/logger.js';
import { startEmulator } from '../../src/emulator/emulator.js';
import type { Emulator } from '../../src/emulator/emulator.js';
import type { PurchaseInput } from '../../src/emulator/state.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { startScriptedServer } from '../support/scripted-server.js';

const SECRET = 'landing-test-secret-0123456789-abcdefghijklmnop';
const silent = createLogger('silent');

type Setup = {
  app: App;
  ledger: SubscriptionLedger;
  emulator: Emulator;
  /** Make a purchase at the emulator; returns its id, token and the landing path with the token as Microsoft sends it. */
  buy(input?: Partial<PurchaseInput>): { id: string; token: string; path: string };
  freshToken(id: string): string;
  events(id: string): Promise<string[]>;
  clock: { offsetMs: number };
};

function landingPath(token: string): string {
  // What Microsoft does: the token percent-encoded in the query (URLSearchParams would write '+' for a space, never for '+').
  return `/landing?token=${encodeURIComponent(token)}`;
}

async function setup(t: Test, overrides: Partial<LandingOptions> = {}): Promise<Setup> {
  const emulator = await startEmulator({ operationDelayMs: 10 });
  t.teardown(() => emulator.close());
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const ledger = new SubscriptionLedger(store);
  const marketplace = new FulfillmentClient({
    baseUrl: emulator.apiBaseUrl,
    tokenProvider: new StaticTokenProvider('test-entra-token'),
    logger: silent,
    retry: { maxAttempts: 1 },
  });
  const clock = { offsetMs: 0 };
  const app = await buildApp({
    logger: silent,
    store: () => store,
    landing: { ledger, marketplace, productName: 'Contoso Notes', landingSecret: SECRET, now: () => new Date(Date.now() + clock.offsetMs), ...overrides },
  });
  t.teardown(() => app.close());
  return {
    app,
    ledger,
    emulator,
    clock,
    buy(input = {}) {
      const r = emulator.marketplace.purchase({ planId: 'standard', quantity: 3, ...input });
      return { id: r.subscription.id, token: r.token, path: landingPath(r.token) };
    },
    freshToken(id) {
      return emulator.marketplace.newLandingToken(id).token;
    },
    async events(id) {
      return (await ledger.load(id)).events.map((e) => e.type);
    },
  };
}

/** The visible text of a page, roughly: tags dropped, entities of the escaper undone, spaces collapsed. */
function text(page: string): string {
  return page
    .replace(/<script[\s\S]*?<\/script>|<style[\s\S]*?<\/style>/g, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&#96;/g, '`')
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ');
}

function formField(page: string, name: string): string | undefined {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(page) ?? new RegExp(`name="${name}"[^>]*value="([^"]*)"`).exec(page);
  return m?.[1];
}

function form(body: Record<string, string>): { headers: Record<string, string>; payload: string } {
  return { headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams(body).toString() };
}

// ------------------------------------------------------------------------------------------------
// Pure pieces

t.test('tokenFromRawUrl percent-decodes once and keeps +', async (t) => {
  t.same(tokenFromRawUrl('/landing?token=ab%2Bcd%2Fef'), { kind: 'ok', raw: 'ab%2Bcd%2Fef', token: 'ab+cd/ef' });
  t.same(tokenFromRawUrl('/landing?x=1&token=ab+cd/ef%3D%3D&y'), { kind: 'ok', raw: 'ab+cd/ef%3D%3D', token: 'ab+cd/ef==' }, 'a literal + is a +');
  t.same(tokenFromRawUrl('/landing?%74oken=abc'), { kind: 'ok', raw: 'abc', token: 'abc' }, 'the name may be encoded');
  t.same(tokenFromRawUrl('/landing?token=ab%252B'), { kind: 'ok', raw: 'ab%252B', token: 'ab%2B' }, 'decoded once, not twice');
  t.same(tokenFromRawUrl('/landing'), { kind: 'missing' });
  t.same(tokenFromRawUrl('/landing?token='), { kind: 'missing' });
  t.same(tokenFromRawUrl('/landing?tokens=abc'), { kind: 'missing' });
  t.same(tokenFromRawUrl('/landing?token=%20'), { kind: 'missing' });
  t.match(tokenFromRawUrl('/landing?token=ab%zz'), { kind: 'malformed' });
  t.match(tokenFromRawUrl(`/landing?token=${'a'.repeat(9000)}`), { kind: 'malformed' });
});

t.test('html escapes every interpolated value; nested html stays', async (t) => {
  t.equal(escapeHtml(`<a href="x" onclick='y'>&\``), '&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&#96;');
  const evil = '<script>alert(1)</script>';
  t.equal(html`<p title="${evil}">${evil}</p>`.value, '<p title="&lt;script&gt;alert(1)&lt;/script&gt;">&lt;script&gt;alert(1)&lt;/script&gt;</p>');
  t.equal(html`<ul>${['<a>', html`<li>${'&'}</li>`]}</ul>`.value, '<ul>&lt;a&gt;<li>&amp;</li></ul>');
  t.equal(html`${undefined}${null}${false}${0}`.value, '0');
});

t.test('landing signatures: bound to purpose and subscription, expire, resist tampering', async (t) => {
  let now = new Date('2026-05-01T10:00:00Z');
  const signer = createLandingSigner({ secret: SECRET, ttlMs: 60_000, now: () => now });
  const sig = signer.sign('activate', 'sub-1');
  t.equal(signer.verify('activate', 'sub-1', sig), 'ok');
  t.equal(signer.verify('status', 'sub-1', sig), 'invalid', 'other purpose');
  t.equal(signer.verify('activate', 'sub-2', sig), 'invalid', 'other subscription');
  t.equal(signer.verify('activate', 'sub-1', undefined), 'invalid');
  t.equal(signer.verify('activate', 'sub-1', `${sig.slice(0, -2)}AA`), 'invalid', 'tampered mac');
  const [exp, mac] = sig.split('.');
  t.equal(signer.verify('activate', 'sub-1', `${Number(exp) + 3600}.${mac}`), 'invalid', 'extended expiry');
  now = new Date(now.getTime() + 61_000);
  t.equal(signer.verify('activate', 'sub-1', sig), 'expired');
  t.throws(() => createLandingSigner({ secret: 'short', ttlMs: 1, now: () => now }), /at least 32 bytes/);
});

// ------------------------------------------------------------------------------------------------
// Token handling against a recording server

t.test('a token with + and / reaches Resolve exactly as Microsoft issued it', async (t) => {
  const server = await startScriptedServer(() => ({ status: 400, body: { error: { code: 'InvalidValue', message: 'unknown token' } } }));
  t.teardown(() => server.close());
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const marketplace = new FulfillmentClient({ baseUrl: server.apiUrl, tokenProvider: new StaticTokenProvider('entra'), logger: silent, retry: { maxAttempts: 1 } });
  const app = await buildApp({ logger: silent, store: () => store, landing: { ledger: new SubscriptionLedger(store), marketplace, landingSecret: SECRET } });
  t.teardown(() => app.close());

  const cases: Array<[string, string]> = [
    ['/landing?token=ab%2Bcd%2Fef%3D%3D', 'ab+cd/ef=='],
    ['/landing?token=ab+cd/ef==', 'ab+cd/ef=='],
    ['/landing?utm=x&token=AAA%2B%2F%2B%3D&other=1', 'AAA+/+='],
    ['/landing?token=ab%252Bcd', 'ab%2Bcd'],
  ];
  for (const [url, expected] of cases) {
    const before = server.requests.length;
    const res = await app.inject({ method: 'GET', url });
    t.equal(res.statusCode, 400, `${url}: the recording server refused it, so the page is the expired-link page`);
    const sent = server.requests.slice(before);
    t.equal(sent.length, 1, `${url}: one Resolve`);
    t.match(sent[0]?.url, /^\/api\/saas\/subscriptions\/resolve\?api-version=2018-08-31$/);
    t.equal(sent[0]?.headers['x-ms-marketplace-token'], expected, `${url} → x-ms-marketplace-token ${expected}`);
  }
  t.equal((await app.inject({ method: 'HEAD', url: '/landing?token=abc' })).statusCode, 404, 'HEAD (link scanners) does not resolve tokens');
  t.equal(server.requests.length, cases.length, 'nothing else reached Microsoft');
});

// ------------------------------------------------------------------------------------------------
// Against the emulator

t.test('a new purchase shows the details and the contact form; only the purchase is recorded', async (t) => {
  const s = await setup(t);
  const bought = s.buy({
    subscriptionName: 'Team notes',
    beneficiary: { emailId: 'ada@fabrikam.example' },
    purchaser: { emailId: 'buyer@fabrikam.example' },
  });
  t.match(bought.token, /[+/]/, 'the emulator issues URL-unsafe tokens');
  const res = await s.app.inject({ method: 'GET', url: bought.path });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /text\/html; charset=utf-8/);
  t.equal(res.headers['cache-control'], 'no-store');
  t.equal(res.headers['referrer-policy'], 'no-referrer');
  t.match(res.headers['content-security-policy'], /default-src 'none'; style-src 'nonce-[^']+'; script-src 'nonce-[^']+'/);
  const page = res.body;
  const words = text(page);
  for (const shown of ['Set up your subscription', 'Team notes', 'ledger-saas', 'standard', 'Seats 3', 'Monthly (1 month)', 'renews automatically', 'buyer@fabrikam.example', 'ada@fabrikam.example', bought.id, 'Activate subscription', 'Contoso Notes']) {
    t.ok(words.includes(shown), `shows ${shown}`);
  }
  t.equal(formField(page, 'email'), 'ada@fabrikam.example', "email pre-filled with the beneficiary's address");
  t.equal(formField(page, 'subscriptionId'), bought.id);
  t.match(formField(page, 'sig'), /^\d+\.[A-Za-z0-9_-]{43}$/);
  t.match(page, /<label for="email">/);
  t.match(page, /<html lang="en">/);
  t.match(page, /<meta name="viewport" content="width=device-width, initial-scale=1">/);
  t.notMatch(page, /<(link|img|script) [^>]*(src|href)="https?:/, 'no external assets');
  t.same(await s.events(bought.id), ['Purchased']);

  const again = await s.app.inject({ method: 'GET', url: landingPath(s.freshToken(bought.id)) });
  t.equal(again.statusCode, 200, 'reopened before confirming: the form again');
  t.same(await s.events(bought.id), ['Purchased'], 'nothing new recorded');
});

t.test('expired, unknown and missing tokens: a 400 page in Microsoft’s wording; Microsoft unreachable: 503, retrying by itself', async (t) => {
  const s = await setup(t);
  const bought = s.buy();
  s.emulator.state.options.purchaseTokenTtlMs = 1;
  const stale = s.freshToken(bought.id);
  await new Promise((r) => setTimeout(r, 5));
  for (const url of [landingPath(stale), landingPath('bm90LWEtdG9rZW4+/w=='), '/landing', '/landing?token=', '/landing?token=%E0%A4%A']) {
    const res = await s.app.inject({ method: 'GET', url });
    t.equal(res.statusCode, 400, `${url.slice(0, 40)} → 400`);
    t.match(res.headers['content-type'], /text\/html/);
    t.ok(text(res.body).includes(EXPIRED_LINK_MESSAGE), 'Microsoft’s suggested wording');
    t.notMatch(res.body, /at [A-Za-z]+ \(|Error:|stack/i, 'no stack trace');
  }
  t.same(await s.events(bought.id), [], 'nothing recorded');

  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const down = new FulfillmentClient({ baseUrl: 'http://127.0.0.1:9/api', tokenProvider: new StaticTokenProvider('x'), logger: silent, retry: { maxAttempts: 1 } });
  const app = await buildApp({ logger: silent, store: () => store, landing: { ledger: new SubscriptionLedger(store), marketplace: down, landingSecret: SECRET } });
  t.teardown(() => app.close());
  const res = await app.inject({ method: 'GET', url: landingPath('abc+def/ghi=') });
  t.equal(res.statusCode, 503);
  t.equal(res.headers['retry-after'], '10');
  t.match(text(res.body), /Microsoft is not answering right now/);
  t.notMatch(res.body, /ECONNREFUSED|127\.0\.0\.1:9/, 'no internals');
});

/** The page's meta refresh: the seconds, and the URL it goes to (none: the same URL). */
function metaRefresh(page: string): string | undefined {
  return /<meta http-equiv="refresh" content="([^"]*)">/.exec(page)?.[1];
}

t.test('Microsoft not answering: the page answers within its time box, says so and retries by itself; then the same URL works', async (t) => {
  const s = await setup(t, { microsoftTimeoutMs: 300, retryAfterSeconds: 3 });
  const bought = s.buy();
  // Resolve stalls for a minute, as when Microsoft does not answer (the client alone would wait up to its 30 s per request).
  s.emulator.faults.set({ api: { delay: { ms: 60_000, operations: ['resolve'] } } });
  const started = Date.now();
  const res = await s.app.inject({ method: 'GET', url: bought.path });
  t.ok(Date.now() - started < 30_000, 'answered long before Microsoft would have (not a 60-s hang)');
  t.equal(res.statusCode, 503);
  t.equal(res.headers['retry-after'], '3');
  t.match(res.headers['content-type'], /text\/html/);
  t.match(text(res.body), /Microsoft is not answering right now/);
  t.match(text(res.body), /This page will retry by itself in 3 seconds/);
  t.match(text(res.body), /Nothing has been charged or lost/);
  t.equal(metaRefresh(res.body), '3', 'a meta refresh of the same URL (no URL given: the token as it came)');
  const retryNow = /<a href="([^"]+)" id="retry-now">/.exec(res.body)?.[1]?.replace(/&amp;/g, '&');
  t.equal(retryNow, bought.path, '"try again now" carries the same token, as it stood in the URL');
  t.match(bought.token, /[+/=]/, 'a token with +, / or = (the encodings that matter)');
  t.notMatch(res.body, /at [A-Za-z]+ \(|Error:|stack|budget|ECONN/i, 'no stack trace, no internals');
  t.same(await s.events(bought.id), [], 'nothing recorded');

  s.emulator.faults.clear();
  const again = await s.app.inject({ method: 'GET', url: retryNow ?? '' });
  t.equal(again.statusCode, 200, 'Microsoft answers again: the normal page, from the same URL');
  t.match(text(again.body), /Set up your subscription/);
  t.equal(metaRefresh(again.body), undefined, 'no refresh on the form');
  t.same(await s.events(bought.id), ['Purchased']);
});

t.test('Microsoft answering 500 for a while: the page that retries by itself, then the normal page', async (t) => {
  const s = await setup(t, { retryAfterSeconds: 5 });
  const bought = s.buy();
  s.emulator.faults.set({ api: { serverError: { times: 1, operations: ['resolve'] } } });
  const down = await s.app.inject({ method: 'GET', url: bought.path });
  t.equal(down.statusCode, 503);
  t.equal(metaRefresh(down.body), '5');
  t.match(text(down.body), /Microsoft is not answering right now/);
  const up = await s.app.inject({ method: 'GET', url: bought.path });
  t.equal(up.statusCode, 200);
  t.match(text(up.body), /Set up your subscription/);
});

t.test('the time box covers Get subscription too, and what is left of it when it starts', async (t) => {
  const server = await startScriptedServer((req) => {
    if (req.url.includes('/resolve')) return { status: 200, body: { id: '11111111-2222-4333-8444-555555555555', subscriptionName: 'x', offerId: 'o', planId: 'p' } };
    return new Promise<never>(() => undefined); // Get subscription: never answered
  });
  t.teardown(() => server.close());
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const marketplace = new FulfillmentClient({ baseUrl: server.apiUrl, tokenProvider: new StaticTokenProvider('entra'), logger: silent });
  const app = await buildApp({ logger: silent, store: () => store, landing: { ledger: new SubscriptionLedger(store), marketplace, landingSecret: SECRET, microsoftTimeoutMs: 400 } });
  t.teardown(() => app.close());
  const res = await app.inject({ method: 'GET', url: landingPath('abc+def/ghi=') });
  t.equal(res.statusCode, 503);
  t.match(text(res.body), /Microsoft is not answering right now/);
  t.same(server.requests.map((r) => r.url.split('?')[0]), ['/api/saas/subscriptions/resolve', '/api/saas/subscriptions/11111111-2222-4333-8444-555555555555'], 'Resolve answered, Get subscription did not');
});

t.test('the activation form: signature required, email required when Microsoft gave none, activation requested once', async (t) => {
  const s = await setup(t);
  const bought = s.buy({ beneficiary: { emailId: '' }, subscriptionName: 'No email' });
  const page = (await s.app.inject({ method: 'GET', url: bought.path })).body;
  t.equal(formField(page, 'email'), '', 'nothing to pre-fill');
  t.match(text(page), /Microsoft didn't give us an email address/);
  const sig = formField(page, 'sig') ?? '';

  // Forged, missing and misplaced proofs
  const other = s.buy();
  await s.app.inject({ method: 'GET', url: other.path });
  const otherSig = formField((await s.app.inject({ method: 'GET', url: landingPath(s.freshToken(other.id)) })).body, 'sig') ?? '';
  const forged: Array<Record<string, string>> = [
    { subscriptionId: bought.id, email: 'x@example.com' },
    { subscriptionId: bought.id, sig: '', email: 'x@example.com' },
    { subscriptionId: bought.id, sig: `9999999999.${'A'.repeat(43)}`, email: 'x@example.com' },
    { subscriptionId: bought.id, sig: otherSig, email: 'x@example.com' },
    { subscriptionId: other.id, sig, email: 'x@example.com' },
  ];
  for (const body of forged) {
    const res = await s.app.inject({ method: 'POST', url: '/landing/activate', ...form(body) });
    t.equal(res.statusCode, 403, `forged ${JSON.stringify(body).slice(0, 80)} → 403`);
    t.match(text(res.body), /This page has expired/);
  }
  t.same(await s.events(bought.id), ['Purchased']);
  t.same(await s.events(other.id), ['Purchased']);

  // Missing email: 400, the form again with an error, what was typed kept (and escaped)
  const missing = await s.app.inject({
    method: 'POST',
    url: '/landing/activate',
    ...form({ subscriptionId: bought.id, sig, email: '  ', name: 'Ada "<b>" Lovelace', company: 'Fabrikam' }),
  });
  t.equal(missing.statusCode, 400);
  t.match(missing.body, /role="alert"/);
  t.match(text(missing.body), /Enter an email address so that we can contact you/);
  t.match(missing.body, /id="email"[^>]*aria-describedby="email-error email-hint" aria-invalid="true"/);
  t.equal(formField(missing.body, 'name'), 'Ada &quot;&lt;b&gt;&quot; Lovelace', 'kept and escaped');
  t.equal(formField(missing.body, 'company'), 'Fabrikam');
  t.match(text(missing.body), /Error: Set up your subscription/, 'the title says there is an error');
  const badFormat = await s.app.inject({ method: 'POST', url: '/landing/activate', ...form({ subscriptionId: bought.id, sig, email: 'not-an-email' }) });
  t.equal(badFormat.statusCode, 400);
  t.match(text(badFormat.body), /in the correct format/);
  t.same(await s.events(bought.id), ['Purchased'], 'nothing recorded for a refused form');

  // With an email: ActivationRequested with the contact, then the status page
  const ok = await s.app.inject({
    method: 'POST',
    url: '/landing/activate',
    ...form({ subscriptionId: bought.id, sig, email: ' ada@fabrikam.example ', name: 'Ada Lovelace', company: '', phone: '+44 20 7946 0000' }),
  });
  t.equal(ok.statusCode, 303);
  const location = String(ok.headers.location);
  t.match(location, new RegExp(`^/landing/subscriptions/${bought.id}\\?sig=\\d+\\.[A-Za-z0-9_-]{43}$`));
  const loaded = await s.ledger.load(bought.id);
  t.same(loaded.events.map((e) => e.type), ['Purchased', 'ActivationRequested']);
  t.same((loaded.events[1]?.data as { contact: unknown }).contact, { email: 'ada@fabrikam.example', name: 'Ada Lovelace', phone: '+44 20 7946 0000' });
  t.equal(loaded.events[1]?.metadata.actor, 'customer:ada@fabrikam.example');
  t.equal((loaded.events[1]?.data as { source: string }).source, 'landing');

  // Submitted twice (double click, back button): no second request
  const twice = await s.app.inject({ method: 'POST', url: '/landing/activate', ...form({ subscriptionId: bought.id, sig, email: 'ada@fabrikam.example' }) });
  t.equal(twice.statusCode, 303);
  t.same(await s.events(bought.id), ['Purchased', 'ActivationRequested'], 'never requested twice');

  // The status page and its JSON
  const status = await s.app.inject({ method: 'GET', url: location });
  t.equal(status.statusCode, 200);
  t.match(text(status.body), /Setting up your account/);
  t.match(status.body, /id="progress-message" role="status" aria-live="polite"/);
  t.match(status.body, /<noscript><meta http-equiv="refresh" content="\d+"><\/noscript>/, 'works without JS');
  const statusUrl = /data-status-url="([^"]+)"/.exec(status.body)?.[1]?.replace(/&amp;/g, '&') ?? '';
  t.match(statusUrl, new RegExp(`^/landing/subscriptions/${bought.id}/status\\?sig=`));
  const json = await s.app.inject({ method: 'GET', url: statusUrl });
  t.equal(json.statusCode, 200);
  t.equal(json.headers['cache-control'], 'no-store');
  t.match(json.json(), { subscriptionId: bought.id, status: 'PendingFulfillmentStart', phase: 'activating', final: false });

  // Status links need their signature too
  const forgedStatus = await s.app.inject({ method: 'GET', url: `/landing/subscriptions/${other.id}?sig=${encodeURIComponent(new URL(location, 'http://x').searchParams.get('sig') ?? '')}` });
  t.equal(forgedStatus.statusCode, 403);
  const forgedJson = await s.app.inject({ method: 'GET', url: `/landing/subscriptions/${bought.id}/status` });
  t.equal(forgedJson.statusCode, 403);
  t.match(forgedJson.headers['content-type'], /application\/problem\+json/);
  const activateSigAsStatus = await s.app.inject({ method: 'GET', url: `/landing/subscriptions/${bought.id}?sig=${encodeURIComponent(sig)}` });
  t.equal(activateSigAsStatus.statusCode, 403, 'a form proof is not a status link');

  // Once activated (what the activation process records), the page says Active
  await s.ledger.execute(bought.id, { type: 'ConfirmActivation', now: new Date().toISOString(), source: 'process' }, { actor: 'system:test' });
  const active = await s.app.inject({ method: 'GET', url: statusUrl });
  t.match(active.json(), { status: 'Subscribed', phase: 'active', label: 'Active', final: true });
  const activePage = await s.app.inject({ method: 'GET', url: location });
  t.match(text(activePage.body), /Your subscription is active/);
  t.notMatch(activePage.body, /http-equiv="refresh"/, 'no refresh once final');
});

t.test('signatures expire: an old form or status link is refused with a helpful page', async (t) => {
  const s = await setup(t, { linkTtlMs: 60_000 });
  const bought = s.buy();
  const sig = formField((await s.app.inject({ method: 'GET', url: bought.path })).body, 'sig') ?? '';
  s.clock.offsetMs = 61_000;
  const res = await s.app.inject({ method: 'POST', url: '/landing/activate', ...form({ subscriptionId: bought.id, sig, email: 'a@b.example' }) });
  t.equal(res.statusCode, 403);
  t.match(text(res.body), /Open your subscription again from the Azure portal or the Microsoft 365 admin center/);
  t.same(await s.events(bought.id), ['Purchased']);
});

t.test('a second visit ("Manage account") shows the current status and records nothing new', async (t) => {
  const s = await setup(t);
  const bought = s.buy({ beneficiary: { emailId: 'grace@contoso.example' } });
  const sig = formField((await s.app.inject({ method: 'GET', url: bought.path })).body, 'sig') ?? '';
  await s.app.inject({ method: 'POST', url: '/landing/activate', ...form({ subscriptionId: bought.id, sig, email: 'grace@contoso.example' }) });

  // While activation is under way
  const during = await s.app.inject({ method: 'GET', url: landingPath(s.freshToken(bought.id)) });
  t.equal(during.statusCode, 303, 'no form while activating');
  t.match(String(during.headers.location), /^\/landing\/subscriptions\//);
  t.same(await s.events(bought.id), ['Purchased', 'ActivationRequested']);

  // After activation, at Microsoft and in the ledger
  s.emulator.marketplace.activate(bought.id, { planId: 'standard', quantity: 3 });
  await s.ledger.execute(bought.id, { type: 'ConfirmActivation', now: new Date().toISOString(), source: 'process' }, { actor: 'system:test' });
  const before = await s.events(bought.id);
  const manage = await s.app.inject({ method: 'GET', url: landingPath(s.freshToken(bought.id)) });
  t.equal(manage.statusCode, 303);
  const page = await s.app.inject({ method: 'GET', url: String(manage.headers.location) });
  t.equal(page.statusCode, 200);
  t.match(text(page.body), /Status: Active/);
  t.notMatch(page.body, /action="\/landing\/activate"/, 'no activation form');
  t.same(await s.events(bought.id), before, 'nothing new recorded');

  // Suspended and cancelled subscriptions say so
  s.emulator.marketplace.suspend(bought.id);
  await s.ledger.execute(bought.id, { type: 'Suspend', operationId: 'op-suspend', now: new Date().toISOString(), source: 'webhook' }, { actor: 'microsoft' });
  const suspended = await s.app.inject({ method: 'GET', url: String((await s.app.inject({ method: 'GET', url: landingPath(s.freshToken(bought.id)) })).headers.location) });
  t.match(text(suspended.body), /Status: Suspended/);
  t.match(text(suspended.body), /Update the payment method/);
});

t.test('an auto-activated purchase skips the form and goes straight to the account page', async (t) => {
  const s = await setup(t);
  const bought = s.buy({ planId: 'instant', quantity: undefined });
  const res = await s.app.inject({ method: 'GET', url: bought.path });
  t.equal(res.statusCode, 303);
  t.same(await s.events(bought.id), ['Purchased', 'Activated']);
  const page = await s.app.inject({ method: 'GET', url: String(res.headers.location) });
  t.equal(page.statusCode, 200);
  t.match(text(page.body), /Your subscription is active/);
  t.match(text(page.body), /Seats Not sold per seat/);
  t.notMatch(page.body, /<form/, 'nothing to submit');
  const sig = new URL(String(res.headers.location), 'http://x').searchParams.get('sig') ?? '';
  t.equal(sig.length > 0, true);
});

t.test('names from Microsoft are escaped: a subscription called <script> stays text', async (t) => {
  const s = await setup(t);
  const evil = `<script>alert("x")</script><img src=x onerror=alert(1)>'"&`;
  const bought = s.buy({ subscriptionName: evil });
  const res = await s.app.inject({ method: 'GET', url: bought.path });
  t.equal(res.statusCode, 200);
  t.notOk(res.body.includes('<script>alert'), 'no live script');
  t.notOk(res.body.includes('<img src=x'), 'no live element');
  t.ok(res.body.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&#39;&quot;&amp;'), 'escaped');
  t.ok(text(res.body).includes(evil), 'and shown as text');
  const scripts = res.body.match(/<script/g) ?? [];
  t.equal(scripts.length, 0, 'the form page has no script at all');
});

t.test('a final activation failure is shown clearly, and the customer may try again', async (t) => {
  const s = await setup(t);
  const bought = s.buy({ beneficiary: { emailId: 'lin@contoso.example' } });
  const sig = formField((await s.app.inject({ method: 'GET', url: bought.path })).body, 'sig') ?? '';
  const posted = await s.app.inject({ method: 'POST', url: '/landing/activate', ...form({ subscriptionId: bought.id, sig, email: 'lin@contoso.example' }) });
  const location = String(posted.headers.location);
  const at = () => new Date().toISOString();
  const retryAt = new Date(Date.now() + 60_000).toISOString();
  await s.ledger.execute(bought.id, { type: 'RecordActivationFailure', reason: 'provisioning timed out', final: false, retryAt, now: at(), source: 'process' }, { actor: 'system:test' });
  const retrying = await s.app.inject({ method: 'GET', url: location });
  t.match(text(retrying.body), /Status: Setting up \(retrying\)/);
  t.match(text(retrying.body), /we keep trying \(attempt 2 is next\)/);
  const retryingStatus = /data-status-url="([^"]+)"/.exec(retrying.body)?.[1]?.replace(/&amp;/g, '&') ?? '';
  t.match((await s.app.inject({ method: 'GET', url: retryingStatus })).json(), { phase: 'retrying', final: false, activationAttempts: 1, nextAttemptAt: retryAt }, 'the JSON says when the next attempt is due');
  await s.ledger.execute(bought.id, { type: 'RecordActivationFailure', reason: 'provisioning timed out', final: true, now: at(), source: 'process' }, { actor: 'system:test' });

  const failed = await s.app.inject({ method: 'GET', url: location });
  t.equal(failed.statusCode, 200);
  t.match(text(failed.body), /We could not activate your subscription/);
  t.match(text(failed.body), /Status: Activation failed/);
  t.match(text(failed.body), /you have not been charged/);
  t.match(text(failed.body), /lin@contoso\.example/);
  t.notMatch(failed.body, /http-equiv="refresh"/, 'final: no refresh');
  const statusUrl = /data-status-url="([^"]+)"/.exec(failed.body)?.[1]?.replace(/&amp;/g, '&') ?? '';
  t.match((await s.app.inject({ method: 'GET', url: statusUrl })).json(), { phase: 'failed', final: true, activationAttempts: 2 });

  // Reopened from Microsoft: the form again, saying what happened, pre-filled with the contact given
  const again = await s.app.inject({ method: 'GET', url: landingPath(s.freshToken(bought.id)) });
  t.equal(again.statusCode, 200);
  t.match(text(again.body), /The last attempt to activate this subscription did not succeed \(provisioning timed out\)/);
  t.equal(formField(again.body, 'email'), 'lin@contoso.example');
  const retry = await s.app.inject({ method: 'POST', url: '/landing/activate', ...form({ subscriptionId: bought.id, sig: formField(again.body, 'sig') ?? '', email: 'lin@contoso.example' }) });
  t.equal(retry.statusCode, 303);
  t.same(await s.events(bought.id), ['Purchased', 'ActivationRequested', 'ActivationFailed', 'ActivationFailed', 'ActivationRequested']);
});

t.test('partner (CSP) purchases say who bought them', async (t) => {
  const s = await setup(t);
  const csp = await s.app.inject({ method: 'GET', url: s.buy({ csp: true }).path });
  t.match(text(csp.body), /Bought on your behalf by a Microsoft partner/);
  const direct = await s.app.inject({ method: 'GET', url: s.buy({ purchaser: { emailId: 'other@example.com' } }).path });
  t.notMatch(text(direct.body), /Microsoft partner/);
});

t.test('while the event store is not open: a 503 page, not a stack trace', async (t) => {
  const emulator = await startEmulator();
  t.teardown(() => emulator.close());
  const marketplace = new FulfillmentClient({ baseUrl: emulator.apiBaseUrl, tokenProvider: new StaticTokenProvider('x'), logger: silent, retry: { maxAttempts: 1 } });
  const app = await buildApp({ logger: silent, store: () => undefined, landing: { ledger: new SubscriptionLedger(() => undefined), marketplace, landingSecret: SECRET } });
  t.teardown(() => app.close());
  const bought = emulator.marketplace.purchase({ planId: 'basic' });
  const res = await app.inject({ method: 'GET', url: landingPath(bought.token) });
  t.equal(res.statusCode, 503);
  t.match(res.headers['content-type'], /text\/html/);
  t.match(text(res.body), /briefly unavailable/);
  t.match(text(res.body), /Reference: [0-9a-f-]{36}/);
});
