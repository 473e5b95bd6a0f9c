import t from 'tap';
import { buildApp } from '../../src/app.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { createLogger } from '../../src/logger.js';

t.test('/readyz is 503 until the store is open, 200 after, 503 when it stops answering', async (t) => {
  let store: EventStore | undefined;
  const app = await buildApp({ logger: createLogger('silent'), store: () => store });
  t.teardown(() => app.close());
  t.equal((await app.inject('/healthz')).statusCode, 200, 'healthz answers at once');
  const before = await app.inject('/readyz');
  t.equal(before.statusCode, 503);
  t.equal(before.json().status, 'starting');
  store = openSqliteStore({ path: ':memory:' });
  const after = await app.inject('/readyz');
  t.equal(after.statusCode, 200);
  t.same(after.json(), { status: 'ready', store: 'sqlite' });
  await store.close();
  const closed = await app.inject('/readyz');
  t.equal(closed.statusCode, 503);
  t.match(closed.json(), { status: 'unavailable', detail: /closed/ });
});

t.test('unknown routes answer problem+json 404', async (t) => {
  const app = await buildApp({ logger: createLogger('silent'), store: () => undefined });
  t.teardown(() => app.close());
  const res = await app.inject('/nowhere?x=1');
  t.equal(res.statusCode, 404);
  t.match(res.headers['content-type'], /application\/problem\+json/);
  t.match(res.json(), { status: 404, title: 'not-found', detail: 'no route for GET /nowhere' });
});
