/**
 * Fault injection, each fault on its own: duplicate and out-of-order deliveries, webhook delays,
 * bad webhook tokens, 429 with Retry-After, 500s, slow API answers, failed activations.
 */
import t from 'tap';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { APP_ID, MARKETPLACE_APP_ID, TENANT_ID, sleep, startHarness, subscribed, waitFor } from './emulator.helpers.js';
import type { Harness } from './emulator.helpers.js';

async function setFaults(h: Harness, faults: unknown): Promise<Record<string, unknown>> {
  const res = await h.http.raw('PUT', '/emulator/faults', { body: faults });
  if (res.status !== 200) throw new Error(`PUT /emulator/faults: ${res.status} ${res.text}`);
  return res.body as Record<string, unknown>;
}

t.test('duplicate deliveries: the same payload (same operation id) arrives copies + 1 times', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  await setFaults(h, { webhook: { duplicate: { copies: 2, times: 1 } } });
  await h.http.act(id, 'suspend');
  const ds = await h.receiver.waitFor((all) => all.length === 3);
  t.same(new Set(ds.map((d) => JSON.stringify(d.body))).size, 1, 'identical payloads');
  const records = h.emulator.deliveries({ subscriptionId: id });
  t.equal(records.filter((d) => d.duplicateOf === records[0]?.id).length, 2, 'copies are recorded as duplicates');
  const state = (await h.http.raw('GET', '/emulator/faults')).body as { faults: unknown; fired: { duplicate: number } };
  t.same(state.faults, {}, '`times` ran out, the fault is gone');
  t.equal(state.fired.duplicate, 1);
  await h.http.act(id, 'reinstate');
  await h.receiver.waitFor((all) => all.length === 4);
  await sleep(100);
  t.equal(h.receiver.deliveries.length, 4, 'the next webhook is sent once');
});

