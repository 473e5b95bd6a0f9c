import { join } from 'node:path';
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { createLogger } from '../../src/logger.js';
import { holdWriteLock } from '../support/lock-holder.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

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

t.test('/readyz says not-ready with the reason while another process holds the write lock, ready again after; /healthz answers meanwhile', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = openSqliteStore({ path, busyWaitMs: 300, writeProbeIntervalMs: 100 });
  t.teardown(() => store.close());
  const app = await buildApp({ logger: createLogger('silent'), store: () => store });
  t.teardown(() => app.close());
  t.same((await app.inject('/readyz')).json(), { status: 'ready', store: 'sqlite' });

  const lock = await holdWriteLock(t, path);
  const notReady = await waitFor('/readyz to say not-ready', async () => {
    const res = await app.inject('/readyz');
    return res.statusCode === 503 ? res : undefined;
  });
  t.match(notReady.json(), { status: 'not-ready', store: 'sqlite', reason: /^cannot write: the database is locked by another process/, since: /^\d{4}-/ });
  t.same(Object.keys(notReady.json()).sort(), ['reason', 'since', 'status', 'store'], 'only what the schema lists');
  const health = await app.inject('/healthz');
  t.same([health.statusCode, health.json()], [200, { status: 'ok' }], '/healthz does not look at the store');

  await lock.release();
  const ready = await waitFor('/readyz to say ready again', async () => {
    const res = await app.inject('/readyz');
    return res.statusCode === 200 ? res : undefined;
  });
  t.same(ready.json(), { status: 'ready', store: 'sqlite' }, 'by itself: the probe write went through');
});

t.test('unknown routes answer problem+json 404', async (t) => {
  const app = await buildApp({ logger: createLogger('silent'), store: () => undefined });
  t.teardown(() => app.close());
  const res = await app.inject('/nowhere?x=1');
  t.equal(res.statusCode, 404);
  t.match(res.headers['content-type'], /application\/problem\+json/);
  t.match(res.json(), { status: 404, title: 'not-found', detail: 'no route for GET /nowhere' });
});
