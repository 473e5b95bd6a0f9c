/**
 * The operator API through inject(): bearer auth on every route, strict schemas, state + ETag,
 * history, If-Match (412), one pending change at a time (409), Microsoft's refusals, and the
 * OpenAPI document and docs. Microsoft is a scripted PublisherChangeClient here; the emulator
 * test drives the real client.
 */
import { Ajv2020 } from 'ajv/dist/2020.js';
import t from 'tap';
import { purchaseDetails } from '../support/purchase-details.js';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import type { SubscriptionDetails } from '../../src/domain/subscription/index.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { bearerToken } from '../../src/http/operator-auth.js';
import { parseIfMatch } from '../../src/http/operator.routes.js';
import { createLogger } from '../../src/logger.js';
import { MarketplaceBadRequestError, MarketplaceConflictError, MarketplaceUnavailableError } from '../../src/marketplace/errors.js';
import type { AcceptedOperation, CallOptions } from '../../src/marketplace/fulfillment-client.js';
import type { OperationPollOptions, OperationPollResult } from '../../src/marketplace/operation-poller.js';
import type { NormalisedOperation, NormalisedSubscription } from '../../src/marketplace/schemas.js';
import { PublisherChanges } from '../../src/application/publisher-changes.js';
import type { PublisherChangeClient } from '../../src/application/publisher-changes.js';

const TOKEN = 'op-token-0123456789abcdef';
const AUTH = { authorization: `Bearer ${TOKEN}` };
/** A second, named operator (OPERATOR_TOKENS): what Dana does is recorded as hers. */
const DANA = { authorization: 'Bearer dana-token-0123456789abcdef' };
const OPERATORS = [{ name: 'operator', token: TOKEN }, { name: 'dana@isv.example', token: 'dana-token-0123456789abcdef' }];
const SUB = '5d0c9a7e-1b2f-4c3d-9e8f-0a1b2c3d4e5f';
const OTHER = '6e1d0b8f-2c3a-4d4e-8f90-1b2c3d4e5f60';
const OP = '7f2e1c90-3d4b-4e5f-9a01-2c3d4e5f6071';

const details = purchaseDetails;

/** Microsoft as a script: each PATCH/DELETE answers from `submit`; operations finish when `finish` is called. */
class ScriptedMicrosoft implements PublisherChangeClient {
  calls: { method: string; subscriptionId: string; value?: unknown; correlationId?: string }[] = [];
  submit: (method: string) => Promise<void> = async () => undefined;
  #waiting = new Map<string, (op: NormalisedOperation) => void>();

  #accept(subscriptionId: string, method: string, value: unknown, options?: CallOptions): Promise<AcceptedOperation> {
    this.calls.push({ method, subscriptionId, value, ...(options?.correlationId ? { correlationId: options.correlationId } : {}) });
    return this.submit(method).then(() => ({
      subscriptionId,
      operationId: OP,
      operationLocation: `https://marketplaceapi.example/api/saas/subscriptions/${subscriptionId}/operations/${OP}?api-version=2018-08-31`,
      requestId: 'r',
      correlationId: options?.correlationId ?? 'c',
    }));
  }
  changePlan(id: string, planId: string, options?: CallOptions) {
    return this.#accept(id, 'changePlan', planId, options);
  }
  changeQuantity(id: string, quantity: number, options?: CallOptions) {
    return this.#accept(id, 'changeQuantity', quantity, options);
  }
  deleteSubscription(id: string, options?: CallOptions) {
    return this.#accept(id, 'deleteSubscription', undefined, options);
  }
  followOperation(accepted: AcceptedOperation, options: OperationPollOptions = {}): Promise<OperationPollResult> {
    return new Promise((resolve, reject) => {
      const id = accepted.operationId ?? '';
      this.#waiting.set(id, (op) => resolve({ operation: { ...op, status: op.status as 'Succeeded' }, polls: 1, elapsedMs: 1 }));
      options.signal?.addEventListener('abort', () => reject(options.signal?.reason), { once: true });
    });
  }
  finish(status: string, extra: Partial<NormalisedOperation> = {}, operationId = OP): void {
    const done = this.#waiting.get(operationId);
    this.#waiting.delete(operationId);
    done?.({ id: operationId, status, ...extra } as NormalisedOperation);
  }
  following(operationId: string): boolean {
    return this.#waiting.has(operationId);
  }
  outstanding: Record<string, NormalisedOperation[]> = {};
  async listOperations(id: string): Promise<NormalisedOperation[]> {
    return this.outstanding[id] ?? [];
  }
  async getSubscription(id: string): Promise<NormalisedSubscription> {
    return { id, planId: 'standard', quantity: 5, saasSubscriptionStatus: 'Subscribed' } as NormalisedSubscription;
  }
  url(path: string): URL {
    return new URL(path, 'https://marketplaceapi.example/api/');
  }
}

