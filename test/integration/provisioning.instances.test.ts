/**
 * Two service instances on one SQLite file (two store handles, as two processes would have): only
 * the active one delivers; the other follows the outboxes, so its dead-letter list is current and
 * an operator's retry made through it is picked up by the active one; when the active one changes,
 * the new one carries on where the old one stopped. Every key is acknowledged once.
 */
import t from 'tap';
import { join } from 'node:path';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import { subscriptionStream } from '../../src/domain/subscription/index.js';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { OutboxDispatcher } from '../../src/integration/dispatcher.js';
import { createWebhookSender } from '../../src/integration/webhook-sender.js';
import { integrationEventsProcess } from '../../src/processes/integration-events.process.js';
import { as, lifecycle, logger, now, SECRET } from '../support/integration-world.js';
import { startReceiver } from '../support/isv-receiver.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

t.test('one active instance delivers; the other sees and retries dead letters; a hand-over loses and repeats nothing', async (t) => {
  const path = join(tempDir(t, 'instances'), 'events.db');
  const receiver = await startReceiver(t, SECRET);
  const stores: EventStore[] = [openSqliteStore({ path, pollIntervalMs: 20 }), openSqliteStore({ path, pollIntervalMs: 20 })];
  let activeIndex = 0;
  const instances = stores.map(
    (store, i) =>
      new OutboxDispatcher({
        store,
        sender: createWebhookSender({ url: receiver.url, secrets: [SECRET], timeoutMs: 5000 }),
        logger,
        maxAttempts: 2,
        backoffBaseMs: 30,
        backoffMaxMs: 100,
        active: () => activeIndex === i,
        activeCheckMs: 50,
      }),
  );
  t.teardown(async () => {
    for (const d of instances) await d.stop();
    for (const s of stores) await s.close();
  });
  const [a, b] = instances as [OutboxDispatcher, OutboxDispatcher];
  await Promise.all(instances.map((d) => d.start()));

  // The integration process (whichever instance runs it) schedules; here instance B's handler does.
  const ledger = new SubscriptionLedger(stores[1] as EventStore);
  const handler = integrationEventsProcess({ store: stores[1] as EventStore, outbox: b });
  const id = '90000000-0000-4000-8000-00000000000f';
  const scheduleAll = async () => {
    for (const e of await (stores[1] as EventStore).readStream(subscriptionStream(id))) await handler.handle(e);
  };
  receiver.reject((json) => json.type === 'subscription.activated');
  await lifecycle(ledger, id);
  await scheduleAll();
  await scheduleAll(); // a replay schedules nothing twice

  await waitFor('the active instance (A) dead-letters the activation', async () => (await a.status()).deadLettered === 1);
  await waitFor('the inactive instance (B) sees it too', async () => (await b.deadLetters()).length === 1);
  const [dead] = await b.deadLetters();
  t.match(dead, { subscriptionId: id, type: 'subscription.activated', attempts: 2, blockedEvents: 4 });
  t.equal(receiver.processed.length, 2, 'purchase and activation request delivered, then blocked');

  receiver.reject(undefined);
  t.ok(await b.retry(dead?.eventId ?? '', 'operator:carol'), 'retried through the inactive instance');
  await waitFor('A delivers the rest after the retry', () => receiver.processed.length === 7);

  // Hand-over: B becomes the active instance; A stops delivering. (A hand-over in the middle of a
  // delivery sends that event again from the new instance, with the same idempotency key.)
  await waitFor('A recorded its deliveries', async () => (await a.status()).pending === 0);
  activeIndex = 1;
  await ledger.execute(id, { type: 'Renew', now: now(), source: 'webhook', operationId: 'renew-1' }, as);
  await scheduleAll();
  await waitFor('B delivers the renewal', () => receiver.processed.length === 8);

  const acks = receiver.acknowledgements();
  t.same([...acks.values()].filter((n) => n !== 1), [], 'every key acknowledged once');
  t.same(
    receiver.processed.map((r) => r.json.sequence),
    [0, 1, 2, 3, 4, 5, 6, 7],
    'in order across the retry and the hand-over',
  );
  const attempts = receiver.receipts.filter((r) => r.key === dead?.eventId).length;
  t.equal(attempts, 3, 'the dead letter: two failed attempts, then one after the retry, from one instance only');
});
