/**
 * Microsoft's webhook end to end, over real HTTP on 127.0.0.1: the built-in emulator sends signed
 * notifications to the running service, which authenticates, records, verifies with Get operation,
 * applies, and acknowledges. A real SQLite file underneath.
 */
import t from 'tap';
import type { Test } from 'tap';
import { SignJWT, generateKeyPair } from 'jose';
import { detailsFromMicrosoft } from '../../src/application/subscription-details.js';
import { notificationStream } from '../../src/domain/notification/notification.events.js';
import type { KnownSubscription } from '../../src/domain/subscription/index.js';
import { StoreUnavailableError } from '../../src/eventstore/eventstore.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { startSandbox } from '../support/sandbox.js';
import { waitFor } from '../support/wait.js';

type Sandbox = Awaited<ReturnType<typeof startSandbox>>;

/** Buy in the emulator, record it as the landing page would, activate it through the activation process. */
async function activeSubscription(t: Test, s: Sandbox, planId = 'standard', quantity = 5): Promise<string> {
  const bought = s.emulator.marketplace.purchase({ planId, quantity });
  const resolved = await s.marketplace.resolve(bought.token);
  const sub = resolved.subscription ?? (await s.marketplace.getSubscription(resolved.id));
  await s.ledger.execute(
    resolved.id,
    { type: 'RecordPurchase', now: new Date().toISOString(), source: 'landing', subscription: detailsFromMicrosoft(sub), microsoftStatus: sub.saasSubscriptionStatus ?? 'PendingFulfillmentStart' },
    { actor: 'customer:test' },
  );
  await s.ledger.execute(resolved.id, { type: 'RequestActivation', now: new Date().toISOString(), source: 'landing', contact: { email: 'buyer@contoso.example' } }, { actor: 'customer:test' });
  await waitFor('activation', async () => (await s.ledger.load(resolved.id)).state.status === 'Subscribed');
  t.equal(s.emulator.state.subscription(resolved.id).status, 'Subscribed', 'Microsoft (the emulator) has it Subscribed');
  return resolved.id;
}

async function state(s: Sandbox, id: string): Promise<KnownSubscription> {
  const { state } = await s.ledger.load(id);
  if (state.status === 'Initial') throw new Error('unknown subscription');
  return state;
}

async function notification(s: Sandbox, operationId: string): Promise<RecordedEvent[]> {
  return (s.store() ?? (() => { throw new Error('no store'); })()).readStream(notificationStream(operationId));
}

async function processed(s: Sandbox, operationId: string) {
  return waitFor(`notification ${operationId} processed`, async () => {
    const events = await notification(s, operationId);
    return events.find((e) => e.type === 'NotificationProcessed')?.data as { outcome: string; detail: string; subscriptionEvents: string[] } | undefined;
  });
}

