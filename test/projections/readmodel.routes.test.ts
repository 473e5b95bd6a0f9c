/**
 * The read-model API through inject(), mounted as the service mounts it (beside the operator API
 * under /api, with the app's error handler and OpenAPI document): auth, filters checked against
 * plain SQL over the same file, sorting, keyset pagination, metrics, CSV exports, strict parameters.
 */
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { createLogger } from '../../src/logger.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { PublisherChanges } from '../../src/application/publisher-changes.js';
import { csvField, csvLine } from '../../src/projections/csv.js';
import { startProjections } from '../../src/projections/index.js';
import type { RunningProjections } from '../../src/projections/runner.js';
import { storeWithHistory, sqliteOf } from './helpers.js';

const TOKEN = 'read-model-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

async function appWith(t: Test, store: EventStore | undefined, readModels: () => RunningProjections | undefined) {
  const ledger = new SubscriptionLedger(() => store);
  const client = new FulfillmentClient({ baseUrl: 'http://127.0.0.1:9/unused', tokenProvider: new StaticTokenProvider('unused'), logger });
  const publisherChanges = new PublisherChanges({ ledger, client, logger });
  const app = await buildApp({ logger, store: () => store, api: { operatorToken: TOKEN, subscriptions: { ledger, publisherChanges }, readModels: { readModels } } });
  t.teardown(() => app.close());
  return app;
}

const { store, dir } = await storeWithHistory(t, { subscriptions: 90, seed: 11 });
const runner = startProjections({ store, path: join(dir, 'readmodels.db'), logger });
t.teardown(() => runner.stop());
await runner.idle();
const db = sqliteOf(runner);
const app = await appWith(t, store, () => runner);

const get = async (url: string, headers: Record<string, string> = AUTH) => {
  const res = await app.inject({ method: 'GET', url, headers });
  return { status: res.statusCode, headers: res.headers, json: () => res.json() as Record<string, unknown>, body: res.body };
};
type Item = Record<string, unknown> & { subscriptionId: string };
type PageBody = { items: Item[]; total: number; nextCursor?: string };

/** Every page of a list, following nextCursor. */
async function all(url: string, key: 'subscriptionId' | 'operationId' = 'subscriptionId'): Promise<{ ids: string[]; pages: number; total: number }> {
  const ids: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  let total = 0;
  do {
    const res = await get(`${url}${url.includes('?') ? '&' : '?'}${cursor ? `cursor=${cursor}&` : ''}limit=17`);
    if (res.status !== 200) throw new Error(`${url}: ${res.status} ${res.body}`);
    const body = res.json() as unknown as PageBody;
    ids.push(...body.items.map((i) => String(i[key])));
    total = body.total;
    cursor = body.nextCursor;
    pages++;
  } while (cursor);
  return { ids, pages, total };
}

const sqlIds = (where: string, order = 'created_at DESC, subscription_id DESC', params: unknown[] = []) =>
  db.prepare(`SELECT subscription_id FROM subscriptions ${where ? `WHERE ${where}` : ''} ORDER BY ${order}`).pluck().all(...params) as string[];

t.test('every route needs the operator token; 503 until the read models are open', async (t) => {
  for (const url of ['/api/read/status', '/api/read/subscriptions', '/api/read/metrics', '/api/read/operations', '/api/read/subscriptions.csv']) {
    const res = await get(url, {});
    t.equal(res.status, 401, `${url} without a token`);
    t.equal((await get(url, { authorization: 'Bearer nope-nope-nope-nope' })).status, 401, `${url} with a wrong token`);
  }
  const closed = await appWith(t, store, () => undefined);
  const res = await closed.inject({ method: 'GET', url: '/api/read/subscriptions', headers: AUTH });
  t.equal(res.statusCode, 503);
  t.equal(res.headers['retry-after'], '5');
  t.match(res.headers['content-type'], /application\/problem\+json/);
  t.match(res.json(), { title: 'read-models-unavailable', status: 503 });
});

