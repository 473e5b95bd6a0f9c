/**
 * The emulator's Fulfillment API over real HTTP on 127.0.0.1: every endpoint, paging, the 202
 * flows, the lock, and the errors; every success response checked against saasapi.v2.json.
 */
import t from 'tap';
import type { Test } from 'tap';
import { validateComponent, validateResponse } from '../support/openapi.js';
import { API_VERSION, operationIdOf, sleep, startHarness, subscribed, waitFor } from './emulator.helpers.js';
import type { Harness, Response } from './emulator.helpers.js';

function conforms(t: Test, operationId: string, res: Response): void {
  const result = validateResponse(operationId, res.status, res.body, Object.fromEntries(res.headers));
  t.same(result.errors, [], `${operationId} ${res.status} matches saasapi.v2.json`);
}

function msError(t: Test, res: Response, status: number, code?: string): void {
  t.equal(res.status, status, `status ${status}`);
  t.match(res.body, { error: { code: code ?? String, message: String } }, `Microsoft error body${code ? ` ${code}` : ''}`);
}

async function operation(h: Harness, subscriptionId: string, operationId: string): Promise<Record<string, unknown>> {
  const res = await h.http.api('GET', `/saas/subscriptions/${subscriptionId}/operations/${operationId}`);
  return res.body as Record<string, unknown>;
}

t.test('api-version is required and must be 2018-08-31; a bearer token is required', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  for (const path of ['/api/saas/subscriptions', `/api/saas/subscriptions/${id}`, `/api/saas/subscriptions/${id}/operations`]) {
    msError(t, await h.http.raw('GET', path, { headers: { authorization: 'Bearer x' } }), 400, 'InvalidApiVersion');
    msError(t, await h.http.raw('GET', `${path}?api-version=2020-01-01`, { headers: { authorization: 'Bearer x' } }), 400, 'InvalidApiVersion');
  }
  msError(t, await h.http.raw('GET', `/api/saas/subscriptions/${id}?api-version=${API_VERSION}`), 403, 'Forbidden');
  msError(t, await h.http.raw('GET', `/api/saas/subscriptions/${id}?api-version=${API_VERSION}`, { headers: { authorization: 'Basic x' } }), 403);
  msError(t, await h.http.api('GET', '/saas/nothing/here'), 404, 'NotFound');
});

t.test('x-ms-requestid and x-ms-correlationid are echoed, or generated', async (t) => {
  const h = await startHarness(t);
  const given = await h.http.api('GET', '/saas/subscriptions', {
    headers: { 'x-ms-requestid': 'a0d4b7a9-0000-4000-8000-000000000001', 'x-ms-correlationid': 'a0d4b7a9-0000-4000-8000-000000000002' },
  });
  t.equal(given.headers.get('x-ms-requestid'), 'a0d4b7a9-0000-4000-8000-000000000001');
  t.equal(given.headers.get('x-ms-correlationid'), 'a0d4b7a9-0000-4000-8000-000000000002');
  const generated = await h.http.api('GET', '/saas/subscriptions');
  t.match(generated.headers.get('x-ms-requestid'), /^[0-9a-f-]{36}$/);
});

t.test('resolve: the landing-page token, decoded once, resolves in any status', async (t) => {
  const h = await startHarness(t);
  const bought = await h.http.purchase({ planId: 'standard', quantity: 3, subscriptionName: 'Contoso HR' });
  const landing = new URL(bought.landingPageUrl);
  t.match(landing.search, /token=[^&]*%2B/, 'the landing URL carries the token percent-encoded');
  const once = landing.searchParams.get('token') ?? '';
  t.equal(once, bought.token, 'URLSearchParams decodes it once');

  const res = await h.http.api('POST', '/saas/subscriptions/resolve', { headers: { 'x-ms-marketplace-token': once } });
  t.equal(res.status, 200);
  conforms(t, 'FulfillmentOperations_Resolve', res);
  t.match(res.body, {
    id: bought.subscriptionId,
    subscriptionName: 'Contoso HR',
    offerId: 'ledger-saas',
    planId: 'standard',
    quantity: 3,
    subscription: { id: bought.subscriptionId, name: 'Contoso HR', saasSubscriptionStatus: 'PendingFulfillmentStart' },
  });

  const twice = decodeURIComponent(once.replaceAll('+', ' '));
  msError(t, await h.http.api('POST', '/saas/subscriptions/resolve', { headers: { 'x-ms-marketplace-token': twice } }), 400, 'InvalidValue');
  const notDecoded = landing.search.slice('?token='.length);
  msError(t, await h.http.api('POST', '/saas/subscriptions/resolve', { headers: { 'x-ms-marketplace-token': notDecoded } }), 400, 'InvalidValue');
  msError(t, await h.http.api('POST', '/saas/subscriptions/resolve'), 400, 'MissingToken');

  await h.http.act(bought.subscriptionId, 'unsubscribe');
  const after = await h.http.api('POST', '/saas/subscriptions/resolve', { headers: { 'x-ms-marketplace-token': once } });
  t.equal(after.status, 200, 'still resolves once Unsubscribed');
  t.match(after.body, { subscription: { saasSubscriptionStatus: 'Unsubscribed' } });
});