t.test('customer-side plan and quantity changes: applied and acknowledged well inside 10 s', async (t) => {
  const s = await startSandbox(t);
  const id = await activeSubscription(t, s);
  const started = Date.now();
  const op = s.emulator.marketplace.changePlan(id, 'premium');
  const outcome = await processed(s, op.id);
  t.equal(outcome.outcome, 'applied');
  t.same(outcome.subscriptionEvents, ['PlanChanged']);
  const ack = (await notification(s, op.id)).find((e) => e.type === 'OperationAcknowledged')?.data as { latencyMs: number; status: string };
  t.equal(ack.status, 'Success');
  t.ok(ack.latencyMs < 1000, `acknowledged ${ack.latencyMs} ms after receipt (target < 1 s)`);
  await waitFor('Microsoft to complete the operation', () => s.emulator.state.operationById(op.id)?.status === 'Succeeded');
  const endToEnd = Date.now() - started;
  t.ok(endToEnd < 10_000, `Microsoft saw Success ${endToEnd} ms after the customer changed the plan (window: 10 s)`);
  t.comment(`plan change: ack latency ${ack.latencyMs} ms; customer action → Succeeded at Microsoft ${endToEnd} ms`);
  t.equal((await state(s, id)).planId, 'premium');
  t.equal(s.emulator.state.subscription(id).planId, 'premium');
  const view = await operationView(s, id, op.id, (i) => i.notificationOutcome === 'applied');
  t.match(view, { outcome: 'applied', microsoftStatus: 'Succeeded', ackStatus: 'Success' }, "the read model shows Microsoft's final status, not the notification's InProgress");

  const qop = s.emulator.marketplace.changeQuantity(id, 12);
  t.equal((await processed(s, qop.id)).outcome, 'applied');
  await waitFor('quantity Succeeded', () => s.emulator.state.operationById(qop.id)?.status === 'Succeeded');
  t.equal((await state(s, id)).quantity, 12);
  const history = (await s.ledger.load(id)).events;
  const changed = history.filter((e) => e.type === 'PlanChanged' || e.type === 'QuantityChanged');
  t.same(changed.map((e) => (e.data as { operationId: string }).operationId), [op.id, qop.id], 'each change names its Microsoft operation');
  t.same(changed.map((e) => e.metadata.actor), ['microsoft', 'microsoft'], 'the actor is recorded');
});

t.test('the ISV policy refuses a change inside the window with a 4xx; Microsoft keeps the old value', async (t) => {
  const s = await startSandbox(t, { POLICY_MAX_SEATS: '20', POLICY_RETIRED_PLANS: 'legacy' });
  const id = await activeSubscription(t, s);
  const op = s.emulator.marketplace.changeQuantity(id, 30);
  const outcome = await processed(s, op.id);
  t.equal(outcome.outcome, 'rejected');
  t.match(outcome.detail, /30 seats is more than the product supports \(20\)/);
  await waitFor('Microsoft to fail the operation', () => s.emulator.state.operationById(op.id)?.status === 'Failed');
  t.equal(s.emulator.state.subscription(id).quantity, 5, 'Microsoft kept 5 seats');
  const st = await state(s, id);
  t.equal(st.quantity, 5, 'so did we');
  const deliveries = s.emulator.deliveries({ operationId: op.id });
  t.equal(deliveries[0]?.attempts[0]?.statusCode, 400, 'the webhook answered 400');
  t.ok((await s.ledger.load(id)).events.some((e) => e.type === 'ChangeRejected'), 'the refusal is on the record');
});

t.test("Microsoft's revert notification after a refused change is recorded and changes nothing", async (t) => {
  const s = await startSandbox(t, { POLICY_MAX_SEATS: '20' }, { emulator: { revertNotifications: 'all' } });
  const id = await activeSubscription(t, s);
  const op = s.emulator.marketplace.changeQuantity(id, 30);
  t.equal((await processed(s, op.id)).outcome, 'rejected');
  const revert = await waitFor("Microsoft's revert notification", () => s.emulator.deliveries({ subscriptionId: id }).find((d) => d.operationId !== op.id && d.action === 'ChangeQuantity'));
  t.equal(revert.payload.quantity, 5, 'the revert carries the seats the subscription kept');
  const outcome = await processed(s, revert.operationId);
  t.match(outcome.outcome, /^(no-change|applied)$/, `the revert is processed (${outcome.outcome}: ${outcome.detail})`);
  t.same(outcome.subscriptionEvents.filter((e) => e === 'QuantityChanged'), [], 'no seat change was recorded for it');
  t.equal((await state(s, id)).quantity, 5, 'still 5 seats, as at Microsoft');
  t.equal(s.emulator.state.subscription(id).quantity, 5);
});

