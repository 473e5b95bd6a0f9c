/**
 * What the emulator can do to test drift and convergence against it: changes at Microsoft that no
 * webhook announces, silent and bulk purchases, List subscriptions paging over many subscriptions.
 */
import t from 'tap';
import type { Test } from 'tap';
import { API_VERSION, startHarness, subscribed } from './emulator.helpers.js';
import type { Harness, Response } from './emulator.helpers.js';

function problem(t: Test, res: Response, status: number, code: string, detail?: RegExp): void {
  t.equal(res.status, status, `status ${status}`);
  t.match(res.headers.get('content-type'), /^application\/problem\+json/, 'problem+json');
  t.match(res.body, { status, code, detail: detail ?? String }, `problem ${code}`);
}

/** A webhook we do expect, so that the receiver's list is known to be complete up to it. */
async function marker(t: Test, h: Harness): Promise<void> {
  const id = await subscribed(h, { planId: 'basic' });
  await h.http.act(id, 'suspend');
  const ds = await h.receiver.waitFor((all) => all.some((d) => d.body.subscriptionId === id));
  t.same(
    ds.map((d) => d.body.subscriptionId),
    [id],
    'the only webhook that arrived is the marker sent afterwards',
  );
}

t.test('silent change: Get subscription and List subscriptions show it; no webhook is sent', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  const res = await h.http.raw('POST', `/emulator/subscriptions/${id}/silent`, {
    body: { planId: 'premium', quantity: 20, autoRenew: false, status: 'Suspended' },
  });
  t.equal(res.status, 200);
  t.match(res.body, { subscription: { id, planId: 'premium', quantity: 20, autoRenew: false, saasSubscriptionStatus: 'Suspended', term: { termUnit: 'P1Y' } } });
  const got = await h.http.api('GET', `/saas/subscriptions/${id}`);
  t.match(got.body, { planId: 'premium', quantity: 20, saasSubscriptionStatus: 'Suspended', autoRenew: false });
  const list = (await h.http.api('GET', '/saas/subscriptions/')).body as { subscriptions: { id: string; planId: string }[] };
  t.match(list.subscriptions.find((s) => s.id === id), { planId: 'premium' });
  t.same(h.emulator.deliveries({ subscriptionId: id }), [], 'no delivery recorded');
  const view = (await h.http.raw('GET', `/emulator/subscriptions/${id}`)).body as { operations: unknown[] };
  t.same(view.operations, [], 'no operation at Microsoft either');

  const dated = await h.http.raw('POST', `/emulator/subscriptions/${id}/silent`, {
    body: { termUnit: 'PAY', startDate: '2025-03-01T00:00:00Z', endDate: '2025-03-31T00:00:00.000Z' },
  });
  t.match(dated.body, { subscription: { term: { termUnit: 'PAY', startDate: '2025-03-01T00:00:00.000Z', endDate: '2025-03-31T00:00:00.000Z' } } });
  await marker(t, h);
});