async function setup(t: Test) {
  const store = openSqliteStore({ path: ':memory:' });
  const ledger = new SubscriptionLedger(store);
  const microsoft = new ScriptedMicrosoft();
  const logger = createLogger('silent');
  const publisherChanges = new PublisherChanges({ ledger, client: microsoft, logger, recheckDelayMs: 10 });
  const app = await buildApp({ logger, store: () => store, api: { operatorToken: OPERATORS, subscriptions: { ledger, publisherChanges } } });
  t.teardown(async () => {
    await app.close();
    await publisherChanges.close();
    await store.close();
  });
  const purchase = async (id: string, microsoftStatus = 'Subscribed', overrides: Partial<SubscriptionDetails> = {}) =>
    ledger.execute(
      id,
      { type: 'RecordPurchase', subscription: details(id, overrides), microsoftStatus, now: '2026-03-01T09:00:00.000Z', source: 'landing' },
      { actor: 'customer:buyer@contoso.example' },
    );
  return { app, store, ledger, microsoft, publisherChanges, purchase };
}

const ROUTES: { method: 'GET' | 'POST'; url: string; payload?: Record<string, unknown> }[] = [
  { method: 'GET', url: `/api/subscriptions/${SUB}` },
  { method: 'GET', url: `/api/subscriptions/${SUB}/events` },
  { method: 'POST', url: `/api/subscriptions/${SUB}/activate`, payload: { contact: { email: 'a@b.example' } } },
  { method: 'POST', url: `/api/subscriptions/${SUB}/plan`, payload: { planId: 'premium' } },
  { method: 'POST', url: `/api/subscriptions/${SUB}/quantity`, payload: { quantity: 7 } },
  { method: 'POST', url: `/api/subscriptions/${SUB}/cancel`, payload: {} },
  { method: 'GET', url: '/api/no-such-route' },
];

t.test('every /api route refuses a request without the token, or with a wrong one (401 problem+json)', async (t) => {
  const { app, microsoft, purchase } = await setup(t);
  await purchase(SUB);
  const wrong = [
    {},
    { authorization: 'Bearer wrong-token' },
    { authorization: `Bearer ${TOKEN}x` },
    { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` },
    { authorization: TOKEN },
  ];
  for (const route of ROUTES) {
    for (const headers of wrong) {
      const res = await app.inject({ ...route, headers });
      t.equal(res.statusCode, 401, `${route.method} ${route.url} with ${JSON.stringify(headers).slice(0, 40)}`);
      t.match(res.headers['content-type'], /^application\/problem\+json/);
      t.match(res.headers['www-authenticate'], /^Bearer realm="operator-api"/);
      t.match(res.json(), { status: 401, title: 'unauthorized' });
      t.notOk(res.body.includes(TOKEN), 'the token is never echoed');
    }
  }
  t.equal(microsoft.calls.length, 0, 'nothing reached Microsoft');
  const missing = await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}` });
  t.equal(missing.headers['www-authenticate'], 'Bearer realm="operator-api"', 'no error code when no credentials were offered');
  const bad = await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}`, headers: { authorization: 'bearer nope' } });
  t.equal(bad.headers['www-authenticate'], 'Bearer realm="operator-api", error="invalid_token"');
  const ok = await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}`, headers: { authorization: `bearer ${TOKEN}` } });
  t.equal(ok.statusCode, 200, 'the scheme is case-insensitive');
});