t.test('resolve: tokens expire after the configured time', async (t) => {
  let now = new Date('2025-06-01T12:00:00Z');
  const h = await startHarness(t, { now: () => now, purchaseTokenTtlMs: 60 * 60 * 1000 });
  const bought = await h.http.purchase({ planId: 'basic' });
  t.equal(bought.tokenExpiresAt, '2025-06-01T13:00:00.000Z');
  now = new Date('2025-06-01T12:59:59Z');
  t.equal((await h.http.api('POST', '/saas/subscriptions/resolve', { headers: { 'x-ms-marketplace-token': bought.token } })).status, 200);
  now = new Date('2025-06-01T13:00:00Z');
  msError(t, await h.http.api('POST', '/saas/subscriptions/resolve', { headers: { 'x-ms-marketplace-token': bought.token } }), 400, 'TokenExpired');
  const fresh = await h.http.raw('POST', `/emulator/subscriptions/${bought.subscriptionId}/landing-token`);
  t.equal(fresh.status, 201);
  const token = (fresh.body as { token: string }).token;
  t.equal((await h.http.api('POST', '/saas/subscriptions/resolve', { headers: { 'x-ms-marketplace-token': token } })).status, 200, 'a fresh token resolves');
});

t.test('activate: 200 with an empty body, once; errors for mismatches and unknown ids', async (t) => {
  const h = await startHarness(t);
  const bought = await h.http.purchase({ planId: 'premium', quantity: 8 });
  const path = `/saas/subscriptions/${bought.subscriptionId}/activate`;
  msError(t, await h.http.api('POST', path, { body: { planId: 'basic' } }), 400, 'PlanMismatch');
  msError(t, await h.http.api('POST', path, { body: { planId: 'premium', quantity: 9 } }), 400, 'QuantityMismatch');
  msError(t, await h.http.api('POST', path, { body: { planId: 5 } }), 400, 'BadArgument');
  msError(t, await h.http.api('POST', path, { body: [1] }), 400, 'BadArgument');
  msError(
    t,
    await h.http.raw('POST', `/api${path}?api-version=${API_VERSION}`, {
      headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
      rawBody: '{"planId":',
    }),
    400,
    'BadArgument',
  );
  const ok = await h.http.api('POST', path, { body: { planId: 'premium', quantity: 8 } });
  t.equal(ok.status, 200);
  t.equal(ok.text, '', 'no body');
  conforms(t, 'FulfillmentOperations_ActivateSubscription', ok);
  msError(t, await h.http.api('POST', path, { body: { planId: 'premium' } }), 400, 'AlreadyActivated');

  const other = await h.http.purchase({ planId: 'basic' });
  const bare = await h.http.raw('POST', `/api/saas/subscriptions/${other.subscriptionId}/activate?api-version=${API_VERSION}`, {
    headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
  });
  t.equal(bare.status, 200, 'an empty body with content-type: application/json is accepted (2023 docs: no body)');

  msError(t, await h.http.api('POST', '/saas/subscriptions/00000000-0000-4000-8000-000000000000/activate', { body: { planId: 'x' } }), 404);
  const gone = await h.http.purchase({ planId: 'basic' });
  await h.http.act(gone.subscriptionId, 'unsubscribe');
  msError(t, await h.http.api('POST', `/saas/subscriptions/${gone.subscriptionId}/activate`, { body: { planId: 'basic' } }), 404);

  const got = await h.http.api('GET', `/saas/subscriptions/${bought.subscriptionId}`);
  t.match(got.body, { saasSubscriptionStatus: 'Subscribed', term: { termUnit: 'P1Y', startDate: String, endDate: String } });
});