t.test('suspend, reinstate, renew, unsubscribe; a late renew after unsubscribe corrupts nothing', async (t) => {
  const s = await startSandbox(t);
  const id = await activeSubscription(t, s);
  const sus = s.emulator.marketplace.suspend(id);
  await processed(s, sus.id);
  t.equal((await state(s, id)).status, 'Suspended');
  const rei = s.emulator.marketplace.reinstate(id);
  await processed(s, rei.id);
  t.equal((await state(s, id)).status, 'Subscribed');
  const ren = s.emulator.marketplace.renew(id);
  t.equal((await processed(s, ren.id)).outcome, 'applied');
  t.ok((await state(s, id)).lastRenewedAt, 'renewal recorded');
  const uns = s.emulator.marketplace.unsubscribe(id);
  await processed(s, uns.id);
  const gone = await state(s, id);
  t.equal(gone.status, 'Unsubscribed');

  // A Renew that arrives after the Unsubscribe (Microsoft does not promise order): verified, not applied.
  const lateRenew = { ...s.emulator.marketplace.operationPayload(ren), id: crypto.randomUUID() };
  s.emulator.state.operationById(ren.id); // the original stays as it was
  const res = await postWebhook(s, { ...lateRenew, action: 'Renew', status: 'Succeeded', subscriptionId: id });
  t.equal(res.status, 200);
  const late = await processed(s, lateRenew.id);
  t.not(late.outcome, 'applied', `late renew: ${late.outcome} (${late.detail})`);
  t.equal((await state(s, id)).status, 'Unsubscribed', 'still Unsubscribed');
});

/** The operator API's read model of one operation, once it shows what `ready` waits for. */
async function operationView(s: Sandbox, subscriptionId: string, operationId: string, ready: (item: Record<string, unknown>) => boolean) {
  return waitFor(`the read model to show operation ${operationId}`, async () => {
    const res = await fetch(`${s.url}/api/read/operations?subscriptionId=${subscriptionId}`, { headers: { authorization: 'Bearer test-operator-token-0123456789' } });
    if (res.status !== 200) return undefined;
    const body = (await res.json()) as { items: Array<Record<string, unknown>> };
    const item = body.items.find((i) => i.operationId === operationId);
    return item && ready(item) ? item : undefined;
  });
}

/** A notification signed with the emulator's real key, posted like Microsoft would. */
async function postWebhook(s: Sandbox, payload: object, token?: string) {
  const bearer = token ?? (await s.emulator.signer.webhookToken());
  return fetch(`${s.url}/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` }, body: JSON.stringify(payload) });
}

t.test('duplicates and redeliveries change nothing; every delivery is kept verbatim', async (t) => {
  const s = await startSandbox(t);
  const id = await activeSubscription(t, s);
  s.emulator.faults.set({ webhook: { duplicate: { copies: 2 } } });
  const op = s.emulator.marketplace.suspend(id);
  await processed(s, op.id);
  await waitFor('three deliveries recorded', async () => (await notification(s, op.id)).filter((e) => e.type === 'NotificationReceived').length === 3);
  const events = await notification(s, op.id);
  t.equal(events.filter((e) => e.type === 'NotificationProcessed').length, 1, 'processed once');
  const suspended = (await s.ledger.load(id)).events.filter((e) => e.type === 'Suspended');
  t.equal(suspended.length, 1, 'one Suspended event');
  const first = events[0]?.data as { body: string; headers: Record<string, string>; caller: { caller: string } };
  t.equal(JSON.parse(first.body).id, op.id, 'the raw body is kept');
  t.equal(first.caller.caller, '20e940b3-4c77-4b0b-9a53-9e16a1b010a7', 'and who signed it');
  t.notOk(JSON.stringify(events, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)).includes('Bearer '), 'the bearer token itself is not stored');
});

