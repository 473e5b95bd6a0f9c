/**
 * GET /metrics after a sandbox-like run (issue 14): the whole service in-process against the built-in emulator,
 * with the ISV's application on 127.0.0.1. A purchase is activated (one getSubscription answered 500 first, so
 * retried), a customer plan change comes by webhook and is acknowledged, an unauthenticated webhook call is
 * refused, a silent change at Microsoft is found by reconciliation. Then /metrics refuses a scrape without the
 * token and answers the rest with every series the issue lists, with non-zero values where traffic happened.
 * The log lines of the same run are checked too: one `component` each, and the subscription's id on every
 * line of the service that is about it.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { detailsFromMicrosoft } from '../../src/application/subscription-details.js';
import { loadConfig } from '../../src/config.js';
import { loggerOptions } from '../../src/logger.js';
import { startRuntime } from '../../src/runtime.js';
import { SECRET } from '../support/integration-world.js';
import { startReceiver } from '../support/isv-receiver.js';
import { parseExposition, total } from '../support/prometheus-text.js';
import { silently } from '../support/reconcile-world.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

const OPERATOR_TOKEN = 'test-operator-token-0123456789';
const METRICS_TOKEN = 'test-metrics-token-0123456789';

t.test('a sandbox run: /metrics answers every series, and the logs carry component and subscriptionId', async (t) => {
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) raw.push(line);
      done();
    },
  });
  const receiver = await startReceiver(t, SECRET);
  const config = loadConfig({
    DATA_DIR: tempDir(t, 'metrics'),
    PORT: '0',
    EMULATOR_PORT: '0',
    SQLITE_POLL_INTERVAL_MS: '50',
    OPERATOR_TOKEN,
    METRICS_TOKEN,
    RECONCILE_INTERVAL_MINUTES: '0',
    PROVISIONING_WEBHOOK_URL: receiver.url,
    PROVISIONING_WEBHOOK_SECRET: SECRET,
  });
  const s = await startRuntime(config, pino(loggerOptions('debug'), sink), {
    emulator: { operationDelayMs: 50, redelivery: { initialDelayMs: 50, factor: 2, maxDelayMs: 500, maxAttempts: 20 }, faults: { api: { serverError: { times: 1, operations: ['getSubscription'] } } } },
    runner: { retryBaseMs: 20, retryMaxMs: 200, retryLaterMaxMs: 500 },
  });
  t.teardown(() => s.close());
  const emulator = s.emulator;
  if (!emulator) throw new Error('the sandbox runs against the built-in emulator');

  // Purchase → activation (the first getSubscription answers 500 and is retried).
  const bought = emulator.marketplace.purchase({ planId: 'standard', quantity: 5 });
  const resolved = await s.marketplace.resolve(bought.token);
  const id = resolved.id;
  const sub = await s.marketplace.getSubscription(id);
  const at = () => new Date().toISOString();
  await s.ledger.execute(id, { type: 'RecordPurchase', now: at(), source: 'landing', subscription: detailsFromMicrosoft(sub), microsoftStatus: sub.saasSubscriptionStatus ?? 'PendingFulfillmentStart' }, { actor: 'customer:test' });
  await s.ledger.execute(id, { type: 'RequestActivation', now: at(), source: 'landing', contact: { email: 'buyer@contoso.example' } }, { actor: 'customer:test' });
  await waitFor('Subscribed', async () => (await s.ledger.load(id)).state.status === 'Subscribed', 15_000);

  // A customer plan change: webhook → notification process → PATCH acknowledgement.
  const op = emulator.marketplace.changePlan(id, 'premium');
  await waitFor('the plan change acknowledged', async () => (await s.ledger.load(id)).events.some((e) => e.type === 'PlanChanged') && emulator.state.operationById(op.id)?.status === 'Succeeded', 15_000);

  // Someone without a token at the webhook.
  const msIds = { 'x-ms-requestid': 'c0ffee00-0000-4000-8000-000000000001', 'x-ms-correlationid': 'c0ffee00-0000-4000-8000-000000000002' };
  t.equal((await fetch(`${s.url}/webhook`, { method: 'POST', body: '{}', headers: msIds })).status, 401, 'unauthenticated webhook refused');

  // A change at Microsoft nobody heard of: reconciliation finds it.
  await s.processes()?.idle();
  silently(emulator).changeQuantity(id, 9);
  const reconciler = s.reconciler();
  if (!reconciler) throw new Error('reconciler expected');
  const trigger = await reconciler.trigger('api');
  if (trigger.kind !== 'started' && trigger.kind !== 'resumed') throw new Error(`reconciliation not started: ${trigger.kind}`);
  t.equal((await trigger.done).status, 'finished');
  await waitFor('integration events delivered', () => receiver.processed.some((r) => r.type === 'subscription.plan_changed'), 15_000);
  await s.processes()?.idle();
  await s.projections()?.idle();

  // Scrapes: refused without the token or with a wrong one; the metrics token and the operator token both work.
  const scrape = (token?: string) => fetch(`${s.url}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  t.equal((await scrape()).status, 401, 'no token: 401');
  t.equal((await scrape('not-the-token-0123456789')).status, 401, 'wrong token: 401');
  t.equal((await scrape(OPERATOR_TOKEN)).status, 200, 'the operator token is accepted');
  const res = await scrape(METRICS_TOKEN);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const m = parseExposition(await res.text());
  const names = new Set(m.samples.map((x) => x.name));

  t.ok(total(m, 'fulfillment_webhook_requests_total', { action: 'ChangePlan', outcome: 'accepted' }) >= 1, 'webhook ChangePlan accepted');
  t.ok(total(m, 'fulfillment_webhook_auth_failures_total', { reason: 'missing-token' }) >= 1, 'auth failure by reason');
  t.ok(total(m, 'fulfillment_ack_latency_seconds_count') >= 1, 'ACK latency observed');
  t.ok(total(m, 'fulfillment_ack_latency_seconds_bucket', { le: '+Inf' }) >= 1, 'ACK latency has buckets');
  t.ok(total(m, 'fulfillment_marketplace_request_duration_seconds_count', { operation: 'getSubscription', status: '500' }) >= 1, 'the 500 counted');
  t.ok(total(m, 'fulfillment_marketplace_request_duration_seconds_count', { operation: 'getSubscription', status: '200' }) >= 1, 'the 200 after it');
  t.ok(total(m, 'fulfillment_marketplace_request_duration_seconds_count', { operation: 'activateSubscription' }) >= 1, 'activation call');
  t.ok(total(m, 'fulfillment_marketplace_request_duration_seconds_count', { operation: 'updateOperationStatus' }) >= 1, 'PATCH acknowledgement call');
  t.ok(total(m, 'fulfillment_marketplace_retries_total', { operation: 'getSubscription', reason: '500' }) >= 1, 'retry counted');
  for (const process of ['activation', 'notifications', 'refresh', 'integration-events']) {
    t.ok(m.samples.some((x) => x.name === 'fulfillment_process_backlog_events' && x.labels.process === process), `backlog of ${process}`);
  }
  t.ok(total(m, 'fulfillment_process_handle_duration_seconds_count', { process: 'notifications', outcome: 'handled' }) >= 1, 'notification handling latency');
  t.ok(total(m, 'fulfillment_process_handle_duration_seconds_count', { process: 'activation', outcome: 'handled' }) >= 1, 'activation handling latency');
  const lag = m.samples.filter((x) => x.name === 'fulfillment_projection_lag_events');
  t.ok(lag.length > 0 && lag.every((x) => x.value === 0 && x.labels.projection), 'projection lag per projection, 0 once idle');
  t.ok(total(m, 'fulfillment_outbound_deliveries_total', { outcome: 'delivered' }) >= 1, 'outbound deliveries');
  t.ok(names.has('fulfillment_outbound_dead_letters'), 'dead letters gauge');
  t.equal(total(m, 'fulfillment_outbound_dead_letters'), 0, 'no dead letter');
  t.ok(total(m, 'fulfillment_reconciliation_drifts_total', { kind: 'quantity', outcome: 'converged' }) >= 1, 'the drift counted');
  t.ok(total(m, 'fulfillment_store_append_duration_seconds_count', { outcome: 'ok' }) >= 1, 'store append latency');
  t.equal(total(m, 'fulfillment_marketplace_credential_rejections'), 0, 'credential accepted');
  t.ok(names.has('process_cpu_user_seconds_total') && names.has('nodejs_eventloop_lag_seconds'), 'default process metrics');

  // docs/operations.md's alert rules name only series /metrics answers, with labels those series have.
  const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
  const rules = /### Alerts[\s\S]*?```yaml\n([\s\S]*?)```/.exec(doc)?.[1] ?? '';
  const exprs = [...rules.matchAll(/^\s+expr: (.+)$/gm)].map((e) => e[1] ?? '');
  t.ok(exprs.length >= 8 && exprs.length === [...rules.matchAll(/^\s+- alert: \S+$/gm)].length, `every rule has an expr (${exprs.length})`);
  for (const expr of exprs) {
    for (const [, name, selector] of expr.matchAll(/\b(fulfillment_[a-z0-9_]+)(?:\{([^}]*)\})?/g)) {
      const series = m.samples.filter((x) => x.name === name);
      t.ok(series.length > 0, `${name} (alert rules) is exposed`);
      for (const [, label] of (selector ?? '').matchAll(/([a-z_]+)\s*(?:=~|!~|!=|=)/g)) {
        t.ok(series.some((x) => label !== undefined && label in x.labels), `${name} has the label ${label}`);
      }
    }
  }

  // Logs: one component per line; the service's lines that name the subscription carry subscriptionId.
  const lines = raw.map((l) => ({ raw: l, json: JSON.parse(l) as Record<string, unknown> }));
  const twice = lines.filter((l) => (l.raw.match(/"component":/g) ?? []).length !== 1);
  t.same(twice.map((l) => l.raw).slice(0, 5), [], 'exactly one component key on every line');
  const about = lines.filter((l) => l.json.component !== 'emulator' && l.raw.includes(id));
  t.ok(about.length > 10, `lines about the subscription (${about.length})`);
  const missing = about.filter((l) => l.json.subscriptionId !== id);
  t.same(missing.map((l) => l.raw).slice(0, 5), [], 'every line about the subscription carries subscriptionId');
  const components = new Set(lines.map((l) => l.json.component));
  for (const c of ['service', 'webhook', 'notification-process', 'activation-process', 'process-runner', 'marketplace-client', 'reconciliation', 'integration-events', 'projections', 'eventstore']) {
    t.ok(components.has(c), `component ${c}`);
  }
  const webhookLine = lines.find((l) => l.json.component === 'webhook' && l.json.msg === 'webhook: notification recorded');
  t.match(webhookLine?.json, { subscriptionId: id, operationId: op.id, action: 'ChangePlan' });
  const refusedLine = lines.find((l) => l.json.component === 'webhook' && l.json.msg === 'webhook: unauthenticated request');
  t.match(refusedLine?.json, { msRequestId: msIds['x-ms-requestid'], msCorrelationId: msIds['x-ms-correlationid'], reason: 'missing-token' }, "Microsoft's ids on the webhook's lines");
  const ackCall = lines.find((l) => l.json.component === 'marketplace-client' && l.json.call === 'updateOperationStatus');
  t.match(ackCall?.json, { subscriptionId: id, operationId: op.id, requestId: String, correlationId: String });
});