t.test('unauthenticated requests are logged with ip and route, never the token', async (t) => {
  const lines: string[] = [];
  const { pino } = await import('pino');
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
  const store = openSqliteStore({ path: ':memory:' });
  const ledger = new SubscriptionLedger(store);
  const publisherChanges = new PublisherChanges({ ledger, client: new ScriptedMicrosoft(), logger });
  const app = await buildApp({ logger, store: () => store, api: { operatorToken: TOKEN, subscriptions: { ledger, publisherChanges } } });
  t.teardown(async () => {
    await app.close();
    await store.close();
  });
  await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}?x=1`, headers: { authorization: 'Bearer guess-1234' } });
  const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'operator API request unauthenticated');
  t.match(logged, { ip: '127.0.0.1', route: '/api/subscriptions/:id', method: 'GET', reason: 'invalid-token' });
  t.notOk(lines.join('\n').includes('guess-1234'), 'the presented token is not logged');
  t.notOk(lines.join('\n').includes(TOKEN), 'the real token is not logged');
});

t.test('the operator API does not start without a token', async (t) => {
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const ledger = new SubscriptionLedger(store);
  const publisherChanges = new PublisherChanges({ ledger, client: new ScriptedMicrosoft(), logger: createLogger('silent') });
  await t.rejects(
    buildApp({ logger: createLogger('silent'), store: () => store, api: { operatorToken: ' ', subscriptions: { ledger, publisherChanges } } }),
    /non-empty OPERATOR_TOKEN/,
  );
});

t.test('bearerToken and parseIfMatch', async (t) => {
  t.same(bearerToken(undefined), { failure: 'missing-token' });
  t.same(bearerToken('Bearer  abc '), { token: 'abc' });
  t.same(bearerToken('Bearer a b'), { failure: 'not-bearer' });
  t.same(bearerToken('Token abc'), { failure: 'not-bearer' });
  t.equal(parseIfMatch('"12"'), 12n);
  t.equal(parseIfMatch(' "0" '), 0n);
  t.equal(parseIfMatch('*'), undefined);
  t.equal(parseIfMatch(undefined), undefined);
});

t.test('unknown subscriptions and unknown /api routes are 404 problem+json', async (t) => {
  const { app } = await setup(t);
  for (const route of ROUTES) {
    const res = await app.inject({ ...route, headers: AUTH });
    t.equal(res.statusCode, 404, `${route.method} ${route.url}`);
    t.match(res.headers['content-type'], /^application\/problem\+json/);
    t.match(res.json(), { status: 404, title: /not-found/ });
  }
  const withIfMatch = await app.inject({
    method: 'POST',
    url: `/api/subscriptions/${OTHER}/plan`,
    headers: { ...AUTH, 'if-match': '"3"' },
    payload: { planId: 'premium' },
  });
  t.equal(withIfMatch.statusCode, 404, 'an If-Match on an unknown subscription is still a 404, not a 412');
});

t.test('strict schemas: unknown or malformed fields, parameters and headers are 400', async (t) => {
  const { app, ledger, microsoft, purchase } = await setup(t);
  await purchase(SUB);
  const cases: { what: string; method: 'GET' | 'POST'; url: string; payload?: unknown; headers?: Record<string, string> }[] = [
    { what: 'unknown field on plan', method: 'POST', url: `/api/subscriptions/${SUB}/plan`, payload: { planId: 'premium', force: true } },
    { what: 'unknown field on quantity', method: 'POST', url: `/api/subscriptions/${SUB}/quantity`, payload: { quantity: 7, planId: 'x' } },
    { what: 'unknown field on cancel', method: 'POST', url: `/api/subscriptions/${SUB}/cancel`, payload: { reason: 'x', now: true } },
    { what: 'unknown field on activate', method: 'POST', url: `/api/subscriptions/${SUB}/activate`, payload: { contact: { email: 'a@b.example' }, x: 1 } },
    { what: 'unknown field in the contact', method: 'POST', url: `/api/subscriptions/${SUB}/activate`, payload: { contact: { email: 'a@b.example', role: 'x' } } },
    { what: 'contact email not an email', method: 'POST', url: `/api/subscriptions/${SUB}/activate`, payload: { contact: { email: 'nope' } } },
    { what: 'missing planId', method: 'POST', url: `/api/subscriptions/${SUB}/plan`, payload: {} },
    { what: 'quantity as a string (no coercion)', method: 'POST', url: `/api/subscriptions/${SUB}/quantity`, payload: { quantity: '7' } },
    { what: 'quantity 0', method: 'POST', url: `/api/subscriptions/${SUB}/quantity`, payload: { quantity: 0 } },
    { what: 'quantity not whole', method: 'POST', url: `/api/subscriptions/${SUB}/quantity`, payload: { quantity: 2.5 } },
    { what: 'unknown query parameter', method: 'GET', url: `/api/subscriptions/${SUB}/events?limit=3` },
    { what: 'fromRevision not a number', method: 'GET', url: `/api/subscriptions/${SUB}/events?fromRevision=-1` },
    { what: 'malformed subscription id', method: 'GET', url: `/api/subscriptions/${encodeURIComponent('a b')}` },
    { what: 'unquoted If-Match', method: 'POST', url: `/api/subscriptions/${SUB}/quantity`, payload: { quantity: 7 }, headers: { 'if-match': '1' } },
    { what: 'weak If-Match', method: 'POST', url: `/api/subscriptions/${SUB}/quantity`, payload: { quantity: 7 }, headers: { 'if-match': 'W/"1"' } },
  ];
  for (const c of cases) {
    const res = await app.inject({
      method: c.method,
      url: c.url,
      headers: { ...AUTH, ...c.headers },
      ...(c.payload !== undefined ? { payload: c.payload as Record<string, unknown> } : {}),
    });
    t.equal(res.statusCode, 400, c.what);
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${c.what}: problem+json`);
    t.match(res.json(), { status: 400 }, c.what);
  }
  t.equal(microsoft.calls.length, 0, 'nothing reached Microsoft');
  t.equal((await ledger.load(SUB)).revision, 1n, 'nothing was recorded');
});

