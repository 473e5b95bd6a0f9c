/**
 * Microsoft's calendar over HTTP: GET /emulator/clock and POST /emulator/clock/advance drive
 * renewals (Renew), term ends with autoRenew off (Unsubscribe), and the 30-day limit of a purchase
 * that was never activated (Unsubscribed, no webhook).
 */
import t from 'tap';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { APP_ID, startHarness, subscribed } from './emulator.helpers.js';
import type { Harness } from './emulator.helpers.js';

type Advanced = { now: string; offsetMs: number; events: { kind: string; subscriptionId: string; at: string; operationId?: string; action?: string }[] };

async function advance(h: Harness, body: Record<string, number>): Promise<Advanced> {
  const res = await h.http.raw('POST', '/emulator/clock/advance', { body });
  if (res.status !== 200) throw new Error(`POST /emulator/clock/advance: ${res.status} ${res.text}`);
  return res.body as Advanced;
}

t.test('GET /emulator/clock; advancing moves it on by days, hours and ms, never back', async (t) => {
  const base = new Date('2025-05-10T12:00:00Z');
  const h = await startHarness(t, { now: () => base });
  t.same((await h.http.raw('GET', '/emulator/clock')).body, { now: '2025-05-10T12:00:00.000Z', offsetMs: 0 });
  const moved = await advance(h, { days: 1, hours: 2, ms: 500 });
  t.match(moved, { now: '2025-05-11T14:00:00.500Z', offsetMs: 93_600_500, events: [] });
  t.same(h.emulator.clock.now(), new Date('2025-05-11T14:00:00.500Z'), 'the same clock in-process');
  for (const body of [{}, { days: -1 }, { weeks: 1 }, { hours: 1.5 }]) {
    const res = await h.http.raw('POST', '/emulator/clock/advance', { body });
    t.equal(res.status, 400, `${JSON.stringify(body)} is refused`);
  }
});

t.test('term end with autoRenew on: the term moves on and a Renew webhook is sent, its token valid on real time', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  const before = (await h.http.api('GET', `/saas/subscriptions/${id}`)).body as { term: { startDate: string; endDate: string } };
  const moved = await advance(h, { days: 40 });
  t.match(moved.events, [{ kind: 'renewed', subscriptionId: id, action: 'Renew', operationId: String }]);
  const nextStart = new Date(new Date(before.term.endDate).getTime() + 86_400_000).toISOString();
  t.equal(moved.events[0]?.at, nextStart, 'renewed the day after the term ended');
  const [d] = await h.receiver.waitFor((ds) => ds.some((x) => x.body.action === 'Renew'));
  t.match(d?.body, { action: 'Renew', status: 'Succeeded', id: moved.events[0]?.operationId, subscription: { term: { startDate: nextStart } } });
  const got = (await h.http.api('GET', `/saas/subscriptions/${id}`)).body as { term: { startDate: string } };
  t.equal(got.term.startDate, nextStart, 'Get subscription shows the new term');
  const token = (d?.headers.authorization ?? '').replace(/^Bearer /, '');
  await t.resolves(jwtVerify(token, createRemoteJWKSet(new URL(h.emulator.jwksUrl)), { issuer: h.emulator.issuer, audience: APP_ID }), 'the bearer token is dated on real time');
});

t.test('term end with autoRenew off: Unsubscribed, with an Unsubscribe webhook', async (t) => {
  const h = await startHarness(t);
  const id = await subscribed(h);
  await h.http.raw('PUT', `/emulator/subscriptions/${id}/auto-renew`, { body: { autoRenew: false } });
  const moved = await advance(h, { days: 45 });
  t.match(moved.events, [{ kind: 'ended', subscriptionId: id, action: 'Unsubscribe' }]);
  await h.receiver.waitFor((ds) => ds.some((x) => x.body.action === 'Unsubscribe' && x.body.subscriptionId === id));
  t.match((await h.http.api('GET', `/saas/subscriptions/${id}`)).body, { saasSubscriptionStatus: 'Unsubscribed' });
});

t.test('a purchase never activated: Unsubscribed after 30 days, with no webhook; its token expired long before', async (t) => {
  const h = await startHarness(t);
  const bought = await h.http.purchase({ planId: 'basic' });
  const soon = await advance(h, { days: 2 });
  t.same(soon.events, []);
  const resolve = await h.http.api('POST', '/saas/subscriptions/resolve', { headers: { 'x-ms-marketplace-token': bought.token } });
  t.match(resolve, { status: 400, body: { error: { code: 'TokenExpired' } } }, 'the calendar also expires purchase tokens');
  const moved = await advance(h, { days: 28 });
  t.same(moved.events.map((e) => [e.kind, e.subscriptionId, e.operationId]), [['expired', bought.subscriptionId, undefined]]);
  t.match((await h.http.api('GET', `/saas/subscriptions/${bought.subscriptionId}`)).body, { saasSubscriptionStatus: 'Unsubscribed' });
  t.same(h.emulator.deliveries({ subscriptionId: bought.subscriptionId }), [], 'no webhook');

  const marker = await subscribed(h, { planId: 'basic' });
  await h.http.act(marker, 'suspend');
  const ds = await h.receiver.waitFor((all) => all.some((d) => d.body.subscriptionId === marker));
  t.same(ds.map((d) => d.body.subscriptionId), [marker], 'the only webhook is the marker sent afterwards');
});
