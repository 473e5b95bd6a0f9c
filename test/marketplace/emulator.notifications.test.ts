/**
 * POST /emulator/notifications: a webhook for anything, signed and delivered as the real ones are:
 * operations in other statuses, operations Microsoft has no record of, unknown subscriptions, new
 * actions (`Transfer`) and term units (`PAY`).
 */
import t from 'tap';
import type { Test } from 'tap';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { parseWebhookPayload } from '../../src/marketplace/schemas.js';
import { APP_ID, MARKETPLACE_APP_ID, TENANT_ID, startHarness, subscribed, waitFor } from './emulator.helpers.js';
import type { Delivery, Harness, Response } from './emulator.helpers.js';

type Sent = { operationId: string; recorded: boolean; operation: Record<string, unknown> | null; deliveryId: string; webhook: Record<string, unknown> };

async function notify(h: Harness, body: Record<string, unknown>): Promise<Sent> {
  const res = await h.http.raw('POST', '/emulator/notifications', { body });
  if (res.status !== 202) throw new Error(`POST /emulator/notifications: ${res.status} ${res.text}`);
  return res.body as Sent;
}

async function received(h: Harness, operationId: string): Promise<Delivery> {
  const ds = await h.receiver.waitFor((all) => all.some((d) => d.body.id === operationId));
  const d = ds.find((x) => x.body.id === operationId);
  if (!d) throw new Error('not received');
  return d;
}

function problem(t: Test, res: Response, status: number, code: string, detail?: RegExp): void {
  t.equal(res.status, status, `status ${status}`);
  t.match(res.body, { status, code, detail: detail ?? String }, `problem ${code}`);
}

t.test('a notification in another status: the webhook says it, Get operation says the record, the subscription stays', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  const sent = await notify(h, { subscriptionId: id, action: 'ChangePlan', planId: 'premium', record: 'Conflict' });
  t.match(sent, { recorded: true, operation: { id: sent.operationId, status: 'Conflict', action: 'ChangePlan' } });
  const d = await received(h, sent.operationId);
  t.match(d.body, { action: 'ChangePlan', status: 'Conflict', planId: 'premium', subscriptionId: id, operationRequestSource: 'Azure', subscription: { planId: 'standard' } });
  t.same(d.body, sent.webhook, 'the answer shows what was sent');
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}/operations/${sent.operationId}`)).body, { status: 'Conflict' });
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}`)).body, { planId: 'standard', quantity: 5 }, 'unchanged');

  const token = (d.headers.authorization ?? '').replace(/^Bearer /, '');
  const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(h.emulator.jwksUrl)), { issuer: h.emulator.issuer, audience: APP_ID });
  t.match(payload, { tid: TENANT_ID, azp: MARKETPLACE_APP_ID }, 'signed exactly as real deliveries are');

  const odd = await notify(h, { subscriptionId: id, action: 'Renew', status: 'NotStarted', record: 'Failed' });
  t.match((await received(h, odd.operationId)).body, { status: 'NotStarted' });
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}/operations/${odd.operationId}`)).body, { status: 'Failed' });
});

t.test("record 'none': Microsoft has no such operation (Get operation 404); an existing id may be replayed", async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  const sent = await notify(h, { subscriptionId: id, action: 'Suspend', record: 'none' });
  t.match(sent, { recorded: false, operation: null });
  t.match((await received(h, sent.operationId)).body, { action: 'Suspend', status: 'Succeeded' });
  t.equal((await h.http.api('GET', `/saas/subscriptions/${id}/operations/${sent.operationId}`)).status, 404);
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}`)).body, { saasSubscriptionStatus: 'Subscribed' });

  const real = await notify(h, { subscriptionId: id, action: 'ChangeQuantity', quantity: 8, record: 'Succeeded' });
  const operationId = '3c1b2a09-8f7e-4d6c-b5a4-9e8d7c6b5a43';
  const mine = await notify(h, { subscriptionId: id, action: 'Renew', operationId });
  t.equal(mine.operationId, operationId, 'the id asked for');
  const replay = await notify(h, { subscriptionId: id, action: 'ChangeQuantity', operationId: real.operationId, quantity: 12, record: 'none' });
  const both = await h.receiver.waitFor((all) => all.filter((d) => d.body.id === real.operationId).length === 2);
  t.same(both.filter((d) => d.body.id === replay.operationId).map((d) => d.body.quantity), [8, 12], 'the same operation id twice, as sent');
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}/operations/${real.operationId}`)).body, { quantity: 8, status: 'Succeeded' }, 'the record contradicts the payload');
  problem(
    t,
    await h.http.raw('POST', '/emulator/notifications', { body: { subscriptionId: id, action: 'Renew', operationId: real.operationId, record: 'Succeeded' } }),
    409,
    'OperationExists',
  );
});

t.test('an unknown subscription, a Transfer, a PAY term: sent all the same, and Microsoft knows none of it', async (t) => {
  const h = await startHarness(t);
  const ghost = '6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d';
  const sent = await notify(h, { subscriptionId: ghost, action: 'Transfer', termUnit: 'PAY', planId: 'gold', quantity: 3 });
  const d = await received(h, sent.operationId);
  t.match(d.body, { action: 'Transfer', subscriptionId: ghost, planId: 'gold', quantity: 3, status: 'Succeeded', subscription: { id: ghost, term: { termUnit: 'PAY' } } });
  t.doesNotThrow(() => parseWebhookPayload(d.body), "our client's tolerant parser reads it");
  t.equal((await h.http.api('GET', `/saas/subscriptions/${ghost}`)).status, 404);
  t.equal((await h.http.api('GET', `/saas/subscriptions/${ghost}/operations/${sent.operationId}`)).status, 404);

  const id = await subscribed(h);
  const pay = await notify(h, { subscriptionId: id, action: 'Renew', termUnit: 'PAY' });
  t.match((await received(h, pay.operationId)).body, { subscription: { id, term: { termUnit: 'PAY', startDate: String } } });
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}`)).body, { term: { termUnit: 'P1M' } }, "only the webhook says PAY");
});

