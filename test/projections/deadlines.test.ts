/**
 * The deadlines from the read models: real events (made by the real deciders) applied by the real
 * projections to a read-model file prepared as the service prepares it; each kind appears with its
 * deadline and severity and disappears once resolved. The queries read indexes, not whole tables.
 */
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { notificationDecider, notificationStream } from '../../src/domain/notification/index.js';
import type { NotificationCommand, NotificationPayload, NotificationState } from '../../src/domain/notification/index.js';
import { subscriptionDecider, subscriptionStream } from '../../src/domain/subscription/index.js';
import type { SubscriptionCommand, SubscriptionDetails, SubscriptionState } from '../../src/domain/subscription/index.js';
import { CredentialHealth } from '../../src/marketplace/credential-health.js';
import { allProjections } from '../../src/projections/index.js';
import type { Database as ReadModelDb } from 'better-sqlite3';
import { pendingSubscriptionsSql, unacknowledgedOperationsSql } from '../../src/projections/queries.js';
import { openReadModelDb, prepareProjections } from '../../src/projections/readmodel-db.js';
import { sqliteTarget } from '../../src/projections/sqlite.target.js';
import { ACKNOWLEDGEMENT_WINDOW_MS, defaultDeadlineSettings, readDeadlines } from '../../src/projections/views/deadlines.js';
import type { Deadline } from '../../src/projections/views/deadlines.js';
import { tempDir } from '../support/temp.js';
import { recorder } from './helpers.js';

const DAY = 86_400_000;
const T0 = Date.parse('2026-03-01T09:00:00.000Z');
const at = (ms: number) => new Date(T0 + ms).toISOString();

function details(id: string, created = at(-60_000)): SubscriptionDetails {
  return {
    subscriptionId: id,
    name: `sub ${id.slice(0, 4)}`,
    publisherId: 'fabrikam',
    offerId: 'ledger-saas',
    planId: 'standard',
    quantity: 5,
    purchaser: { emailId: 'buyer@contoso.example', tenantId: 'aaaaaaaa-0000-4000-8000-000000000001', objectId: 'o1' },
    beneficiary: { emailId: 'user@contoso.example', tenantId: 'aaaaaaaa-0000-4000-8000-000000000001', objectId: 'o2', puid: null },
    term: { termUnit: 'P1M' },
    autoRenew: true,
    isFreeTrial: false,
    isTest: false,
    allowedCustomerOperations: ['Read', 'Update', 'Delete'],
    sandboxType: 'None',
    created,
  };
}

/** A read-model file with every projection, fed through the deciders: one global position across streams. */
function world(t: Test) {
  const file: ReadModelDb = openReadModelDb(join(tempDir(t, 'deadlines'), 'readmodels.db'));
  t.teardown(() => file.close());
  const target = sqliteTarget(file);
  const db = target.read;
  const ready = prepareProjections(target, allProjections);
  const record = recorder();
  const subscriptions = new Map<string, SubscriptionState>();
  const notifications = new Map<string, NotificationState>();
  const applyEvents = async (stream: string, events: ReadonlyArray<{ type: string; data: unknown }>) => {
    await ready;
    const recorded = events.map((e) => record(stream, e.type, e.data, { actor: 'test' }));
    await target.transaction(async (tx) => {
      for (const e of recorded) for (const p of allProjections) if (p.handles.has(e.type) && p.streamPrefixes.some((s) => e.streamId.startsWith(s))) await p.apply(tx, e);
    });
  };
  return {
    db,
    file,
    async subscription(id: string, command: SubscriptionCommand) {
      const state = subscriptions.get(id) ?? subscriptionDecider.initialState();
      const events = subscriptionDecider.decide(command, state);
      subscriptions.set(id, events.reduce(subscriptionDecider.evolve, state));
      await applyEvents(subscriptionStream(id), events);
    },
    async notification(operationId: string, command: NotificationCommand) {
      const state = notifications.get(operationId) ?? notificationDecider.initialState();
      const events = notificationDecider.decide(command, state);
      notifications.set(operationId, events.reduce(notificationDecider.evolve, state));
      await applyEvents(notificationStream(operationId), events);
    },
  };
}
type World = ReturnType<typeof world>;

const purchase = (id: string, created?: string): SubscriptionCommand => ({
  type: 'RecordPurchase',
  now: at(0),
  source: 'landing',
  subscription: details(id, created),
  microsoftStatus: 'PendingFulfillmentStart',
});

async function deliver(w: World, n: NotificationPayload, receivedMs: number) {
  await w.notification(n.id, {
    type: 'ReceiveDelivery',
    delivery: { deliveryId: `d-${n.id}-${receivedMs}`, receivedAt: at(receivedMs), body: JSON.stringify(n), headers: {} },
    reading: { readable: true, notification: n },
  });
}

