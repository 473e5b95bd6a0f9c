/**
 * Dead letters: after INTEGRATION_MAX_ATTEMPTS an integration event is dead-lettered, blocks the
 * later events of its subscription (and only those), and is visible through the operator API;
 * retrying delivers it and unblocks the rest in order, skipping lets the rest go on without it.
 * Real HTTP receiver, real SQLite file, the app's error handling and auth.
 */
import t from 'tap';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.js';
import type { IntegrationRoutesOptions } from '../../src/http/integration.routes.js';
import { outboxStream } from '../../src/integration/outbox.js';
import { startIntegrationEvents } from '../../src/processes/integration-events.process.js';
import { allProcessed, assertExactlyOnceInOrder, expectedIds, lifecycle, logger, processedFor, world } from '../support/integration-world.js';
import type { World } from '../support/integration-world.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'operator-token-0123456789abcdef';
const auth = { authorization: `Bearer ${TOKEN}` };
/** Named operators (OPERATOR_TOKENS): the actor recorded is the authenticated name, whatever x-operator-id says. */
const OPERATORS = [{ name: 'api', token: TOKEN }, { name: 'alice', token: 'alice-token-0123456789abcdef' }, { name: 'bob', token: 'bob-token-0123456789abcdef' }];
const as = (name: 'alice' | 'bob') => ({ authorization: `Bearer ${name}-token-0123456789abcdef`, 'x-operator-id': 'mallory' });

async function api(t: Test, integration: IntegrationRoutesOptions['integration'], w?: World) {
  const app = await buildApp({ logger, store: () => w?.store, api: { operatorToken: OPERATORS, integration: { integration } } });
  await app.ready();
  t.teardown(() => app.close());
  return app;
}

type DeadLetterList = {
  enabled: boolean;
  deadLetters: Array<{ eventId: string; subscriptionId: string; type: string; sequence: number; attempts: number; lastStatus?: number; lastError: string; blockedEvents: number; deadLetteredAt: string }>;
};

t.test('max attempts → dead letter, visible, blocking its subscription only; retry delivers it and unblocks the rest', async (t) => {
  const w = await world(t, { maxAttempts: 3 });
  const app = await api(t, () => w.integration.admin, w);
  const [a, b] = ['40000000-0000-4000-8000-00000000000a', '50000000-0000-4000-8000-00000000000b'];
  // The ISV's application chokes on A's activation.
  w.receiver.reject((json) => json.subscriptionId === a && json.type === 'subscription.activated');
  await lifecycle(w.ledger, a);
  await lifecycle(w.ledger, b);
  await allProcessed(w, [b]);
  await waitFor('A dead-lettered', async () => (await w.integration.admin.status()).deadLettered === 1);

  const streamA = await expectedIds(w.store, a);
  t.same(processedFor(w.receiver, a).map((e) => e.id), streamA.slice(0, 2), 'A: the events before the dead letter were delivered');
  const attemptsOnActivated = w.receiver.receipts.filter((r) => r.key === streamA[2]);
  t.same(attemptsOnActivated.map((r) => r.attempt), [1, 2, 3], 'three attempts, numbered in X-Ledger-Delivery-Attempt');
  t.notOk(w.receiver.receipts.some((r) => streamA.slice(3).includes(r.key)), 'A: nothing after the dead letter was attempted');

  const unauthorised = await app.inject({ method: 'GET', url: '/api/integration/dead-letters' });
  t.equal(unauthorised.statusCode, 401);
  t.match(unauthorised.headers['content-type'], /application\/problem\+json/);

  const listed = await app.inject({ method: 'GET', url: '/api/integration/dead-letters', headers: auth });
  t.equal(listed.statusCode, 200);
  const list = listed.json<DeadLetterList>();
  t.equal(list.enabled, true);
  t.equal(list.deadLetters.length, 1);
  t.match(list.deadLetters[0], { eventId: streamA[2], subscriptionId: a, type: 'subscription.activated', sequence: 2, attempts: 3, lastStatus: 500, lastError: /answered 500/, blockedEvents: 4 });
  const filtered = await app.inject({ method: 'GET', url: `/api/integration/dead-letters?subscriptionId=${b}`, headers: auth });
  t.same(filtered.json<DeadLetterList>().deadLetters, [], 'filter by subscription');
  // B's last delivery reaches the receiver before its acknowledgement is recorded: wait for the record, then read.
  await waitFor("B's deliveries recorded", async () => (await w.integration.admin.status()).subscriptions === 1);
  t.match((await app.inject({ method: 'GET', url: '/api/integration/status', headers: auth })).json(), { enabled: true, subscriptions: 1, pending: 5, deadLettered: 1 });

  // Still broken: a retry runs a new round of attempts and ends in the dead-letter list again.
  const retried = await app.inject({ method: 'POST', url: `/api/integration/dead-letters/${streamA[2]}/retry`, headers: as('alice') });
  t.equal(retried.statusCode, 202);
  t.same(retried.json(), { eventId: streamA[2], subscriptionId: a, status: 'retrying' });
  await waitFor('the second round', () => w.receiver.receipts.filter((r) => r.key === streamA[2]).length === 6);
  await waitFor('dead-lettered again', async () => (await w.integration.admin.deadLetters()).length === 1);

  // Fixed: the retry delivers it, and the four events behind it follow in order.
  w.receiver.reject(undefined);
  const again = await app.inject({ method: 'POST', url: `/api/integration/dead-letters/${streamA[2]}/retry`, headers: auth });
  t.equal(again.statusCode, 202);
  await allProcessed(w, [a, b]);
  await assertExactlyOnceInOrder(t, w, [a, b]);
  await waitFor('the outboxes settled', async () => (await w.integration.admin.status()).pending === 0);
  t.same((await app.inject({ method: 'GET', url: '/api/integration/dead-letters', headers: auth })).json(), { enabled: true, deadLetters: [] });

  const outbox = (await w.store.readStream(outboxStream(a))).map((e) => ({ type: e.type, data: e.data as Record<string, unknown> }));
  t.match(outbox.filter((e) => e.type === 'DeadLetterRetried').map((e) => e.data.actor), ['operator:alice', 'operator:api'], 'who retried is recorded');
  t.equal(outbox.filter((e) => e.type === 'DeadLettered').length, 2);

  const gone = await app.inject({ method: 'POST', url: `/api/integration/dead-letters/${streamA[2]}/retry`, headers: auth });
  t.equal(gone.statusCode, 404, 'a delivered event is no dead letter');
  t.match(gone.json(), { status: 404, title: 'dead-letter-not-found' });
  t.equal((await app.inject({ method: 'POST', url: '/api/integration/dead-letters/no-such-event/skip', headers: auth })).statusCode, 404);
});

