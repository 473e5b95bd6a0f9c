/**
 * Hostile input at the three front doors (webhook, landing page, operator API) of a running service
 * on 127.0.0.1: malformed and hostile requests — bad JSON, huge bodies, wrong types, injection
 * strings, bad tokens. Every answer must be a clear 4xx (problem+json or an HTML page), never a 5xx,
 * and the service must still work afterwards. Seeded, so a failure can be replayed (FUZZ_SEED).
 */
import t from 'tap';
import { prng } from '../support/prng.js';
import { startSandbox } from '../support/sandbox.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261124);
const PER_SURFACE = Number(process.env.FUZZ_PER_SURFACE ?? 1700);


const hostile = [
  "'; DROP TABLE events; --",
  '" OR 1=1 --',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  '../../../../etc/passwd',
  '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  '${jndi:ldap://127.0.0.1/x}',
  '{{7*7}}',
  '\u0000\u0001\u0002',
  '\ud83d\ude00\u202e\u200b',
  'A'.repeat(5000),
  '%',
  '%ZZ',
  '+/+/==',
  'null',
  '-1',
  '1e309',
  '__proto__',
  'constructor',
];

type Case = { surface: 'webhook' | 'landing' | 'operator'; method: string; path: string; headers: Record<string, string>; body?: string | Buffer };

t.test(`fuzz: ${PER_SURFACE * 3} malformed or hostile requests, no 5xx, every answer a clear 4xx`, async (t) => {
  const s = await startSandbox(t, { LANDING_SIGN_IN: 'off' }); // the landing page's own surface, without the sign-in round trip (test/http/landing.sign-in*.test.ts)
  const rnd = prng(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const str = () => pick(hostile);
  const validToken = await s.emulator.signer.webhookToken();
  const badTokens = [
    '',
    'Bearer',
    'Bearer ',
    'Basic dXNlcjpwYXNz',
    `Bearer ${str().replace(/[^\x20-\x7e]/g, '?')}`,
    'Bearer eyJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0.',
    `Bearer ${await s.emulator.signer.webhookToken('bad-signature')}`,
    `Bearer ${await s.emulator.signer.webhookToken('expired')}`,
    `Bearer ${await s.emulator.signer.webhookToken('wrong-tenant')}`,
  ];
  const hostileValue = (): unknown => pick([str(), rnd() * 1e12, -1, null, true, [], {}, [str()], { $gt: '' }, { __proto__: { polluted: true } }, 1e309, '']);
  const hostileObject = (): Record<string, unknown> => {
    const o: Record<string, unknown> = {};
    const n = Math.floor(rnd() * 6);
    for (let i = 0; i < n; i++) o[pick(['id', 'subscriptionId', 'action', 'planId', 'quantity', 'contact', 'email', 'status', str(), '__proto__'])] = hostileValue();
    return o;
  };
  const badJson = () => pick(['{', '{"id":', 'not json', '[1,2', '{"a":1}}', '\u0000', "{'single':'quotes'}", '', 'null', '[]', '"string"', '12', JSON.stringify(hostileObject())]);
  const huge = () => Buffer.alloc(300 * 1024 + Math.floor(rnd() * 2_000_000), 'a');
  const contentType = () => pick(['application/json', 'application/json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', '']);
  const someId = () => pick([crypto.randomUUID(), str(), '00000000-0000-0000-0000-000000000000', encodeURIComponent(str())]);

  const webhookCase = (): Case => {
    const authed = rnd() < 0.5;
    const headers: Record<string, string> = { 'content-type': contentType() };
    if (authed) headers.authorization = `Bearer ${validToken}`;
    else {
      const bad = pick(badTokens);
      if (bad) headers.authorization = bad;
    }
    // Never a well-formed notification: ids are not GUIDs, or fields are missing or of the wrong type.
    const body = rnd() < 0.1 ? huge() : rnd() < 0.5 ? badJson() : JSON.stringify({ ...hostileObject(), id: str(), subscriptionId: pick([str(), 5, null]) });
    return { surface: 'webhook', method: 'POST', path: pick(['/webhook', '/webhook', `/webhook?${str()}`]), headers, body };
  };

  const landingCase = (): Case => {
    const r = rnd();
    if (r < 0.45) {
      const token = pick([str(), encodeURIComponent(str()), 'x'.repeat(9000), '', '%E0%A4%A', `${encodeURIComponent(str())}&token=${str()}`]);
      return { surface: 'landing', method: 'GET', path: pick([`/landing?token=${token}`, '/landing', `/landing?tok=${token}`]), headers: {} };
    }
    if (r < 0.8) {
      const form = new URLSearchParams();
      for (const k of ['subscriptionId', 'sig', 'email', 'name', 'company', 'phone', str()]) if (rnd() < 0.7) form.set(k, String(hostileValue()));
      return {
        surface: 'landing',
        method: 'POST',
        path: '/landing/activate',
        headers: { 'content-type': pick(['application/x-www-form-urlencoded', 'application/json', 'text/plain']) },
        body: rnd() < 0.1 ? huge() : rnd() < 0.8 ? form.toString() : badJson(),
      };
    }
    return { surface: 'landing', method: 'GET', path: pick([`/landing/subscriptions/${someId()}?sig=${str()}`, `/landing/subscriptions/${someId()}/status?sig=${encodeURIComponent(str())}`, `/landing/subscriptions/${someId()}`]), headers: {} };
  };

  const operatorCase = (): Case => {
    const authed = rnd() < 0.6;
    const headers: Record<string, string> = { 'content-type': contentType() };
    if (authed) headers.authorization = `Bearer ${s.operatorToken}`;
    else if (rnd() < 0.7) headers.authorization = pick(badTokens) || 'Bearer nope';
    // Header values must be sendable at all (fetch refuses control characters): hostile, but printable.
    if (rnd() < 0.3) headers['if-match'] = pick([str().slice(0, 100).replace(/[^\x20-\x7e]/g, '?'), '"abc"', '"-1"', '*', '"99999999999999999999999"', 'W/"1"']);
    const id = someId();
    const r = rnd();
    if (r < 0.3) return { surface: 'operator', method: 'GET', path: pick([`/api/subscriptions/${id}`, `/api/subscriptions/${id}/events?fromRevision=${str()}`, `/api/${str()}`]), headers };
    const action = pick(['activate', 'plan', 'quantity', 'cancel', str()]);
    const body = rnd() < 0.1 ? huge() : rnd() < 0.4 ? badJson() : JSON.stringify(pick([{ planId: hostileValue() }, { quantity: hostileValue() }, { contact: hostileValue() }, { contact: { email: str() } }, hostileObject(), { reason: 'x'.repeat(100_000) }]));
    return { surface: 'operator', method: pick(['POST', 'POST', 'PUT', 'DELETE']), path: `/api/subscriptions/${id}/${action}`, headers, body };
  };

  const cases: Case[] = [];
  for (let i = 0; i < PER_SURFACE; i++) cases.push(webhookCase(), landingCase(), operatorCase());

  const bad: string[] = [];
  const counts: Record<string, Record<number, number>> = { webhook: {}, landing: {}, operator: {} };
  let sent = 0;
  const started = Date.now();
  const send = async (c: Case) => {
    let status: number;
    try {
      const res = await fetch(`${s.url}${c.path}`, { method: c.method, headers: c.headers, ...(c.body !== undefined && c.method !== 'GET' ? { body: c.body } : {}) });
      status = res.status;
      const type = res.headers.get('content-type') ?? '';
      await res.arrayBuffer();
      if (status < 400 || status > 499) bad.push(`${c.surface} ${c.method} ${c.path.slice(0, 120)} → ${status}`);
      else if (!/problem\+json|text\/html/.test(type)) bad.push(`${c.surface} ${c.method} ${c.path.slice(0, 120)} → ${status} with content-type ${type || '(none)'}`);
    } catch (err) {
      // A closed connection for an oversized body is the server protecting itself, not a crash; anything else is.
      if (Buffer.isBuffer(c.body) && c.body.length > 256 * 1024) status = 413;
      else {
        bad.push(`${c.surface} ${c.method} ${c.path.slice(0, 120)} → ${(err as Error).message}`);
        status = 0;
      }
    }
    sent++;
    const bucket = counts[c.surface] as Record<number, number>;
    bucket[status] = (bucket[status] ?? 0) + 1;
  };
  for (let i = 0; i < cases.length; i += 30) await Promise.all(cases.slice(i, i + 30).map(send));

  t.equal(sent, PER_SURFACE * 3, `${sent} requests sent in ${Date.now() - started} ms (seed ${SEED})`);
  t.comment(`answers by surface and status: ${JSON.stringify(counts)}`);
  t.same(bad.slice(0, 20), [], `every answer a clear 4xx (${bad.length} were not)`);
  t.equal((await fetch(`${s.url}/healthz`)).status, 200, 'the service is still up');
  t.equal((await fetch(`${s.url}/readyz`)).status, 200, 'and ready');
  // And still does real work: a genuine purchase resolves on the landing page.
  const bought = s.emulator.marketplace.purchase({ planId: 'standard', quantity: 2 });
  t.equal((await fetch(`${s.url}/landing?token=${encodeURIComponent(bought.token)}`)).status, 200, 'a real customer still gets the landing page');
});
