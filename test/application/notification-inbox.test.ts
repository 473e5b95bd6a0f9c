/** The webhook's application service on a real SQLite file: what it records and what it answers. */
import t from 'tap';
import type { Test } from 'tap';
import { join } from 'node:path';
import { readNotification } from '../../src/application/notification-events.js';
import { NotificationInbox } from '../../src/application/notification-inbox.js';
import type { InboxLog } from '../../src/application/notification-inbox.js';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import { notificationStream } from '../../src/domain/notification/index.js';
import { subscriptionStream } from '../../src/domain/subscription/index.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { tempDir } from '../support/temp.js';

const SUB = '3c1f6a2e-9b7d-4e51-8a0c-2d4f6b8e1a37';
const NOW = new Date('2026-05-01T12:00:00.000Z');

const quiet: InboxLog = { info() {}, warn() {}, child: () => quiet };

function setup(t: Test) {
  const store = openSqliteStore({ path: join(tempDir(t, 'inbox'), 'events.db') });
  t.teardown(() => store.close());
  const ledger = new SubscriptionLedger(store);
  const inbox = new NotificationInbox({ store, ledger, policy: { retiredPlans: [], maxSeats: 20 }, now: () => NOW });
  const deliver = (payload: object | string) => {
    const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
    return inbox.receive({ body, headers: { 'x-ms-correlationid': 'corr-1' }, reading: readNotification(body) }, quiet);
  };
  return { store, deliver };
}

t.test('a first delivery is accepted and stored with its payload; a repeat is a duplicate', async (t) => {
  const { store, deliver } = setup(t);
  const id = crypto.randomUUID();
  const payload = { id, subscriptionId: SUB, action: 'Suspend', status: 'Succeeded' };
  t.match(await deliver(payload), { kind: 'accepted', operationId: id });
  t.match(await deliver(payload), { kind: 'duplicate', operationId: id });
  const events = await store.readStream(notificationStream(id));
  t.same(events.map((e) => e.type), ['NotificationReceived', 'NotificationReceived'], 'both deliveries kept');
  t.match(events[0], {
    metadata: { actor: 'microsoft', correlationId: 'corr-1' },
    data: { operationId: id, subscriptionId: SUB, action: 'Suspend', body: JSON.stringify(payload), payload: { id, subscriptionId: SUB, action: 'Suspend', status: 'Succeeded' } },
  });
  t.equal(events[0]?.id, (events[0]?.data as { deliveryId: string }).deliveryId, "the event's id is the delivery id");
});

t.test('a change the policy refuses: refused now, and answered the same on a repeat', async (t) => {
  const { store, deliver } = setup(t);
  const id = crypto.randomUUID();
  const payload = { id, subscriptionId: SUB, action: 'ChangeQuantity', quantity: 30, status: 'InProgress', operationRequestSource: 'Azure' };
  t.same(await deliver(payload), { kind: 'refused', reason: '30 seats is more than the product supports (20)' });
  t.same(await deliver(payload), { kind: 'refused', reason: '30 seats is more than the product supports (20)' });
  const events = await store.readStream(notificationStream(id));
  t.same(events.map((e) => e.type), ['NotificationReceived', 'NotificationProcessed', 'NotificationReceived']);
  t.match(events[1], { metadata: { actor: 'system:webhook' }, data: { outcome: 'rejected', subscriptionEvents: [] } });
  t.same(await store.readStream(subscriptionStream(SUB)), [], 'an unknown subscription is refused all the same, with nothing on it');
  t.match(await deliver({ ...payload, id: crypto.randomUUID(), operationRequestSource: 'Partner' }), { kind: 'accepted' }, "our own change is not the policy's to refuse");
});

t.test('an unreadable body is kept in a stream of its own and answered as unreadable', async (t) => {
  const { store, deliver } = setup(t);
  const outcome = await deliver('not json');
  if (outcome.kind !== 'unreadable') return t.fail(`expected unreadable, got ${outcome.kind}`);
  const events = await store.readStream(notificationStream(`unreadable-${outcome.deliveryId}`));
  t.match(events, [{ type: 'NotificationReceived', data: { body: 'not json', unreadable: outcome.reason } }]);
  t.notOk((events[0]?.data as { payload?: unknown }).payload, 'no payload');
  t.match(await deliver({ id: crypto.randomUUID(), subscriptionId: SUB, action: 'Transmogrify' }), { kind: 'accepted' }, 'an unknown action is accepted');
});
