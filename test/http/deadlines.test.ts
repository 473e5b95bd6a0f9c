/**
 * GET /api/deadlines through inject(), mounted as the service mounts it (inside the /api plugin, with the
 * app's error handler): the read models of a real SQLite store kept by the real projections, and the
 * credential's health as the real client records it against the emulator (which answers 403 to a call
 * without a bearer token, as Microsoft does, docs/marketplace.md §2.4).
 */
import t from 'tap';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { startEmulator } from '../../src/emulator/emulator.js';
import type { DeadlineRoutesOptions } from '../../src/http/deadlines.routes.js';
import { createLogger } from '../../src/logger.js';
import { CredentialHealth } from '../../src/marketplace/credential-health.js';
import { MarketplaceForbiddenError, MarketplaceNotFoundError } from '../../src/marketplace/errors.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { NoTokenProvider, StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { defaultDeadlineSettings } from '../../src/projections/views/deadlines.js';
import { DAY, T0, at, deadlinesWorld, purchased } from '../support/deadlines-world.js';

const TOKEN = 'deadlines-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';
const OP = '33333333-3333-4333-8333-333333333333';

async function appWith(t: Test, deadlines: DeadlineRoutesOptions) {
  const app = await buildApp({ logger, store: () => undefined, api: { operatorToken: TOKEN, deadlines } });
  t.teardown(() => app.close());
  return app;
}

type Item = Record<string, unknown> & { key: string; kind: string; severity: string; deadline: string; timeLeft: string; timeLeftSeconds: number };
type Body = { now: string; counts: Record<string, number>; items: Item[]; credential: Record<string, unknown> | null };

const world = await deadlinesWorld(t, logger);
await world.subscription(A, { type: 'RecordPurchase', now: at(0), source: 'landing', subscription: purchased(A), microsoftStatus: 'PendingFulfillmentStart' });
await world.subscription(B, { type: 'RecordPurchase', now: at(0), source: 'landing', subscription: purchased(B), microsoftStatus: 'PendingFulfillmentStart' });
await world.subscription(B, { type: 'RequestActivation', now: at(60_000), source: 'landing', contact: { email: 'it@contoso.example' } });
await world.deliver({ id: OP, subscriptionId: B, action: 'ChangeQuantity', quantity: 9, status: 'InProgress', operationRequestSource: 'Azure' }, 2 * 60_000);

const health = new CredentialHealth({ kind: 'none' });
let now = new Date(T0 + 20 * 60_000);
const app = await appWith(t, { readModels: () => world.runner, credential: () => health.snapshot(), settings: defaultDeadlineSettings, now: () => now });
const get = async (url: string, headers: Record<string, string> = AUTH) => {
  const res = await app.inject({ method: 'GET', url, headers });
  return { status: res.statusCode, headers: res.headers, json: () => res.json() as Body & Record<string, unknown> };
};

t.test('operator token, problem+json, strict query, 503 before the read models are open', async (t) => {
  const none = await get('/api/deadlines', {});
  t.equal(none.status, 401);
  t.match(none.headers['content-type'], /application\/problem\+json/);
  t.equal((await get('/api/deadlines', { authorization: 'Bearer wrong-wrong-wrong-wrong' })).status, 401);
  for (const url of ['/api/deadlines?severity=urgent', '/api/deadlines?kind=pending', '/api/deadlines?limit=3']) {
    const res = await get(url);
    t.equal(res.status, 400, url);
    t.match(res.headers['content-type'], /application\/problem\+json/);
  }
  const closed = await appWith(t, { readModels: () => undefined });
  const res = await closed.inject({ method: 'GET', url: '/api/deadlines', headers: AUTH });
  t.equal(res.statusCode, 503);
  t.equal(res.headers['retry-after'], '5');
  t.match(res.json(), { title: 'read-models-unavailable', status: 503 });
});

