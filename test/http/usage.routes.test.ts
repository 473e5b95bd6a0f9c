/**
 * POST /api/usage at the edge: the operator token or USAGE_TOKEN lets a request in (USAGE_TOKEN nowhere else),
 * the body is checked by its schema (400), refused records come back with their reason (422).
 */
import t from 'tap';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { UsageIntake } from '../../src/application/usage-intake.js';
import { createLogger } from '../../src/logger.js';

const OPERATOR = 'operator-token-0123456789abcdef';
const USAGE = 'usage-token-0123456789abcdef';

async function setup(t: Test) {
  const intake = new UsageIntake({
    subscriptions: { load: async () => ({ state: { status: 'Initial' }, revision: undefined, events: [] }) },
    usage: { executeHour: async () => { throw new Error('nothing is recorded in this test'); } },
    meters: { dimensionsOf: async () => new Set(['api-calls']) },
  });
  const app = await buildApp({ logger: createLogger('silent'), store: () => undefined, usage: { intake, operatorToken: OPERATOR, usageToken: USAGE }, api: { operatorToken: OPERATOR } });
  t.teardown(() => app.close());
  const post = (token: string | undefined, body: unknown) =>
    app.inject({ method: 'POST', url: '/api/usage', headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' }, payload: JSON.stringify(body) });
  return { app, post };
}

const record = { subscriptionId: '5f2a3c4d-1b2e-4f5a-8b9c-0d1e2f3a4b5c', dimension: 'api-calls', quantity: 1, effectiveTime: new Date().toISOString(), idempotencyKey: 'k1' };

t.test('either token lets a report in; no token or another is a 401', async (t) => {
  const { post } = await setup(t);
  for (const token of [OPERATOR, USAGE]) {
    const res = await post(token, record);
    t.equal(res.statusCode, 422, 'in, and refused: the subscription is not known');
    t.match(res.json(), { refused: 1, results: [{ outcome: 'refused', reason: 'not-active' }] });
  }
  t.equal((await post(undefined, record)).statusCode, 401);
  t.equal((await post('wrong-token-0123456789', record)).statusCode, 401);
});

t.test('USAGE_TOKEN opens nothing else', async (t) => {
  const { app } = await setup(t);
  const res = await app.inject({ method: 'GET', url: '/api/read/usage', headers: { authorization: `Bearer ${USAGE}` } });
  t.equal(res.statusCode, 401);
});

t.test('a malformed body is a 400', async (t) => {
  const { post } = await setup(t);
  t.equal((await post(OPERATOR, { ...record, quantity: 'three' })).statusCode, 400);
  t.equal((await post(OPERATOR, { ...record, extra: 1 })).statusCode, 400);
  t.equal((await post(OPERATOR, { records: [] })).statusCode, 400);
  t.equal((await post(OPERATOR, { ...record, effectiveTime: 'yesterday' })).statusCode, 400);
});