t.test('status', async (t) => {
  const res = await get('/api/read/status');
  t.equal(res.status, 200);
  t.equal(res.headers['x-read-model-state'], 'live');
  const body = res.json() as { projections: Array<{ name: string; state: string; version: number; position: string }> };
  t.same(body.projections.map((p) => [p.name, p.state, p.version]), [['subscriptions', 'live', 3], ['operations', 'live', 3], ['metrics', 'live', 1], ['usage', 'live', 1]]);
  t.match(body.projections[0]?.position, /^\d+$/);
});

t.test('the list: default page, every page once, each sort', async (t) => {
  const first = await get('/api/read/subscriptions');
  t.equal(first.status, 200);
  const body = first.json() as unknown as PageBody & { sort: string; order: string; limit: number };
  t.match(body, { total: 90, sort: 'createdAt', order: 'desc', limit: 50 });
  t.equal(body.items.length, 50);
  t.type(body.nextCursor, 'string');
  t.same(body.items.map((i) => i.subscriptionId), sqlIds('').slice(0, 50), 'newest first');

  const row = db.prepare('SELECT * FROM subscriptions WHERE contact_email IS NOT NULL ORDER BY subscription_id LIMIT 1').get() as Record<string, unknown>;
  const byEmail = (await get(`/api/read/subscriptions?email=${encodeURIComponent(String(row.contact_email))}&limit=500`)).json() as unknown as PageBody;
  const one = byEmail.items.find((i) => i.subscriptionId === row.subscription_id);
  t.match(one, {
    subscriptionId: row.subscription_id,
    offerId: row.offer_id,
    planId: row.plan_id,
    status: row.status,
    isFreeTrial: row.is_free_trial === 1,
    contact: { email: row.contact_email },
    purchaser: { email: row.purchaser_email, tenantId: row.purchaser_tenant_id },
    createdAt: row.created_at,
    revision: String(row.stream_revision),
    position: String(row.position),
  });

  const sorts: Array<[string, string]> = [
    ['createdAt', 'created_at'],
    ['activatedAt', "coalesce(activated_at, '')"],
    ['cancelledAt', "coalesce(cancelled_at, '')"],
    ['updatedAt', 'updated_at'],
    ['status', 'status'],
    ['offerId', 'offer_id'],
    ['planId', 'plan_id'],
    ['quantity', 'coalesce(quantity, -1)'],
    ['subscriptionId', 'subscription_id'],
  ];
  for (const [sort, column] of sorts) {
    for (const order of ['asc', 'desc'] as const) {
      const paged = await all(`/api/read/subscriptions?sort=${sort}&order=${order}`);
      t.same(paged.ids, sqlIds('', `${column} ${order}, subscription_id ${order}`), `sort=${sort}&order=${order}: ${paged.pages} pages, each row once, in order`);
    }
  }
});