t.test('GET a subscription: its state with an ETag; GET its events: the full history', async (t) => {
  const { app, purchase } = await setup(t);
  await purchase(SUB);
  const res = await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}`, headers: AUTH });
  t.equal(res.statusCode, 200);
  t.equal(res.headers.etag, '"1"');
  t.same(res.json(), {
    subscriptionId: SUB,
    revision: '1',
    status: 'Subscribed',
    name: 'Contoso ledger',
    publisherId: 'fabrikam',
    offerId: 'ledger-saas',
    planId: 'standard',
    quantity: 5,
    term: { termUnit: 'P1M', startDate: '2026-03-01T00:00:00Z', endDate: '2026-03-31T00:00:00Z' },
    autoRenew: true,
    isFreeTrial: false,
    isTest: true,
    autoActivated: true,
    allowedCustomerOperations: ['Read', 'Update', 'Delete'],
    created: '2026-03-01T08:59:12Z',
    purchaser: { emailId: 'buyer@contoso.example', tenantId: '0b5c6d1e-2f3a-4b4c-8d5e-6f7a8b9c0d1e' },
    beneficiary: { emailId: 'user@contoso.example', tenantId: '0b5c6d1e-2f3a-4b4c-8d5e-6f7a8b9c0d1e', puid: null },
    activation: { failures: 0, attempts: 0, gaveUp: false },
    purchasedAt: '2026-03-01T09:00:00.000Z',
    activatedAt: '2026-03-01T09:00:00.000Z',
    appliedOperations: [],
  });

  const events = await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}/events`, headers: AUTH });
  t.equal(events.statusCode, 200);
  const body = events.json<{ subscriptionId: string; fromRevision: string; events: Record<string, unknown>[] }>();
  t.equal(body.subscriptionId, SUB);
  t.equal(body.fromRevision, '0');
  t.same(
    body.events.map((e) => [e.type, e.revision, typeof e.position, typeof e.recordedAt]),
    [
      ['Purchased', '0', 'string', 'string'],
      ['Activated', '1', 'string', 'string'],
    ],
  );
  t.match(body.events[0], {
    eventId: /^[0-9a-f-]{36}$/,
    data: { subscriptionId: SUB, planId: 'standard', microsoftStatus: 'Subscribed', purchaser: { emailId: 'buyer@contoso.example' } },
    metadata: { actor: 'customer:buyer@contoso.example' },
  });
  const from1 = await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}/events?fromRevision=1`, headers: AUTH });
  t.same(from1.json<{ events: { type: string }[] }>().events.map((e) => e.type), ['Activated']);
  const past = await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}/events?fromRevision=9`, headers: AUTH });
  t.equal(past.statusCode, 200, 'past the end of an existing stream: empty, not 404');
  t.same(past.json<{ events: unknown[] }>().events, []);
});

t.test('activate: records the contact and answers 202; repeating it changes nothing', async (t) => {
  const { app, ledger, purchase } = await setup(t);
  await purchase(SUB, 'PendingFulfillmentStart');
  const payload = { contact: { email: 'it-admin@contoso.example', name: 'Dana Admin' } };
  const res = await app.inject({
    method: 'POST',
    url: `/api/subscriptions/${SUB}/activate`,
    headers: { ...DANA, 'if-match': '"0"', 'x-operator-id': 'mallory' },
    payload,
  });
  t.equal(res.statusCode, 202);
  t.equal(res.headers.location, `/api/subscriptions/${SUB}`);
  t.equal(res.headers.etag, '"1"');
  t.same(res.json(), { subscriptionId: SUB, status: 'accepted', command: 'activate', revision: '1', location: `/api/subscriptions/${SUB}` });
  const { events } = await ledger.load(SUB);
  t.match(events[1], { type: 'ActivationRequested', data: { contact: payload.contact, source: 'operator' }, metadata: { actor: 'operator:dana@isv.example' } }, 'the authenticated name, not the x-operator-id header');
  const again = await app.inject({ method: 'POST', url: `/api/subscriptions/${SUB}/activate`, headers: AUTH, payload });
  t.equal(again.statusCode, 202);
  t.equal(again.json<{ revision: string }>().revision, '1', 'already under way: nothing new recorded');
  const state = await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}`, headers: AUTH });
  t.match(state.json(), { status: 'PendingFulfillmentStart', contact: payload.contact, activation: { requestedAt: /Z$/ } });

  await purchase(OTHER);
  const active = await app.inject({ method: 'POST', url: `/api/subscriptions/${OTHER}/activate`, headers: AUTH, payload });
  t.equal(active.statusCode, 409, 'an active subscription is never activated again');
  t.match(active.json(), { title: 'already-active' });
});

t.test('If-Match: a stale revision is 412 with the current revision; the current one or * passes', async (t) => {
  const { app, microsoft, purchase } = await setup(t);
  await purchase(SUB);
  for (const route of ROUTES.filter((r) => r.method === 'POST')) {
    const res = await app.inject({ ...route, headers: { ...AUTH, 'if-match': '"0"' } });
    t.equal(res.statusCode, 412, `${route.url}`);
    t.match(res.headers['content-type'], /^application\/problem\+json/);
    t.match(res.json(), { status: 412, title: 'precondition-failed', currentRevision: '1' });
  }
  t.equal(microsoft.calls.length, 0, 'a stale change never reaches Microsoft');

  const current = await app.inject({
    method: 'POST',
    url: `/api/subscriptions/${SUB}/quantity`,
    headers: { ...AUTH, 'if-match': '"1"' },
    payload: { quantity: 7 },
  });
  t.equal(current.statusCode, 202);
  microsoft.finish('Succeeded');
  await waitIdle();
  const star = await app.inject({
    method: 'POST',
    url: `/api/subscriptions/${SUB}/plan`,
    headers: { ...AUTH, 'if-match': '*' },
    payload: { planId: 'premium' },
  });
  t.equal(star.statusCode, 202, 'If-Match: * means any revision');

  async function waitIdle() {
    for (let i = 0; i < 100; i++) {
      const s = await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}`, headers: AUTH });
      if (!s.json<{ pendingChange?: unknown }>().pendingChange) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
});