t.test('skip: the rest of the subscription goes on without it; the skipped event is never acknowledged', async (t) => {
  const w = await world(t, { maxAttempts: 2 });
  const app = await api(t, () => w.integration.admin, w);
  const a = '60000000-0000-4000-8000-00000000000c';
  w.receiver.reject((json) => json.type === 'subscription.plan_changed');
  await lifecycle(w.ledger, a);
  await waitFor('dead-lettered', async () => (await w.integration.admin.status()).deadLettered === 1);
  const [dead] = (await app.inject({ method: 'GET', url: '/api/integration/dead-letters', headers: auth })).json<DeadLetterList>().deadLetters;
  t.equal(dead?.type, 'subscription.plan_changed');

  const bad = await app.inject({ method: 'POST', url: `/api/integration/dead-letters/${dead?.eventId}/skip`, headers: auth, payload: { reason: 'x', force: true } });
  t.equal(bad.statusCode, 400, 'unknown body fields are refused');
  const skipped = await app.inject({
    method: 'POST',
    url: `/api/integration/dead-letters/${dead?.eventId}/skip`,
    headers: as('bob'),
    payload: { reason: 'the ISV re-synced the plan by hand' },
  });
  t.equal(skipped.statusCode, 200);
  t.same(skipped.json(), { eventId: dead?.eventId, subscriptionId: a, status: 'skipped' });
  const stream = await expectedIds(w.store, a);
  await waitFor('the rest delivered', () => processedFor(w.receiver, a).length === stream.length - 1);
  t.same(processedFor(w.receiver, a).map((e) => e.id), stream.filter((id) => id !== dead?.eventId), 'everything else, in order');
  const outbox = await w.store.readStream(outboxStream(a));
  t.match(outbox.find((e) => e.type === 'DeadLetterSkipped')?.data, { eventId: dead?.eventId, actor: 'operator:bob', reason: 'the ISV re-synced the plan by hand' });
  t.equal((await app.inject({ method: 'POST', url: `/api/integration/dead-letters/${dead?.eventId}/skip`, headers: auth })).statusCode, 404, 'skipped once');
});

t.test('a dead letter survives a restart and still blocks; retry after the restart unblocks', async (t) => {
  const w = await world(t, { maxAttempts: 2 });
  const a = '70000000-0000-4000-8000-00000000000d';
  w.receiver.reject((json) => json.type === 'subscription.activation_requested');
  await lifecycle(w.ledger, a);
  await waitFor('dead-lettered', async () => (await w.integration.admin.status()).deadLettered === 1);
  await w.integration.idle();
  await w.restart();
  w.receiver.reject(undefined);
  const [dead] = await w.integration.admin.deadLetters();
  t.match(dead, { subscriptionId: a, type: 'subscription.activation_requested', blockedEvents: 5 });
  await new Promise((r) => setTimeout(r, 300));
  t.equal(processedFor(w.receiver, a).length, 1, 'still blocked after the restart');
  t.ok(await w.integration.admin.retry(dead?.eventId ?? '', 'operator:test'));
  await allProcessed(w, [a]);
  await assertExactlyOnceInOrder(t, w, [a]);
});

t.test('the API without a configured URL, and before the store is open', async (t) => {
  const disabled = startIntegrationEvents({ store: undefined as never, settings: undefined, logger });
  const app = await api(t, () => disabled.admin);
  t.same((await app.inject({ method: 'GET', url: '/api/integration/dead-letters', headers: auth })).json(), { enabled: false, deadLetters: [] });
  t.same((await app.inject({ method: 'GET', url: '/api/integration/status', headers: auth })).json(), {
    enabled: false,
    subscriptions: 0,
    pending: 0,
    retrying: 0,
    deadLettered: 0,
    inFlight: 0,
  });
  t.equal((await app.inject({ method: 'POST', url: '/api/integration/dead-letters/x/retry', headers: auth })).statusCode, 404);
  t.equal((await app.inject({ method: 'GET', url: '/api/integration/dead-letters?limit=3', headers: auth })).statusCode, 400, 'strict query');

  const opening = await api(t, () => undefined);
  const res = await opening.inject({ method: 'GET', url: '/api/integration/dead-letters', headers: auth });
  t.equal(res.statusCode, 503);
  t.equal(res.headers['retry-after'], '5');
  t.match(res.json(), { status: 503, title: 'store-unavailable' });
});