t.test('list subscriptions: empty body when there are none, then pages of the configured size via @nextLink', async (t) => {
  const h = await startHarness(t, { pageSize: 2 });
  const empty = await h.http.api('GET', '/saas/subscriptions/');
  t.equal(empty.status, 200);
  t.equal(empty.text, '', 'no subscriptions: an empty body, as Microsoft sends');
  conforms(t, 'FulfillmentOperations_ListSubscriptions', empty);

  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await h.http.purchase({ planId: 'basic' })).subscriptionId);
  const seen: string[] = [];
  let next: string | undefined = `${h.emulator.apiBaseUrl}/saas/subscriptions/?api-version=${API_VERSION}`;
  let pages = 0;
  while (next) {
    const res = await fetch(next, { headers: { authorization: 'Bearer x' } });
    const body = (await res.json()) as { subscriptions: { id: string }[]; '@nextLink'?: string };
    t.equal(res.status, 200);
    conforms(t, 'FulfillmentOperations_ListSubscriptions', { status: res.status, headers: res.headers, text: '', body });
    t.ok(body.subscriptions.length <= 2, 'page size respected');
    seen.push(...body.subscriptions.map((s) => s.id));
    next = body['@nextLink'];
    if (next) {
      const url = new URL(next);
      t.equal(url.searchParams.get('api-version'), API_VERSION, '@nextLink carries api-version');
      t.ok(url.searchParams.get('continuationToken'), '@nextLink carries continuationToken');
    }
    pages++;
  }
  t.equal(pages, 3);
  t.same(seen, ids, 'every subscription once, in purchase order');

  const first = await h.http.api('GET', '/saas/subscriptions');
  const token = new URL((first.body as { '@nextLink': string })['@nextLink']).searchParams.get('continuationToken') ?? '';
  const second = await h.http.api('GET', '/saas/subscriptions', { query: { continuationToken: token } });
  t.same((second.body as { subscriptions: { id: string }[] }).subscriptions.map((s) => s.id), ids.slice(2, 4), 'continuationToken passed by hand');
  msError(t, await h.http.api('GET', '/saas/subscriptions', { query: { continuationToken: 'bogus' } }), 400);
});

t.test('list subscriptions: page size defaults to 100', async (t) => {
  const h = await startHarness(t);
  for (let i = 0; i < 101; i++) h.emulator.marketplace.purchase({ planId: 'basic' });
  const page = (await h.http.api('GET', '/saas/subscriptions')).body as { subscriptions: unknown[]; '@nextLink'?: string };
  t.equal(page.subscriptions.length, 100);
  t.ok(page['@nextLink']);
  const last = (await fetch(page['@nextLink'] ?? '', { headers: { authorization: 'Bearer x' } }).then((r) => r.json())) as {
    subscriptions: unknown[];
    '@nextLink'?: string;
  };
  t.equal(last.subscriptions.length, 1);
  t.equal(last['@nextLink'], undefined, 'no @nextLink on the last page');
});

t.test('get subscription: every field of the spec, CSP and flags included', async (t) => {
  const h = await startHarness(t);
  const bought = await h.http.purchase({
    planId: 'standard',
    quantity: 4,
    freeTrial: true,
    isTest: true,
    csp: true,
    sandboxType: 'Csp',
    sessionMode: 'DryRun',
    autoRenew: false,
    beneficiary: { emailId: 'jane@fabrikam.example', tenantId: '2f3e4d5c-6b7a-4981-8a7b-6c5d4e3f2a1b' },
  });
  const res = await h.http.api('GET', `/saas/subscriptions/${bought.subscriptionId}`);
  t.equal(res.status, 200);
  conforms(t, 'FulfillmentOperations_GetSubscription', res);
  t.same(validateComponent('Subscription', res.body).errors, []);
  const sub = res.body as Record<string, unknown> & { purchaser: { tenantId: string }; beneficiary: { tenantId: string } };
  t.match(sub, {
    id: bought.subscriptionId,
    publisherId: 'contoso',
    offerId: 'ledger-saas',
    planId: 'standard',
    quantity: 4,
    saasSubscriptionStatus: 'PendingFulfillmentStart',
    isFreeTrial: true,
    isTest: true,
    autoRenew: false,
    allowedCustomerOperations: ['Read'],
    sandboxType: 'Csp',
    sessionMode: 'DryRun',
    beneficiary: { emailId: 'jane@fabrikam.example', tenantId: '2f3e4d5c-6b7a-4981-8a7b-6c5d4e3f2a1b' },
  });
  t.not(sub.purchaser.tenantId, sub.beneficiary.tenantId);
  msError(t, await h.http.api('GET', '/saas/subscriptions/00000000-0000-4000-8000-000000000000'), 404, 'SubscriptionNotFound');
});

