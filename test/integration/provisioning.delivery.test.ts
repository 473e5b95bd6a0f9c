/**
 * Integration events over real HTTP to a receiver on 127.0.0.1, from a real SQLite file: subscription
 * events made by the decider through the ledger, the integration process run by the process runner.
 *
 * - The receiver failing (500), then down (connection refused), then up receives every event once
 *   per idempotency key, in order per subscription, each signature verifying.
 * - A subscription whose deliveries fail holds back only its own later events.
 * - Stopping and starting again on the same file redelivers nothing that was acknowledged, and
 *   resumes what was not.
 */
import { missingProvenance } from '../support/provenance.js';
import t from 'tap';
import { subscriptionStream } from '../../src/domain/subscription/index.js';
import { outboxStream } from '../../src/integration/outbox.js';
import { allProcessed, as, assertExactlyOnceInOrder, lifecycle, now, processedFor, world } from '../support/integration-world.js';
import { waitFor } from '../support/wait.js';

t.test('the receiver failing, then down, then up: every event once per key, in order per subscription', async (t) => {
  const w = await world(t);
  const ids = ['a0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000002', 'c0000000-0000-4000-8000-000000000003'];
  await w.receiver.setMode('error');
  await Promise.all(ids.map((id) => lifecycle(w.ledger, id)));
  await waitFor('each subscription to fail at least twice', () =>
    ids.every((id) => w.receiver.receipts.filter((r) => r.json.subscriptionId === id && r.status === 500).length >= 2),
  );
  t.equal(w.receiver.processed.length, 0, 'nothing acknowledged while the receiver answers 500');
  t.ok(
    ids.every((id) => new Set(w.receiver.receipts.filter((r) => r.json.subscriptionId === id).map((r) => r.key)).size === 1),
    'while its first event fails, no later event of a subscription is attempted',
  );

  await w.receiver.setMode('down');
  const refusedFrom = w.receiver.receipts.length;
  await waitFor('failures recorded while the port is closed', async () => {
    const outbox = await w.store.readStream(outboxStream(ids[0] as string));
    return outbox.filter((e) => e.type === 'DeliveryFailed' && /ECONNREFUSED|fetch failed/.test((e.data as { error: string }).error)).length >= 2;
  });
  t.equal(w.receiver.receipts.length, refusedFrom, 'nothing reaches a closed port');
  // More happens while the receiver is down.
  for (const id of ids) await w.ledger.execute(id, { type: 'Renew', now: now(), source: 'webhook', operationId: `${id}-renew`, term: { termUnit: 'P1M', startDate: '2026-06-01T00:00:00Z' } }, as);

  await w.receiver.setMode('up');
  await allProcessed(w, ids);
  await assertExactlyOnceInOrder(t, w, ids);

  const failed = (await w.store.readStream(outboxStream(ids[0] as string))).filter((e) => e.type === 'DeliveryFailed');
  t.ok(failed.length >= 4, `the failures are recorded in the outbox stream (${failed.length})`);
  t.match(failed[0]?.data, { attempt: 1, status: 500, error: /answered 500/ });
  const attempts = w.receiver.processed.find((r) => r.json.subscriptionId === ids[0])?.attempt ?? 0;
  t.ok(attempts > 1, `the first event was acknowledged on attempt ${attempts}`);
  await waitFor('the outboxes settled', async () => (await w.integration.admin.status()).pending === 0);
  t.same(await w.integration.admin.status(), { subscriptions: 0, pending: 0, retrying: 0, deadLettered: 0, inFlight: 0 }, 'nothing left');
  t.same(await missingProvenance(w.store, ['outbox-', 'checkpoint-', 'lease-']), [], 'every outbox, checkpoint and lease event carries correlationId and causationId');
  const scheduled = (await w.store.readStream(outboxStream(ids[0] as string))).find((e) => e.type === 'DeliveryScheduled');
  const delivered = (scheduled?.data as { eventId?: string } | undefined)?.eventId;
  t.match(scheduled?.metadata, { correlationId: delivered, causationId: delivered }, 'a delivery is correlated with, and caused by, the ledger event it delivers');
});

