/** The auditors' routes (issue 12): behind the operator token, validated, in the OpenAPI document, streamed export. */
import { join } from 'node:path';
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { parseJsonlRecord } from '../../src/application/event-export.js';
import { createLogger } from '../../src/logger.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { syntheticHistory, writeHistory } from '../support/synthetic-history.js';
import { tempDir } from '../support/temp.js';

const TOKEN = 'test-operator-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };

t.test('state?at=, events/export: validation, 404, 401, streaming, OpenAPI', async (t) => {
  const store = openSqliteStore({ path: join(tempDir(t, 'audit-routes'), 'events.db') });
  t.teardown(() => store.close());
  await writeHistory(store, syntheticHistory({ subscriptions: 5, seed: 3 }));
  const app = await buildApp({ logger: createLogger('silent'), store: () => store, api: { operatorToken: TOKEN, audit: { store } } });
  t.teardown(() => app.close());
  let first: string | undefined;
  for await (const e of store.readAll({ streamPrefixes: ['subscription-'], maxCount: 1 })) first = e.streamId.slice('subscription-'.length);

  const ok = await app.inject({ url: `/api/subscriptions/${first}/state?at=2100-01-01T00:00:00Z`, headers: auth });
  t.equal(ok.statusCode, 200);
  t.match(ok.json(), { subscriptionId: first, at: '2100-01-01T00:00:00.000Z', state: { status: String } });
  for (const at of ['yesterday', '2026-13-45T99:00:00Z', '2026-03-01']) {
    t.equal((await app.inject({ url: `/api/subscriptions/${first}/state?at=${at}`, headers: auth })).statusCode, 400, `at=${at}: 400`);
  }
  t.equal((await app.inject({ url: `/api/subscriptions/${first}/state`, headers: auth })).statusCode, 400, 'at is required');
  t.equal((await app.inject({ url: '/api/subscriptions/nobody/state?at=2100-01-01T00:00:00Z', headers: auth })).statusCode, 404);
  t.equal((await app.inject({ url: `/api/subscriptions/${first}/state?at=2100-01-01T00:00:00Z` })).statusCode, 401);

  let count = 0;
  for await (const _e of store.readAll()) count++;
  const all = await app.inject({ url: '/api/events/export', headers: auth });
  t.equal(all.statusCode, 200);
  t.equal(all.headers['content-type'], 'application/x-ndjson');
  t.equal(all.body.split('\n').filter((l) => l).map(parseJsonlRecord).length, count, 'every event');
  const csv = await app.inject({ url: `/api/events/export?format=csv&subscription=${first}`, headers: auth });
  t.match(csv.headers['content-type'], /^text\/csv/);
  t.match(csv.body, /^position,recordedAt,streamId,revision,eventId,type,data,metadata,notificationStream\r\n/);
  t.equal((await app.inject({ url: '/api/events/export?format=xml', headers: auth })).statusCode, 400);
  t.equal((await app.inject({ url: '/api/events/export?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z', headers: auth })).statusCode, 400);
  t.equal((await app.inject({ url: '/api/events/export' })).statusCode, 401);

  const doc = (await app.inject({ url: '/openapi.json' })).json() as { paths: Record<string, Record<string, { operationId: string }>> };
  t.equal(doc.paths['/api/subscriptions/{id}/state']?.get?.operationId, 'getSubscriptionStateAt');
  t.equal(doc.paths['/api/events/export']?.get?.operationId, 'exportEvents');
});
