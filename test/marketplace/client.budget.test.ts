/**
 * A call's time budget (`budgetMs`): retries, the request and the token included, the call ends within it with a
 * MarketplaceUnavailableError, whatever the client's own retry budget. Over real HTTP on 127.0.0.1, against a
 * server that does not answer (a route that never replies: no timer keeps the test alive).
 */
import t from 'tap';
import { MarketplaceUnavailableError } from '../../src/marketplace/errors.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import type { TokenProvider } from '../../src/marketplace/token-provider.js';
import { captureLogger, startScriptedServer } from '../support/scripted-server.js';
import type { Route } from '../support/scripted-server.js';
import { SUB_ID, subscription } from './fixtures.js';

const never: Route = () => new Promise<never>(() => undefined);

async function setup(t: { teardown(fn: () => unknown): void }, route: Route, tokenProvider: TokenProvider = new StaticTokenProvider('tkn')) {
  const server = await startScriptedServer(route);
  t.teardown(() => server.close());
  const log = captureLogger();
  // The client's own budget is generous (as in production: 5 attempts, 60 s, 30 s per request).
  const client = new FulfillmentClient({ baseUrl: server.apiUrl, tokenProvider, logger: log.logger });
  return { server, client, log };
}

t.test('a request Microsoft does not answer ends at the budget, as "unavailable"', async (t) => {
  const { server, client, log } = await setup(t, never);
  const started = Date.now();
  // 1 s: long enough for the request to reach the server on a loaded CI machine (at 300 ms, one CI run gave up before it arrived).
  const err = await client.getSubscription(SUB_ID, { budgetMs: 1000 }).catch((e: unknown) => e);
  t.ok(Date.now() - started < 20_000, 'long before the 30-s request timeout');
  t.ok(err instanceof MarketplaceUnavailableError, 'the same error as any other "Microsoft is not answering"');
  t.match(err, { call: 'getSubscription', attempts: 1, message: /no answer within the call's time budget of 1000 ms/ });
  t.equal(server.requests.length, 1, 'one request sent, none after the budget');
  t.ok(log.lines.some((l) => l.msg === 'marketplace call gave up: out of time' && l.call === 'getSubscription'), 'logged with the call');
});

t.test('no retry starts that could not end inside the budget', async (t) => {
  const { server, client } = await setup(t, () => ({ status: 503, body: 'busy' }));
  const err = await client.getSubscription(SUB_ID, { budgetMs: 200 }).catch((e: unknown) => e);
  t.ok(err instanceof MarketplaceUnavailableError);
  t.ok(server.requests.length < 5, `stopped after ${server.requests.length} attempt(s), not the client's five`);
});

t.test('a token provider that hangs is cut off by the budget too', async (t) => {
  const hanging: TokenProvider = { getToken: () => new Promise<never>(() => undefined) };
  const { server, client } = await setup(t, () => ({ status: 200, body: subscription() }), hanging);
  const err = await client.getSubscription(SUB_ID, { budgetMs: 200 }).catch((e: unknown) => e);
  t.ok(err instanceof MarketplaceUnavailableError);
  t.match(err, { message: /time budget of 200 ms/ });
  t.equal(server.requests.length, 0, 'no request was sent without a token');
});

t.test("within the budget: the answer; the caller's own abort stays the caller's", async (t) => {
  const { client } = await setup(t, () => ({ status: 200, body: subscription() }));
  t.equal((await client.getSubscription(SUB_ID, { budgetMs: 5_000 })).id, SUB_ID);
  const stalled = await setup(t, never);
  const controller = new AbortController();
  const call = stalled.client.getSubscription(SUB_ID, { budgetMs: 60_000, signal: controller.signal }).catch((e: unknown) => e);
  controller.abort(new Error('the caller gave up'));
  t.match(await call, { message: 'the caller gave up' }, 'not turned into "unavailable"');
});
