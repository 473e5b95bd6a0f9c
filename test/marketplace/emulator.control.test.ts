/**
 * The emulator's own API (`/emulator/...`): purchases of every kind, customer actions, views,
 * settings; bad input gets a clear 4xx with a problem+json body. Also the token endpoint.
 */
import t from 'tap';
import type { Test } from 'tap';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { DEFAULT_CATALOGUE } from '../../src/emulator/catalogue.js';
import { createEmulator } from '../../src/emulator/emulator.js';
import { MARKETPLACE_APP_ID, TENANT_ID, startHarness, subscribed, waitFor } from './emulator.helpers.js';
import type { Response } from './emulator.helpers.js';

function problem(t: Test, res: Response, status: number, code: string | RegExp, detail?: RegExp): void {
  t.equal(res.status, status, `status ${status}`);
  t.match(res.headers.get('content-type'), /^application\/problem\+json/, 'problem+json');
  t.match(res.body, { type: String, title: String, status, code, detail: detail ?? String }, `problem ${String(code)}`);
}

t.test('GET /emulator describes the configuration; /emulator/catalogue the plans', async (t) => {
  const h = await startHarness(t);
  const info = await h.http.raw('GET', '/emulator');
  t.equal(info.status, 200);
  t.match(info.body, {
    url: h.emulator.url,
    apiBaseUrl: `${h.emulator.url}/api`,
    apiVersion: '2018-08-31',
    publisherTenantId: TENANT_ID,
    webhookUrl: h.receiver.url,
    openIdConfigurationUrl: h.emulator.openIdConfigurationUrl,
    timings: { ackWindowMs: 300 },
  });
  t.same((await h.http.raw('GET', '/emulator/catalogue')).body, DEFAULT_CATALOGUE);
});

t.test('purchases: plan, quantity, trial, test, CSP, auto-activation; token and landing URL', async (t) => {
  const h = await startHarness(t, { landingPageUrl: 'https://isv.example/signup?src=marketplace' });
  const bought = await h.http.purchase({ planId: 'standard', quantity: 12, freeTrial: true, isTest: true, subscriptionName: 'Trial' });
  t.match(bought, { subscriptionId: /^[0-9a-f-]{36}$/, token: /[+/]/, tokenExpiresAt: String });
  const landing = new URL(bought.landingPageUrl);
  t.equal(landing.origin + landing.pathname, 'https://isv.example/signup');
  t.equal(landing.searchParams.get('src'), 'marketplace', 'keeps the configured query');
  t.equal(landing.searchParams.get('token'), bought.token);
  t.match(bought.subscription, { quantity: 12, isFreeTrial: true, isTest: true, name: 'Trial', saasSubscriptionStatus: 'PendingFulfillmentStart' });

  const csp = await h.http.purchase({
    planId: 'basic',
    csp: true,
    purchaser: { emailId: 'admin@reseller.example', tenantId: '7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d' },
  });
  t.match(csp.subscription, {
    allowedCustomerOperations: ['Read'],
    purchaser: { emailId: 'admin@reseller.example', tenantId: '7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d' },
  });

  const auto = await h.http.purchase({ planId: 'basic', autoActivate: true });
  t.match(auto, { subscription: { saasSubscriptionStatus: 'Subscribed' }, operation: { action: 'Subscribe', status: 'Succeeded' } });
  await h.receiver.waitFor((ds) => ds.some((d) => d.body.action === 'Subscribe'));
});

t.test('purchases: bad input is a 400 problem+json that says what is wrong', async (t) => {
  const h = await startHarness(t);
  problem(t, await h.http.raw('POST', '/emulator/purchases', { body: {} }), 400, 'ValidationFailed', /planId/);
  const res = await h.http.raw('POST', '/emulator/purchases', { body: { planId: 'basic', colour: 'blue' } });
  problem(t, res, 400, 'ValidationFailed', /additional properties: colour/);
  t.match(res.body, { errors: [{ in: 'body', path: '/', message: /colour/ }] });
  problem(t, await h.http.raw('POST', '/emulator/purchases', { body: { planId: 'standard', quantity: 0 } }), 400, 'ValidationFailed', /quantity/);
  problem(t, await h.http.raw('POST', '/emulator/purchases', { body: { planId: 'standard', quantity: '5' } }), 400, 'ValidationFailed', /quantity/);
  problem(t, await h.http.raw('POST', '/emulator/purchases', { body: { planId: 'basic', beneficiary: { tenantId: 'contoso' } } }), 400, 'ValidationFailed', /tenantId/);
  problem(t, await h.http.raw('POST', '/emulator/purchases', { body: { planId: 'basic', sandboxType: 'Sandbox' } }), 400, 'ValidationFailed', /sandboxType must be one of: "None", "Csp"/);
  problem(t, await h.http.raw('POST', '/emulator/purchases', { body: { planId: 'gold' } }), 400, 'UnknownPlan', /gold/);
  problem(t, await h.http.raw('POST', '/emulator/purchases', { body: { planId: 'legacy' } }), 400, 'PlanStopSold');
  problem(t, await h.http.raw('POST', '/emulator/purchases', { body: { planId: 'premium', quantity: 2 } }), 400, 'QuantityOutOfRange', /5–500/);
  problem(t, await h.http.raw('POST', '/emulator/purchases', { body: { planId: 'basic', quantity: 2 } }), 400, 'PlanNotPerSeat');
  problem(t, await h.http.raw('POST', '/emulator/purchases', { body: { planId: 'basic', freeTrial: true } }), 400, 'NoFreeTrial');
  problem(
    t,
    await h.http.raw('POST', '/emulator/purchases', { headers: { 'content-type': 'application/json' }, rawBody: '{"planId": "basic",' }),
    400,
    'InvalidJson',
  );
  problem(t, await h.http.raw('POST', '/emulator/purchases', { headers: { 'content-type': 'text/csv' }, rawBody: 'planId\nbasic' }), 415, 'UnsupportedMediaType', /application\/json/);
  problem(t, await h.http.raw('GET', '/emulator/nothing'), 404, 'RouteNotFound');
});

