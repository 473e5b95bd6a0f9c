/** Retries (429 + Retry-After, 5xx, network errors), their bounds, and typed errors for 4xx. */
import t from 'tap';
import {
  MarketplaceBadRequestError,
  MarketplaceConflictError,
  MarketplaceError,
  MarketplaceForbiddenError,
  MarketplaceNotFoundError,
  MarketplaceUnavailableError,
  MarketplaceUnexpectedResponseError,
} from '../../src/marketplace/errors.js';
import { FulfillmentClient, parseRetryAfter } from '../../src/marketplace/fulfillment-client.js';
import type { FulfillmentClientOptions } from '../../src/marketplace/fulfillment-client.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { captureLogger, startScriptedServer } from '../support/scripted-server.js';
import type { Reply, ScriptedServer } from '../support/scripted-server.js';
import { CORRELATION_ID, OP_ID, SUB_ID, subscription } from './fixtures.js';

/** What `setup` needs of a tap test. */
type Teardown = { teardown(fn: () => unknown): void };

async function setup(
  t: Teardown,
  replies: Reply[],
  options: Partial<FulfillmentClientOptions> = {},
): Promise<{ server: ScriptedServer; client: FulfillmentClient; delays: number[]; log: ReturnType<typeof captureLogger> }> {
  const server = await startScriptedServer(replies);
  t.teardown(() => server.close());
  const delays: number[] = [];
  const log = captureLogger();
  const client = new FulfillmentClient({
    baseUrl: server.apiUrl,
    tokenProvider: new StaticTokenProvider('tkn'),
    logger: log.logger,
    retry: { maxAttempts: 4, maxElapsedMs: 10_000, baseDelayMs: 100 },
    random: () => 0.5,
    sleep: async (ms) => {
      delays.push(ms);
    },
    ...options,
  });
  return { server, client, delays, log };
}

t.test('429 with Retry-After is honoured, then success', async (t) => {
  const { server, client, delays, log } = await setup(t, [
    { status: 429, headers: { 'Retry-After': '3' }, body: 'slow down' },
    { status: 200, body: subscription() },
  ]);
  const sub = await client.getSubscription(SUB_ID, { correlationId: CORRELATION_ID });
  t.equal(sub.id, SUB_ID);
  t.equal(server.requests.length, 2);
  t.same(delays, [3000], 'waited Retry-After (3 s) rather than the 50 ms backoff');
  const [a, b] = server.requests;
  t.equal(a?.headers['x-ms-correlationid'], CORRELATION_ID);
  t.equal(b?.headers['x-ms-correlationid'], CORRELATION_ID, 'same correlation id on the retry');
  t.not(a?.headers['x-ms-requestid'], b?.headers['x-ms-requestid'], 'new request id per attempt');
  const retryLine = log.lines.find((l) => l.msg === 'marketplace call will be retried');
  t.match(retryLine, { correlationId: CORRELATION_ID, attempt: 1, delayMs: 3000, reason: 'status 429' });
});

t.test('Retry-After as an HTTP date', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  t.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now), 5000);
  t.equal(parseRetryAfter('2', now), 2000);
  t.equal(parseRetryAfter('garbage', now), undefined);
  t.equal(parseRetryAfter(null, now), undefined);
});

t.test('500 then 200: retried with exponential backoff and jitter', async (t) => {
  const { server, client, delays } = await setup(t, [
    { status: 500, body: { error: { code: 'InternalError', message: 'oops' } } },
    { status: 503 },
    { status: 502 },
    { status: 200, body: subscription() },
  ]);
  await client.getSubscription(SUB_ID);
  t.equal(server.requests.length, 4);
  // random() = 0.5 → half of base · 2^(n-1)
  t.same(delays, [50, 100, 200]);
});

t.test('network errors are retried for idempotent calls', async (t) => {
  const { server, client } = await setup(t, [{ status: 0, destroy: true }, { status: 200, body: subscription() }]);
  const sub = await client.getSubscription(SUB_ID);
  t.equal(sub.id, SUB_ID);
  t.equal(server.requests.length, 2);
});

