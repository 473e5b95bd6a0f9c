/**
 * The operator API end to end over real HTTP on 127.0.0.1: the service (a real SQLite file, the real
 * FulfillmentClient) against the marketplace emulator. Publisher-side changes go to Microsoft
 * (PATCH/DELETE → 202 + Operation-Location), are followed to their final status, and are applied
 * only once Microsoft confirmed them; refusals end as ChangeRequestFailed.
 *
 * The webhook receiver here stands in for the service's webhook front door: it answers 200 and
 * acknowledges Partner-sourced changes (PATCH operation Success), which is what lets Microsoft
 * complete them; in one test it also applies the change first, as the notification process does.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { detailsFromMicrosoft } from '../../src/application/subscription-details.js';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { createLogger } from '../../src/logger.js';
import { startEmulator } from '../../src/emulator/emulator.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { PublisherChanges } from '../../src/application/publisher-changes.js';
import { tempDir } from '../support/temp.js';

const TOKEN = 'operator-token-for-the-emulator-test';
/** Named operators (OPERATOR_TOKENS): the one named dana is recorded as `operator:dana`. */
const DANA_TOKEN = 'dana-token-for-the-emulator-test';
const OPERATORS = [{ name: 'operator', token: TOKEN }, { name: 'dana', token: DANA_TOKEN }];

type Delivery = { id: string; action: string; subscriptionId: string; planId?: string; quantity?: number; status?: string; operationRequestSource?: string };
type WebhookMode = 'acknowledge' | 'apply-then-acknowledge' | 'refuse' | 'ignore';

