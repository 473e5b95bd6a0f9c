/**
 * Hostile requests of the kinds the fuzz test (fuzz.test.ts) does not send, each with a check of what the service
 * did with it, not only of the status code (issue 10's fault campaign):
 * - prototype keys (`__proto__`, `constructor`, `prototype`, padded or nested) in bodies that are otherwise VALID
 *   and authenticated, on the webhook, the operator API and the landing form, and in query strings: nothing is
 *   acted on because of them, no object's prototype changes, and Object.prototype stays clean;
 * - secrets in query parameters (`access_token`, `code`, `client_secret`, …): never written to the log in clear;
 * - CSV formula prefixes after whitespace or in full-width forms, in data Microsoft sends (a subscription's name):
 *   neutralised in the exports.
 * Seeded (HOSTILE_SEED); with fuzz.test.ts the suite sends more than 10,000 hostile requests.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import { prng } from '../support/prng.js';
import { loadConfig } from '../../src/config.js';
import { loggerOptions } from '../../src/logger.js';
import { startRuntime } from '../../src/runtime.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

const SEED = Number(process.env.HOSTILE_SEED ?? 20261201);
const REQUESTS = Number(process.env.HOSTILE_REQUESTS ?? 5000);
const OPERATOR = 'hostile-operator-token-0123456789';
t.setTimeout(300_000);


const protoKeys = ['__proto__', ' __proto__', '__proto__ ', 'constructor', ' constructor ', 'prototype'];
const SECRETS = ['s3cr3t-access-token-value', 's3cr3t-auth-code-value', 's3cr3t-client-secret-value', 's3cr3t-password-value', 's3cr3t-api-key-value'];
const secretParams = ['access_token', 'code', 'client_secret', 'password', 'api_key', 'ACCESS_TOKEN', 'Code', 'id_token', 'refresh_token', 'apikey', 'key', 'secret'];

t.test(`hostile requests of the kinds fuzzing does not send (seed ${SEED})`, { timeout: 300_000 }, async (t) => {
  // The service's own logger options (serializers, redaction), writing into memory.
  const raw: string[] = [];
  const logger = pino(loggerOptions('debug'), new Writable({ write(chunk: Buffer, _e, done) { raw.push(chunk.toString('utf8')); done(); } }));
  const capture = { logger, text: () => raw.join(''), lines: () => raw.join('').split('\n').filter((l) => l.trim()) };
  const config = loadConfig({ DATA_DIR: tempDir(t, 'hostile'), PORT: '0', EMULATOR_PORT: '0', SQLITE_POLL_INTERVAL_MS: '50', OPERATOR_TOKEN: OPERATOR, LOG_LEVEL: 'debug', LANDING_SIGN_IN: 'off' });
  const s = await startRuntime(config, capture.logger, { emulator: { operationDelayMs: 50 }, runner: { retryBaseMs: 20, retryMaxMs: 200 } });
  t.teardown(() => s.close());
  const emulator = s.emulator;
  if (!emulator) throw new Error('the sandbox runs against the built-in emulator');
  const rnd = prng(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const auth = { authorization: `Bearer ${OPERATOR}` };
  const getJson = async (path: string) => (await (await fetch(`${s.url}${path}`, { headers: auth })).json()) as Record<string, unknown>;

  // A real, active subscription whose name carries formula prefixes, and a webhook token Microsoft would send.
  const names = ['  =HYPERLINK("http://evil.example","x")', '\u00a0+cmd|\' /C calc\'!A0', '\u3000\uff1d1+1', '\uff20SUM(A1:A2)', '\t-2+3'];
  const ids: string[] = [];
  for (const name of names) {
    const bought = emulator.marketplace.purchase({ planId: 'standard', quantity: 3, subscriptionName: name });
    const page = await fetch(`${s.url}/landing?token=${encodeURIComponent(bought.token)}`);
    t.equal(page.status, 200, 'the purchase is recorded from the landing page');
    ids.push(bought.subscription.id);
  }
  const [id] = ids as [string];
  const before = await getJson(`/api/subscriptions/${id}`);
  const validToken = await emulator.signer.webhookToken();

  const protoBody = (valid: Record<string, unknown>): string => {
    // A valid body with prototype keys spliced in at the top and nested, written as raw JSON text (an object
    // literal with `__proto__` would set the literal's prototype instead of making a key).
    const key = pick(protoKeys);
    const payload = pick(['{"planId":"premium","quantity":40,"status":"Unsubscribed","isAdmin":true}', '{"prototype":{"polluted":true}}', '{"polluted":"yes"}']);
    const inner = JSON.stringify(valid).slice(1, -1);
    return rnd() < 0.5 ? `{${JSON.stringify(key)}:${payload},${inner}}` : `{${inner},"contact":{${JSON.stringify(key)}:${payload},"email":"a@b.example"}}`;
  };
  type Case = { kind: string; method: string; path: string; headers: Record<string, string>; body?: string };
  const cases: Case[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const r = rnd();
    const secret = pick(SECRETS);
    if (r < 0.25) {
      // A notification for an operation Microsoft never made (valid shape, valid token): must change nothing.
      const body = protoBody({ id: crypto.randomUUID(), activityId: crypto.randomUUID(), subscriptionId: id, publisherId: 'contoso', offerId: 'fulfillment-ledger', planId: 'premium', quantity: 40, timeStamp: new Date().toISOString(), action: pick(['Unsubscribe', 'Suspend', 'ChangePlan']), status: 'Succeeded' });
      cases.push({ kind: 'webhook-proto', method: 'POST', path: `/webhook?${pick(secretParams)}=${secret}`, headers: { authorization: `Bearer ${validToken}`, 'content-type': 'application/json' }, body });
    } else if (r < 0.5) {
      const body = protoBody(pick([{ reason: 'hostile' }, { contact: { email: 'x@y.example' } }, {}]));
      cases.push({ kind: 'operator-proto', method: 'POST', path: `/api/subscriptions/${id}/${pick(['plan', 'quantity', 'cancel', 'activate'])}?${pick(secretParams)}=${secret}`, headers: { ...auth, 'content-type': 'application/json' }, body });
    } else if (r < 0.7) {
      const key = encodeURIComponent(pick(protoKeys));
      const form = `subscriptionId=${id}&sig=x&${key}=${encodeURIComponent('{"polluted":true}')}&${key}%5Bpolluted%5D=1&email=a%40b.example`;
      cases.push({ kind: 'landing-proto', method: 'POST', path: `/landing/activate?${pick(secretParams)}=${secret}`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form });
    } else if (r < 0.85) {
      const key = encodeURIComponent(pick(protoKeys));
      cases.push({ kind: 'query-proto', method: 'GET', path: pick([`/api/read/subscriptions?${key}[polluted]=1&${key}.polluted=1`, `/api/subscriptions/${id}?${key}=1`, `/landing?token=${secret}&${key}[x]=1`]), headers: auth });
    } else {
      const params = secretParams.map((p) => `${p}=${encodeURIComponent(pick(SECRETS))}`).join('&');
      cases.push({ kind: 'secret-query', method: 'GET', path: pick([`/landing?${params}`, `/api/subscriptions/${id}?${params}`, `/webhook?${params}`, `/nowhere?${params}`]), headers: rnd() < 0.5 ? auth : {} });
    }
  }
  let webhooksAccepted = 0;
  const bad: string[] = [];
  const counts: Record<string, Record<number, number>> = {};
  const send = async (c: Case) => {
    const res = await fetch(`${s.url}${c.path}`, { method: c.method, headers: c.headers, ...(c.body !== undefined ? { body: c.body } : {}) });
    await res.arrayBuffer();
    const bucket = (counts[c.kind] ??= {});
    bucket[res.status] = (bucket[res.status] ?? 0) + 1;
    if (c.kind === 'webhook-proto' && res.status === 200) webhooksAccepted++;
    if (res.status >= 500) bad.push(`${c.kind} ${c.method} ${c.path.slice(0, 100)} → ${res.status}`);
  };
  const started = Date.now();
  for (let i = 0; i < cases.length; i += 25) await Promise.all(cases.slice(i, i + 25).map(send));
  t.comment(`${cases.length} requests in ${Date.now() - started} ms; answers by kind and status: ${JSON.stringify(counts)}`);
  t.same(bad.slice(0, 20), [], `no 5xx (${bad.length} were)`);

  // Nothing polluted, nothing acted on.
  t.same(Object.keys(Object.prototype), [], 'Object.prototype has no new keys');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no object inherits a polluted field');
  t.equal(({} as Record<string, unknown>).isAdmin, undefined);
  t.ok(webhooksAccepted > 0, `${webhooksAccepted} forged notifications were recorded (a valid token and shape)`);
  await waitFor('the notification process to go through every forged notification', async () => {
    const all = (await getJson(`/api/read/operations?subscriptionId=${id}&limit=1`)) as { total?: number };
    const pending = (await getJson(`/api/read/operations?subscriptionId=${id}&outcome=pending&limit=1`)) as { total?: number };
    return all.total !== undefined && all.total >= webhooksAccepted && pending.total === 0;
  }, 120_000, 200);
  const after = await getJson(`/api/subscriptions/${id}`);
  t.match(after, { status: before.status, planId: before.planId, quantity: before.quantity }, 'the subscription is as it was: no forged or polluted request changed it');
  t.equal(emulator.state.subscription(id).status, 'PendingFulfillmentStart', 'and nothing was sent to Microsoft for it');

  // No secret in clear in any log line.
  const text = capture.text();
  for (const secret of SECRETS) t.notOk(text.includes(secret), `the log never holds ${secret.slice(0, 12)}… in clear`);
  t.ok(capture.lines().length > 1000, `${capture.lines().length} log lines looked at`);

  // CSV exports neutralise formula prefixes whatever precedes them.
  const csv = await (await fetch(`${s.url}/api/read/subscriptions.csv`, { headers: auth })).text();
  for (const line of csv.split('\n').slice(1)) {
    for (const cell of line.split(',')) {
      const value = cell.replace(/^"|"$/g, '');
      t.notMatch(value, /^[\s\u00a0\u3000]*[=+\-@\uff1d\uff0b\uff0d\uff20]/u, `no cell starts with a formula character: ${JSON.stringify(value.slice(0, 30))}`);
    }
  }
});