t.test('listAvailablePlans: from the catalogue, with seat limits; planId filter; 404 and 403', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h, { planId: 'enterprise-private', quantity: 20 });
  const res = await h.http.api('GET', `/saas/subscriptions/${id}/listAvailablePlans`);
  t.equal(res.status, 200);
  conforms(t, 'FulfillmentOperations_ListAvailablePlans', res);
  const plans = (res.body as { plans: { planId: string; minQuantity?: number; maxQuantity?: number }[] }).plans;
  t.same(plans.map((p) => p.planId), ['basic', 'standard', 'premium', 'enterprise-private', 'instant']);
  t.match(plans.find((p) => p.planId === 'premium'), { minQuantity: 5, maxQuantity: 500, isPricePerSeat: true });
  t.match(plans.find((p) => p.planId === 'basic'), {
    planComponents: { meteringDimensions: [{ id: 'api-calls' }], recurrentBillingTerms: [{ termUnit: 'P1M', meteredQuantityIncluded: [{ dimensionId: 'api-calls', units: '100' }] }] },
  });

  const filtered = await h.http.api('GET', `/saas/subscriptions/${id}/listAvailablePlans`, { query: { planId: 'enterprise-private' } });
  conforms(t, 'FulfillmentOperations_ListAvailablePlans', filtered);
  t.match(filtered.body, { plans: [{ planId: 'enterprise-private', sourceOffers: [{ externalId: '6c2f7a9e-2f4b-4b8e-9a51-1d0c6b1e7f10' }] }] });
  t.same(
    (await h.http.api('GET', `/saas/subscriptions/${id}/listAvailablePlans`, { query: { planId: 'nope' } })).body,
    { plans: [] },
    'an invalid planId gives an empty plan list',
  );
  msError(t, await h.http.api('GET', '/saas/subscriptions/00000000-0000-4000-8000-000000000000/listAvailablePlans'), 404);
  await h.http.act(id, 'unsubscribe');
  msError(t, await h.http.api('GET', `/saas/subscriptions/${id}/listAvailablePlans`), 403);
});

t.test('change plan: 202 + Operation-Location, NotStarted → InProgress → webhook (Partner) → PATCH Success → Succeeded', async (t) => {
  const h = await startHarness(t, { operationDelayMs: 1000, ackWindowMs: 5000 });
  const id = await subscribed(h);
  const res = await h.http.api('PATCH', `/saas/subscriptions/${id}`, { body: { planId: 'premium' } });
  t.equal(res.status, 202);
  t.equal(res.text, '');
  conforms(t, 'FulfillmentOperations_UpdateSubscription', res);
  const location = res.headers.get('operation-location') ?? '';
  t.match(location, new RegExp(`^${h.emulator.apiBaseUrl}/saas/subscriptions/${id}/operations/[0-9a-f-]{36}\\?api-version=${API_VERSION}$`));
  const opId = operationIdOf(location);

  const polled = await fetch(location, { headers: { authorization: 'Bearer x' } });
  const first = (await polled.json()) as Record<string, unknown>;
  conforms(t, 'SubscriptionOperations_GetOperationStatus', { status: polled.status, headers: polled.headers, text: '', body: first });
  t.match(first, { id: opId, action: 'ChangePlan', status: 'NotStarted', planId: 'premium', subscriptionId: id });

  const [hook] = await h.receiver.waitFor((ds) => ds.length === 1);
  t.match(hook?.body, { id: opId, action: 'ChangePlan', status: 'InProgress', operationRequestSource: 'Partner', planId: 'premium' });
  t.match(hook?.body.subscription, { planId: 'standard' }, 'the webhook shows the subscription before the change');
  t.match(await operation(h, id, opId), { status: 'InProgress' });
  t.equal(((await h.http.api('GET', `/saas/subscriptions/${id}`)).body as { planId: string }).planId, 'standard', 'not applied yet');

  const ack = await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${opId}`, { body: { status: 'Success', planId: 'premium' } });
  t.equal(ack.status, 200);
  conforms(t, 'SubscriptionOperations_UpdateOperationStatus', ack);
  t.match(await operation(h, id, opId), { status: 'Succeeded' });
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}`)).body, { planId: 'premium', quantity: 5, term: { termUnit: 'P1Y' } });
  t.equal((await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${opId}`, { body: { status: 'Success' } })).status, 200, 'repeating Success is harmless');
  msError(t, await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${opId}`, { body: { status: 'Failure' } }), 409);
});