t.test('authentication: missing, forged, expired, wrong-audience, wrong-tenant or wrong-caller tokens get 401 and record nothing', async (t) => {
  const s = await startSandbox(t);
  const id = await activeSubscription(t, s);
  const payload = { id: crypto.randomUUID(), subscriptionId: id, action: 'Suspend', status: 'Succeeded', timeStamp: new Date().toISOString() };
  const forger = await generateKeyPair('RS256');
  const forged = await new SignJWT({ aud: s.emulator.publisherAppId, tid: s.emulator.publisherTenantId, azp: '20e940b3-4c77-4b0b-9a53-9e16a1b010a7', ver: '2.0' })
    .setProtectedHeader({ alg: 'RS256', kid: 'not-theirs' })
    .setIssuer(s.emulator.issuer)
    .setExpirationTime('5m')
    .sign(forger.privateKey);
  const cases: Array<[string, RequestInit['headers']]> = [
    ['no token', { 'content-type': 'application/json' }],
    ['forged', { 'content-type': 'application/json', authorization: `Bearer ${forged}` }],
    ['expired', { 'content-type': 'application/json', authorization: `Bearer ${await s.emulator.signer.webhookToken('expired')}` }],
    ['wrong audience', { 'content-type': 'application/json', authorization: `Bearer ${await s.emulator.signer.webhookToken('wrong-audience')}` }],
    ['wrong tenant', { 'content-type': 'application/json', authorization: `Bearer ${await s.emulator.signer.webhookToken('wrong-tenant')}` }],
    ['wrong caller (not the marketplace app)', { 'content-type': 'application/json', authorization: `Bearer ${await s.emulator.signer.webhookToken('wrong-appid')}` }],
  ];
  for (const [name, headers] of cases) {
    const res = await fetch(`${s.url}/webhook`, { method: 'POST', headers, body: JSON.stringify(payload) });
    t.equal(res.status, 401, name);
    t.match(res.headers.get('content-type'), /problem\+json/);
  }
  t.same(await notification(s, payload.id), [], 'nothing recorded');
  t.equal((await state(s, id)).status, 'Subscribed');
});

t.test('unknown actions answer 200, are recorded, and do nothing', async (t) => {
  const s = await startSandbox(t);
  const id = await activeSubscription(t, s);
  const payload = { id: crypto.randomUUID(), subscriptionId: id, action: 'Transmogrify', status: 'Succeeded' };
  const res = await postWebhook(s, payload);
  t.equal(res.status, 200);
  const outcome = await processed(s, payload.id);
  t.equal(outcome.outcome, 'ignored');
  t.match(outcome.detail, /unknown action Transmogrify/);
});

t.test('a notification Microsoft cannot confirm (Get operation: 404) is recorded but not acted on', async (t) => {
  const s = await startSandbox(t);
  const id = await activeSubscription(t, s);
  const payload = { id: crypto.randomUUID(), subscriptionId: id, action: 'Suspend', status: 'Succeeded' };
  t.equal((await postWebhook(s, payload)).status, 200);
  const outcome = await processed(s, payload.id);
  t.equal(outcome.outcome, 'unverified');
  t.equal((await state(s, id)).status, 'Subscribed', 'not suspended on an unconfirmed notification');
});

t.test('a webhook for a subscription we never saw (it beat the landing page) records the purchase first', async (t) => {
  const s = await startSandbox(t);
  const bought = s.emulator.marketplace.purchase({ planId: 'instant' }); // auto-activated: Subscribe webhook
  const op = bought.operation;
  if (!op) throw new Error('an auto-activated plan sends Subscribe');
  const outcome = await processed(s, op.id);
  t.equal(outcome.outcome, 'applied');
  const st = await state(s, bought.subscription.id);
  t.equal(st.status, 'Subscribed');
  t.equal(st.autoActivated, true);
});

t.test('store unavailable: 503 so that Microsoft retries, never 200', async (t: Test) => {
  const s = await startSandbox(t);
  const id = await activeSubscription(t, s);
  await s.processes()?.stop();
  await s.store()?.close();
  const res = await postWebhook(s, { id: crypto.randomUUID(), subscriptionId: id, action: 'Suspend', status: 'Succeeded' });
  t.equal(res.status, 503);
});