t.test('customer actions: 202 with the operation; unknown ids 404, wrong states and locks 409, bad bodies 400', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 5000 });
  const id = await subscribed(h);
  const res = await h.http.act(id, 'change-quantity', { quantity: 8 });
  t.equal(res.status, 202);
  t.match(res.body, { operation: { action: 'ChangeQuantity', status: 'InProgress', quantity: 8 }, source: 'Azure' });
  problem(t, await h.http.act(id, 'suspend'), 409, 'SubscriptionLocked', /pending operation/);
  problem(t, await h.http.act('00000000-0000-4000-8000-000000000000', 'suspend'), 404, 'SubscriptionNotFound');
  problem(t, await h.http.act(id, 'change-plan', {}), 400, 'ValidationFailed', /planId/);
  problem(t, await h.http.act(id, 'change-quantity', { quantity: 'ten' }), 400, 'ValidationFailed', /quantity/);
  problem(t, await h.http.act(id, 'suspend', { now: true }), 400, 'ValidationFailed', /now/);
  t.equal((await h.http.act(id, 'renew', {})).status, 409, 'an empty object is fine as a body (then locked)');

  const other = await subscribed(h);
  problem(t, await h.http.act(other, 'reinstate'), 409, 'InvalidStatus', /not Suspended/);
  problem(t, await h.http.act(other, 'change-plan', { planId: 'standard' }), 400, 'SamePlan');
  problem(t, await h.http.act(other, 'change-quantity', { quantity: 500 }), 400, 'QuantityOutOfRange');
  const off = await h.http.raw('PUT', `/emulator/subscriptions/${other}/auto-renew`, { body: { autoRenew: false } });
  t.equal(off.status, 200);
  t.match(off.body, { autoRenew: false });
  problem(t, await h.http.act(other, 'renew'), 409, 'AutoRenewOff');
  problem(t, await h.http.raw('PUT', `/emulator/subscriptions/${other}/auto-renew`, { body: { autoRenew: 'no' } }), 400, 'ValidationFailed');
  await h.http.act(other, 'unsubscribe');
  problem(t, await h.http.act(other, 'unsubscribe'), 409, 'InvalidStatus');
});

t.test('views: a subscription with all its operations and deliveries; deliveries by filter', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  await h.http.act(id, 'suspend');
  await waitFor(() => h.emulator.deliveries({ subscriptionId: id })[0]?.state === 'delivered');
  const view = await h.http.raw('GET', `/emulator/subscriptions/${id}`);
  t.equal(view.status, 200);
  t.match(view.body, {
    subscription: { id, saasSubscriptionStatus: 'Suspended' },
    locked: false,
    operations: [{ action: 'Suspend', status: 'Succeeded', operationRequestSource: 'Azure' }],
    deliveries: [{ action: 'Suspend', state: 'delivered', attempts: [{ statusCode: 200 }] }],
  });
  const byOp = await h.http.raw('GET', '/emulator/deliveries', { headers: {} });
  t.equal((byOp.body as { deliveries: unknown[] }).deliveries.length, 1);
  problem(t, await h.http.raw('GET', '/emulator/deliveries?colour=blue'), 400, 'ValidationFailed');
  problem(t, await h.http.raw('GET', '/emulator/subscriptions/00000000-0000-4000-8000-000000000000'), 404, 'SubscriptionNotFound');
});

