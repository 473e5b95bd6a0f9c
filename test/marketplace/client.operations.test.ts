/** 202 + Operation-Location, followed to Succeeded / Failed / Conflict with bounded polling. */
import t from 'tap';
import { MarketplaceNotFoundError, MarketplaceOperationTimeoutError } from '../../src/marketplace/errors.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { waitForOperation } from '../../src/marketplace/operation-poller.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { operationFor, validateRequest } from '../support/openapi.js';
import { captureLogger, startScriptedServer } from '../support/scripted-server.js';
import type { Recorded } from '../support/scripted-server.js';
import { CORRELATION_ID, OP_ID, SUB_ID, operation } from './fixtures.js';

/** A server where PATCH/DELETE answer 202 and the operation goes through the given statuses. */
async function setup(statuses: string[]) {
  const server = await startScriptedServer();
  let polls = 0;
  server.script((req: Recorded) => {
    const op = operationFor(req.method, req.url)?.operationId;
    if (op === 'FulfillmentOperations_UpdateSubscription' || op === 'FulfillmentOperations_DeleteSubscription') {
      return {
        status: 202,
        headers: { 'Operation-Location': `${server.apiUrl}/saas/subscriptions/${SUB_ID}/operations/${OP_ID}?api-version=2018-08-31` },
      };
    }
    if (op === 'SubscriptionOperations_GetOperationStatus') {
      const status = statuses[Math.min(polls, statuses.length - 1)] ?? 'InProgress';
      polls++;
      return { status: 200, body: operation({ status, action: 'ChangePlan' }) };
    }
    return { status: 404 };
  });
  const sleeps: number[] = [];
  const client = new FulfillmentClient({
    baseUrl: server.apiUrl,
    tokenProvider: new StaticTokenProvider('tkn'),
    logger: captureLogger().logger,
  });
  const sleep = async (ms: number): Promise<void> => {
    sleeps.push(ms);
  };
  return { server, client, sleeps, sleep };
}

for (const final of ['Succeeded', 'Failed', 'Conflict'] as const) {
  t.test(`change plan followed to ${final}`, async (t) => {
    const { server, client, sleeps, sleep } = await setup(['NotStarted', 'InProgress', ` ${final} `]);
    t.teardown(() => server.close());
    const accepted = await client.changePlan(SUB_ID, 'gold', { correlationId: CORRELATION_ID });
    const result = await client.followOperation(accepted, { sleep, intervalMs: 1_000, initialDelayMs: 500 });
    t.equal(result.operation.status, final);
    t.equal(result.operation.id, OP_ID);
    t.equal(result.polls, 3);
    t.same(sleeps, [500, 1_000, 1_500], 'initial delay, then a growing interval');
    const polls = server.requests.slice(1);
    for (const req of polls) {
      t.same(validateRequest(req).errors, [], 'poll request matches the spec');
      t.equal(req.headers['x-ms-correlationid'], CORRELATION_ID, 'polls carry the correlation id of the change');
    }
  });
}

t.test('delete followed to Succeeded with real (short) waits', async (t) => {
  const { server, client } = await setup(['InProgress', 'Succeeded']);
  t.teardown(() => server.close());
  const accepted = await client.deleteSubscription(SUB_ID);
  const result = await waitForOperation(client, accepted, { initialDelayMs: 10, intervalMs: 20 });
  t.equal(result.operation.status, 'Succeeded');
  t.equal(server.requests.length, 3);
});

t.test('an operation that never finishes stops at maxWaitMs', async (t) => {
  const { server, client } = await setup(['InProgress']);
  t.teardown(() => server.close());
  const accepted = await client.changeQuantity(SUB_ID, 9);
  const started = Date.now();
  const err = await waitForOperation(client, accepted, { initialDelayMs: 0, intervalMs: 30, maxWaitMs: 200 }).catch(
    (e: unknown) => e,
  );
  t.type(err, MarketplaceOperationTimeoutError);
  t.match(err, { operationId: OP_ID, subscriptionId: SUB_ID, lastStatus: 'InProgress' });
  t.ok(Date.now() - started < 1_000, 'bounded');
});

t.test('unknown statuses keep it polling', async (t) => {
  const { server, client, sleep } = await setup(['Queued', 'Thinking', 'Succeeded']);
  t.teardown(() => server.close());
  const accepted = await client.changePlan(SUB_ID, 'gold');
  const result = await client.followOperation(accepted, { sleep });
  t.equal(result.operation.status, 'Succeeded');
  t.equal(result.polls, 3);
});

t.test('a 404 while polling surfaces as a typed error', async (t) => {
  const server = await startScriptedServer([
    { status: 202, headers: { 'Operation-Location': `/api/saas/subscriptions/${SUB_ID}/operations/${OP_ID}` } },
    { status: 404, body: 'operation not found' },
  ]);
  t.teardown(() => server.close());
  const client = new FulfillmentClient({ baseUrl: server.apiUrl, tokenProvider: new StaticTokenProvider('tkn'), logger: captureLogger().logger });
  const accepted = await client.changePlan(SUB_ID, 'gold');
  t.equal(accepted.operationId, OP_ID, 'a relative Operation-Location works');
  await t.rejects(client.followOperation(accepted, { initialDelayMs: 0 }), MarketplaceNotFoundError);
  t.same(validateRequest(server.requests[1] as Recorded).errors, [], 'api-version added to the relative location');
});

t.test('an aborted wait stops', async (t) => {
  const { server, client } = await setup(['InProgress']);
  t.teardown(() => server.close());
  const accepted = await client.changePlan(SUB_ID, 'gold');
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error('shutdown')), 50);
  await t.rejects(
    waitForOperation(client, accepted, { initialDelayMs: 0, intervalMs: 20, maxWaitMs: 60_000, signal: controller.signal }),
    /shutdown/,
  );
});