t.test('every action applied once when the emulator duplicates and reorders deliveries; our state ends equal to Microsoft\'s', async (t) => {
  const s = await startSandbox(t);
  const id = await activeSubscription(t, s);
  s.emulator.faults.set({ webhook: { duplicate: { copies: 1 }, reorder: { window: 2, maxHoldMs: 150 } } });
  const ops: string[] = [];
  const settle = async (...opIds: string[]) => {
    for (const op of opIds) await processed(s, op);
  };
  const same = async (what: string) => {
    const ours = await state(s, id);
    const theirs = s.emulator.state.subscription(id);
    t.same({ status: ours.status, planId: ours.planId, quantity: ours.quantity }, { status: theirs.status, planId: theirs.planId, quantity: theirs.quantity }, `${what}: ours equals Microsoft's`);
  };

  // Suspend and Reinstate back to back: delivered newest first.
  const sus = s.emulator.marketplace.suspend(id);
  const rei = s.emulator.marketplace.reinstate(id);
  ops.push(sus.id, rei.id);
  await settle(sus.id, rei.id);
  await waitFor('Microsoft to finish the reinstatement', () => s.emulator.state.operationById(rei.id)?.status === 'Succeeded');
  await waitFor('our status to converge', async () => (await state(s, id)).status === 'Subscribed');
  await same('after suspend + reinstate');

  const plan = s.emulator.marketplace.changePlan(id, 'premium');
  ops.push(plan.id);
  await settle(plan.id);
  await waitFor('plan Succeeded', () => s.emulator.state.operationById(plan.id)?.status === 'Succeeded');
  const seats = s.emulator.marketplace.changeQuantity(id, 12);
  ops.push(seats.id);
  await settle(seats.id);
  await waitFor('quantity Succeeded', () => s.emulator.state.operationById(seats.id)?.status === 'Succeeded');
  await same('after plan and quantity changes');

  // Renew and Unsubscribe back to back: the Unsubscribe arrives first, the Renew late.
  const ren = s.emulator.marketplace.renew(id);
  const uns = s.emulator.marketplace.unsubscribe(id);
  ops.push(ren.id, uns.id);
  await settle(ren.id, uns.id);
  await same('after renew + unsubscribe');

  t.ok(s.emulator.faults.fired.duplicate > 0, `duplicates were sent (${s.emulator.faults.fired.duplicate})`);
  t.ok(s.emulator.faults.fired.reorder > 0, `deliveries were reordered (${s.emulator.faults.fired.reorder})`);
  for (const op of ops) {
    const events = await notification(s, op);
    t.equal(events.filter((e) => e.type === 'NotificationProcessed').length, 1, `operation ${op} processed once`);
  }
  const history = (await s.ledger.load(id)).events;
  for (const op of ops) {
    const caused = history.filter((e) => (e.data as { operationId?: string }).operationId === op);
    t.ok(caused.length <= 1, `operation ${op} caused at most one subscription event (${caused.map((e) => e.type).join(',') || 'none'})`);
  }
  t.comment(`history: ${history.map((e) => `${e.type}${(e.data as { source: string }).source === 'reconciliation' ? '(reconciled)' : ''}`).join(' → ')}`);
});

t.test('a store outage answers 503; Microsoft\'s redelivery succeeds once the store is back', async (t) => {
  let down = false;
  const unavailable = () => Promise.reject(new StoreUnavailableError('simulated outage: disk gone'));
  const s = await startSandbox(t, {}, {
    wrapStore: (store) =>
      new Proxy(store, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown;
          if (typeof value !== 'function') return value;
          return (...args: unknown[]) => (down && (prop === 'appendToStream' || prop === 'readStream') ? unavailable() : (value as (...a: unknown[]) => unknown).apply(target, args));
        },
      }),
  });
  const id = await activeSubscription(t, s);
  // The refresh that follows the activation reads Microsoft back: had it not finished before the outage, it would
  // run after it, find the subscription Suspended at Microsoft and converge on it first (the notification is then
  // `ignored`, rightly, but this test is about the redelivery being applied).
  await s.processes()?.idle();
  down = true;
  const op = s.emulator.marketplace.suspend(id);
  const failed = await waitFor('a delivery to fail with 503', () => s.emulator.deliveries({ operationId: op.id })[0]?.attempts.find((a) => a.statusCode === 503));
  t.equal(failed.statusCode, 503, 'answered 503 while the store was down');
  down = false;
  const outcome = await processed(s, op.id);
  t.equal(outcome.outcome, 'applied', 'the redelivery was recorded and applied');
  const attempts = s.emulator.deliveries({ operationId: op.id })[0]?.attempts ?? [];
  t.same(attempts.map((a) => a.statusCode).slice(-1), [200], `delivered at last (${attempts.map((a) => a.statusCode).join(', ')})`);
  t.equal((await state(s, id)).status, 'Suspended');
});

