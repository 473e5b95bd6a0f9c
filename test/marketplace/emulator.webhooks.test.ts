/**
 * Webhooks from the emulator to a real receiver on 127.0.0.1: every action's payload, the
 * acknowledgement window (Success / Failure / 4xx / silence), redelivery with backoff, and the
 * bearer JWT verified with jose against the emulator's published OpenID metadata and JWKS.
 */
import { Writable } from 'node:stream';
import t from 'tap';
import type { Test } from 'tap';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { pino } from 'pino';
import { parseWebhookPayload } from '../../src/marketplace/schemas.js';
import { validateComponent } from '../support/openapi.js';
import { APP_ID, MARKETPLACE_APP_ID, TENANT_ID, sleep, startHarness, subscribed, waitFor } from './emulator.helpers.js';
import type { Delivery, Harness } from './emulator.helpers.js';

const PAYLOAD_FIELDS = [
  'id',
  'activityId',
  'publisherId',
  'offerId',
  'planId',
  'subscriptionId',
  'timeStamp',
  'action',
  'status',
  'operationRequestSource',
  'subscription',
  'purchaseToken',
];

async function opStatus(h: Harness, subscriptionId: string, operationId: string): Promise<Record<string, unknown>> {
  return (await h.http.api('GET', `/saas/subscriptions/${subscriptionId}/operations/${operationId}`)).body as Record<string, unknown>;
}

async function subscription(h: Harness, id: string): Promise<Record<string, unknown>> {
  return (await h.http.api('GET', `/saas/subscriptions/${id}`)).body as Record<string, unknown>;
}

