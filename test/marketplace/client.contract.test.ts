/**
 * For every Fulfillment API call: what the client sends (path, method, query, headers, body) agrees
 * with saasapi.v2.json, and the spec-conformant responses it receives are accepted.
 */
import t from 'tap';
import { FulfillmentClient, decodeMarketplaceToken } from '../../src/marketplace/fulfillment-client.js';
import { NoTokenProvider, StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { operationFor, validateRequest, validateResponse } from '../support/openapi.js';
import { captureLogger, startScriptedServer } from '../support/scripted-server.js';
import type { Recorded, Reply } from '../support/scripted-server.js';
import { CORRELATION_ID, OP_ID, SUB_ID, operation, plans, resolved, subscription } from './fixtures.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Canned spec-conformant replies by operationId. */
function replyFor(req: Recorded, base: string): Reply {
  const op = operationFor(req.method, req.url);
  const opLocation = `${base}/saas/subscriptions/${SUB_ID}/operations/${OP_ID}?api-version=2018-08-31`;
  switch (op?.operationId) {
    case 'FulfillmentOperations_Resolve':
      return { status: 200, body: resolved() };
    case 'FulfillmentOperations_ListSubscriptions':
      return { status: 200, body: { subscriptions: [subscription()] } };
    case 'FulfillmentOperations_GetSubscription':
      return { status: 200, body: subscription() };
    case 'FulfillmentOperations_ListAvailablePlans':
      return { status: 200, body: plans() };
    case 'FulfillmentOperations_ActivateSubscription':
      return { status: 200 };
    case 'FulfillmentOperations_UpdateSubscription':
    case 'FulfillmentOperations_DeleteSubscription':
      return { status: 202, headers: { 'Operation-Location': opLocation } };
    case 'SubscriptionOperations_ListOperations':
      return { status: 200, body: { operations: [operation()] } };
    case 'SubscriptionOperations_GetOperationStatus':
      return { status: 200, body: operation({ status: 'Succeeded' }) };
    case 'SubscriptionOperations_UpdateOperationStatus':
      return { status: 200 };
    default:
      return { status: 404, body: 'no such operation in the spec' };
  }
}

t.test('every call agrees with the OpenAPI file', async (t) => {
  const server = await startScriptedServer();
  t.teardown(() => server.close());
  server.script((req) => replyFor(req, server.apiUrl));
  const { logger, lines, text } = captureLogger();
  const client = new FulfillmentClient({
    baseUrl: server.apiUrl,
    tokenProvider: new StaticTokenProvider('static-secret-token'),
    logger,
    retry: { maxAttempts: 1 },
  });

  const calls: [string, () => Promise<unknown>][] = [
    ['FulfillmentOperations_Resolve', () => client.resolve('ab%2Bcd%2Fef', { correlationId: CORRELATION_ID })],
    ['FulfillmentOperations_ListSubscriptions', () => client.listSubscriptions({ correlationId: CORRELATION_ID })],
    ['FulfillmentOperations_GetSubscription', () => client.getSubscription(SUB_ID, { correlationId: CORRELATION_ID })],
    [
      'FulfillmentOperations_ListAvailablePlans',
      () => client.listAvailablePlans(SUB_ID, { planId: 'standard', correlationId: CORRELATION_ID }),
    ],
    [
      'FulfillmentOperations_ActivateSubscription',
      () => client.activateSubscription(SUB_ID, { planId: 'standard', quantity: 5 }, { correlationId: CORRELATION_ID }),
    ],
    ['FulfillmentOperations_UpdateSubscription', () => client.changePlan(SUB_ID, 'gold', { correlationId: CORRELATION_ID })],
    ['FulfillmentOperations_UpdateSubscription', () => client.changeQuantity(SUB_ID, 7, { correlationId: CORRELATION_ID })],
    ['FulfillmentOperations_DeleteSubscription', () => client.deleteSubscription(SUB_ID, { correlationId: CORRELATION_ID })],
    ['SubscriptionOperations_ListOperations', () => client.listOperations(SUB_ID, { correlationId: CORRELATION_ID })],
    ['SubscriptionOperations_GetOperationStatus', () => client.getOperation(SUB_ID, OP_ID, { correlationId: CORRELATION_ID })],
    [
      'SubscriptionOperations_UpdateOperationStatus',
      () => client.updateOperationStatus(SUB_ID, OP_ID, 'Success', { correlationId: CORRELATION_ID }),
    ],
  ];

  const requestIds = new Set<string>();
  for (const [operationId, call] of calls) {
    const before = server.requests.length;
    await call();
    t.equal(server.requests.length, before + 1, `${operationId}: one request`);
    const req = server.requests.at(-1) as Recorded;
    const check = validateRequest(req);
    t.same(check.errors, [], `${operationId}: request matches the spec`);
    t.equal(check.operationId, operationId, `${req.method} ${req.url} is ${operationId}`);
    t.match(req.url, /^\/api\/saas\//, 'under the base path');
    t.equal(req.headers.authorization, 'Bearer static-secret-token', 'bearer token sent');
    t.equal(req.headers['x-ms-correlationid'], CORRELATION_ID, 'caller correlation id sent');
    const requestId = String(req.headers['x-ms-requestid']);
    t.match(requestId, UUID, 'x-ms-requestid is a GUID');
    t.notOk(requestIds.has(requestId), 'x-ms-requestid is new for every request');
    requestIds.add(requestId);
    // The canned reply is itself spec-conformant, so the client accepted a conforming response.
    const reply = replyFor(req, server.apiUrl);
    t.same(validateResponse(operationId, reply.status, reply.body, reply.headers).errors, [], `${operationId}: reply is spec-conformant`);
  }

  t.test('bodies sent', async (t) => {
    const bodies = server.requests.filter((r) => r.rawBody.length > 0).map((r) => [r.method, r.url.split('?')[0], r.body]);
    t.same(bodies, [
      ['POST', `/api/saas/subscriptions/${SUB_ID}/activate`, { planId: 'standard', quantity: 5 }],
      ['PATCH', `/api/saas/subscriptions/${SUB_ID}`, { planId: 'gold' }],
      ['PATCH', `/api/saas/subscriptions/${SUB_ID}`, { quantity: 7 }],
      ['PATCH', `/api/saas/subscriptions/${SUB_ID}/operations/${OP_ID}`, { status: 'Success' }],
    ]);
    for (const r of server.requests.filter((r) => r.rawBody.length > 0)) {
      t.equal(r.headers['content-type'], 'application/json', 'JSON bodies say so');
    }
    for (const r of server.requests.filter((r) => r.rawBody.length === 0)) {
      t.notOk(r.headers['content-type'], `${r.method} without a body sends no content-type`);
    }
  });

  t.test('resolve sends the purchase token decoded once', async (t) => {
    const resolveReq = server.requests.find((r) => r.url.includes('/resolve'));
    t.equal(resolveReq?.headers['x-ms-marketplace-token'], 'ab+cd/ef');
  });

  t.test('each outcome is logged with both ids; the token never is', async (t) => {
    const calls = lines.filter((l) => l.msg === 'marketplace call');
    t.equal(calls.length, server.requests.length);
    for (const l of calls) {
      t.match(l, { correlationId: CORRELATION_ID, requestId: UUID, status: Number, call: String });
    }
    t.notMatch(text(), /static-secret-token/, 'bearer token not in logs');
  });
});

t.test('return values are normalised', async (t) => {
  const server = await startScriptedServer();
  t.teardown(() => server.close());
  server.script((req) => replyFor(req, server.apiUrl));
  const client = new FulfillmentClient({ baseUrl: server.apiUrl, tokenProvider: new NoTokenProvider(), logger: captureLogger().logger });

  const r = await client.resolve('token');
  t.match(r, { id: SUB_ID, planId: 'standard', quantity: 5, subscription: { saasSubscriptionStatus: 'PendingFulfillmentStart' } });
  const plansOut = await client.listAvailablePlans(SUB_ID);
  t.equal(plansOut[0]?.planId, 'standard');
  t.equal(plansOut[0]?.maxQuantity, 50);
  const accepted = await client.changePlan(SUB_ID, 'gold');
  t.match(accepted, {
    subscriptionId: SUB_ID,
    operationId: OP_ID,
    operationLocation: `${server.apiUrl}/saas/subscriptions/${SUB_ID}/operations/${OP_ID}?api-version=2018-08-31`,
    correlationId: UUID,
    requestId: UUID,
  });
  const op = await client.getOperationAt(accepted.operationLocation);
  t.equal(op.status, 'Succeeded');
  t.notOk(server.requests.some((r) => r.headers.authorization), 'no authorization header without a token');
  t.ok(server.requests.every((r) => UUID.test(String(r.headers['x-ms-correlationid']))), 'a correlation id is generated');
});

t.test('argument checks', async (t) => {
  const client = new FulfillmentClient({
    baseUrl: 'http://127.0.0.1:9/api',
    tokenProvider: new NoTokenProvider(),
    logger: captureLogger().logger,
  });
  await t.rejects(client.getSubscription(SUB_ID, { correlationId: 'not-a-guid' }), TypeError);
  await t.rejects(client.changeQuantity(SUB_ID, 1.5), TypeError);
  await t.rejects(client.changePlan(SUB_ID, ''), TypeError);
  await t.rejects(client.getSubscription(' '), TypeError);
  await t.rejects(client.resolve(''), TypeError);
  // A string cast to the type still does not pass: only Success / Failure are PATCH values.
  await t.rejects(client.updateOperationStatus(SUB_ID, OP_ID, 'Succeeded' as 'Success'), TypeError);
});

t.test('decodeMarketplaceToken decodes exactly once', async (t) => {
  t.equal(decodeMarketplaceToken('ab%2Bcd%2Fef'), 'ab+cd/ef', 'raw from the URL');
  t.equal(decodeMarketplaceToken('ab+cd/ef'), 'ab+cd/ef', 'already decoded by a query parser');
  t.equal(decodeMarketplaceToken('ab cd/ef'), 'ab+cd/ef', 'a + turned into a space by a form decoder');
  t.equal(decodeMarketplaceToken('ab%252Bcd'), 'ab%2Bcd', 'never decoded twice');
  t.equal(decodeMarketplaceToken('  abc==  '), 'abc==');
});