t.test('silent change: strict body, catalogue checks, unknown ids', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  const silent = (body: unknown, sub = id): Promise<Response> => h.http.raw('POST', `/emulator/subscriptions/${sub}/silent`, { body });
  problem(t, await silent({}), 400, 'ValidationFailed');
  problem(t, await silent({ colour: 'blue' }), 400, 'ValidationFailed', /colour/);
  problem(t, await silent({ status: 'PendingFulfillmentStart' }), 400, 'ValidationFailed', /status/);
  problem(t, await silent({ quantity: 0 }), 400, 'ValidationFailed', /quantity/);
  problem(t, await silent({ startDate: 'yesterday' }), 400, 'ValidationFailed', /startDate/);
  problem(t, await silent({ planId: 'legacy' }), 400, 'PlanNotAvailable');
  problem(t, await silent({ quantity: 51 }), 400, 'QuantityOutOfRange');
  problem(t, await silent({ startDate: '2025-03-02T00:00:00Z', endDate: '2025-03-01T00:00:00Z' }), 400, 'BadTerm');
  problem(t, await silent({ quantity: 2 }, '6f1c0f43-6c1b-4a8e-9f4c-1d2e3f4a5b6c'), 404, 'SubscriptionNotFound');
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}`)).body, { planId: 'standard', quantity: 5 }, 'nothing changed');
});

t.test('silent purchase: an auto-activated plan is Subscribed with its Subscribe recorded, and nothing is sent', async (t) => {
  const h = await startHarness(t);
  const res = await h.http.raw('POST', '/emulator/purchases', { body: { planId: 'instant', silent: true } });
  t.equal(res.status, 201);
  const bought = res.body as { subscriptionId: string; operation: { id: string } };
  t.match(bought, { subscription: { saasSubscriptionStatus: 'Subscribed' }, operation: { action: 'Subscribe', status: 'Succeeded' } });
  const op = await h.http.api('GET', `/saas/subscriptions/${bought.subscriptionId}/operations/${bought.operation.id}`);
  t.match(op.body, { action: 'Subscribe', status: 'Succeeded' }, 'Microsoft has the operation');
  t.same(h.emulator.deliveries({ subscriptionId: bought.subscriptionId }), []);
  await marker(t, h);
});

t.test('bulk purchases: 10,000 subscriptions at once, paged 100 at a time through @nextLink', async (t) => {
  const h = await startHarness(t);
  const res = await h.http.raw('POST', '/emulator/purchases/bulk', { body: { count: 10_000, planId: 'standard', quantity: 2 } });
  t.equal(res.status, 201);
  const { count, subscriptionIds } = res.body as { count: number; subscriptionIds: string[] };
  t.equal(count, 10_000);
  t.equal(new Set(subscriptionIds).size, 10_000);
  t.equal(h.emulator.deliveries().length, 0, 'no webhooks');

  const seen: string[] = [];
  let next: string | undefined = `${h.emulator.apiBaseUrl}/saas/subscriptions/?api-version=${API_VERSION}`;
  let pages = 0;
  while (next) {
    const page = (await (await fetch(next, { headers: { authorization: 'Bearer x' } })).json()) as {
      subscriptions: { id: string; saasSubscriptionStatus: string; quantity: number }[];
      '@nextLink'?: string;
    };
    if (pages === 0) t.match(page.subscriptions[0], { saasSubscriptionStatus: 'Subscribed', quantity: 2 }, 'Subscribed by default');
    if (page.subscriptions.length !== 100) t.fail(`page ${pages} has ${page.subscriptions.length} subscriptions`);
    seen.push(...page.subscriptions.map((s) => s.id));
    next = page['@nextLink'];
    pages++;
  }
  t.equal(pages, 100, '100 pages of 100');
  t.same(seen, subscriptionIds, 'each once, in purchase order');

  const pending = await h.http.raw('POST', '/emulator/purchases/bulk', { body: { count: 3, planId: 'basic', status: 'PendingFulfillmentStart' } });
  const first = (pending.body as { subscriptionIds: string[] }).subscriptionIds[0] ?? '';
  t.match((await h.http.api('GET', `/saas/subscriptions/${first}`)).body, { saasSubscriptionStatus: 'PendingFulfillmentStart' });
  problem(t, await h.http.raw('POST', '/emulator/purchases/bulk', { body: { count: 0, planId: 'basic' } }), 400, 'ValidationFailed', /count/);
  problem(t, await h.http.raw('POST', '/emulator/purchases/bulk', { body: { count: 2, planId: 'gold' } }), 400, 'UnknownPlan');
  problem(t, await h.http.raw('POST', '/emulator/purchases/bulk', { body: { count: 2, planId: 'basic', silent: true } }), 400, 'ValidationFailed', /silent/);
});

t.test('page size: an option, and PUT /emulator/settings changes it; paging stays whole across the change', async (t) => {
  const h = await startHarness(t, { pageSize: 3 });
  t.match((await h.http.raw('GET', '/emulator')).body, { pageSize: 3 });
  const ids = ((await h.http.raw('POST', '/emulator/purchases/bulk', { body: { count: 7, planId: 'basic' } })).body as { subscriptionIds: string[] })
    .subscriptionIds;
  const first = (await h.http.api('GET', '/saas/subscriptions/')).body as { subscriptions: { id: string }[]; '@nextLink': string };
  t.equal(first.subscriptions.length, 3);
  const settings = await h.http.raw('PUT', '/emulator/settings', { body: { pageSize: 100 } });
  t.match(settings.body, { pageSize: 100 });
  const rest = (await (await fetch(first['@nextLink'], { headers: { authorization: 'Bearer x' } })).json()) as {
    subscriptions: { id: string }[];
    '@nextLink'?: string;
  };
  t.same([...first.subscriptions, ...rest.subscriptions].map((s) => s.id), ids, 'the old @nextLink goes on where the page ended');
  t.equal(rest['@nextLink'], undefined);
  problem(t, await h.http.raw('PUT', '/emulator/settings', { body: { pageSize: 0 } }), 400, 'ValidationFailed', /pageSize/);
});
