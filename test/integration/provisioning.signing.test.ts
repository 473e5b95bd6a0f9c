/**
 * The receiver-side verifier: a signature made by the ledger verifies; a tampered body, a tampered
 * or foreign signature, a stale or future timestamp and a malformed header are rejected; a
 * rotation (two secrets) verifies with either; and the settings refuse what cannot work.
 */
import t from 'tap';
import { createHmac } from 'node:crypto';
import { ConfigError } from '../../src/config.js';
import { loadIntegrationConfig } from '../../src/config.js';
import { parseSignatureHeader, signatureHeader, verifySignature } from '../../src/integration/signing.js';

const SECRET = 'whsec-0123456789abcdef0123456789abcdef';
const OTHER = 'whsec-fedcba9876543210fedcba9876543210';
const body = JSON.stringify({ id: 'e1', type: 'subscription.activated', data: { planId: 'gold' } });
const now = Date.parse('2026-05-01T12:00:00Z');
const t0 = Math.floor(now / 1000);

t.test('a signature verifies over the raw body, as a string or as bytes', async (t) => {
  const header = signatureHeader(SECRET, body, t0);
  t.match(header, /^t=\d+,v1=[0-9a-f]{64}$/);
  const expected = createHmac('sha256', SECRET).update(`${t0}.${body}`).digest('hex');
  t.equal(header, `t=${t0},v1=${expected}`, 'HMAC-SHA256(secret, "<t>.<body>") in hex, as documented');
  t.same(verifySignature(SECRET, header, body, 300, now), { ok: true, timestamp: t0 });
  t.same(verifySignature(SECRET, header, Buffer.from(body), 300, now), { ok: true, timestamp: t0 });
});

t.test('tampering is rejected', async (t) => {
  const header = signatureHeader(SECRET, body, t0);
  t.match(verifySignature(SECRET, header, body.replace('gold', 'platinum'), 300, now), { ok: false, reason: 'mismatch' }, 'body changed');
  t.match(verifySignature(SECRET, header, `${body} `, 300, now), { ok: false, reason: 'mismatch' }, 'body re-serialised (one space)');
  const flipped = header.replace(/v1=(.)/, (_m, c: string) => `v1=${c === '0' ? '1' : '0'}`);
  t.match(verifySignature(SECRET, flipped, body, 300, now), { ok: false, reason: 'mismatch' }, 'signature changed');
  t.match(verifySignature(OTHER, header, body, 300, now), { ok: false, reason: 'mismatch' }, 'another secret');
  const moved = header.replace(`t=${t0}`, `t=${t0 + 1}`);
  t.match(verifySignature(SECRET, moved, body, 300, now), { ok: false, reason: 'mismatch' }, 'timestamp changed: it is part of the signed text');
});

t.test('stale and future timestamps are rejected (replays outside the window)', async (t) => {
  const old = signatureHeader(SECRET, body, t0 - 301);
  t.match(verifySignature(SECRET, old, body, 300, now), { ok: false, reason: 'stale' });
  t.match(verifySignature(SECRET, signatureHeader(SECRET, body, t0 - 299), body, 300, now), { ok: true }, 'inside the window');
  t.match(verifySignature(SECRET, signatureHeader(SECRET, body, t0 + 301), body, 300, now), { ok: false, reason: 'stale' }, 'from the future');
  t.match(verifySignature(SECRET, signatureHeader(SECRET, body, t0 - 3600), body, 7200, now), { ok: true }, 'tolerance is the receiver’s choice');
});

t.test('missing and malformed headers are rejected', async (t) => {
  t.match(verifySignature(SECRET, undefined, body, 300, now), { ok: false, reason: 'missing' });
  t.match(verifySignature(SECRET, '', body, 300, now), { ok: false, reason: 'missing' });
  for (const bad of ['garbage', `t=${t0}`, 'v1=' + 'a'.repeat(64), `t=abc,v1=${'a'.repeat(64)}`, `t=${t0},v1=xyz`, `t=${t0},v0=${'a'.repeat(64)}`]) {
    t.match(verifySignature(SECRET, bad, body, 300, now), { ok: false, reason: 'malformed' }, bad);
  }
  t.same(parseSignatureHeader(` t=${t0} , v1=${'b'.repeat(64)} `), { timestamp: t0, signatures: ['b'.repeat(64)] }, 'spaces tolerated');
});