function checkPayload(t: Test, d: Delivery | undefined, expected: Record<string, unknown>): void {
  if (!d) {
    t.fail('no delivery');
    return;
  }
  for (const field of PAYLOAD_FIELDS) t.ok(field in d.body, `payload has ${field}`);
  t.equal(d.body.purchaseToken, null);
  t.notOk('operationRequestedSource' in d.body, "not the old emulator's misspelling");
  t.match(d.body, expected);
  t.same(validateComponent('Subscription', d.body.subscription).errors, [], 'payload.subscription matches the spec');
  t.doesNotThrow(() => parseWebhookPayload(d.body), "our client's tolerant parser reads it");
  t.equal(d.headers['content-type'], 'application/json');
  t.match(d.headers.authorization, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
}

t.test('Subscribe: an auto-activated purchase is Subscribed at once and the publisher is told', async (t) => {
  const h = await startHarness(t);
  const bought = await h.http.purchase({ planId: 'instant' });
  t.match(bought.subscription, { saasSubscriptionStatus: 'Subscribed' });
  const [d] = await h.receiver.waitFor((ds) => ds.length === 1);
  checkPayload(t, d, {
    id: (bought.operation as { id: string }).id,
    action: 'Subscribe',
    status: 'Succeeded',
    operationRequestSource: 'Azure',
    subscriptionId: bought.subscriptionId,
    planId: 'instant',
    subscription: { saasSubscriptionStatus: 'Subscribed' },
  });
  const resolved = await h.http.api('POST', '/saas/subscriptions/resolve', { headers: { 'x-ms-marketplace-token': bought.token } });
  t.match(resolved.body, { subscription: { saasSubscriptionStatus: 'Subscribed' } }, 'Resolve sees it Subscribed on the first visit');
  t.equal((await h.http.api('POST', `/saas/subscriptions/${bought.subscriptionId}/activate`, { body: { planId: 'instant' } })).status, 400, 'no Activate needed (or allowed)');
});

t.test('ChangePlan from the customer: InProgress webhook with the new plan; PATCH Success within the window applies it', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 2000 });
  const id = await subscribed(h);
  const res = await h.http.act(id, 'change-plan', { planId: 'premium' });
  t.equal(res.status, 202);
  const opId = (res.body as { operation: { id: string } }).operation.id;
  const [d] = await h.receiver.waitFor((ds) => ds.length === 1);
  checkPayload(t, d, {
    id: opId,
    action: 'ChangePlan',
    status: 'InProgress',
    operationRequestSource: 'Azure',
    planId: 'premium',
    quantity: 5,
    subscription: { planId: 'standard', saasSubscriptionStatus: 'Subscribed' },
  });
  t.match(await opStatus(h, id, opId), { id: opId, action: 'ChangePlan', status: 'InProgress', planId: 'premium' }, 'Get operation validates the webhook');
  t.equal((await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${opId}`, { body: { status: 'Success' } })).status, 200);
  t.match(await opStatus(h, id, opId), { status: 'Succeeded' });
  t.match(await subscription(h, id), { planId: 'premium' });
});

t.test('ChangeQuantity: PATCH Failure within the window refuses it', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 2000 });
  const id = await subscribed(h);
  const opId = ((await h.http.act(id, 'change-quantity', { quantity: 20 })).body as { operation: { id: string } }).operation.id;
  const [d] = await h.receiver.waitFor((ds) => ds.length === 1);
  checkPayload(t, d, { action: 'ChangeQuantity', status: 'InProgress', quantity: 20, subscription: { quantity: 5 } });
  await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${opId}`, { body: { status: 'Failure' } });
  t.match(await opStatus(h, id, opId), { status: 'Failed' });
  t.match(await subscription(h, id), { quantity: 5 });

  // Then Microsoft reverts (docs/marketplace.md §14.9): a ChangeQuantity back to the quantity kept.
  const [, revert] = await h.receiver.waitFor((ds) => ds.length === 2);
  checkPayload(t, revert, { action: 'ChangeQuantity', status: 'Succeeded', quantity: 5, operationRequestSource: 'Azure', subscription: { quantity: 5 } });
  t.not(revert?.body.id, opId, 'an operation of its own');
  t.match(await opStatus(h, id, revert?.body.id ?? ''), { action: 'ChangeQuantity', status: 'Succeeded', quantity: 5 });
  const view = (await h.http.raw('GET', `/emulator/subscriptions/${id}`)).body as { operations: Record<string, unknown>[] };
  t.match(view.operations.at(-1), { id: revert?.body.id, revertOf: opId });
  t.notOk(h.emulator.state.isLocked(id), 'nothing left to acknowledge');
  t.equal((await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${revert?.body.id ?? ''}`, { body: { status: 'Success' } })).status, 200, 'a Success on it is harmless');
});

t.test('revert after a refused ChangePlan: the plan kept; with revertNotifications "all" a 4xx is followed by one too', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 2000, revertNotifications: 'all' });
  const id = await subscribed(h);
  const patched = ((await h.http.act(id, 'change-plan', { planId: 'premium' })).body as { operation: { id: string } }).operation.id;
  await h.receiver.waitFor((ds) => ds.length === 1);
  await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${patched}`, { body: { status: 'Failure' } });
  const [, revert] = await h.receiver.waitFor((ds) => ds.length === 2);
  checkPayload(t, revert, { action: 'ChangePlan', status: 'Succeeded', planId: 'standard', quantity: 5, subscription: { planId: 'standard' } });

  h.receiver.respond((d) => (d.body.status === 'InProgress' ? 400 : 200));
  const answered = ((await h.http.act(id, 'change-quantity', { quantity: 7 })).body as { operation: { id: string } }).operation.id;
  const ds = await h.receiver.waitFor((all) => all.length === 4);
  t.match(ds[2]?.body, { id: answered, quantity: 7, status: 'InProgress' });
  t.match(ds[3]?.body, { action: 'ChangeQuantity', status: 'Succeeded', quantity: 5 }, 'refused by a 4xx, then reverted');
  t.match(await opStatus(h, id, answered), { status: 'Failed' });
});

t.test('revertNotifications: a 4xx alone is not followed by a revert by default; "none" sends none at all', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 2000 });
  h.receiver.respond(() => 400);
  const id = await subscribed(h);
  await h.http.act(id, 'change-plan', { planId: 'premium' });
  await waitFor(() => h.emulator.deliveries({ subscriptionId: id })[0]?.state === 'rejected');
  t.equal(h.emulator.deliveries({ subscriptionId: id }).length, 1, 'no revert after a 4xx by default');

  const quiet = await startHarness(t, { ackWindowMs: 2000, revertNotifications: 'none' });
  const q = await subscribed(quiet);
  const opId = ((await quiet.http.act(q, 'change-quantity', { quantity: 9 })).body as { operation: { id: string } }).operation.id;
  await quiet.receiver.waitFor((all) => all.length === 1);
  await quiet.http.api('PATCH', `/saas/subscriptions/${q}/operations/${opId}`, { body: { status: 'Failure' } });
  t.equal(quiet.emulator.deliveries({ subscriptionId: q }).length, 1, 'no revert');
  t.match((await quiet.http.raw('GET', '/emulator')).body, { revertNotifications: 'none' });
});

