/**
 * The emulator's Metering Service over real HTTP on 127.0.0.1: Microsoft's rules (one event per resource,
 * dimension and hour → the duplicate carries the original; 24-hour window → Expired; unknown dimension; inactive
 * subscription; quantity above 0; at most 25 a batch), answers checked against meteringapi.v1.json, and the
 * listing of what was accepted.
 */
import t from 'tap';
import type { Test } from 'tap';
import { startEmulator } from '../../src/emulator/emulator.js';
import { validateResponse } from '../support/metering-openapi.js';

const HOUR = 3_600_000;

async function world(t: Test) {
  const emulator = await startEmulator();
  t.teardown(() => emulator.close());
  const bought = emulator.marketplace.purchase({ planId: 'basic' });
  const id = bought.subscription.id;
  emulator.state.activate(id, { planId: 'basic' }, emulator.clock.now());
  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${emulator.apiBaseUrl}${path}?api-version=2018-08-31`, {
      method: 'POST',
      headers: { authorization: 'Bearer any', 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  return { emulator, id, post };
}

t.test('one event per resource, dimension and hour; a repeat is a 409 carrying the original', async (t) => {
  const { emulator, id, post } = await world(t);
  const hour = new Date(Math.floor((Date.now() - 2 * HOUR) / HOUR) * HOUR); // the start of an hour: +1 min stays in it
  const event = { resourceId: id, quantity: 7, dimension: 'api-calls', effectiveStartTime: hour.toISOString(), planId: 'basic' };
  const first = await post('/usageEvent', event);
  t.equal(first.status, 200);
  t.same(validateResponse('MeteringOperations_PostUsageEvent', 200, first.body).errors, []);
  t.match(first.body, { status: 'Accepted', quantity: 7, usageEventId: String });
  const again = await post('/usageEvent', { ...event, quantity: 9, effectiveStartTime: new Date(hour.getTime() + 60_000).toISOString() });
  t.equal(again.status, 409, 'same hour, other minute: a duplicate');
  t.same(validateResponse('MeteringOperations_PostUsageEvent', 409, again.body).errors, []);
  t.match(again.body, { code: 'Conflict', additionalInfo: { acceptedMessage: { usageEventId: first.body.usageEventId, quantity: 7, status: 'Duplicate' } } });
  t.same(emulator.meter.accepted({ resourceId: id }).map((u) => u.quantity), [7], 'one event billed');
  const listed = (await (await fetch(`${emulator.url}/emulator/usage?resourceId=${id}`)).json()) as { accepted: unknown[] };
  t.equal(listed.accepted.length, 1, 'GET /emulator/usage lists it');
});

t.test('a batch answers every item by Microsoft\'s rules', async (t) => {
  const { emulator, id, post } = await world(t);
  const other = emulator.marketplace.purchase({ planId: 'basic' }).subscription.id; // never activated
  const now = Date.now();
  const base = { resourceId: id, quantity: 1, dimension: 'api-calls', planId: 'basic' };
  const at = (msAgo: number) => new Date(now - msAgo).toISOString();
  const res = await post('/batchUsageEvent', {
    request: [
      { ...base, effectiveStartTime: at(3 * HOUR) },
      { ...base, effectiveStartTime: at(3 * HOUR - 1000) },
      { ...base, effectiveStartTime: at(25 * HOUR) },
      { ...base, dimension: 'no-such-dimension', effectiveStartTime: at(HOUR) },
      { ...base, quantity: 0, effectiveStartTime: at(HOUR) },
      { ...base, resourceId: other, effectiveStartTime: at(HOUR) },
      { ...base, resourceId: '00000000-0000-4000-8000-000000000000', effectiveStartTime: at(HOUR) },
    ],
  });
  t.equal(res.status, 200);
  t.same(validateResponse('MeteringOperations_PostBatchUsageEvent', 200, res.body).errors, [], 'matches the spec');
  const statuses = (res.body.result as Array<{ status: string }>).map((r) => r.status);
  t.same(statuses, ['Accepted', 'Duplicate', 'Expired', 'InvalidDimension', 'InvalidQuantity', 'ResourceNotActive', 'ResourceNotFound']);
  t.equal(emulator.meter.accepted().length, 1);
  const tooMany = await post('/batchUsageEvent', { request: Array.from({ length: 26 }, (_, i) => ({ ...base, effectiveStartTime: at(i * 1000) })) });
  t.equal(tooMany.status, 400, 'more than 25: 400');
  t.match(tooMany.body, { code: 'BadArgument', message: /more than 25/ });
});

t.test('the 24-hour window runs on Microsoft\'s calendar (clock advance)', async (t) => {
  const { emulator, id, post } = await world(t);
  const event = { resourceId: id, quantity: 2, dimension: 'api-calls', effectiveStartTime: new Date(Date.now() - HOUR).toISOString(), planId: 'basic' };
  emulator.marketplace.advanceClock(24 * HOUR);
  const res = await post('/usageEvent', event);
  t.equal(res.status, 400);
  t.match(res.body, { code: 'BadArgument', details: [{ code: 'Expired' }] });
});