t.test('connection refused: retried, then unavailable', async (t) => {
  const server = await startScriptedServer();
  const apiUrl = server.apiUrl;
  await server.close();
  const delays: number[] = [];
  const client = new FulfillmentClient({
    baseUrl: apiUrl,
    tokenProvider: new StaticTokenProvider('tkn'),
    logger: captureLogger().logger,
    retry: { maxAttempts: 3, maxElapsedMs: 10_000, baseDelayMs: 10 },
    sleep: async (ms) => {
      delays.push(ms);
    },
  });
  const err = await client.getSubscription(SUB_ID).catch((e: unknown) => e);
  t.type(err, MarketplaceUnavailableError);
  t.match(err, { attempts: 3, status: undefined });
  t.match((err as Error).message, /network error/);
  t.equal(delays.length, 2);
  // Nothing was sent when the connection was refused, so even a state-changing call may retry.
  const change = await client.changePlan(SUB_ID, 'gold').catch((e: unknown) => e);
  t.match(change, { name: 'MarketplaceUnavailableError', attempts: 3 });
});

t.test('retries are bounded by count', async (t) => {
  const { server, client } = await setup(t, [{ status: 503, body: 'down' }]);
  const err = await client.listOperations(SUB_ID, { correlationId: CORRELATION_ID }).catch((e: unknown) => e);
  t.type(err, MarketplaceUnavailableError);
  t.match(err, { status: 503, attempts: 4, correlationId: CORRELATION_ID, body: 'down', call: 'listOperations' });
  t.match((err as Error).message, /4 attempts made/);
  t.equal(server.requests.length, 4);
});

t.test('retries are bounded by total time', async (t) => {
  const { server, client } = await setup(t, [{ status: 429, headers: { 'Retry-After': '120' } }], {
    retry: { maxAttempts: 10, maxElapsedMs: 5_000, baseDelayMs: 100 },
  });
  const err = await client.getSubscription(SUB_ID).catch((e: unknown) => e);
  t.type(err, MarketplaceUnavailableError);
  t.match((err as Error).message, /retry budget of 5000 ms exhausted/);
  t.equal(server.requests.length, 1, 'does not wait 120 s beyond a 5 s budget');
});

t.test('real waiting: backoff delays happen and the budget holds', async (t) => {
  const server = await startScriptedServer([{ status: 500 }, { status: 500 }, { status: 200, body: subscription() }]);
  t.teardown(() => server.close());
  const client = new FulfillmentClient({
    baseUrl: server.apiUrl,
    tokenProvider: new StaticTokenProvider('tkn'),
    logger: captureLogger().logger,
    retry: { maxAttempts: 3, maxElapsedMs: 2_000, baseDelayMs: 40 },
    random: () => 1,
  });
  const started = Date.now();
  await client.getSubscription(SUB_ID);
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 110, `waited 40 + 80 ms between attempts (took ${elapsed} ms)`);
  const gaps = server.requests.slice(1).map((r, i) => r.at - (server.requests[i]?.at ?? 0));
  t.ok((gaps[1] ?? 0) > (gaps[0] ?? 0), `delays grow: ${gaps.join(', ')} ms`);
});

t.test('state-changing calls are not retried on 5xx or lost connections', async (t) => {
  const { server, client } = await setup(t, [{ status: 500, body: 'maybe applied' }]);
  const err = await client.changePlan(SUB_ID, 'gold').catch((e: unknown) => e);
  t.type(err, MarketplaceUnavailableError);
  t.match((err as Error).message, /not retried/);
  t.equal(server.requests.length, 1);

  server.script([{ status: 0, destroy: true }]);
  await t.rejects(client.deleteSubscription(SUB_ID), MarketplaceUnavailableError);
  await t.rejects(client.activateSubscription(SUB_ID, { planId: 'standard' }), MarketplaceUnavailableError);
  t.equal(server.requests.length, 3, 'one request each');
});

t.test('state-changing calls are retried on 429 (the request was not processed)', async (t) => {
  const { server, client } = await setup(t, [
    { status: 429, headers: { 'Retry-After': '1' } },
    { status: 202, headers: { 'Operation-Location': `http://x/api/saas/subscriptions/${SUB_ID}/operations/${OP_ID}` } },
  ]);
  const accepted = await client.changeQuantity(SUB_ID, 3);
  t.equal(accepted.operationId, OP_ID);
  t.equal(server.requests.length, 2);
});

t.test('updateOperationStatus is retried (acknowledging twice is harmless)', async (t) => {
  const { server, client } = await setup(t, [{ status: 500 }, { status: 200 }]);
  await client.updateOperationStatus(SUB_ID, OP_ID, 'Failure');
  t.equal(server.requests.length, 2);
  t.same(server.requests.map((r) => r.body), [{ status: 'Failure' }, { status: 'Failure' }]);
});

