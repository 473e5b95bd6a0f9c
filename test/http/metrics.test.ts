/**
 * GET /metrics through buildApp and inject(): refused without the token, answered with METRICS_TOKEN or the
 * operator token; one registry per service (two never share a counter); the store decorator times appends,
 * tells a conflict from success, and leaves the store's own members reachable.
 */
import { join } from 'node:path';
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { ConcurrencyError } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { timeAppends } from '../../src/eventstore/timed-appends.js';
import { createLogger } from '../../src/logger.js';
import { createPrometheusMetrics } from '../../src/metrics/prometheus.js';
import { parseExposition, total } from '../support/prometheus-text.js';
import { tempDir } from '../support/temp.js';

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
const OPERATOR_TOKEN = 'operator-token-0123456789abcdef';

t.test('an unauthenticated scrape is refused; either token is accepted', async (t) => {
  const metrics = createPrometheusMetrics();
  const app = await buildApp({
    logger: createLogger('silent'),
    store: () => undefined,
    metrics: { tokens: [METRICS_TOKEN, OPERATOR_TOKEN], render: () => metrics.render(), contentType: metrics.contentType },
  });
  t.teardown(() => app.close());
  metrics.webhookReceived('ChangePlan', 'accepted');

  for (const [authorization, what] of [[undefined, 'no token'], ['Basic abc', 'not bearer'], ['Bearer wrong-token-0123456789', 'a wrong token']] as const) {
    const res = await app.inject({ method: 'GET', url: '/metrics', ...(authorization ? { headers: { authorization } } : {}) });
    t.equal(res.statusCode, 401, `${what}: 401`);
    t.match(res.headers['content-type'], /application\/problem\+json/);
    t.equal(res.headers['www-authenticate'], 'Bearer realm="metrics"');
    t.notMatch(res.body, /fulfillment_/, `${what}: no series shown`);
  }
  for (const token of [METRICS_TOKEN, OPERATOR_TOKEN]) {
    const res = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    t.equal(total(parseExposition(res.body), 'fulfillment_webhook_requests_total', { action: 'ChangePlan', outcome: 'accepted' }), 1);
  }
});

t.test('a registry per service: two instances count apart, and a failing source leaves its labelled gauge empty', async (t) => {
  const a = createPrometheusMetrics();
  const b = createPrometheusMetrics();
  a.webhookAuthFailed('expired');
  a.webhookAuthFailed('expired');
  b.webhookAuthFailed('expired');
  a.setSources({ deadLetters: async () => 3, projectionLag: async () => { throw new Error('store closed'); } });
  const ma = parseExposition(await a.render());
  const mb = parseExposition(await b.render());
  t.equal(total(ma, 'fulfillment_webhook_auth_failures_total', { reason: 'expired' }), 2);
  t.equal(total(mb, 'fulfillment_webhook_auth_failures_total', { reason: 'expired' }), 1);
  t.equal(total(ma, 'fulfillment_outbound_dead_letters'), 3);
  t.notOk(ma.samples.some((s) => s.name === 'fulfillment_projection_lag_events'), 'no lag value rather than a wrong one');
  t.equal(total(mb, 'fulfillment_outbound_dead_letters'), 0, 'no source (the store not open yet): 0, as prom-client shows a gauge without labels');
});

t.test('the append decorator: ok and conflict timed apart, the store itself otherwise', async (t) => {
  const inner = openSqliteStore({ path: join(tempDir(t, 'metrics-store'), 'events.db') });
  const metrics = createPrometheusMetrics();
  const store = timeAppends(inner, metrics);
  t.teardown(() => store.close());
  t.equal(store.kind, 'sqlite');
  await store.appendToStream('test-1', [{ type: 'Happened', data: {} }], { expectedRevision: 'no_stream' });
  await t.rejects(store.appendToStream('test-1', [{ type: 'Happened', data: {} }], { expectedRevision: 'no_stream' }), ConcurrencyError);
  t.equal((await store.readStream('test-1')).length, 1, 'reads go to the store');
  const m = parseExposition(await metrics.render());
  t.equal(total(m, 'fulfillment_store_append_duration_seconds_count', { outcome: 'ok' }), 1);
  t.equal(total(m, 'fulfillment_store_append_duration_seconds_count', { outcome: 'conflict' }), 1);
});