t.test('without If-Match, racing commands are re-decided on the fresh state: one change wins, the other is 409', async (t) => {
  const { app, ledger, microsoft, purchase } = await setup(t);
  await purchase(SUB);
  const [a, b] = await Promise.all([
    app.inject({ method: 'POST', url: `/api/subscriptions/${SUB}/plan`, headers: AUTH, payload: { planId: 'premium' } }),
    app.inject({ method: 'POST', url: `/api/subscriptions/${SUB}/quantity`, headers: AUTH, payload: { quantity: 9 } }),
  ]);
  t.same([a.statusCode, b.statusCode].sort(), [202, 409]);
  t.match((a.statusCode === 409 ? a : b).json(), { title: 'change-pending' });
  t.equal(microsoft.calls.length, 1, 'Microsoft was asked once');
  const requested = (await ledger.load(SUB)).events.filter((e) => e.type.endsWith('ChangeRequested'));
  t.equal(requested.length, 1, 'one change request recorded');
});

t.test('change plan: 202 at once, pending until Microsoft confirms, then applied with the operation id', async (t) => {
  const { app, ledger, microsoft, publisherChanges, purchase } = await setup(t);
  await purchase(SUB);
  const res = await app.inject({
    method: 'POST',
    url: `/api/subscriptions/${SUB}/plan`,
    headers: { ...AUTH, 'x-request-id': '0d9c8b7a-6f5e-4d3c-8b2a-190817263544' },
    payload: { planId: 'premium' },
  });
  t.equal(res.statusCode, 202);
  const body = res.json<{ requestId: string; operationId: string; revision: string }>();
  t.match(body, { subscriptionId: SUB, status: 'accepted', command: 'plan', operationId: OP, revision: '3', location: `/api/subscriptions/${SUB}` });
  t.equal(res.headers.location, `/api/subscriptions/${SUB}`);
  t.same(microsoft.calls, [
    { method: 'changePlan', subscriptionId: SUB, value: 'premium', correlationId: '0d9c8b7a-6f5e-4d3c-8b2a-190817263544' },
  ]);

  const pending = await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}`, headers: AUTH });
  t.match(pending.json(), {
    planId: 'standard',
    pendingChange: { kind: 'plan', requestId: body.requestId, planId: 'premium', operationId: OP },
    lastChange: { kind: 'plan', requestId: body.requestId, outcome: 'pending', operationId: OP },
  });

  const second = await app.inject({ method: 'POST', url: `/api/subscriptions/${SUB}/quantity`, headers: AUTH, payload: { quantity: 9 } });
  t.equal(second.statusCode, 409, 'one publisher-side change at a time');
  t.match(second.json(), { title: 'change-pending' });
  const cancel = await app.inject({ method: 'POST', url: `/api/subscriptions/${SUB}/cancel`, headers: AUTH });
  t.equal(cancel.statusCode, 409, 'cancel too, even without a body');
  t.equal(microsoft.calls.length, 1);

  microsoft.finish('Succeeded');
  await publisherChanges.idle();
  const { events } = await ledger.load(SUB);
  t.same(events.slice(2).map((e) => e.type), ['PlanChangeRequested', 'ChangeSubmitted', 'PlanChanged']);
  t.match(events[4], {
    data: { operationId: OP, planId: 'premium', previousPlanId: 'standard', requestSource: 'Partner', source: 'process' },
    metadata: { actor: 'system:publisher-changes', correlationId: '0d9c8b7a-6f5e-4d3c-8b2a-190817263544', causationId: body.requestId },
  });
  t.match(events[2], { metadata: { actor: 'operator:operator', correlationId: '0d9c8b7a-6f5e-4d3c-8b2a-190817263544' } });
  const done = await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}`, headers: AUTH });
  const view = done.json<Record<string, unknown>>();
  t.match(view, { planId: 'premium', appliedOperations: [OP], lastChange: { outcome: 'applied', settledAt: /Z$/ } });
  t.notOk('pendingChange' in view);

  // The Partner webhook for the same operation arrives after: a no-op.
  const late = await ledger.execute(
    SUB,
    { type: 'ApplyPlanChange', operationId: OP, planId: 'premium', requestSource: 'Partner', now: new Date().toISOString(), source: 'webhook' },
    { actor: 'microsoft' },
  );
  t.same(late.events, [], 'whichever comes second records nothing');
});

t.test('the Partner webhook applies it first: the follower records nothing more', async (t) => {
  const { app, ledger, microsoft, publisherChanges, purchase } = await setup(t);
  await purchase(SUB);
  const res = await app.inject({ method: 'POST', url: `/api/subscriptions/${SUB}/quantity`, headers: AUTH, payload: { quantity: 8 } });
  t.equal(res.statusCode, 202);
  await ledger.execute(
    SUB,
    { type: 'ApplyQuantityChange', operationId: OP, quantity: 8, requestSource: 'Partner', now: new Date().toISOString(), source: 'webhook' },
    { actor: 'microsoft' },
  );
  microsoft.finish('Succeeded');
  await publisherChanges.idle();
  const { events, state } = await ledger.load(SUB);
  t.same(events.slice(2).map((e) => e.type), ['QuantityChangeRequested', 'ChangeSubmitted', 'QuantityChanged']);
  t.match(state, { quantity: 8, pendingChange: undefined });
});