t.test('each kind with its deadline, time left, severity and what to do; the most urgent first', async (t) => {
  const res = await get('/api/deadlines');
  t.equal(res.status, 200);
  t.equal(res.headers['x-read-model-state'], 'live');
  const body = res.json();
  t.equal(body.now, now.toISOString());
  t.same(
    body.items.map((i) => [i.kind, i.key, i.severity]),
    [
      ['acknowledgement', `acknowledgement:${OP}`, 'overdue'],
      ['activation', `activation:${B}`, 'warning'],
      ['pending-purchase', `pending-purchase:${A}`, 'info'],
    ],
  );
  t.same(body.counts, { info: 1, warning: 1, overdue: 1 });
  const [ack, activation, pending] = body.items;
  t.match(ack, { subscriptionId: B, deadline: at(2 * 60_000 + 10_000), timeLeftSeconds: -(18 * 60 - 10), timeLeft: 'overdue by 17m 50s', operation: { operationId: OP, action: 'ChangeQuantity', quantity: 9, deliveries: 1 }, activation: null, credential: null });
  t.match(activation, { subscriptionId: B, since: at(60_000), deadline: new Date(T0 + 30 * DAY).toISOString(), activation: { requestedAt: at(60_000), failures: 0, gaveUp: false } });
  t.match(pending, { subscriptionId: A, deadline: new Date(T0 + 30 * DAY).toISOString(), timeLeft: '29d 23h', rule: /§5/, action: /Configure account/ });
  t.equal(body.credential?.consecutiveRejections, 0);

  const overdue = (await get('/api/deadlines?severity=overdue')).json();
  t.same(overdue.items.map((i) => i.key), [`acknowledgement:${OP}`]);
  const kinds = (await get('/api/deadlines?kind=pending-purchase,activation&severity=info,warning')).json();
  t.same(kinds.items.map((i) => i.key), [`activation:${B}`, `pending-purchase:${A}`]);
  t.same(kinds.counts, { info: 1, warning: 1, overdue: 0 }, 'counts are of the items listed');
});

t.test('resolved items leave the list', async (t) => {
  await world.notification(OP, { type: 'AcknowledgeOperation', status: 'Success', now: at(21 * 60_000) });
  await world.subscription(B, { type: 'ConfirmActivation', now: at(22 * 60_000), source: 'process' });
  const body = (await get('/api/deadlines')).json();
  t.same(body.items.map((i) => i.key), [`pending-purchase:${A}`]);
});

t.test('a credential rejected on every call is a `credential` item; one accepted call clears it', async (t) => {
  const emulator = await startEmulator({ logger });
  t.teardown(() => emulator.close());
  const unauthenticated = new FulfillmentClient({ baseUrl: emulator.apiBaseUrl, tokenProvider: new NoTokenProvider(), logger, credentialHealth: health });
  now = new Date();
  await t.rejects(unauthenticated.getSubscription(A), MarketplaceForbiddenError);
  let body = (await get('/api/deadlines?kind=credential')).json();
  t.match(body.items, [{ key: 'credential:rejected', kind: 'credential', severity: 'warning', subscriptionId: null }], 'one rejection: a warning');

  await t.rejects(unauthenticated.listSubscriptions(), MarketplaceForbiddenError);
  await t.rejects(unauthenticated.listOperations(A), MarketplaceForbiddenError);
  body = (await get('/api/deadlines?kind=credential')).json();
  const [item] = body.items;
  t.match(item, {
    key: 'credential:rejected',
    severity: 'overdue',
    rule: /§2\.4/,
    action: /MARKETPLACE_CLIENT_ID/,
    credential: { kind: 'none', consecutiveRejections: 3, lastSuccessAt: null, lastFailure: { call: 'listOperations', status: 403, message: /^403 Forbidden/ } },
  });
  t.equal(item?.deadline, body.credential?.failingSince, 'the deadline is the first rejection: already due');
  t.ok(item && item.timeLeftSeconds <= 0);

  const authenticated = new FulfillmentClient({ baseUrl: emulator.apiBaseUrl, tokenProvider: new StaticTokenProvider('any'), logger, credentialHealth: health });
  await t.rejects(authenticated.getSubscription(A), MarketplaceNotFoundError, 'a 404 is Microsoft answering: the token got through');
  body = (await get('/api/deadlines?kind=credential')).json();
  t.same(body.items, [], 'accepted again: gone');
  t.match(body.credential, { consecutiveRejections: 0, failingSince: null, lastSuccessAt: /Z$/, lastFailure: { status: 403 } });
});

t.test('documented in /openapi.json behind the operator token, with its query and problem responses', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/openapi.json' });
  type Operation = { operationId?: string; security?: unknown; parameters?: Array<{ in: string; name: string }>; responses: Record<string, { content?: Record<string, unknown> }> };
  const op = res.json<{ paths: Record<string, Record<string, Operation>> }>().paths['/api/deadlines']?.get;
  t.match(op, { operationId: 'listDeadlines', security: [{ operatorToken: [] }] });
  t.same(op?.parameters?.map((p) => `${p.in}:${p.name}`).sort(), ['query:kind', 'query:severity']);
  for (const status of ['400', '401', '503']) t.ok(op?.responses[status]?.content?.['application/problem+json'], `${status} is problem+json`);
  t.ok(op?.responses['200']?.content?.['application/json']);
});