t.test('a 4xx answer to ChangePlan/ChangeQuantity refuses the change and is not redelivered', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 2000 });
  h.receiver.respond(() => 400);
  const id = await subscribed(h);
  const opId = ((await h.http.act(id, 'change-plan', { planId: 'premium' })).body as { operation: { id: string } }).operation.id;
  await h.receiver.waitFor((ds) => ds.length === 1);
  const op = await waitFor(async () => {
    const o = await opStatus(h, id, opId);
    return o.status === 'Failed' ? o : undefined;
  });
  t.match(op, { status: 'Failed' });
  t.match(h.emulator.deliveries({ operationId: opId }), [{ state: 'rejected', attempts: [{ statusCode: 400 }] }]);
  await sleep(150);
  t.equal(h.receiver.deliveries.length, 1, 'no redelivery after a refusal');
  t.match(await subscription(h, id), { planId: 'standard' });
  t.notOk(h.emulator.state.isLocked(id), 'the lock lifts');
});

t.test('silence accepts the change when the window ends, not before', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 1000 });
  const id = await subscribed(h);
  const started = Date.now();
  const opId = ((await h.http.act(id, 'change-quantity', { quantity: 9 })).body as { operation: { id: string } }).operation.id;
  await h.receiver.waitFor((ds) => ds.length === 1);
  await sleep(200);
  t.match(await opStatus(h, id, opId), { status: 'InProgress' }, 'still waiting inside the window');
  t.match(await subscription(h, id), { quantity: 5 });
  await waitFor(async () => (await opStatus(h, id, opId)).status === 'Succeeded');
  t.ok(Date.now() - started >= 990, 'accepted only after the window');
  t.match(await subscription(h, id), { quantity: 9 });
});

t.test('a 4xx after the window has closed changes nothing', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 100, webhookTimeoutMs: 2000 });
  h.receiver.respond(() => ({ status: 400, delayMs: 300 }));
  const id = await subscribed(h);
  const opId = ((await h.http.act(id, 'change-quantity', { quantity: 9 })).body as { operation: { id: string } }).operation.id;
  await waitFor(() => h.emulator.deliveries({ operationId: opId })[0]?.state === 'rejected');
  t.match(await opStatus(h, id, opId), { status: 'Succeeded' }, 'silence had already accepted it');
  t.match(await subscription(h, id), { quantity: 9 });
});

t.test('Suspend, Reinstate, Renew and Unsubscribe notifications', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 200 });
  const id = await subscribed(h, { planId: 'standard', quantity: 3, freeTrial: true });

  t.equal((await h.http.act(id, 'suspend')).status, 202);
  const [suspend] = await h.receiver.waitFor((ds) => ds.length === 1);
  checkPayload(t, suspend, { action: 'Suspend', status: 'Succeeded', operationRequestSource: 'Azure', subscription: { saasSubscriptionStatus: 'Suspended' } });
  t.match(await subscription(h, id), { saasSubscriptionStatus: 'Suspended' });

  const reinstateId = ((await h.http.act(id, 'reinstate')).body as { operation: { id: string } }).operation.id;
  const reinstate = (await h.receiver.waitFor((ds) => ds.length === 2))[1];
  checkPayload(t, reinstate, { action: 'Reinstate', status: 'InProgress', subscription: { saasSubscriptionStatus: 'Suspended' } });
  const listed = (await h.http.api('GET', `/saas/subscriptions/${id}/operations`)).body;
  t.match(listed, { operations: [{ id: reinstateId, action: 'Reinstate', status: 'InProgress' }] }, 'listed as outstanding');
  await waitFor(async () => (await subscription(h, id)).saasSubscriptionStatus === 'Subscribed');
  t.match(await opStatus(h, id, reinstateId), { status: 'Succeeded' });

  const before = (await subscription(h, id)).term as { startDate: string; endDate: string };
  await h.http.act(id, 'renew');
  const renew = (await h.receiver.waitFor((ds) => ds.length === 3))[2];
  checkPayload(t, renew, { action: 'Renew', status: 'Succeeded', subscription: { isFreeTrial: false } });
  const after = (await subscription(h, id)).term as { startDate: string };
  t.equal(Date.parse(after.startDate), Date.parse(before.endDate) + 86_400_000, 'the term moved on');

  await h.http.act(id, 'unsubscribe');
  const unsubscribe = (await h.receiver.waitFor((ds) => ds.length === 4))[3];
  checkPayload(t, unsubscribe, { action: 'Unsubscribe', status: 'Succeeded', operationRequestSource: 'Azure', subscription: { saasSubscriptionStatus: 'Unsubscribed' } });
  for (const d of h.receiver.deliveries) {
    t.match(await opStatus(h, id, d.body.id), { id: d.body.id, action: d.body.action }, `${d.body.action} can be validated with Get operation`);
  }
});