t.test('Microsoft reports Failed or Conflict: ChangeRequestFailed, the lock is released', async (t) => {
  for (const status of ['Failed', 'Conflict']) {
    const { app, ledger, microsoft, publisherChanges, purchase } = await setup(t);
    await purchase(SUB);
    const res = await app.inject({ method: 'POST', url: `/api/subscriptions/${SUB}/cancel`, headers: AUTH, payload: { reason: 'customer asked' } });
    t.equal(res.statusCode, 202);
    microsoft.finish(status, status === 'Failed' ? { errorMessage: 'refused by the publisher' } : {});
    await publisherChanges.idle();
    const { events } = await ledger.load(SUB);
    t.same(events.slice(2).map((e) => e.type), ['CancellationRequested', 'ChangeSubmitted', 'ChangeRequestFailed'], status);
    const view = (await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}`, headers: AUTH })).json<Record<string, unknown>>();
    t.match(view, {
      status: 'Subscribed',
      lastChange: { kind: 'cancel', reason: 'customer asked', outcome: 'failed', operationId: OP, failure: { status } },
    });
    t.notOk('pendingChange' in view, `${status}: nothing pending`);
    if (status === 'Failed') t.match(view, { lastChange: { failure: { reason: 'refused by the publisher' } } });
  }
});

t.test("Microsoft refuses the PATCH/DELETE: ChangeRequestFailed and a problem saying why", async (t) => {
  const cases = [
    {
      error: (m: string) => new MarketplaceBadRequestError({ call: m, method: 'PATCH', url: 'u', requestId: 'ms-req-1', correlationId: 'c', body: 'PlanNotAvailable' }),
      status: 422,
      title: 'refused-by-microsoft',
      failure: '400',
    },
    {
      error: (m: string) => new MarketplaceConflictError({ call: m, method: 'DELETE', url: 'u', requestId: 'ms-req-2', correlationId: 'c', body: 'locked' }),
      status: 409,
      title: 'microsoft-conflict',
      failure: '409',
    },
    {
      error: (m: string) =>
        new MarketplaceUnavailableError({ call: m, method: 'PATCH', url: 'u', requestId: 'r', correlationId: 'c', status: 429, attempts: 5, reason: 'throttled' }),
      status: 503,
      title: 'marketplace-unavailable',
      failure: 'NotSent',
    },
  ];
  for (const c of cases) {
    const { app, ledger, microsoft, publisherChanges, purchase } = await setup(t);
    await purchase(SUB);
    microsoft.submit = async (m) => {
      throw c.error(m);
    };
    const res = await app.inject({ method: 'POST', url: `/api/subscriptions/${SUB}/plan`, headers: AUTH, payload: { planId: 'gold' } });
    t.equal(res.statusCode, c.status, c.title);
    t.match(res.headers['content-type'], /^application\/problem\+json/);
    const problem = res.json<{ requestId: string }>();
    t.match(problem, { status: c.status, title: c.title, requestId: /^[0-9a-f-]{36}$/ });
    await publisherChanges.idle();
    const { events } = await ledger.load(SUB);
    t.same(events.slice(2).map((e) => e.type), ['PlanChangeRequested', 'ChangeRequestFailed'], c.title);
    const view = (await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}`, headers: AUTH })).json<Record<string, unknown>>();
    t.match(view, { planId: 'standard', lastChange: { requestId: problem.requestId, outcome: 'failed', failure: { status: c.failure } } });
    t.notOk('pendingChange' in view);
  }
});

t.test('an outcome Microsoft may or may not have seen stays pending and is checked again', async (t) => {
  const { app, ledger, microsoft, publisherChanges, purchase } = await setup(t);
  await purchase(SUB);
  microsoft.submit = async (m) => {
    throw new MarketplaceUnavailableError({ call: m, method: 'PATCH', url: 'u', requestId: 'r', correlationId: 'c', status: 500, attempts: 1, reason: 'status 500' });
  };
  const res = await app.inject({ method: 'POST', url: `/api/subscriptions/${SUB}/quantity`, headers: AUTH, payload: { quantity: 9 } });
  t.equal(res.statusCode, 502);
  t.match(res.json(), { title: 'marketplace-outcome-unknown', microsoftStatus: 500 });
  // The recheck finds no operation at Microsoft and the quantity unchanged: Microsoft never got it.
  await publisherChanges.idle();
  const { events, state } = await ledger.load(SUB);
  t.same(events.slice(2).map((e) => e.type), ['QuantityChangeRequested', 'ChangeRequestFailed']);
  t.match(events[3], { data: { status: 'NotReceived' } });
  t.match(state, { quantity: 5, pendingChange: undefined });
});