t.test('400/403/404/409 are not retried and become typed errors', async (t) => {
  const cases: [number, new (...args: never[]) => MarketplaceError, RegExp][] = [
    [400, MarketplaceBadRequestError, /bad request \(400\)/],
    [403, MarketplaceForbiddenError, /check|Check/],
    [404, MarketplaceNotFoundError, /found nothing .*\(404\)/],
    [409, MarketplaceConflictError, /conflict .*\(409\)/],
  ];
  for (const [status, type, message] of cases) {
    const body = `{"message":"status ${status} from the service"}`;
    const { server, client } = await setup(t, [{ status, body, headers: { 'content-type': 'application/json' } }]);
    const err = await client.deleteSubscription(SUB_ID, { correlationId: CORRELATION_ID }).catch((e: unknown) => e);
    t.type(err, type, `${status} → ${type.name}`);
    const e = err as MarketplaceError;
    t.equal(e.status, status);
    t.equal(e.correlationId, CORRELATION_ID);
    t.equal(e.requestId, server.requests[0]?.headers['x-ms-requestid'], 'carries the request id that was sent');
    t.equal(e.body, body, 'carries the response body text');
    t.match(e.message, message);
    t.match(e.message, new RegExp(CORRELATION_ID), 'message names the correlation id');
    t.equal(server.requests.length, 1, `${status} not retried`);
  }
});

t.test('403 says to check the tenant id, app id and secret expiry', async (t) => {
  const { client, log } = await setup(t, [
    { status: 403, body: 'The client does not have authorization to perform action on this resource' },
  ]);
  const err = (await client.getSubscription(SUB_ID).catch((e: unknown) => e)) as MarketplaceForbiddenError;
  t.type(err, MarketplaceForbiddenError);
  t.match(err.message, /MARKETPLACE_TENANT_ID/);
  t.match(err.message, /MARKETPLACE_CLIENT_ID/);
  t.match(err.message, /secret or certificate has expired/);
  t.match(err.message, /does not have authorization/, 'includes the body text');
  const line = log.lines.find((l) => l.level === 50);
  t.match(line, { status: 403, requestId: String, correlationId: String });
  t.notMatch(log.text(), /tkn/, 'token not logged');
});

t.test('401 (undocumented) is treated like 403', async (t) => {
  const { client } = await setup(t, [{ status: 401 }]);
  const err = await client.getSubscription(SUB_ID).catch((e: unknown) => e);
  t.type(err, MarketplaceForbiddenError);
  t.match(err, { status: 401 });
});

t.test('other statuses and unreadable bodies are unexpected responses', async (t) => {
  const { client, server } = await setup(t, [{ status: 405 }]);
  await t.rejects(client.getSubscription(SUB_ID), MarketplaceUnexpectedResponseError);
  server.script([{ status: 200, body: '<html>proxy login</html>' }]);
  await t.rejects(client.getSubscription(SUB_ID), { name: 'MarketplaceUnexpectedResponseError', message: /not JSON/ });
  server.script([{ status: 200, body: { name: 'no id' } }]);
  await t.rejects(client.getSubscription(SUB_ID), {
    name: 'MarketplaceUnexpectedResponseError',
    message: /Subscription payload does not match/,
  });
  server.script([{ status: 202 }]);
  await t.rejects(client.changePlan(SUB_ID, 'gold'), { name: 'MarketplaceUnexpectedResponseError', message: /Operation-Location/ });
});

t.test('an aborted call stops retrying', async (t) => {
  const server = await startScriptedServer([{ status: 503 }]);
  t.teardown(() => server.close());
  const client = new FulfillmentClient({
    baseUrl: server.apiUrl,
    tokenProvider: new StaticTokenProvider('tkn'),
    logger: captureLogger().logger,
    retry: { maxAttempts: 100, maxElapsedMs: 60_000, baseDelayMs: 1_000 },
  });
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error('shutting down')), 100);
  await t.rejects(client.getSubscription(SUB_ID, { signal: controller.signal }), /shutting down/);
  t.ok(server.requests.length < 5);
});

t.test('a slow attempt times out and is retried', async (t) => {
  const server = await startScriptedServer([{ status: 200, body: subscription(), delayMs: 1_000 }, { status: 200, body: subscription() }]);
  t.teardown(() => server.close());
  const client = new FulfillmentClient({
    baseUrl: server.apiUrl,
    tokenProvider: new StaticTokenProvider('tkn'),
    logger: captureLogger().logger,
    retry: { maxAttempts: 2, maxElapsedMs: 5_000, baseDelayMs: 1 },
    requestTimeoutMs: 200,
  });
  const sub = await client.getSubscription(SUB_ID);
  t.equal(sub.id, SUB_ID);
  t.equal(server.requests.length, 2);
});