t.test('faults and settings: strict schemas', async (t) => {
  const h = await startHarness(t);
  problem(t, await h.http.raw('PUT', '/emulator/faults', { body: { webhook: { duplicate: { copies: 0 } } } }), 400, 'ValidationFailed', /copies/);
  problem(t, await h.http.raw('PUT', '/emulator/faults', { body: { api: { throttle: { operations: ['getEverything'] } } } }), 400, 'ValidationFailed');
  problem(t, await h.http.raw('PUT', '/emulator/faults', { body: { webhook: { token: 'forged' } } }), 400, 'ValidationFailed', /token/);
  problem(t, await h.http.raw('PUT', '/emulator/faults', { body: { network: 'down' } }), 400, 'ValidationFailed', /network/);
  const ok = await h.http.raw('PUT', '/emulator/faults', { body: { api: { serverError: { times: 3 } } } });
  t.match(ok.body, { faults: { api: { serverError: { times: 3 } } }, fired: { serverError: 0 } });
  problem(t, await h.http.raw('PUT', '/emulator/settings', { body: { webhookUrl: 'not a url' } }), 400, 'ValidationFailed', /webhookUrl/);
  const landing = await h.http.raw('PUT', '/emulator/settings', { body: { landingPageUrl: 'https://isv.example/landing' } });
  t.match(landing.body, { landingPageUrl: 'https://isv.example/landing' });
  t.match((await h.http.purchase({ planId: 'basic' })).landingPageUrl, /^https:\/\/isv\.example\/landing\?token=/);
});

t.test('the stand-in landing page echoes the token it was given', async (t) => {
  const h = await startHarness(t);
  const bought = await h.http.purchase({ planId: 'basic' });
  t.match(bought.landingPageUrl, new RegExp(`^${h.emulator.url}/emulator/landing\\?token=`));
  const page = await fetch(bought.landingPageUrl);
  t.match(await page.json(), { token: bought.token });
});

t.test('token endpoint: client credentials give an app token for the Fulfillment API', async (t) => {
  const h = await startHarness(t);
  const form = (fields: Record<string, string>) => ({
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
  const v2 = await fetch(
    `${h.emulator.url}/${TENANT_ID}/oauth2/v2.0/token`,
    form({ grant_type: 'client_credentials', client_id: 'my-app', client_secret: 's', scope: `${MARKETPLACE_APP_ID}/.default` }),
  );
  t.equal(v2.status, 200);
  const body = (await v2.json()) as { access_token: string; token_type: string; expires_in: number };
  t.match(body, { token_type: 'Bearer', expires_in: 3600 });
  const { payload } = await jwtVerify(body.access_token, createRemoteJWKSet(new URL(h.emulator.jwksUrl)), { audience: MARKETPLACE_APP_ID });
  t.match(payload, { azp: 'my-app', tid: TENANT_ID, ver: '2.0' });
  t.equal((await h.http.api('GET', '/saas/subscriptions', { headers: { authorization: `Bearer ${body.access_token}` } })).status, 200);

  const v1 = await fetch(
    `${h.emulator.url}/${TENANT_ID}/oauth2/token`,
    form({ grant_type: 'client_credentials', client_id: 'my-app', client_secret: 's', resource: MARKETPLACE_APP_ID }),
  );
  const v1body = (await v1.json()) as { access_token: string; expires_in: string; resource: string };
  t.match(v1body, { expires_in: '3600', resource: MARKETPLACE_APP_ID });
  t.match(decodeJwt(v1body.access_token), { appid: 'my-app', ver: '1.0' });

  const bad = await fetch(`${h.emulator.url}/${TENANT_ID}/oauth2/v2.0/token`, form({ grant_type: 'password', client_id: 'x' }));
  t.equal(bad.status, 400);
  t.match(await bad.json(), { error: 'unsupported_grant_type' });
  const noSecret = await fetch(`${h.emulator.url}/${TENANT_ID}/oauth2/v2.0/token`, form({ grant_type: 'client_credentials', client_id: 'x' }));
  t.equal(noSecret.status, 401);
  const scope = await fetch(
    `${h.emulator.url}/${TENANT_ID}/oauth2/v2.0/token`,
    form({ grant_type: 'client_credentials', client_id: 'x', client_secret: 's', scope: 'https://graph.microsoft.com/.default' }),
  );
  t.match(await scope.json(), { error: 'invalid_scope' });
});

t.test('in-process handles: purchase and act without HTTP; createEmulator + inject without listening', async (t) => {
  const h = await startHarness(t);
  const { subscription, landingPageUrl } = h.emulator.marketplace.purchase({ planId: 'premium', quantity: 6 });
  t.match(landingPageUrl, /token=/);
  h.emulator.marketplace.state.activate(subscription.id, {}, new Date());
  const op = h.emulator.marketplace.suspend(subscription.id);
  await h.receiver.waitFor((ds) => ds.some((d) => d.body.id === op.id));
  t.pass('webhook sent for an in-process action');

  const emulator = await createEmulator({ requireAuth: false });
  t.teardown(() => emulator.close());
  const res = await emulator.app.inject({ method: 'POST', url: '/emulator/purchases', payload: { planId: 'basic' } });
  t.equal(res.statusCode, 201);
  const list = await emulator.app.inject({ method: 'GET', url: '/api/saas/subscriptions?api-version=2018-08-31' });
  t.equal(list.statusCode, 200, 'no bearer needed when requireAuth is false');
  t.equal((list.json() as { subscriptions: unknown[] }).subscriptions.length, 1);
});