t.test('filters, each checked against SQL', async (t) => {
  const pick = db.prepare("SELECT * FROM subscriptions WHERE is_csp = 1 AND activated_at IS NOT NULL LIMIT 1").get() as Record<string, string>;
  const mid = db.prepare('SELECT created_at FROM subscriptions ORDER BY created_at LIMIT 1 OFFSET 30').pluck().get() as string;
  const late = db.prepare('SELECT created_at FROM subscriptions ORDER BY created_at LIMIT 1 OFFSET 70').pluck().get() as string;
  const actMid = db.prepare('SELECT activated_at FROM subscriptions WHERE activated_at IS NOT NULL ORDER BY activated_at LIMIT 1 OFFSET 20').pluck().get() as string;
  const cases: Array<[string, string, unknown[]]> = [
    ['status=Subscribed', "status = 'Subscribed'", []],
    ['status=Suspended,Unsubscribed', "status IN ('Suspended', 'Unsubscribed')", []],
    ['offerId=ledger-analytics', "offer_id = 'ledger-analytics'", []],
    ['offerId=ledger-saas&planId=premium', "offer_id = 'ledger-saas' AND plan_id = 'premium'", []],
    [`tenantId=${pick.purchaser_tenant_id}`, 'purchaser_tenant_id = ? OR beneficiary_tenant_id = ?', [pick.purchaser_tenant_id, pick.purchaser_tenant_id]],
    [`tenantId=${pick.beneficiary_tenant_id}`, 'purchaser_tenant_id = ? OR beneficiary_tenant_id = ?', [pick.beneficiary_tenant_id, pick.beneficiary_tenant_id]],
    [`email=${encodeURIComponent(String(pick.beneficiary_email).toUpperCase())}`, 'lower(beneficiary_email) = lower(?) OR lower(purchaser_email) = lower(?) OR lower(contact_email) = lower(?)', [pick.beneficiary_email, pick.beneficiary_email, pick.beneficiary_email]],
    ['freeTrial=true', 'is_free_trial = 1', []],
    ['freeTrial=false&test=false', 'is_free_trial = 0 AND is_test = 0', []],
    ['csp=true', 'is_csp = 1', []],
    [`createdFrom=${mid}&createdTo=${late}`, 'created_at >= ? AND created_at < ?', [mid, late]],
    [`createdFrom=${mid.slice(0, 10)}`, 'created_at >= ?', [`${mid.slice(0, 10)}T00:00:00.000Z`]],
    [`activatedFrom=${actMid}`, 'activated_at >= ?', [actMid]],
    [`activatedTo=${actMid}&status=Subscribed`, "activated_at < ? AND status = 'Subscribed'", [actMid]],
  ];
  for (const [query, where, params] of cases) {
    const expected = sqlIds(where, 'created_at DESC, subscription_id DESC', params);
    const paged = await all(`/api/read/subscriptions?${query}`);
    t.ok(expected.length > 0, `${query}: the data has matching rows (${expected.length})`);
    t.same(paged.ids, expected, `${query}: same rows as SQL`);
    t.equal(paged.total, expected.length, `${query}: total`);
  }
  const none = (await get('/api/read/subscriptions?planId=no-such-plan')).json() as unknown as PageBody;
  t.same([none.items, none.total, none.nextCursor], [[], 0, undefined], 'no match: empty page, no cursor');
});

t.test('strict parameters: 400 problem+json for what the API does not know', async (t) => {
  const first = (await get('/api/read/subscriptions?limit=5')).json() as unknown as PageBody;
  const bad = [
    '/api/read/subscriptions?stauts=Subscribed',
    '/api/read/subscriptions?status=Active',
    '/api/read/subscriptions?limit=0',
    '/api/read/subscriptions?limit=501',
    '/api/read/subscriptions?freeTrial=yes',
    '/api/read/subscriptions?sort=price',
    '/api/read/subscriptions?createdFrom=yesterday',
    '/api/read/subscriptions?createdFrom=2026-13-45',
    '/api/read/subscriptions?status=Subscribed&status=Suspended',
    `/api/read/subscriptions?sort=quantity&cursor=${first.nextCursor}`,
    '/api/read/subscriptions?cursor=bm90LWEtY3Vyc29y',
    '/api/read/operations?outcome=maybe',
    '/api/read/metrics?includeTest=1',
    '/api/read/metrics-daily.csv?x=1',
  ];
  for (const url of bad) {
    const res = await get(url);
    t.equal(res.status, 400, url);
    t.match(res.headers['content-type'], /application\/problem\+json/, `${url}: problem+json`);
  }
  t.match((await get(`/api/read/subscriptions?sort=quantity&cursor=${first.nextCursor}`)).json(), { title: 'invalid-query', detail: /issued for sort=createdAt&order=desc/ });
  t.equal((await get('/api/read/nothing-here')).status, 404);
});