t.test('rotation: signed with both secrets, verified with either; a receiver may know both', async (t) => {
  const header = signatureHeader([OTHER, SECRET], body, t0);
  t.equal(header.split(',').length, 3);
  t.match(verifySignature(SECRET, header, body, 300, now), { ok: true });
  t.match(verifySignature(OTHER, header, body, 300, now), { ok: true });
  t.match(verifySignature([SECRET, OTHER], signatureHeader(SECRET, body, t0), body, 300, now), { ok: true });
  t.throws(() => signatureHeader([], body, t0));
});

t.test('settings: no URL → disabled; URL needs a secret; bad values name the variable', async (t) => {
  t.equal(loadIntegrationConfig({}), undefined);
  t.equal(loadIntegrationConfig({ PROVISIONING_WEBHOOK_SECRET: SECRET }), undefined, 'a secret alone enables nothing');
  const s = loadIntegrationConfig({ PROVISIONING_WEBHOOK_URL: 'https://isv.example/ledger', PROVISIONING_WEBHOOK_SECRET: SECRET });
  t.same(s, { url: 'https://isv.example/ledger', secrets: [SECRET], timeoutMs: 10_000, maxAttempts: 40, insecure: false });
  t.same(
    loadIntegrationConfig({ PROVISIONING_WEBHOOK_URL: 'http://127.0.0.1:9/x', PROVISIONING_WEBHOOK_SECRET: `${SECRET}, ${OTHER}`, PROVISIONING_TIMEOUT_MS: '2500', INTEGRATION_MAX_ATTEMPTS: '3' }),
    { url: 'http://127.0.0.1:9/x', secrets: [SECRET, OTHER], timeoutMs: 2500, maxAttempts: 3, insecure: false },
    'strings from process.env are converted; loopback http is not insecure',
  );
  t.equal(loadIntegrationConfig({ PROVISIONING_WEBHOOK_URL: 'http://isv.internal/x', PROVISIONING_WEBHOOK_SECRET: SECRET })?.insecure, true);
  const refused = (env: Record<string, string>, variable: string) => {
    try {
      loadIntegrationConfig(env);
      t.fail(`expected a ConfigError for ${variable}`);
    } catch (err) {
      t.ok(err instanceof ConfigError, (err as Error).message);
      t.equal((err as ConfigError).variable, variable);
    }
  };
  refused({ PROVISIONING_WEBHOOK_URL: 'https://isv.example/x' }, 'PROVISIONING_WEBHOOK_SECRET');
  refused({ PROVISIONING_WEBHOOK_URL: 'https://isv.example/x', PROVISIONING_WEBHOOK_SECRET: 'short' }, 'PROVISIONING_WEBHOOK_SECRET');
  refused({ PROVISIONING_WEBHOOK_URL: 'https://isv.example/x', PROVISIONING_WEBHOOK_SECRET: `${SECRET},short` }, 'PROVISIONING_WEBHOOK_SECRET');
  refused({ PROVISIONING_WEBHOOK_URL: 'not a url', PROVISIONING_WEBHOOK_SECRET: SECRET }, 'PROVISIONING_WEBHOOK_URL');
  refused({ PROVISIONING_WEBHOOK_URL: 'ftp://isv.example/x', PROVISIONING_WEBHOOK_SECRET: SECRET }, 'PROVISIONING_WEBHOOK_URL');
  refused({ PROVISIONING_WEBHOOK_URL: 'https://u:p@isv.example/x', PROVISIONING_WEBHOOK_SECRET: SECRET }, 'PROVISIONING_WEBHOOK_URL');
  refused({ PROVISIONING_WEBHOOK_URL: 'https://isv.example/x', PROVISIONING_WEBHOOK_SECRET: SECRET, PROVISIONING_TIMEOUT_MS: 'soon' }, 'PROVISIONING_TIMEOUT_MS');
  refused({ PROVISIONING_WEBHOOK_URL: 'https://isv.example/x', PROVISIONING_WEBHOOK_SECRET: SECRET, INTEGRATION_MAX_ATTEMPTS: '0' }, 'INTEGRATION_MAX_ATTEMPTS');
});