t.test('change quantity: 202, PATCH Failure → Failed and unchanged', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 5000 });
  const id = await subscribed(h);
  const res = await h.http.api('PATCH', `/saas/subscriptions/${id}`, { body: { quantity: 12 } });
  t.equal(res.status, 202);
  const opId = operationIdOf(res.headers.get('operation-location'));
  const [hook] = await h.receiver.waitFor((ds) => ds.length === 1);
  t.match(hook?.body, { action: 'ChangeQuantity', quantity: 12, operationRequestSource: 'Partner' });
  t.equal((await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${opId}`, { body: { status: 'Failure' } })).status, 200);
  t.match(await operation(h, id, opId), { status: 'Failed', quantity: 12 });
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}`)).body, { quantity: 5 });
});

t.test('PATCH subscription: validation errors are 400s', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  const path = `/saas/subscriptions/${id}`;
  msError(t, await h.http.api('PATCH', path, { body: {} }), 400, 'PlanOrQuantity');
  msError(t, await h.http.api('PATCH', path, { body: { planId: 'premium', quantity: 6 } }), 400, 'PlanOrQuantity');
  msError(t, await h.http.api('PATCH', path, { body: { planId: 'standard' } }), 400, 'SamePlan');
  msError(t, await h.http.api('PATCH', path, { body: { planId: 'legacy' } }), 400, 'PlanNotAvailable');
  msError(t, await h.http.api('PATCH', path, { body: { quantity: 5 } }), 400, 'SameQuantity');
  msError(t, await h.http.api('PATCH', path, { body: { quantity: 51 } }), 400, 'QuantityOutOfRange');
  msError(t, await h.http.api('PATCH', path, { body: { quantity: 'many' } }), 400, 'BadArgument');
  msError(t, await h.http.api('PATCH', '/saas/subscriptions/00000000-0000-4000-8000-000000000000', { body: { quantity: 2 } }), 404);
  const pending = await h.http.purchase({ planId: 'standard' });
  msError(t, await h.http.api('PATCH', `/saas/subscriptions/${pending.subscriptionId}`, { body: { quantity: 2 } }), 400, 'InvalidStatus');
  const csp = await subscribed(h, { planId: 'standard', csp: true });
  msError(t, await h.http.api('PATCH', `/saas/subscriptions/${csp}`, { body: { quantity: 2 } }), 400, 'UpdateNotAllowed');
  msError(t, await h.http.api('DELETE', `/saas/subscriptions/${csp}`), 400, 'DeleteNotAllowed');
});

