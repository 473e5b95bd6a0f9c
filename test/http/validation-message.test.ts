/**
 * A request that fails its schema gets one readable line: for a field that takes one of a few values, the
 * allowed values once (not "must be equal to constant" per value); other failures as Ajv says them. Through
 * the app's error handler (inject), and the formatter on its own.
 */
import t from 'tap';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import { PublisherChanges } from '../../src/application/publisher-changes.js';
import { atPointer, validationMessage } from '../../src/http/validation-message.js';
import { createLogger } from '../../src/logger.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';

const TOKEN = 'validation-token-0123456789';
const logger = createLogger('silent');

async function app(t: Test) {
  const ledger = new SubscriptionLedger(() => undefined);
  const client = new FulfillmentClient({ baseUrl: 'http://127.0.0.1:9/unused', tokenProvider: new StaticTokenProvider('unused'), logger });
  const publisherChanges = new PublisherChanges({ ledger, client, logger });
  const built = await buildApp({
    logger,
    store: () => undefined,
    api: { operatorToken: TOKEN, openapi: { serverUrl: () => 'https://ledger.example' }, subscriptions: { ledger, publisherChanges }, readModels: { readModels: () => undefined } },
  });
  t.teardown(() => built.close());
  return built;
}

t.test('a bad sort value: the allowed values, once, and the value given', async (t) => {
  const a = await app(t);
  const res = await a.inject({ method: 'GET', url: '/api/read/subscriptions?sort=size', headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(res.statusCode, 400);
  const { detail } = res.json() as { detail: string };
  t.equal(detail, 'querystring/sort must be one of: createdAt, activatedAt, cancelledAt, updatedAt, status, offerId, planId, quantity, subscriptionId (got "size")');
  t.notMatch(detail, /constant/);
});

t.test('a bad order value and a bad pattern', async (t) => {
  const a = await app(t);
  const order = await a.inject({ method: 'GET', url: '/api/read/subscriptions?order=up', headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal((order.json() as { detail: string }).detail, 'querystring/order must be one of: asc, desc (got "up")');
  const limit = await a.inject({ method: 'GET', url: '/api/read/subscriptions?limit=9000', headers: { authorization: `Bearer ${TOKEN}` } });
  t.match((limit.json() as { detail: string }).detail, /^querystring\/limit must match pattern/);
});

t.test('/openapi.json lists the server the runtime gives (PUBLIC_URL, else the listen URL)', async (t) => {
  const a = await app(t);
  const doc = (await a.inject({ method: 'GET', url: '/openapi.json' })).json() as { servers?: Array<{ url: string }> };
  t.same(doc.servers, [{ url: 'https://ledger.example' }]);
});

t.test('the formatter on its own', async (t) => {
  t.equal(
    validationMessage('body', [{ keyword: 'enum', instancePath: '/kind', params: { allowedValues: ['a', 'b'] } }], () => undefined),
    'body/kind must be one of: a, b',
  );
  t.equal(
    validationMessage('body', [{ keyword: 'required', instancePath: '', message: "must have required property 'planId'" }], () => undefined),
    "body must have required property 'planId'",
  );
  t.equal(atPointer({ items: [{ 'a/b': 1 }] }, '/items/0/a~1b'), 1);
  t.equal(atPointer({ a: 1 }, '/a/b'), undefined);
});