t.test('Reinstate: PATCH Success completes it at once; a 4xx is not a refusal but a failed delivery', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 5000 });
  const id = await subscribed(h);
  await h.http.act(id, 'suspend');
  await h.receiver.waitFor((ds) => ds.length === 1);
  h.receiver.respond((d) => (d.body.action === 'Reinstate' && h.receiver.deliveries.filter((x) => x.body.action === 'Reinstate').length === 1 ? 400 : 200));
  const opId = ((await h.http.act(id, 'reinstate')).body as { operation: { id: string } }).operation.id;
  await h.receiver.waitFor((ds) => ds.filter((d) => d.body.action === 'Reinstate').length === 2);
  t.match(await opStatus(h, id, opId), { status: 'InProgress' }, 'a 400 did not refuse it');
  t.equal((await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${opId}`, { body: { status: 'Failure' } })).status, 400, 'Failure is not allowed');
  t.equal((await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${opId}`, { body: { status: 'Success' } })).status, 200);
  t.match(await subscription(h, id), { saasSubscriptionStatus: 'Subscribed' });
});

t.test('redelivery: non-200 answers and timeouts are retried with growing delays until 200', async (t) => {
  const h = await startHarness(t, {
    webhookTimeoutMs: 150,
    redelivery: { initialDelayMs: 40, factor: 2, maxDelayMs: 1000, maxAttempts: 10 },
  });
  const answers: Array<number | { status: number; delayMs: number }> = [500, 503, { status: 200, delayMs: 400 }, 204, 200];
  h.receiver.respond(() => answers.shift() ?? 200);
  const id = await subscribed(h);
  await h.http.act(id, 'suspend');
  const ds = await h.receiver.waitFor((all) => all.length === 5, 5000);
  t.same(new Set(ds.map((d) => d.body.id)).size, 1, 'the same operation each time');
  const gaps = ds.slice(1).map((d, i) => d.receivedAt - (ds[i] as Delivery).receivedAt);
  t.ok((gaps[0] as number) >= 35, `first retry after ~40 ms (${gaps[0]})`);
  t.ok((gaps[1] as number) >= 75, `second after ~80 ms (${gaps[1]})`);
  const delivery = await waitFor(() => h.emulator.deliveries({ subscriptionId: id }).find((d) => d.state === 'delivered'));
  t.match(delivery, {
    state: 'delivered',
    attempts: [{ statusCode: 500 }, { statusCode: 503 }, { error: /no answer within 150 ms/ }, { statusCode: 204 }, { statusCode: 200 }],
  });
  await sleep(200);
  t.equal(h.receiver.deliveries.length, 5, 'nothing after the 200');
});

t.test('redelivery gives up after maxAttempts; a pending change then fails', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 5000, redelivery: { initialDelayMs: 10, factor: 1, maxDelayMs: 10, maxAttempts: 3 } });
  h.receiver.respond(() => 500);
  const id = await subscribed(h);
  const opId = ((await h.http.act(id, 'change-quantity', { quantity: 8 })).body as { operation: { id: string } }).operation.id;
  await waitFor(() => h.emulator.deliveries({ operationId: opId })[0]?.state === 'abandoned');
  t.equal(h.receiver.deliveries.length, 3);
  t.match(await opStatus(h, id, opId), { status: 'Failed' });
  t.match(await subscription(h, id), { quantity: 5 });
});

t.test('no webhook URL: deliveries fail and are retried until one is configured', async (t) => {
  const h = await startHarness(t, { redelivery: { initialDelayMs: 30, factor: 1, maxDelayMs: 30, maxAttempts: 100 } });
  h.emulator.setWebhookUrl(undefined);
  const id = await subscribed(h);
  await h.http.act(id, 'suspend');
  await waitFor(() => (h.emulator.deliveries()[0]?.attempts.length ?? 0) >= 2);
  t.match(h.emulator.deliveries()[0]?.attempts[0], { error: 'no webhook URL is configured' });
  const res = await h.http.raw('PUT', '/emulator/settings', { body: { webhookUrl: h.receiver.url } });
  t.equal(res.status, 200);
  t.match(res.body, { webhookUrl: h.receiver.url });
  await h.receiver.waitFor((ds) => ds.length === 1);
  await waitFor(() => h.emulator.deliveries()[0]?.state === 'delivered');
  t.pass('delivered once a URL is configured');
});