t.test('after a restart, resumeAll continues every pending change from where it stopped', async (t) => {
  const { ledger, microsoft, publisherChanges, purchase } = await setup(t);
  const ids = {
    afterIntentFound: '10000000-0000-4000-8000-000000000001',
    afterIntentLost: '10000000-0000-4000-8000-000000000002',
    afterSubmit: '10000000-0000-4000-8000-000000000003',
    settled: '10000000-0000-4000-8000-000000000004',
  };
  const ops = { found: '20000000-0000-4000-8000-000000000001', submitted: '20000000-0000-4000-8000-000000000003' };
  const at = new Date().toISOString();
  const ctx = { actor: 'operator:api' };
  for (const id of Object.values(ids)) await purchase(id);
  // Stopped between step 1 and step 2/3: Microsoft has (or has not) got the request.
  await ledger.execute(ids.afterIntentFound, { type: 'RequestPlanChange', requestId: 'req-1', planId: 'premium', now: at, source: 'operator' }, ctx);
  microsoft.outstanding[ids.afterIntentFound] = [
    { id: '20000000-0000-4000-8000-0000000000ff', action: 'ChangeQuantity', quantity: 9, status: 'InProgress' },
    { id: ops.found, action: 'ChangePlan', planId: 'premium', status: 'NotStarted' },
  ];
  await ledger.execute(ids.afterIntentLost, { type: 'RequestQuantityChange', requestId: 'req-2', quantity: 9, now: at, source: 'operator' }, ctx);
  // Stopped after step 3: the operation id is known.
  await ledger.execute(ids.afterSubmit, { type: 'RequestUnsubscribe', requestId: 'req-3', reason: 'moving on', now: at, source: 'operator' }, ctx);
  await ledger.execute(ids.afterSubmit, { type: 'RecordChangeSubmitted', requestId: 'req-3', operationId: ops.submitted, now: at, source: 'process' }, ctx);
  // Settled long ago.
  await ledger.execute(ids.settled, { type: 'RequestQuantityChange', requestId: 'req-4', quantity: 2, now: at, source: 'operator' }, ctx);
  await ledger.execute(ids.settled, { type: 'RecordChangeRequestFailure', requestId: 'req-4', status: '400', reason: 'no', now: at, source: 'process' }, ctx);

  const results = await publisherChanges.resumeAll();
  t.same(
    Object.fromEntries(results.map((r) => [r.subscriptionId, r.outcome])),
    { [ids.afterIntentFound]: 'following', [ids.afterIntentLost]: 'failed', [ids.afterSubmit]: 'following', [ids.settled]: 'nothing-pending' },
  );
  t.equal(microsoft.calls.length, 0, 'nothing is sent to Microsoft again');
  t.ok(microsoft.following(ops.found) && microsoft.following(ops.submitted), 'both operations are followed');
  microsoft.finish('Succeeded', {}, ops.found);
  microsoft.finish('Succeeded', {}, ops.submitted);
  await publisherChanges.idle();

  const types = async (id: string) => (await ledger.load(id)).events.slice(2).map((e) => e.type);
  t.same(await types(ids.afterIntentFound), ['PlanChangeRequested', 'ChangeSubmitted', 'PlanChanged']);
  t.match((await ledger.load(ids.afterIntentFound)).state, { planId: 'premium', pendingChange: undefined });
  t.same(await types(ids.afterIntentLost), ['QuantityChangeRequested', 'ChangeRequestFailed']);
  t.match((await ledger.load(ids.afterIntentLost)).events[3], { data: { status: 'NotReceived' } });
  t.same(await types(ids.afterSubmit), ['CancellationRequested', 'ChangeSubmitted', 'Unsubscribed']);
  t.match((await ledger.load(ids.afterSubmit)).events[4], { data: { operationId: ops.submitted, reason: 'moving on' } });
  t.same(await types(ids.settled), ['QuantityChangeRequested', 'ChangeRequestFailed']);
  t.same(
    (await publisherChanges.resumeAll()).filter((r) => r.outcome !== 'nothing-pending'),
    [],
    'a second run finds nothing left',
  );
});

t.test('closing stops following; the change stays pending for the next start', async (t) => {
  const { app, ledger, publisherChanges, purchase } = await setup(t);
  await purchase(SUB);
  const res = await app.inject({ method: 'POST', url: `/api/subscriptions/${SUB}/plan`, headers: AUTH, payload: { planId: 'premium' } });
  t.equal(res.statusCode, 202);
  t.equal(publisherChanges.inFlight, 1);
  await publisherChanges.close();
  t.equal(publisherChanges.inFlight, 0);
  t.match((await ledger.load(SUB)).state, { planId: 'standard', pendingChange: { operationId: OP } });
  await t.rejects(publisherChanges.request(SUB, { kind: 'quantity', quantity: 2 }, { actor: 'operator:api' }), /shutting down/);
});

t.test('a subscription that does not allow Update (CSP) is refused before Microsoft is called', async (t) => {
  const { app, microsoft, purchase } = await setup(t);
  await purchase(SUB, 'Subscribed', { allowedCustomerOperations: ['Read'] });
  const res = await app.inject({ method: 'POST', url: `/api/subscriptions/${SUB}/plan`, headers: AUTH, payload: { planId: 'premium' } });
  t.equal(res.statusCode, 422);
  t.match(res.json(), { title: 'operation-not-allowed' });
  t.equal(microsoft.calls.length, 0);
});