t.test('operations: filters, pagination, shape', async (t) => {
  const total = db.prepare('SELECT count(*) FROM operations').pluck().get() as number;
  const paged = await all('/api/read/operations', 'operationId');
  t.equal(paged.ids.length, total);
  t.equal(new Set(paged.ids).size, total, 'each operation once');
  const partnerFailed = db.prepare("SELECT count(*) FROM operations WHERE source = 'Partner' AND outcome = 'failed'").pluck().get() as number;
  t.ok(partnerFailed > 0, 'the history has failed publisher-side changes');
  t.equal((await all('/api/read/operations?source=Partner&outcome=failed', 'operationId')).ids.length, partnerFailed);
  const op = db.prepare("SELECT * FROM operations WHERE ack_latency_ms IS NOT NULL LIMIT 1").get() as Record<string, unknown>;
  const body = (await get(`/api/read/operations?subscriptionId=${op.subscription_id}&action=${op.action}&limit=500`)).json() as { items: Array<Record<string, unknown>> };
  t.match(body.items.find((i) => i.operationId === op.operation_id), {
    subscriptionId: op.subscription_id,
    action: op.action,
    source: op.source,
    ackLatencyMs: op.ack_latency_ms,
    acknowledgedAt: op.acknowledged_at,
    outcome: op.outcome,
    deliveries: op.deliveries,
  });
  const asc = (await get('/api/read/operations?order=asc&limit=3')).json() as { items: Array<{ firstReceivedAt: string | null; submittedAt: string | null }> };
  const times = asc.items.map((i) => i.firstReceivedAt ?? i.submittedAt ?? '');
  t.same(times, [...times].sort(), 'oldest first with order=asc');
});

t.test('metrics', async (t) => {
  const res = await get('/api/read/metrics');
  t.equal(res.status, 200);
  const m = res.json() as {
    active: Array<{ offerId: string; planId: string; activeSubscriptions: number; activeSeats: number }>;
    daily: Array<{ day: string; activations: number; cancellations: number }>;
    timeToActivation: Array<{ activations: number; medianSeconds: number; p90Seconds: number; maxSeconds: number }>;
    freeTrials: Array<{ trials: number; converted: number; cancelled: number; conversionRate: number | null }>;
    suspensions: Array<{ suspensions: number }>;
    filters: Record<string, unknown>;
  };
  const active = db.prepare("SELECT count(*) AS n, coalesce(sum(quantity), 0) AS seats FROM subscriptions WHERE status = 'Subscribed' AND is_test = 0").get() as { n: number; seats: number };
  t.equal(m.active.reduce((a, r) => a + r.activeSubscriptions, 0), active.n, 'active subscriptions = the subscriptions read model');
  t.equal(m.active.reduce((a, r) => a + r.activeSeats, 0), active.seats, 'active seats too');
  const activated = db.prepare('SELECT count(*) FROM subscriptions WHERE activated_at IS NOT NULL AND is_test = 0').pluck().get() as number;
  t.equal(m.daily.reduce((a, r) => a + r.activations, 0), activated, 'activations per day add up');
  const cancelled = db.prepare("SELECT count(*) FROM subscriptions WHERE status = 'Unsubscribed' AND is_test = 0").pluck().get() as number;
  t.equal(m.daily.reduce((a, r) => a + r.cancellations, 0), cancelled, 'cancellations per day add up');
  for (const a of m.timeToActivation) t.ok(a.medianSeconds <= a.p90Seconds && a.p90Seconds <= a.maxSeconds, 'median ≤ p90 ≤ max');
  for (const f of m.freeTrials) if (f.conversionRate !== null) t.equal(f.conversionRate, Math.round((f.converted / (f.converted + f.cancelled)) * 10_000) / 10_000);
  t.same(m.filters, { offerId: null, planId: null, from: null, to: null, includeTest: false });

  const withTest = (await get('/api/read/metrics?includeTest=true')).json() as typeof m;
  const all = db.prepare("SELECT count(*) FROM subscriptions WHERE status = 'Subscribed'").pluck().get() as number;
  t.equal(withTest.active.reduce((a, r) => a + r.activeSubscriptions, 0), all, 'includeTest=true counts test subscriptions');

  const one = (await get('/api/read/metrics?offerId=ledger-saas&planId=standard&from=2026-01-10&to=2026-02-01')).json() as typeof m;
  t.ok(one.active.every((r) => r.offerId === 'ledger-saas' && r.planId === 'standard'));
  t.ok(one.daily.length > 0 && one.daily.every((d) => d.day >= '2026-01-10' && d.day < '2026-02-01'), 'the daily series keeps to [from, to)');
});