t.test('PATCHing the operation before answering the webhook is logged as a warning', async (t) => {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  const h = await startHarness(t, { ackWindowMs: 5000, logger: pino({ level: 'warn' }, stream) });
  const id = await subscribed(h);
  h.receiver.respond((d) => {
    void h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${d.body.id}`, { body: { status: 'Success' } });
    return { status: 200, delayMs: 200 };
  });
  await h.http.act(id, 'change-quantity', { quantity: 6 });
  await waitFor(() => lines.some((l) => l.includes('PATCHed before the webhook call returned')));
  t.pass('warned');
  await waitFor(async () => (await subscription(h, id)).quantity === 6);
});

t.test('the webhook JWT verifies against the published JWKS (v2): aud, tid, iss, azp, exp/nbf/iat', async (t) => {
  const h = await startHarness(t);
  const metadata = (await (await fetch(h.emulator.openIdConfigurationUrl)).json()) as { issuer: string; jwks_uri: string };
  t.equal(metadata.issuer, `${h.emulator.url}/${TENANT_ID}/v2.0`);
  t.equal(metadata.jwks_uri, `${h.emulator.url}/${TENANT_ID}/discovery/v2.0/keys`);
  const root = (await (await fetch(`${h.emulator.url}/.well-known/openid-configuration`)).json()) as { issuer: string };
  t.equal(root.issuer, metadata.issuer, 'also served at /.well-known/openid-configuration');
  const jwks = (await (await fetch(metadata.jwks_uri)).json()) as { keys: { kty: string; kid: string; use: string; alg: string; d?: string }[] };
  t.match(jwks.keys, [{ kty: 'RSA', use: 'sig', alg: 'RS256', kid: String }]);
  t.notOk(jwks.keys[0]?.d, 'no private part published');

  const id = await subscribed(h);
  await h.http.act(id, 'renew');
  const [d] = await h.receiver.waitFor((ds) => ds.length === 1);
  const token = (d?.headers.authorization ?? '').replace(/^Bearer /, '');
  t.equal(decodeProtectedHeader(token).kid, jwks.keys[0]?.kid, 'kid names the published key');
  const { payload, protectedHeader } = await jwtVerify(token, createRemoteJWKSet(new URL(metadata.jwks_uri)), {
    issuer: metadata.issuer,
    audience: APP_ID,
    algorithms: ['RS256'],
  });
  t.equal(protectedHeader.alg, 'RS256');
  t.match(payload, { aud: APP_ID, tid: TENANT_ID, azp: MARKETPLACE_APP_ID, ver: '2.0', iss: metadata.issuer });
  t.notOk('appid' in payload, 'v2 tokens carry azp, not appid');
  const now = Math.floor(Date.now() / 1000);
  t.ok((payload.exp ?? 0) > now && (payload.nbf ?? Infinity) <= now + 1 && (payload.iat ?? Infinity) <= now + 1, 'exp/nbf/iat');
});

t.test('v1-form tokens: appid and the v1 issuer, keys under /discovery/keys', async (t) => {
  const h = await startHarness(t, { tokenVersion: 'v1' });
  const metadata = (await (await fetch(`${h.emulator.url}/${TENANT_ID}/.well-known/openid-configuration`)).json()) as {
    issuer: string;
    jwks_uri: string;
  };
  t.equal(metadata.jwks_uri, `${h.emulator.url}/${TENANT_ID}/discovery/keys`);
  t.equal(h.emulator.openIdConfigurationUrl, `${h.emulator.url}/${TENANT_ID}/.well-known/openid-configuration`);
  const id = await subscribed(h);
  await h.http.act(id, 'suspend');
  const [d] = await h.receiver.waitFor((ds) => ds.length === 1);
  const token = (d?.headers.authorization ?? '').replace(/^Bearer /, '');
  const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(metadata.jwks_uri)), { issuer: metadata.issuer, audience: APP_ID });
  t.match(payload, { appid: MARKETPLACE_APP_ID, tid: TENANT_ID, ver: '1.0', iss: `${h.emulator.url}/${TENANT_ID}/` });
  t.notOk('azp' in payload);
  t.equal((await fetch(`${h.emulator.url}/00000000-0000-4000-8000-000000000000/discovery/keys`)).status, 400, 'other tenants are unknown');
});

t.test('issuer overrides let a verifier be tested with production issuer strings', async (t) => {
  const h = await startHarness(t, { tokenVersion: 'v1', issuerV1: `https://sts.windows.net/${TENANT_ID}/` });
  t.equal(h.emulator.issuer, `https://sts.windows.net/${TENANT_ID}/`);
  const id = await subscribed(h);
  await h.http.act(id, 'suspend');
  const [d] = await h.receiver.waitFor((ds) => ds.length === 1);
  const { payload } = await jwtVerify((d?.headers.authorization ?? '').slice(7), createRemoteJWKSet(new URL(h.emulator.jwksUrl)), {
    issuer: `https://sts.windows.net/${TENANT_ID}/`,
    audience: APP_ID,
  });
  t.equal(payload.appid, MARKETPLACE_APP_ID);
});