t.test('/openapi.json is an OpenAPI 3 document listing every route with its schemas; /docs serves HTML', async (t) => {
  const { app } = await setup(t);
  const res = await app.inject({ method: 'GET', url: '/openapi.json' });
  t.equal(res.statusCode, 200, 'public: no token needed');
  t.match(res.headers['content-type'], /application\/json/);
  type Operation = {
    operationId?: string;
    security?: Record<string, string[]>[];
    parameters?: { in: string; name: string; schema: Record<string, unknown>; required?: boolean }[];
    requestBody?: { content: Record<string, { schema: Record<string, unknown> }> };
    responses: Record<string, { description: string; content?: Record<string, { schema: Record<string, unknown> }> }>;
  };
  const doc = res.json<{
    openapi: string;
    info: { title: string; version: string };
    paths: Record<string, Record<string, Operation>>;
    components: { securitySchemes: Record<string, Record<string, string>> };
  }>();
  t.match(doc.openapi, /^3\.\d+\.\d+$/);
  t.match(doc.info, { title: 'Fulfillment Ledger API', version: /\S/ });
  t.match(doc.components.securitySchemes.operatorToken, { type: 'http', scheme: 'bearer' });
  t.notOk(doc.paths['/openapi.json'], 'the document does not list itself');

  const expected: [string, string, string, number][] = [
    ['/api/subscriptions/{id}', 'get', 'getSubscription', 200],
    ['/api/subscriptions/{id}/events', 'get', 'listSubscriptionEvents', 200],
    ['/api/subscriptions/{id}/activate', 'post', 'activateSubscription', 202],
    ['/api/subscriptions/{id}/plan', 'post', 'changeSubscriptionPlan', 202],
    ['/api/subscriptions/{id}/quantity', 'post', 'changeSubscriptionQuantity', 202],
    ['/api/subscriptions/{id}/cancel', 'post', 'cancelSubscription', 202],
  ];
  const ajv = new Ajv2020({ strict: false, validateFormats: false });
  const compiles = (schema: Record<string, unknown>, where: string) => {
    try {
      ajv.compile(schema);
      return true;
    } catch (err) {
      t.fail(`${where}: ${(err as Error).message}`);
      return false;
    }
  };
  for (const [path, method, operationId, success] of expected) {
    const op = doc.paths[path]?.[method];
    if (!op) {
      t.fail(`${method.toUpperCase()} ${path} is missing`);
      continue;
    }
    t.equal(op.operationId, operationId);
    t.same(op.security, [{ operatorToken: [] }], `${operationId} declares the bearer scheme`);
    const id = op.parameters?.find((p) => p.in === 'path' && p.name === 'id');
    t.ok(id?.required, `${operationId}: the id parameter`);
    for (const p of op.parameters ?? []) compiles(p.schema, `${operationId} parameter ${p.name}`);
    const ok = op.responses[String(success)];
    t.ok(ok?.content?.['application/json']?.schema, `${operationId}: ${success} has a schema`);
    for (const code of ['400', '401', '404']) t.ok(op.responses[code], `${operationId} documents ${code}`);
    for (const [code, r] of Object.entries(op.responses)) {
      t.ok(r.description, `${operationId} ${code} has a description`);
      for (const media of Object.values(r.content ?? {})) compiles(media.schema, `${operationId} ${code}`);
    }
    if (method === 'post') {
      const body = op.requestBody?.content['application/json']?.schema;
      t.ok(body, `${operationId} has a request body schema`);
      if (body) {
        t.equal(body.additionalProperties, false, `${operationId}: the body is strict`);
        compiles(body, `${operationId} body`);
      }
      t.ok(op.parameters?.some((p) => p.in === 'header' && p.name === 'if-match'), `${operationId} documents If-Match`);
      t.ok(op.responses['412'], `${operationId} documents 412`);
    }
  }
  const view = doc.paths['/api/subscriptions/{id}']?.get?.responses['200']?.content?.['application/json']?.schema as {
    properties: Record<string, unknown>;
  };
  for (const field of ['status', 'offerId', 'planId', 'quantity', 'term', 'autoRenew', 'isFreeTrial', 'purchaser', 'beneficiary', 'contact', 'pendingChange', 'activation', 'revision']) {
    t.ok(view.properties[field], `the state schema lists ${field}`);
  }

  const docs = await app.inject({ method: 'GET', url: '/docs/' });
  t.equal(docs.statusCode, 200);
  t.match(docs.headers['content-type'], /text\/html/);
  t.match(docs.body, /swagger-ui/i);
  const redirect = await app.inject({ method: 'GET', url: '/docs' });
  t.ok([200, 302].includes(redirect.statusCode), '/docs answers');
});

t.test('without operator options there is no /api, /openapi.json or /docs', async (t) => {
  const app = await buildApp({ logger: createLogger('silent'), store: () => undefined });
  t.teardown(() => app.close());
  for (const url of [`/api/subscriptions/${SUB}`, '/openapi.json', '/docs']) {
    t.equal((await app.inject({ method: 'GET', url, headers: AUTH })).statusCode, 404, url);
  }
});

t.test('503 while the store is not open', async (t) => {
  let open = false;
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const ledger = new SubscriptionLedger(() => (open ? store : undefined));
  const publisherChanges = new PublisherChanges({ ledger, client: new ScriptedMicrosoft(), logger: createLogger('silent') });
  const app = await buildApp({ logger: createLogger('silent'), store: () => (open ? store : undefined), api: { operatorToken: TOKEN, subscriptions: { ledger, publisherChanges } } });
  t.teardown(() => app.close());
  const res = await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}`, headers: AUTH });
  t.equal(res.statusCode, 503);
  t.match(res.json(), { title: 'store-unavailable' });
  open = true;
  t.equal((await app.inject({ method: 'GET', url: `/api/subscriptions/${SUB}`, headers: AUTH })).statusCode, 404);
});
