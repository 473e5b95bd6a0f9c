/**
 * The shared event store contract against a REAL EventStoreDB, when one is configured:
 *   EVENTSTORE_CONNECTION_STRING='esdb://localhost:2113?tls=false' npx tap test/eventstore/esdb.contract.test.ts
 * Without it the suite is reported as skipped, with the reason. (The same adapter is exercised on every run
 * against the gRPC stand-in, in esdb.standin.test.ts.) A real server keeps its data, so every stream and group
 * name here carries a random suffix.
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { openEsdbStore } from '../../src/eventstore/esdb.store.js';
import type { PersistentDelivery } from '../../src/eventstore/esdb.store.js';
import { eventStoreContract } from './contract.js';

const connectionString = process.env.EVENTSTORE_CONNECTION_STRING;
const skip = 'EVENTSTORE_CONNECTION_STRING not set: EventStoreDB contract tests need a real server';

if (!connectionString) {
  t.test('EventStoreDB contract (real server)', { skip }, async () => {});
} else {
  t.test('the real EventStoreDB answers ping', async (t) => {
    const store = await openEsdbStore(connectionString);
    t.teardown(() => store.close());
    await t.resolves(store.ping());
  });

  eventStoreContract(t, 'eventstoredb (real server)', () => openEsdbStore(connectionString));

  t.test('real server: a persistent subscription redelivers a nacked event and then takes the ack', async (t) => {
    const store = await openEsdbStore(connectionString);
    const group = `contract-group-${randomUUID()}`;
    const prefix = `psreal${randomUUID().replaceAll('-', '')}`;
    t.teardown(async () => {
      await store.deletePersistentSubscription(group);
      await store.close();
    });
    await store.appendToStream(`${prefix}-1`, [{ type: 'Happened', data: { n: 1 } }]);
    const sub = store.persistentSubscription(group, { streamPrefixes: [prefix], startFrom: 'start' });
    const seen: Pick<PersistentDelivery, 'retryCount'>[] = [];
    const timer = setTimeout(() => void sub.close(), 15_000);
    for await (const delivery of sub) {
      seen.push({ retryCount: delivery.retryCount });
      if (delivery.retryCount === 0) {
        await delivery.nack('first attempt fails on purpose');
      } else {
        await delivery.ack();
        break;
      }
    }
    clearTimeout(timer);
    t.same(seen, [{ retryCount: 0 }, { retryCount: 1 }]);
  });
}