t.test('the lock: while an operation is pending, PATCH and DELETE get 409; it lifts when the operation completes', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 5000 });
  const id = await subscribed(h);
  const res = await h.http.api('PATCH', `/saas/subscriptions/${id}`, { body: { quantity: 7 } });
  const opId = operationIdOf(res.headers.get('operation-location'));
  msError(t, await h.http.api('PATCH', `/saas/subscriptions/${id}`, { body: { quantity: 8 } }), 409, 'SubscriptionLocked');
  msError(t, await h.http.api('DELETE', `/saas/subscriptions/${id}`), 409, 'SubscriptionLocked');
  t.equal((await h.http.act(id, 'change-plan', { planId: 'premium' })).status, 409, 'customer actions wait too');

  const pending = await h.http.api('GET', `/saas/subscriptions/${id}/operations`);
  t.equal(pending.status, 200);
  conforms(t, 'SubscriptionOperations_ListOperations', pending);
  t.match(pending.body, { operations: [{ id: opId, action: 'ChangeQuantity' }] });

  await h.receiver.waitFor((ds) => ds.length === 1);
  await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${opId}`, { body: { status: 'Success' } });
  t.same((await h.http.api('GET', `/saas/subscriptions/${id}/operations`)).body, {}, 'nothing pending: empty JSON');
  t.equal((await h.http.api('PATCH', `/saas/subscriptions/${id}`, { body: { quantity: 8 } })).status, 202, 'unlocked');
});

t.test('DELETE: 202 + Operation-Location, then Unsubscribed and an Unsubscribe webhook (Partner)', async (t) => {
  const h = await startHarness(t, { operationDelayMs: 1000 });
  const id = await subscribed(h);
  const res = await h.http.api('DELETE', `/saas/subscriptions/${id}`);
  t.equal(res.status, 202);
  conforms(t, 'FulfillmentOperations_DeleteSubscription', res);
  const opId = operationIdOf(res.headers.get('operation-location'));
  t.match(await operation(h, id, opId), { action: 'Unsubscribe', status: 'NotStarted' });
  const [hook] = await h.receiver.waitFor((ds) => ds.length === 1);
  t.match(hook?.body, { id: opId, action: 'Unsubscribe', status: 'Succeeded', operationRequestSource: 'Partner', subscription: { saasSubscriptionStatus: 'Unsubscribed' } });
  t.match(await operation(h, id, opId), { status: 'Succeeded' });
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}`)).body, { saasSubscriptionStatus: 'Unsubscribed' });
  msError(t, await h.http.api('DELETE', `/saas/subscriptions/${id}`), 400, 'InvalidStatus');
});

t.test('operations: get, 404s, and PATCH status validation', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 5000 });
  const id = await subscribed(h);
  const other = await subscribed(h);
  const op = ((await h.http.act(id, 'change-quantity', { quantity: 9 })).body as { operation: { id: string } }).operation;
  const got = await h.http.api('GET', `/saas/subscriptions/${id}/operations/${op.id}`);
  conforms(t, 'SubscriptionOperations_GetOperationStatus', got);
  t.same(validateComponent('SaaSOperation', got.body).errors, []);
  msError(t, await h.http.api('GET', `/saas/subscriptions/${other}/operations/${op.id}`), 404, 'OperationNotFound');
  msError(t, await h.http.api('GET', `/saas/subscriptions/${id}/operations/00000000-0000-4000-8000-000000000000`), 404);
  msError(t, await h.http.api('GET', '/saas/subscriptions/00000000-0000-4000-8000-000000000000/operations'), 404);
  const path = `/saas/subscriptions/${id}/operations/${op.id}`;
  msError(t, await h.http.api('PATCH', path, { body: { status: 'Succeeded' } }), 400, 'BadArgument');
  msError(t, await h.http.api('PATCH', path, { body: {} }), 400, 'BadArgument');
  msError(t, await h.http.api('PATCH', path, { body: { status: 'Success', quantity: 'x' } }), 400, 'BadArgument');
  msError(t, await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/00000000-0000-4000-8000-000000000000`, { body: { status: 'Success' } }), 404);
  t.equal((await h.http.api('PATCH', path, { body: { status: 'Success' } })).status, 200);
});

t.test('a publisher change whose PATCH arrives late is auto-accepted; polling sees it complete', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 150 });
  const id = await subscribed(h);
  const res = await h.http.api('PATCH', `/saas/subscriptions/${id}`, { body: { planId: 'basic' } });
  const opId = operationIdOf(res.headers.get('operation-location'));
  const done = await waitFor(async () => {
    const op = await operation(h, id, opId);
    return op.status === 'Succeeded' ? op : undefined;
  });
  t.match(done, { action: 'ChangePlan', planId: 'basic' });
  const sub = (await h.http.api('GET', `/saas/subscriptions/${id}`)).body as Record<string, unknown>;
  t.equal(sub.planId, 'basic');
  t.notOk('quantity' in sub, 'a flat plan has no quantity');
  await sleep(10);
  msError(t, await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${opId}`, { body: { status: 'Failure' } }), 409, 'OperationCompleted');
});