t.test('dropped deliveries: never sent, recorded as dropped; the change goes on as if unanswered', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  const set = await setFaults(h, { webhook: { drop: { times: 1, actions: ['ChangeQuantity', 'Transfer'] } } });
  t.match(set, { faults: { webhook: { drop: { times: 1 } } } });
  const res = await h.http.act(id, 'change-quantity', { quantity: 9 });
  const { operation } = res.body as { operation: { id: string } };
  t.match(h.emulator.deliveries({ operationId: operation.id }), [{ state: 'dropped', action: 'ChangeQuantity', attempts: [] }], 'recorded as dropped');
  await waitFor(async () => ((await h.http.api('GET', `/saas/subscriptions/${id}`)).body as { quantity: number }).quantity === 9);
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}/operations/${operation.id}`)).body, { status: 'Succeeded' }, 'accepted when the window ended');
  const state = (await h.http.raw('GET', '/emulator/faults')).body as { faults: unknown; fired: { drop: number } };
  t.same(state.faults, {}, '`times` ran out');
  t.equal(state.fired.drop, 1);

  await setFaults(h, { webhook: { drop: { actions: ['Renew'] } } });
  await h.http.act(id, 'suspend');
  await h.http.act(id, 'reinstate');
  await h.receiver.waitFor((all) => all.some((d) => d.body.action === 'Reinstate'));
  const reinstate = h.receiver.deliveries.find((d) => d.body.action === 'Reinstate')?.body.id ?? '';
  await h.http.api('PATCH', `/saas/subscriptions/${id}/operations/${reinstate}`, { body: { status: 'Success' } });
  t.same(
    h.receiver.deliveries.map((d) => d.body.action).sort(),
    ['Reinstate', 'Suspend'],
    'only the ChangeQuantity was dropped; actions the fault does not name go out',
  );
  await h.http.act(id, 'renew');
  t.match(h.emulator.deliveries({ subscriptionId: id }).at(-1), { action: 'Renew', state: 'dropped' }, 'no `times`: until cleared');
});

t.test('dropped deliveries: probability', async (t) => {
  let draw = 0.7;
  const h = await startHarness(t, { random: () => draw, faults: { webhook: { drop: { probability: 0.5 } } } });
  const id = await subscribed(h);
  await h.http.act(id, 'suspend');
  await waitFor(() => h.emulator.deliveries({ subscriptionId: id })[0]?.state === 'delivered');
  t.equal(h.receiver.deliveries.length, 1, '0.7 ≥ 0.5: sent');
  draw = 0.2;
  await h.http.act(id, 'unsubscribe');
  t.match(h.emulator.deliveries({ subscriptionId: id }).at(-1), { action: 'Unsubscribe', state: 'dropped' });
  const bad = await h.http.raw('PUT', '/emulator/faults', { body: { webhook: { drop: { actions: [] } } } });
  t.equal(bad.status, 400, 'actions must name at least one');
});

t.test('out-of-order deliveries: held until the window fills, then sent newest first', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 2000 });
  const id = await subscribed(h);
  await setFaults(h, { webhook: { reorder: { window: 2, maxHoldMs: 5000 } } });
  await h.http.act(id, 'suspend');
  await sleep(100);
  t.equal(h.receiver.deliveries.length, 0, 'held');
  t.match(h.emulator.deliveries(), [{ state: 'held', action: 'Suspend' }]);
  await h.http.act(id, 'reinstate');
  const ds = await h.receiver.waitFor((all) => all.length === 2);
  t.same(
    ds.map((d) => d.body.action),
    ['Reinstate', 'Suspend'],
    'the Reinstate arrives before the Suspend that preceded it',
  );
});

t.test('out-of-order: a lone held delivery goes out after maxHoldMs; clearing faults flushes', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  await setFaults(h, { webhook: { reorder: { window: 3, maxHoldMs: 150 } } });
  const started = Date.now();
  await h.http.act(id, 'suspend');
  await h.receiver.waitFor((all) => all.length === 1);
  t.ok(Date.now() - started >= 140, 'sent after maxHoldMs');
  await setFaults(h, { webhook: { reorder: { window: 3, maxHoldMs: 60_000 } } });
  await h.http.act(id, 'reinstate');
  await sleep(50);
  t.equal(h.receiver.deliveries.length, 1);
  t.equal((await h.http.raw('DELETE', '/emulator/faults')).status, 204);
  await h.receiver.waitFor((all) => all.length === 2);
  t.pass('DELETE /emulator/faults sent what was held');
});

t.test('delays: every delivery waits delayMs before its first attempt', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  await setFaults(h, { webhook: { delayMs: 250 } });
  const started = Date.now();
  await h.http.act(id, 'renew');
  await sleep(100);
  t.equal(h.receiver.deliveries.length, 0);
  const [d] = await h.receiver.waitFor((all) => all.length === 1);
  t.ok((d?.receivedAt ?? 0) - started >= 240, 'delayed');
});

t.test('a delayed ChangePlan webhook can miss the acknowledgement window: the change is accepted anyway', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 100 });
  const id = await subscribed(h);
  await setFaults(h, { webhook: { delayMs: 300 } });
  const opId = ((await h.http.act(id, 'change-plan', { planId: 'premium' })).body as { operation: { id: string } }).operation.id;
  const [d] = await h.receiver.waitFor((all) => all.length === 1);
  t.equal(d?.body.status, 'InProgress', 'the payload was built when the change was made');
  const op = (await h.http.api('GET', `/saas/subscriptions/${id}/operations/${opId}`)).body;
  t.match(op, { status: 'Succeeded' }, 'but by the time it arrives the window has closed');
});

t.test('429 with Retry-After on chosen operations, `times` times', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  await setFaults(h, { api: { throttle: { retryAfterSeconds: 7, times: 2, operations: ['getSubscription'] } } });
  t.equal((await h.http.api('GET', '/saas/subscriptions')).status, 200, 'other operations are not throttled');
  for (let i = 0; i < 2; i++) {
    const res = await h.http.api('GET', `/saas/subscriptions/${id}`);
    t.equal(res.status, 429);
    t.equal(res.headers.get('retry-after'), '7');
    t.match(res.body, { error: { code: 'TooManyRequests' } });
  }
  t.equal((await h.http.api('GET', `/saas/subscriptions/${id}`)).status, 200, 'then answers again');
});

t.test('500s: answered before anything happens, so a retry is safe', async (t) => {
  const h = await startHarness(t, { ackWindowMs: 5000 });
  const id = await subscribed(h);
  await setFaults(h, { api: { serverError: { times: 1, operations: ['updateSubscription'] } } });
  const failed = await h.http.api('PATCH', `/saas/subscriptions/${id}`, { body: { quantity: 6 } });
  t.equal(failed.status, 500);
  t.match(failed.body, { error: { code: 'InternalServerError' } });
  t.same((await h.http.api('GET', `/saas/subscriptions/${id}/operations`)).body, {}, 'no operation was created');
  t.equal((await h.http.api('PATCH', `/saas/subscriptions/${id}`, { body: { quantity: 6 } })).status, 202, 'the retry goes through');
});

t.test('probability: a fault fires only when the random draw is under it', async (t) => {
  let draw = 0.7;
  const h = await startHarness(t, { random: () => draw, faults: { api: { serverError: { probability: 0.5 } } } });
  t.equal((await h.http.api('GET', '/saas/subscriptions')).status, 200, 'configured at start, but 0.7 ≥ 0.5');
  draw = 0.2;
  t.equal((await h.http.api('GET', '/saas/subscriptions')).status, 500);
});

t.test('slow answers: the API waits before answering', async (t) => {
  const h = await startHarness(t);
  await setFaults(h, { api: { delay: { ms: 200, operations: ['listSubscriptions'] } } });
  const started = Date.now();
  t.equal((await h.http.api('GET', '/saas/subscriptions')).status, 200);
  t.ok(Date.now() - started >= 190, 'delayed');
});

t.test('failActivation: Activate answers 200, then the subscription is cancelled with an Unsubscribe webhook', async (t) => {
  const h = await startHarness(t);
  await setFaults(h, { api: { failActivation: { times: 1 } } });
  const bought = await h.http.purchase({ planId: 'basic' });
  const res = await h.http.api('POST', `/saas/subscriptions/${bought.subscriptionId}/activate`, { body: { planId: 'basic' } });
  t.equal(res.status, 200);
  const [d] = await h.receiver.waitFor((all) => all.length === 1);
  t.match(d?.body, { action: 'Unsubscribe', status: 'Succeeded', operationRequestSource: 'Azure', subscriptionId: bought.subscriptionId });
  t.match((await h.http.api('GET', `/saas/subscriptions/${bought.subscriptionId}`)).body, { saasSubscriptionStatus: 'Unsubscribed' });
});

t.test('token faults: each one breaks exactly the check it is named for', async (t) => {
  const h = await startHarness(t);
  const jwks = createRemoteJWKSet(new URL(h.emulator.jwksUrl));
  const verify = async (auth: string | undefined): Promise<string> => {
    if (!auth) return 'missing';
    try {
      const { payload } = await jwtVerify(auth.replace(/^Bearer /, ''), jwks, { issuer: h.emulator.issuer, audience: APP_ID });
      if (payload.tid !== TENANT_ID) return 'wrong-tenant';
      if (payload.azp !== MARKETPLACE_APP_ID) return 'wrong-appid';
      return 'valid';
    } catch (err) {
      const code = (err as { code?: string; claim?: string }).code;
      const claim = (err as { claim?: string }).claim;
      if (code === 'ERR_JWT_EXPIRED') return 'expired';
      if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim === 'nbf') return 'not-yet-valid';
      if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim === 'aud') return 'wrong-audience';
      if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim === 'iss') return 'wrong-issuer';
      if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') return 'bad-signature';
      return `unexpected ${code}`;
    }
  };
  const id = await subscribed(h);
  const faults = ['missing', 'expired', 'not-yet-valid', 'wrong-audience', 'wrong-issuer', 'wrong-tenant', 'wrong-appid', 'bad-signature'];
  for (const [i, fault] of faults.entries()) {
    await setFaults(h, { webhook: { token: fault } });
    await h.http.act(id, 'renew');
    const ds = await h.receiver.waitFor((all) => all.length === i + 1);
    t.equal(await verify(ds[i]?.headers.authorization), fault, fault);
  }
  await h.http.raw('DELETE', '/emulator/faults');
  await h.http.act(id, 'renew');
  const ds = await h.receiver.waitFor((all) => all.length === faults.length + 1);
  t.equal(await verify(ds.at(-1)?.headers.authorization), 'valid', 'valid again once cleared');
});