/** RFC 4180 parsing, enough for the test. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') (row.push(field), (field = ''));
    else if (c === '\r' && text[i + 1] === '\n') (row.push(field), rows.push(row), (row = []), (field = ''), i++);
    else field += c;
  }
  return rows;
}

t.test('CSV exports: every read model, header = the SQLite columns, one line per row', async (t) => {
  const exports: Array<[string, string]> = [
    ['subscriptions', 'subscriptions'],
    ['operations', 'operations'],
    ['change-requests', 'change_requests'],
    ['metrics-daily', 'metrics_daily'],
    ['metrics-subscriptions', 'metrics_subscriptions'],
  ];
  for (const [name, table] of exports) {
    const res = await get(`/api/read/${name}.csv`);
    t.equal(res.status, 200, name);
    t.match(res.headers['content-type'], /^text\/csv; charset=utf-8/);
    t.equal(res.headers['content-disposition'], `attachment; filename="${name}.csv"`);
    const rows = parseCsv(res.body);
    const columns = (db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[]);
    t.same(rows[0], columns, `${name}: header`);
    t.equal(rows.length - 1, db.prepare(`SELECT count(*) FROM ${table}`).pluck().get(), `${name}: every row`);
  }
  const filtered = parseCsv((await get('/api/read/subscriptions.csv?status=Suspended&sort=subscriptionId')).body);
  const header = filtered[0] as string[];
  const idAt = header.indexOf('subscription_id');
  t.same(filtered.slice(1).map((r) => r[idAt]), sqlIds("status = 'Suspended'", 'subscription_id ASC'), 'filters and sort apply to the CSV');
  const quantityAt = header.indexOf('quantity');
  const sample = filtered[1] as string[];
  const dbRow = db.prepare('SELECT quantity FROM subscriptions WHERE subscription_id = ?').get(sample[idAt]) as { quantity: number | null };
  t.equal(sample[quantityAt], dbRow.quantity === null ? '' : String(dbRow.quantity), 'numbers as numbers, NULL as an empty field');
});

t.test('CSV fields: quoting and formula injection', async (t) => {
  t.equal(csvField('plain'), 'plain');
  t.equal(csvField('a,"b"'), '"a,""b"""');
  t.equal(csvField('two\nlines'), '"two\nlines"');
  t.equal(csvField('=HYPERLINK("http://evil")'), '"\'=HYPERLINK(""http://evil"")"');
  t.equal(csvField('+1'), "'+1");
  t.equal(csvField('@cmd'), "'@cmd");
  t.equal(csvField(-3), '-3', 'numbers are not text');
  t.equal(csvField(12n), '12');
  t.equal(csvField(null), '');
  t.equal(csvLine(['a', 1, null]), 'a,1,\r\n');
});

t.test('the OpenAPI document lists the read-model routes', async (t) => {
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, unknown> };
  for (const path of ['/api/read/status', '/api/read/subscriptions', '/api/read/operations', '/api/read/metrics', '/api/read/subscriptions.csv', '/api/read/metrics-daily.csv']) {
    t.ok(doc.paths[path], path);
  }
  t.ok(doc.paths['/api/subscriptions/{id}'], 'beside the operator API');
});