t.test('a recorded InProgress locks until PATCHed; a 4xx refuses it; neither changes the subscription', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  const sent = await notify(h, { subscriptionId: id, action: 'ChangeQuantity', quantity: 9, record: 'InProgress' });
  await received(h, sent.operationId);
  t.equal((await h.http.api('PATCH', `/saas/subscriptions/${id}`, { body: { quantity: 7 } })).status, 409, 'locked');
  t.equal((await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${sent.operationId}`, { body: { status: 'Success' } })).status, 200);
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}/operations/${sent.operationId}`)).body, { status: 'Succeeded' });
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}`)).body, { quantity: 5 }, 'an injected operation never changes the subscription');

  h.receiver.respond((d) => (d.body.action === 'ChangePlan' ? 400 : 200));
  const refused = await notify(h, { subscriptionId: id, action: 'ChangePlan', planId: 'premium', record: 'InProgress' });
  await received(h, refused.operationId);
  await waitFor(() => h.emulator.state.operationById(refused.operationId)?.status === 'Failed');
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}/operations/${refused.operationId}`)).body, { status: 'Failed' }, 'refused with a 4xx');
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}`)).body, { planId: 'standard' });
});

t.test('the body is strict', async (t) => {
  const h = await startHarness(t);
  const post = (body: unknown): Promise<Response> => h.http.raw('POST', '/emulator/notifications', { body });
  problem(t, await post({ action: 'Renew' }), 400, 'ValidationFailed', /subscriptionId/);
  problem(t, await post({ subscriptionId: 'x' }), 400, 'ValidationFailed', /action/);
  problem(t, await post({ subscriptionId: 'x', action: 'Renew', record: 'Pending' }), 400, 'ValidationFailed', /record/);
  problem(t, await post({ subscriptionId: 'x', action: 'Renew', colour: 'blue' }), 400, 'ValidationFailed', /colour/);
  problem(t, await post({ subscriptionId: 'x', action: 'Renew', termUnit: 'P 1M' }), 400, 'ValidationFailed', /termUnit/);
});