const deadlinesAt = (w: World, ms: number, credential = new CredentialHealth().snapshot()) => readDeadlines(w.db, credential, new Date(T0 + ms), defaultDeadlineSettings);
const byKey = (items: Deadline[], key: string) => items.find((d) => d.key === key);

const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';

t.test('a pending purchase: 30 days from Microsoft\'s created, info → warning (7 days before) → overdue; activated, it is gone', async (t) => {
  const w = world(t);
  await w.subscription(A, purchase(A, '2026-03-01T08:00:00Z'));
  const deadline = new Date(Date.parse('2026-03-01T08:00:00Z') + 30 * DAY).toISOString();

  let item = byKey((await deadlinesAt(w, DAY)), `pending-purchase:${A}`);
  t.match(item, { kind: 'pending-purchase', subscriptionId: A, since: '2026-03-01T08:00:00.000Z', deadline, severity: 'info', activation: null, operation: null });
  t.equal(item?.timeLeftMs, Date.parse(deadline) - (T0 + DAY));
  t.match(item?.action, /Configure account/);
  t.match(item?.action, /buyer@contoso\.example/, 'names whom to contact');
  t.match(item?.rule, /docs\/marketplace\.md §5/);

  t.equal(byKey((await deadlinesAt(w, 22 * DAY)), `pending-purchase:${A}`)?.severity, 'info', '8 days before: not yet');
  t.equal(byKey((await deadlinesAt(w, 24 * DAY)), `pending-purchase:${A}`)?.severity, 'warning', 'inside the 7-day lead');
  item = byKey((await deadlinesAt(w, 31 * DAY)), `pending-purchase:${A}`);
  t.equal(item?.severity, 'overdue', 'past the 30 days');
  t.ok((item?.timeLeftMs ?? 0) < 0);

  await w.subscription(A, { type: 'RequestActivation', now: at(60_000), source: 'landing', contact: { email: 'it@contoso.example' } });
  await w.subscription(A, { type: 'ConfirmActivation', now: at(120_000), source: 'process' });
  t.same((await deadlinesAt(w, 31 * DAY)), [], 'activated: nothing left');
});

t.test('an activation requested but not confirmed: a warning after the grace or a failure, gone once Activated', async (t) => {
  const w = world(t);
  await w.subscription(B, purchase(B));
  await w.subscription(B, { type: 'RequestActivation', now: at(60_000), source: 'landing', contact: { email: 'it@contoso.example', name: 'Dana' } });

  let items = (await deadlinesAt(w, 2 * 60_000));
  t.equal(byKey(items, `pending-purchase:${B}`), undefined, 'no longer a pending purchase');
  let item = byKey(items, `activation:${B}`);
  t.match(item, {
    kind: 'activation',
    subscriptionId: B,
    since: at(60_000),
    deadline: new Date(T0 - 60_000 + 30 * DAY).toISOString(),
    severity: 'info',
    activation: { requestedAt: at(60_000), failures: 0, lastError: null, gaveUp: false },
  });
  t.equal(byKey((await deadlinesAt(w, 60_000 + defaultDeadlineSettings.activationGraceMs)), `activation:${B}`)?.severity, 'warning', 'waited the grace: warning');

  await w.subscription(B, { type: 'RecordActivationFailure', now: at(90_000), source: 'process', reason: 'Microsoft answered 500', final: true });
  item = byKey((await deadlinesAt(w, 2 * 60_000)), `activation:${B}`);
  t.match(item, { severity: 'warning', activation: { failures: 1, lastError: 'Microsoft answered 500', gaveUp: true } }, 'a failure is a warning at once');
  t.match(item?.summary, /gave up.*Microsoft answered 500/);
  t.match(item?.action, /POST \/api\/subscriptions\/.+\/activate/);
  t.equal(byKey((await deadlinesAt(w, 31 * DAY)), `activation:${B}`)?.severity, 'overdue');

  await w.subscription(B, { type: 'RequestActivation', now: at(180_000), source: 'operator', contact: { email: 'it@contoso.example' } });
  await w.subscription(B, { type: 'ConfirmActivation', now: at(200_000), source: 'process' });
  t.same((await deadlinesAt(w, 3 * 60_000)), [], 'activated: gone');
});

