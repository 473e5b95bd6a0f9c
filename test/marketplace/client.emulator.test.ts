/**
 * The client against the marketplace emulator over real HTTP on 127.0.0.1: every endpoint, paging,
 * the 202 flows followed to their final status, errors, and injected faults. Every request the client
 * sends and every response the emulator gives is checked against saasapi.v2.json.
 */
import t from 'tap';
import {
  MarketplaceBadRequestError,
  MarketplaceConflictError,
  MarketplaceForbiddenError,
  MarketplaceNotFoundError,
} from '../../src/marketplace/errors.js';
import { startEmulator } from '../../src/emulator/emulator.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { NoTokenProvider, StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { validateRequest, validateResponse } from '../support/openapi.js';
import { captureLogger, startScriptedServer } from '../support/scripted-server.js';
import { CORRELATION_ID } from './fixtures.js';

type Exchange = {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: unknown;
  rawBody: string;
  status: number;
  responseHeaders: Record<string, string>;
  responseBody: unknown;
};

/** A fetch that records each exchange (the client is unaware of it). */
function recordingFetch(exchanges: Exchange[]): typeof fetch {
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const res = await fetch(input, init);
    const text = await res.clone().text();
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((v, k) => {
      headers[k] = v;
    });
    const responseHeaders: Record<string, string> = {};
    res.headers.forEach((v, k) => {
      responseHeaders[k] = v;
    });
    const rawBody = typeof init?.body === 'string' ? init.body : '';
    exchanges.push({
      method: init?.method ?? 'GET',
      url: url.pathname + url.search,
      headers,
      body: rawBody ? (JSON.parse(rawBody) as unknown) : undefined,
      rawBody,
      status: res.status,
      responseHeaders,
      responseBody: text.trim() ? (JSON.parse(text) as unknown) : undefined,
    });
    return res;
  };
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('the client against the emulator', async (t) => {
  const webhook = await startScriptedServer([{ status: 200 }]);
  t.teardown(() => webhook.close());
  const emulator = await startEmulator({
    webhookUrl: `${webhook.url}/webhook`,
    pageSize: 2,
    operationDelayMs: 50,
    ackWindowMs: 3_000,
    redelivery: { initialDelayMs: 50, maxAttempts: 3 },
  });
  t.teardown(() => emulator.close());

  const exchanges: Exchange[] = [];
  const { logger } = captureLogger();
  const client = new FulfillmentClient({
    baseUrl: emulator.apiBaseUrl,
    tokenProvider: new StaticTokenProvider('emulator-accepts-any-token'),
    logger,
    retry: { maxAttempts: 4, maxElapsedMs: 10_000, baseDelayMs: 20 },
    fetch: recordingFetch(exchanges),
  });
  const poll = { initialDelayMs: 20, intervalMs: 30, maxWaitMs: 5_000 };

  /** Waits for the webhook of an operation and returns its payload. */
  const webhookFor = (operationId: string) =>
    until(`webhook for ${operationId}`, () => {
      const req = webhook.requests.find((r) => (r.body as { id?: string } | undefined)?.id === operationId);
      return req?.body as { id: string; action: string; subscriptionId: string } | undefined;
    });

  await t.test('no subscriptions: an empty body', async (t) => {
    t.same(await client.listSubscriptions(), []);
    t.equal(exchanges.at(-1)?.responseBody, undefined, 'the emulator answered with an empty body');
  });

  const purchases = [
    emulator.marketplace.purchase({ planId: 'standard', quantity: 5 }),
    emulator.marketplace.purchase({ planId: 'standard', quantity: 3 }),
    emulator.marketplace.purchase({ planId: 'basic' }),
    emulator.marketplace.purchase({ planId: 'premium', quantity: 10 }),
    emulator.marketplace.purchase({ planId: 'standard', quantity: 1 }),
  ];
  const first = purchases[0];
  if (!first) throw new Error('no purchase');
  const subscriptionId = first.subscription.id;

  await t.test('resolve, with the token as it stands in the landing URL', async (t) => {
    const rawToken = /[?&]token=([^&]+)/.exec(first.landingPageUrl)?.[1] ?? '';
    const r = await client.resolve(rawToken, { correlationId: CORRELATION_ID });
    t.match(r, { id: subscriptionId, planId: 'standard', quantity: 5, subscription: { saasSubscriptionStatus: 'PendingFulfillmentStart' } });
    t.equal(exchanges.at(-1)?.headers['x-ms-marketplace-token'], first.token, 'sent decoded exactly once');
    const parsed = new URL(first.landingPageUrl).searchParams.get('token') ?? '';
    t.equal((await client.resolve(parsed)).id, subscriptionId, 'and as a query parser returns it');
    await t.rejects(client.resolve('not-a-token'), MarketplaceBadRequestError);
  });

  await t.test('activate, then get', async (t) => {
    await client.activateSubscription(subscriptionId, { planId: 'standard', quantity: 5 });
    const sub = await client.getSubscription(subscriptionId);
    t.equal(sub.saasSubscriptionStatus, 'Subscribed');
    t.equal(sub.quantity, 5);
    await t.rejects(client.activateSubscription(subscriptionId, { planId: 'standard', quantity: 5 }), MarketplaceBadRequestError, 'only once');
    for (const p of purchases.slice(1)) {
      const q = p.subscription.quantity;
      await client.activateSubscription(p.subscription.id, { planId: p.subscription.planId, ...(q !== undefined ? { quantity: q } : {}) });
    }
  });

  await t.test('list subscriptions through every page', async (t) => {
    const before = exchanges.length;
    const all = await client.listSubscriptions({ correlationId: CORRELATION_ID });
    t.same(new Set(all.map((s) => s.id)), new Set(purchases.map((p) => p.subscription.id)));
    const pages = exchanges.slice(before);
    t.equal(pages.length, 3, '5 subscriptions, 2 per page');
    t.ok(pages.every((e) => e.headers['x-ms-correlationid'] === CORRELATION_ID));
  });

  await t.test('list available plans', async (t) => {
    const plans = await client.listAvailablePlans(subscriptionId);
    t.ok(plans.some((p) => p.planId === 'standard'), 'includes the current plan');
    t.ok(plans.some((p) => p.planId === 'premium'));
    const only = await client.listAvailablePlans(subscriptionId, { planId: 'standard' });
    t.same(only.map((p) => p.planId), ['standard']);
  });

  await t.test('change plan: 202, webhook, acknowledge Success, Succeeded', async (t) => {
    const accepted = await client.changePlan(subscriptionId, 'premium', { correlationId: CORRELATION_ID });
    t.ok(accepted.operationId);
    await t.rejects(client.deleteSubscription(subscriptionId), MarketplaceConflictError, 'locked while the change is pending');
    const payload = await webhookFor(accepted.operationId ?? '');
    t.match(payload, { action: 'ChangePlan', subscriptionId });
    const pending = await client.listOperations(subscriptionId);
    t.ok(pending.some((op) => op.id === accepted.operationId && op.status === 'InProgress'), 'listed as outstanding');
    const op = await client.getOperation(subscriptionId, payload.id);
    t.match(op, { id: payload.id, action: 'ChangePlan', status: 'InProgress' });
    await client.updateOperationStatus(subscriptionId, payload.id, 'Success', { correlationId: CORRELATION_ID });
    const result = await client.followOperation(accepted, poll);
    t.equal(result.operation.status, 'Succeeded');
    t.equal((await client.getSubscription(subscriptionId)).planId, 'premium');
    t.same(await client.listOperations(subscriptionId), [], 'nothing outstanding (empty JSON)');
    await t.rejects(
      client.updateOperationStatus(subscriptionId, payload.id, 'Failure'),
      MarketplaceConflictError,
      'a completed operation cannot be refused',
    );
  });

  await t.test('change quantity refused with Failure: Failed', async (t) => {
    const accepted = await client.changeQuantity(subscriptionId, 12);
    const payload = await webhookFor(accepted.operationId ?? '');
    t.equal(payload.action, 'ChangeQuantity');
    await client.updateOperationStatus(subscriptionId, payload.id, 'Failure');
    const result = await client.followOperation(accepted, poll);
    t.equal(result.operation.status, 'Failed');
    t.equal((await client.getSubscription(subscriptionId)).quantity, 5, 'quantity unchanged');
  });

  await t.test('change quantity accepted: Succeeded', async (t) => {
    const accepted = await client.changeQuantity(subscriptionId, 12);
    const payload = await webhookFor(accepted.operationId ?? '');
    await client.updateOperationStatus(subscriptionId, payload.id, 'Success');
    t.equal((await client.followOperation(accepted, poll)).operation.status, 'Succeeded');
    t.equal((await client.getSubscription(subscriptionId)).quantity, 12);
  });

  await t.test('400/404 from the emulator become typed errors', async (t) => {
    await t.rejects(client.changePlan(subscriptionId, 'premium'), MarketplaceBadRequestError, 'same plan');
    await t.rejects(client.changeQuantity(subscriptionId, 12), MarketplaceBadRequestError, 'same quantity');
    await t.rejects(client.getSubscription('00000000-0000-4000-8000-000000000000'), MarketplaceNotFoundError);
    await t.rejects(client.getOperation(subscriptionId, '00000000-0000-4000-8000-000000000000'), MarketplaceNotFoundError);
  });

  await t.test('injected 429 and 500 are retried', async (t) => {
    emulator.faults.set({ api: { throttle: { retryAfterSeconds: 1, times: 1, operations: ['getSubscription'] } } });
    const started = Date.now();
    t.equal((await client.getSubscription(subscriptionId)).id, subscriptionId);
    t.ok(Date.now() - started >= 900, 'waited Retry-After: 1');
    t.match(exchanges.slice(-2).map((e) => e.status), [429, 200]);
    emulator.faults.set({ api: { serverError: { times: 2, operations: ['listAvailablePlans'] } } });
    t.ok((await client.listAvailablePlans(subscriptionId)).length > 0);
    t.match(exchanges.slice(-3).map((e) => e.status), [500, 500, 200]);
    emulator.faults.clear();
  });

  await t.test('delete: 202, Succeeded, Unsubscribed', async (t) => {
    const accepted = await client.deleteSubscription(subscriptionId);
    const result = await client.followOperation(accepted, poll);
    t.equal(result.operation.status, 'Succeeded');
    t.equal(result.operation.action, 'Unsubscribe');
    t.equal((await client.getSubscription(subscriptionId)).saasSubscriptionStatus, 'Unsubscribed');
    await t.rejects(client.listAvailablePlans(subscriptionId), MarketplaceForbiddenError, 'Microsoft answers 403 here');
  });

  await t.test('without a token the emulator answers 403, with the hint', async (t) => {
    const anonymous = new FulfillmentClient({ baseUrl: emulator.apiBaseUrl, tokenProvider: new NoTokenProvider(), logger });
    const err = await anonymous.getSubscription(subscriptionId).catch((e: unknown) => e);
    t.type(err, MarketplaceForbiddenError);
    t.match((err as Error).message, /tenant/i);
  });

  await t.test('every request and response agrees with saasapi.v2.json', async (t) => {
    const operationsSeen = new Set<string>();
    for (const e of exchanges) {
      const req = validateRequest({ method: e.method, url: e.url, headers: e.headers, body: e.body, rawBody: e.rawBody });
      t.same(req.errors, [], `request ${e.method} ${e.url}`);
      if (!req.operationId) continue;
      operationsSeen.add(req.operationId);
      if (e.status < 300) {
        const res = validateResponse(req.operationId, e.status, e.responseBody, e.responseHeaders);
        t.same(res.errors, [], `response ${e.status} to ${req.operationId}`);
      }
      t.equal(e.responseHeaders['x-ms-requestid'], e.headers['x-ms-requestid'], 'the emulator echoes x-ms-requestid');
      t.equal(e.responseHeaders['x-ms-correlationid'], e.headers['x-ms-correlationid'], 'and x-ms-correlationid');
    }
    t.same(
      [...operationsSeen].sort(),
      [
        'FulfillmentOperations_ActivateSubscription',
        'FulfillmentOperations_DeleteSubscription',
        'FulfillmentOperations_GetSubscription',
        'FulfillmentOperations_ListAvailablePlans',
        'FulfillmentOperations_ListSubscriptions',
        'FulfillmentOperations_Resolve',
        'FulfillmentOperations_UpdateSubscription',
        'SubscriptionOperations_GetOperationStatus',
        'SubscriptionOperations_ListOperations',
        'SubscriptionOperations_UpdateOperationStatus',
      ],
      'all ten operations exercised',
    );
  });
});