async function until<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function setup(t: Test) {
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const emulator = await startEmulator({ operationDelayMs: 100, ackWindowMs: 5_000, redelivery: { initialDelayMs: 200, maxAttempts: 3 } });
  const store = openSqliteStore({ path: join(tempDir(t, 'operator-api'), 'ledger.sqlite') });
  const ledger = new SubscriptionLedger(store);
  const client = new FulfillmentClient({
    baseUrl: emulator.apiBaseUrl,
    tokenProvider: new StaticTokenProvider('emulator-accepts-any-token'),
    logger,
    retry: { maxAttempts: 3, baseDelayMs: 20, maxElapsedMs: 2_000 },
  });
  const publisherChanges = new PublisherChanges({
    ledger,
    client,
    logger,
    poll: { initialDelayMs: 50, intervalMs: 50, backoffFactor: 1.2, maxIntervalMs: 200, maxWaitMs: 15_000 },
    recheckDelayMs: 100,
  });

  // Microsoft's webhook lands here.
  const deliveries: Delivery[] = [];
  let mode: WebhookMode = 'acknowledge';
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const d = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Delivery;
      deliveries.push(d);
      const partnerChange = d.operationRequestSource === 'Partner' && (d.action === 'ChangePlan' || d.action === 'ChangeQuantity');
      res.statusCode = partnerChange && mode === 'refuse' ? 400 : 200;
      res.end();
      if (!partnerChange || mode === 'refuse' || mode === 'ignore') return;
      void (async () => {
        if (mode === 'apply-then-acknowledge') {
          const base = { now: new Date().toISOString(), source: 'webhook' as const, operationId: d.id, requestSource: 'Partner' };
          await ledger.execute(
            d.subscriptionId,
            d.action === 'ChangePlan'
              ? { ...base, type: 'ApplyPlanChange', planId: d.planId ?? '' }
              : { ...base, type: 'ApplyQuantityChange', quantity: d.quantity ?? 0 },
            { actor: 'microsoft' },
          );
        }
        await client.updateOperationStatus(d.subscriptionId, d.id, 'Success');
      })().catch((err: unknown) => t.fail(`webhook stand-in: ${(err as Error).message}`));
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  emulator.setWebhookUrl(`http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhook`);

  const app = await buildApp({ logger, store: () => store, api: { operatorToken: OPERATORS, subscriptions: { ledger, publisherChanges } } });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await app.close();
    await publisherChanges.close();
    await emulator.close();
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
    await store.close();
  });

  const api = async (method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}/api${path}`, {
      method,
      headers: {
        authorization: `Bearer ${TOKEN}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : undefined) as Record<string, unknown> };
  };

  const emulatorView = async (id: string) => {
    const res = await fetch(`${emulator.url}/emulator/subscriptions/${id}`);
    return (await res.json()) as {
      subscription: { planId: string; quantity?: number; saasSubscriptionStatus: string };
      operations: { id: string; action: string; status: string; timeStamp: string; operationRequestSource: string }[];
    };
  };

  const events = async (id: string): Promise<RecordedEvent[]> => (await ledger.load(id)).events;

  /** Buy in the emulator (its control API), record the purchase as the landing page does, activate through the API. */
  const activeSubscription = async (planId = 'standard', quantity = 5): Promise<string> => {
    const bought = await fetch(`${emulator.url}/emulator/purchases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ planId, quantity }),
    });
    t.equal(bought.status, 201, 'purchased in the emulator');
    const { token } = (await bought.json()) as { token: string };
    const resolved = await client.resolve(token);
    const sub = resolved.subscription ?? (await client.getSubscription(resolved.id));
    await ledger.execute(
      resolved.id,
      {
        type: 'RecordPurchase',
        now: new Date().toISOString(),
        source: 'landing',
        subscription: detailsFromMicrosoft(sub),
        microsoftStatus: sub.saasSubscriptionStatus ?? 'PendingFulfillmentStart',
      },
      { actor: 'customer:buyer@contoso.example' },
    );
    const id = resolved.id;
    const activate = await api('POST', `/subscriptions/${id}/activate`, { contact: { email: 'it-admin@contoso.example', name: 'Dana Admin' } }, { 'if-match': '"0"' });
    t.equal(activate.status, 202, 'activation requested through the API');
    // What the activation process does next: activate at Microsoft, then confirm.
    await client.activateSubscription(id, { planId, quantity });
    await ledger.execute(id, { type: 'ConfirmActivation', now: new Date().toISOString(), source: 'process' }, { actor: 'system:activation' });
    t.equal((await emulatorView(id)).subscription.saasSubscriptionStatus, 'Subscribed', 'Microsoft has it Subscribed');
    return id;
  };

  const settled = (id: string) =>
    until(`the pending change of ${id} to settle`, async () => {
      const res = await api('GET', `/subscriptions/${id}`);
      return res.body.pendingChange === undefined ? res : undefined;
    });

  return {
    emulator,
    ledger,
    publisherChanges,
    deliveries,
    setMode: (m: WebhookMode) => {
      mode = m;
    },
    api,
    emulatorView,
    events,
    activeSubscription,
    settled,
  };
}

t.test('change plan, change quantity, cancel: each applied only after Microsoft confirmed it', async (t) => {
  const s = await setup(t);
  const id = await s.activeSubscription();
  const before = await s.api('GET', `/subscriptions/${id}`);
  t.equal(before.status, 200);
  t.match(before.body, { status: 'Subscribed', planId: 'standard', quantity: 5, contact: { email: 'it-admin@contoso.example' } });
  const etag = before.headers.get('etag') ?? '';
  t.equal(etag, `"${String(before.body.revision)}"`);

  // Change plan.
  const plan = await s.api('POST', `/subscriptions/${id}/plan`, { planId: 'premium' }, { 'if-match': etag, authorization: `Bearer ${DANA_TOKEN}`, 'x-operator-id': 'mallory' });
  t.equal(plan.status, 202);
  t.equal(plan.headers.get('location'), `/api/subscriptions/${id}`);
  const planOp = String(plan.body.operationId);
  t.match(plan.body, { status: 'accepted', command: 'plan', requestId: /^[0-9a-f-]{36}$/, operationId: /^[0-9a-f-]{36}$/ });
  const right = await s.api('GET', `/subscriptions/${id}`);
  t.match(right.body, { planId: 'standard', pendingChange: { kind: 'plan', planId: 'premium', operationId: planOp } }, 'not applied while Microsoft works on it');
  t.not((await s.emulatorView(id)).operations.find((o) => o.id === planOp)?.status, 'Succeeded', 'Microsoft has not completed it yet');

  const afterPlan = await s.settled(id);
  t.match(afterPlan.body, { planId: 'premium', lastChange: { kind: 'plan', outcome: 'applied', operationId: planOp } });
  const ms = await s.emulatorView(id);
  const msOp = ms.operations.find((o) => o.id === planOp);
  t.match(msOp, { action: 'ChangePlan', status: 'Succeeded', operationRequestSource: 'Partner' });
  t.equal(ms.subscription.planId, 'premium');
  let history = await s.events(id);
  t.same(history.slice(-3).map((e) => e.type), ['PlanChangeRequested', 'ChangeSubmitted', 'PlanChanged'], 'requested, submitted, then applied');
  const planChanged = history[history.length - 1];
  t.match(planChanged, { data: { operationId: planOp, planId: 'premium', previousPlanId: 'standard', requestSource: 'Partner' } });
  t.match(history[history.length - 3], { metadata: { actor: 'operator:dana' } }, 'the authenticated operator, not the x-operator-id header');
  t.ok(
    Date.parse(planChanged?.recordedAt ?? '') >= Date.parse(msOp?.timeStamp ?? ''),
    `applied (${planChanged?.recordedAt}) after Microsoft completed the operation (${msOp?.timeStamp})`,
  );
  t.ok(s.deliveries.some((d) => d.id === planOp && d.action === 'ChangePlan' && d.operationRequestSource === 'Partner'), 'Microsoft sent the Partner webhook too');
  t.equal(history.filter((e) => e.type === 'PlanChanged').length, 1, 'applied once');

  // A stale If-Match now.
  const stale = await s.api('POST', `/subscriptions/${id}/quantity`, { quantity: 8 }, { 'if-match': etag });
  t.equal(stale.status, 412);
  t.match(stale.body, { title: 'precondition-failed', currentRevision: String(afterPlan.body.revision) });

  // Change quantity.
  const qty = await s.api('POST', `/subscriptions/${id}/quantity`, { quantity: 8 }, { 'if-match': afterPlan.headers.get('etag') ?? '' });
  t.equal(qty.status, 202);
  const qtyOp = String(qty.body.operationId);
  const afterQty = await s.settled(id);
  t.match(afterQty.body, { quantity: 8, lastChange: { kind: 'quantity', outcome: 'applied', operationId: qtyOp } });
  t.equal((await s.emulatorView(id)).subscription.quantity, 8);
  history = await s.events(id);
  t.same(history.slice(-3).map((e) => e.type), ['QuantityChangeRequested', 'ChangeSubmitted', 'QuantityChanged']);
  t.match(history[history.length - 1], { data: { operationId: qtyOp, quantity: 8, previousQuantity: 5, requestSource: 'Partner' } });

  // Cancel.
  const cancel = await s.api('POST', `/subscriptions/${id}/cancel`, { reason: 'customer asked by phone' });
  t.equal(cancel.status, 202);
  const cancelOp = String(cancel.body.operationId);
  const gone = await s.settled(id);
  t.match(gone.body, { status: 'Unsubscribed', unsubscribedAt: /Z$/, lastChange: { kind: 'cancel', outcome: 'applied', operationId: cancelOp } });
  t.equal((await s.emulatorView(id)).subscription.saasSubscriptionStatus, 'Unsubscribed');
  history = await s.events(id);
  t.same(history.slice(-3).map((e) => e.type), ['CancellationRequested', 'ChangeSubmitted', 'Unsubscribed']);
  t.match(history[history.length - 1], { data: { operationId: cancelOp, reason: 'customer asked by phone' } });
  await until('the Unsubscribe webhook', () => s.deliveries.some((d) => d.id === cancelOp && d.action === 'Unsubscribe'));

  const full = await s.api('GET', `/subscriptions/${id}/events`);
  t.equal(full.status, 200);
  t.same(
    (full.body.events as { type: string }[]).map((e) => e.type),
    history.map((e) => e.type),
    'the history through the API is the whole stream',
  );
  await s.publisherChanges.idle();
});

t.test('the Partner webhook applies the change first: the follower adds nothing', async (t) => {
  const s = await setup(t);
  const id = await s.activeSubscription();
  s.setMode('apply-then-acknowledge');
  const res = await s.api('POST', `/subscriptions/${id}/quantity`, { quantity: 12 });
  t.equal(res.status, 202);
  const after = await s.settled(id);
  t.match(after.body, { quantity: 12, lastChange: { outcome: 'applied', operationId: res.body.operationId } });
  await until('Microsoft to complete it', async () => (await s.emulatorView(id)).operations.find((o) => o.id === res.body.operationId)?.status === 'Succeeded');
  await s.publisherChanges.idle();
  const history = await s.events(id);
  t.same(history.slice(-3).map((e) => e.type), ['QuantityChangeRequested', 'ChangeSubmitted', 'QuantityChanged']);
  t.equal(history.filter((e) => e.type === 'QuantityChanged').length, 1, 'one QuantityChanged although both paths saw Succeeded');
  t.match(history[history.length - 1], { data: { source: 'webhook', operationId: res.body.operationId }, metadata: { actor: 'microsoft' } });
});

t.test("Microsoft's refusals end as ChangeRequestFailed, visible in the state", async (t) => {
  const s = await setup(t);
  const id = await s.activeSubscription();

  // 400: a plan Microsoft does not offer this subscription.
  const bad = await s.api('POST', `/subscriptions/${id}/plan`, { planId: 'no-such-plan' });
  t.equal(bad.status, 422);
  t.match(bad.headers.get('content-type'), /^application\/problem\+json/);
  t.match(bad.body, { title: 'refused-by-microsoft', microsoftStatus: 400, requestId: /^[0-9a-f-]{36}$/ });
  const afterBad = await s.api('GET', `/subscriptions/${id}`);
  t.match(afterBad.body, { planId: 'standard', lastChange: { kind: 'plan', planId: 'no-such-plan', outcome: 'failed', failure: { status: '400' } } });
  t.notOk('pendingChange' in afterBad.body, 'nothing left pending');
  t.same((await s.events(id)).slice(-2).map((e) => e.type), ['PlanChangeRequested', 'ChangeRequestFailed']);

  // 409: the subscription is locked at Microsoft by a customer change waiting for acknowledgement.
  s.setMode('ignore');
  const customer = await fetch(`${s.emulator.url}/emulator/subscriptions/${id}/change-quantity`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ quantity: 9 }),
  });
  t.equal(customer.status, 202, 'a customer-side change is pending at Microsoft');
  const locked = await s.api('POST', `/subscriptions/${id}/cancel`);
  t.equal(locked.status, 409);
  t.match(locked.body, { title: 'microsoft-conflict', microsoftStatus: 409 });
  const afterLocked = await s.api('GET', `/subscriptions/${id}`);
  t.match(afterLocked.body, { status: 'Subscribed', lastChange: { kind: 'cancel', outcome: 'failed', failure: { status: '409', reason: /locked/ } } });
  t.notOk('pendingChange' in afterLocked.body);
  // Let the customer change complete (acknowledged as the webhook handler would) before the next one.
  const pendingOp = (await s.emulatorView(id)).operations.find((o) => o.status === 'InProgress');
  if (pendingOp) await fetch(`${s.emulator.apiBaseUrl}/saas/subscriptions/${id}/operations/${pendingOp.id}?api-version=2018-08-31`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', authorization: 'Bearer x' },
    body: JSON.stringify({ status: 'Success' }),
  });

  // Failed: Microsoft accepted the PATCH, then the webhook refused it (4xx), so the operation failed.
  s.setMode('refuse');
  const refused = await s.api('POST', `/subscriptions/${id}/plan`, { planId: 'premium' });
  t.equal(refused.status, 202, 'Microsoft accepted the request at first');
  const afterRefused = await s.settled(id);
  t.match(afterRefused.body, {
    planId: 'standard',
    lastChange: { kind: 'plan', outcome: 'failed', operationId: refused.body.operationId, failure: { status: 'Failed' } },
  });
  t.same((await s.events(id)).slice(-3).map((e) => e.type), ['PlanChangeRequested', 'ChangeSubmitted', 'ChangeRequestFailed']);
  t.equal((await s.emulatorView(id)).subscription.planId, 'standard', 'Microsoft kept the plan');
});