t.test('plan and quantity changes not acknowledged: 10 s from receipt; gone when acknowledged or settled; other actions never listed', async (t) => {
  const w = world(t);
  await w.subscription(A, purchase(A));
  await w.subscription(A, { type: 'RequestActivation', now: at(1000), source: 'landing', contact: { email: 'it@contoso.example' } });
  await w.subscription(A, { type: 'ConfirmActivation', now: at(2000), source: 'process' });
  const change = (id: string, action: string, extra: Partial<NotificationPayload> = {}): NotificationPayload => ({
    id,
    subscriptionId: A,
    action,
    status: 'InProgress',
    operationRequestSource: 'Azure',
    timeStamp: at(10_000),
    ...extra,
  });
  const plan = 'aaaaaaaa-0000-4000-8000-00000000000a';
  const seats = 'aaaaaaaa-0000-4000-8000-00000000000b';
  const suspend = 'aaaaaaaa-0000-4000-8000-00000000000c';
  const refused = 'aaaaaaaa-0000-4000-8000-00000000000d';
  await deliver(w, change(plan, 'ChangePlan', { planId: 'premium' }), 10_000);
  await deliver(w, change(plan, 'ChangePlan', { planId: 'premium' }), 40_000); // Microsoft's retry: the clock runs from the first delivery
  await deliver(w, change(seats, 'ChangeQuantity', { quantity: 9 }), 12_000);
  await deliver(w, change(suspend, 'Suspend', { status: 'Succeeded' }), 13_000);
  const refusedChange = change(refused, 'ChangeQuantity', { quantity: 900 });
  await w.notification(refused, {
    type: 'RefuseChange',
    delivery: { deliveryId: 'd-refused', receivedAt: at(14_000), body: JSON.stringify(refusedChange), headers: {} },
    notification: refusedChange,
    reason: 'more seats than POLICY_MAX_SEATS',
    subscriptionEvents: [],
    now: at(14_000),
  });

  let items = (await deadlinesAt(w, 15_000));
  t.same(items.map((d) => d.key), [`acknowledgement:${plan}`, `acknowledgement:${seats}`], "the two changes; not the Suspend, not the one refused at the webhook (recorded processed at once)");
  t.match(byKey(items, `acknowledgement:${plan}`), {
    kind: 'acknowledgement',
    subscriptionId: A,
    since: at(10_000),
    deadline: at(10_000 + ACKNOWLEDGEMENT_WINDOW_MS),
    severity: 'warning',
    operation: { operationId: plan, action: 'ChangePlan', source: 'Azure', planId: 'premium', receivedAt: at(10_000), deliveries: 2 },
  });
  t.match(byKey(items, `acknowledgement:${seats}`), { deadline: at(22_000), severity: 'warning', timeLeftMs: 7000, operation: { quantity: 9 } });
  t.match(byKey(items, `acknowledgement:${plan}`)?.rule, /docs\/marketplace\.md §7\.2/);

  items = (await deadlinesAt(w, 60_000));
  t.same(items.map((d) => [d.key, d.severity]), [[`acknowledgement:${plan}`, 'overdue'], [`acknowledgement:${seats}`, 'overdue']], 'past the window: overdue');

  await w.notification(plan, { type: 'AcknowledgeOperation', status: 'Success', now: at(61_000) });
  t.same((await deadlinesAt(w, 62_000)).map((d) => d.key), [`acknowledgement:${seats}`], 'acknowledged: gone');
  // Microsoft had settled it already (no longer InProgress): the process records the outcome without acknowledging.
  await w.notification(seats, { type: 'RecordOutcome', outcome: 'applied', detail: 'ChangeQuantity applied', subscriptionEvents: ['QuantityChanged'], now: at(63_000) });
  t.same((await deadlinesAt(w, 64_000)), [], 'settled by the notification process: gone');
});

t.test('the most urgent first; the queries read indexes, never a whole table', async (t) => {
  const w = world(t);
  await w.subscription(A, purchase(A, at(-29 * DAY))); // overdue soon
  await w.subscription(B, purchase(B, at(-DAY)));
  const health = new CredentialHealth({ kind: 'secret', now: () => new Date(T0) });
  health.recordRejected({ call: 'getSubscription', status: 403, message: '403 Forbidden' });
  const items = (await deadlinesAt(w, 2 * DAY, health.snapshot()));
  t.same(
    items.map((d) => [d.key, d.severity]),
    [[`pending-purchase:${A}`, 'overdue'], ['credential:rejected', 'warning'], [`pending-purchase:${B}`, 'info']],
  );

  const plan = (sql: string) => (w.file.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>).map((r) => r.detail).join('; ');
  const pending = plan(pendingSubscriptionsSql);
  t.match(pending, /USING INDEX subscriptions_by_status/, pending);
  t.notMatch(pending, /SCAN subscriptions(?! USING)/);
  const unacked = plan(unacknowledgedOperationsSql);
  t.match(unacked, /USING INDEX operations_unacknowledged/, unacked);
  t.notMatch(unacked, /SCAN operations(?! USING)/);
});