t.test("a change Microsoft reports Failed is recorded with the reason and not applied, whatever the notification says", async (t) => {
  const s = await startSandbox(t);
  const id = await activeSubscription(t, s);
  // Driven in the emulator's state directly: an operation Microsoft failed, then a notification that still says InProgress.
  const op = s.emulator.state.customerChange(id, { planId: 'premium' }, new Date());
  s.emulator.state.reject(op.id, new Date(), 'the customer cancelled the change');
  const res = await postWebhook(s, { id: op.id, subscriptionId: id, action: 'ChangePlan', planId: 'premium', status: 'InProgress', operationRequestSource: 'Azure' });
  t.equal(res.status, 200);
  const outcome = await processed(s, op.id);
  t.equal(outcome.outcome, 'failed');
  t.match(outcome.detail, /is Failed \(the customer cancelled the change\): it did not happen, not applied/);
  t.equal((await state(s, id)).planId, 'standard', 'not applied');
  t.notOk((await notification(s, op.id)).some((e) => e.type === 'OperationAcknowledged'), 'not acknowledged');
  const view = await operationView(s, id, op.id, (i) => i.notificationOutcome === 'failed');
  t.match(view, { outcome: 'failed', microsoftStatus: 'Failed', outcomeDetail: /the customer cancelled the change/, appliedEvent: null }, 'the operator API shows the refusal and why');
  // The real change, when it comes, is applied.
  const real = s.emulator.marketplace.changePlan(id, 'premium');
  t.equal((await processed(s, real.id)).outcome, 'applied', 'the genuine change that follows is applied');
  t.equal((await state(s, id)).planId, 'premium');
});

t.test('an Unsubscribe Microsoft does not back is unverified; delivered again once Microsoft shows it, it is applied', async (t) => {
  const s = await startSandbox(t);
  const id = await activeSubscription(t, s);
  const payload = { id: crypto.randomUUID(), subscriptionId: id, action: 'Unsubscribe', status: 'Succeeded' };
  t.equal((await postWebhook(s, payload)).status, 200);
  const first = await processed(s, payload.id);
  t.equal(first.outcome, 'unverified');
  t.match(first.detail, /Subscribed at Microsoft, not Unsubscribed/);
  t.equal((await state(s, id)).status, 'Subscribed');
  t.match(await operationView(s, id, payload.id, (i) => i.outcome === 'unverified'), { outcomeDetail: /not Unsubscribed/ }, 'the operator API shows why');

  s.emulator.state.unsubscribe(id, new Date()); // Microsoft cancels it (no webhook from the state alone)
  t.equal((await postWebhook(s, payload)).status, 200, 'the redelivery is answered 200');
  await waitFor('processed again', async () => (await notification(s, payload.id)).filter((e) => e.type === 'NotificationProcessed').length === 2);
  const events = await notification(s, payload.id);
  t.match(events.filter((e) => e.type === 'NotificationProcessed').at(-1)?.data, { outcome: 'applied', subscriptionEvents: ['Unsubscribed'] });
  t.equal((await state(s, id)).status, 'Unsubscribed');
});
