/**
 * The read API over PostgreSQL answers exactly what it answers over SQLite, for the same events: every list
 * (filters, sorts, pages and cursors), the metrics, the status, the deadlines and every CSV export, through the
 * app as the service mounts it. (readmodel.routes.test.ts checks the answers themselves, over SQLite.)
 */
import t from 'tap';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { PublisherChanges } from '../../src/application/publisher-changes.js';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { createLogger } from '../../src/logger.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { allProjections, startProjections } from '../../src/projections/index.js';
import type { RunningProjections } from '../../src/projections/runner.js';
import { postgresSkip } from '../support/postgres.js';
import { storeWithHistory, testTarget } from './helpers.js';
import type { TargetKind } from './helpers.js';

const TOKEN = 'read-model-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

async function appOver(t: Test, store: EventStore, kind: TargetKind) {
  const target = await testTarget(t, kind, allProjections, { file: true });
  const running: RunningProjections = startProjections({ store, target, logger });
  t.teardown(() => running.stop());
  await running.idle();
  const ledger = new SubscriptionLedger(() => store);
  const client = new FulfillmentClient({ baseUrl: 'http://127.0.0.1:9/unused', tokenProvider: new StaticTokenProvider('unused'), logger });
  const publisherChanges = new PublisherChanges({ ledger, client, logger });
  const app = await buildApp({ logger, store: () => store, api: { operatorToken: TOKEN, subscriptions: { ledger, publisherChanges }, readModels: { readModels: () => running } } });
  t.teardown(() => app.close());
  return app;
}

const urls = [
  '/api/read/subscriptions?limit=7',
  '/api/read/subscriptions?sort=quantity&order=asc&limit=11',
  '/api/read/subscriptions?status=Subscribed,Suspended&sort=planId&limit=500',
  '/api/read/subscriptions?test=false&freeTrial=true&limit=500',
  '/api/read/subscriptions?createdFrom=2026-01-15&activatedTo=2026-03-01&limit=500',
  '/api/read/operations?limit=9',
  '/api/read/operations?order=asc&limit=500&source=Azure',
  '/api/read/metrics',
  '/api/read/metrics?includeTest=true&from=2026-01-10&to=2026-02-20',
  '/api/read/subscriptions.csv',
  '/api/read/subscriptions.csv?status=Unsubscribed&sort=cancelledAt&order=desc',
  '/api/read/operations.csv',
  '/api/read/change-requests.csv',
  '/api/read/metrics-subscriptions.csv',
  '/api/read/metrics-daily.csv',
  '/api/read/usage?period=month',
  '/api/read/usage.csv',
  '/api/read/usage/unsettled',
];

const skip = await postgresSkip();
t.test('every read answer over PostgreSQL equals the answer over SQLite', { skip }, async (t) => {
  const { store } = await storeWithHistory(t, { subscriptions: 90, seed: 11 });
  const sqlite = await appOver(t, store, 'sqlite');
  const postgres = await appOver(t, store, 'postgres');
  for (const url of urls) {
    const a = await sqlite.inject({ method: 'GET', url, headers: AUTH });
    const b = await postgres.inject({ method: 'GET', url, headers: AUTH });
    t.equal(b.statusCode, a.statusCode, `${url}: ${a.statusCode}`);
    t.equal(b.body, a.body, `${url}: the same body (${a.body.length} bytes)`);
  }
  // Follow the cursor pages to the end on both.
  let cursor: string | undefined;
  let pages = 0;
  do {
    const url = `/api/read/subscriptions?limit=13&sort=createdAt${cursor ? `&cursor=${cursor}` : ''}`;
    const a = JSON.parse((await sqlite.inject({ method: 'GET', url, headers: AUTH })).body) as { nextCursor?: string };
    const b = JSON.parse((await postgres.inject({ method: 'GET', url, headers: AUTH })).body) as unknown;
    t.same(b, a, `page ${++pages}`);
    cursor = a.nextCursor;
  } while (cursor);
  const status = JSON.parse((await postgres.inject({ method: 'GET', url: '/api/read/status', headers: AUTH })).body) as { projections: Array<{ state: string }> };
  t.ok(status.projections.every((p) => p.state === 'live'), 'status over PostgreSQL: live');
});