t.test('the envelope: id = idempotency key, type, sequence, snapshot, headers', async (t) => {
  const w = await world(t);
  const id = 'd0000000-0000-4000-8000-000000000004';
  await lifecycle(w.ledger, id);
  await allProcessed(w, [id]);
  const stream = await w.store.readStream(subscriptionStream(id));
  const got = processedFor(w.receiver, id);
  t.same(
    got.map((e) => e.type),
    ['subscription.purchased', 'subscription.activation_requested', 'subscription.activated', 'subscription.plan_changed', 'subscription.quantity_changed', 'subscription.suspended', 'subscription.reinstated'],
  );
  const first = w.receiver.processed[0];
  t.equal(first?.key, stream[0]?.id, 'Idempotency-Key is the ledger event id');
  t.equal(first?.type, 'subscription.purchased', 'X-Ledger-Event-Type');
  t.match(first?.headers['x-ledger-signature'], /^t=\d+,v1=[0-9a-f]{64}$/);
  t.equal(first?.headers['content-type'], 'application/json; charset=utf-8');
  t.match(got[0], {
    id: stream[0]?.id,
    version: 1,
    subscriptionId: id,
    sequence: 0,
    occurredAt: (stream[0]?.data as { at: string }).at,
    data: { source: 'landing', offerId: 'fulfillment-ledger', planId: 'silver', quantity: 5, microsoftStatus: 'PendingFulfillmentStart', purchaser: { emailId: 'buyer@contoso.example' } },
    subscription: { status: 'PendingFulfillmentStart', planId: 'silver', quantity: 5 },
  });
  t.notOk('puid' in ((got[0]?.data as { purchaser: object }).purchaser), 'only the documented party fields');
  t.match(got[3], { type: 'subscription.plan_changed', data: { planId: 'gold', previousPlanId: 'silver', operationId: `${id}-op1` }, subscription: { status: 'Subscribed', planId: 'gold' } });
  t.match(got[5], { type: 'subscription.suspended', subscription: { status: 'Suspended', planId: 'gold', quantity: 9, contact: { email: 'it@contoso.example' } } });
  t.match(got[6], { type: 'subscription.reinstated', subscription: { status: 'Subscribed' } });
});

t.test('a failing subscription holds back only its own later events', async (t) => {
  const w = await world(t);
  const [a, b, c] = ['e0000000-0000-4000-8000-000000000005', 'f0000000-0000-4000-8000-000000000006', '10000000-0000-4000-8000-000000000007'];
  w.receiver.reject((json) => json.subscriptionId === a);
  await Promise.all([a, b, c].map((id) => lifecycle(w.ledger, id as string)));
  await allProcessed(w, [b as string, c as string]);
  await waitFor('a few attempts on A', () => w.receiver.receipts.filter((r) => r.json.subscriptionId === a).length >= 3);
  t.equal(processedFor(w.receiver, a as string).length, 0, 'A: nothing processed');
  t.equal(new Set(w.receiver.receipts.filter((r) => r.json.subscriptionId === a).map((r) => r.key)).size, 1, 'A: only its first event is attempted');
  await waitFor('B and C recorded as delivered', async () => (await w.integration.admin.status()).subscriptions === 1);
  t.match(await w.integration.admin.status(), { subscriptions: 1, pending: 7, retrying: 1, deadLettered: 0 });

  w.receiver.reject(undefined);
  await allProcessed(w, [a as string, b as string, c as string]);
  await assertExactlyOnceInOrder(t, w, [a as string, b as string, c as string]);
});

t.test('stop and start on the same SQLite file: nothing acknowledged is sent again; what was not, is', async (t) => {
  const w = await world(t);
  const [a, b] = ['20000000-0000-4000-8000-000000000008', '30000000-0000-4000-8000-000000000009'];
  await lifecycle(w.ledger, a as string);
  await allProcessed(w, [a as string]);
  await w.integration.idle();
  await waitFor('the outboxes settled', async () => (await w.integration.admin.status()).pending === 0);
  const before = w.receiver.receipts.length;

  await w.restart();
  await w.integration.idle();
  await new Promise((r) => setTimeout(r, 300));
  t.equal(w.receiver.receipts.length, before, 'a restart re-sends nothing');

  // Undelivered work survives a restart: B's events fail, the process stops with them pending.
  await w.receiver.setMode('error');
  await lifecycle(w.ledger, b as string);
  await w.ledger.execute(a as string, { type: 'Renew', now: now(), source: 'webhook', operationId: 'renew-a' }, as);
  await waitFor('B attempted and failing', () => w.receiver.receipts.some((r) => r.json.subscriptionId === b && r.status === 500));
  await w.integration.idle(); // every event is in its outbox and the checkpoint is past them
  await new Promise((r) => setTimeout(r, 100));
  await w.restart();
  await w.receiver.setMode('up');
  await allProcessed(w, [a as string, b as string]);
  await assertExactlyOnceInOrder(t, w, [a as string, b as string]);
  await waitFor('the outboxes settled', async () => (await w.integration.admin.status()).pending === 0);
  const outbox = await w.store.readStream(outboxStream(b as string));
  t.equal(outbox.filter((e) => e.type === 'DeliveryScheduled').length, 7, 'each event scheduled once, though the runner may have replayed some');
  t.equal(outbox.filter((e) => e.type === 'Delivered').length, 7, 'each recorded Delivered once');
});
