/**
 * Converging on Microsoft's record (converge.ts): every kind of drift is repaired by events that carry what
 * Microsoft reported, converging twice changes nothing, and what cannot be repaired is left and reported.
 */
import t from 'tap';
import { convergeEvents, decide, driftOf, evolve, initialState } from '../../src/domain/subscription/index.js';
import type { KnownSubscription, MicrosoftRecord, SubscriptionEvent, SubscriptionState, Term } from '../../src/domain/subscription/index.js';
import { FIRST_TERM, NOW, details, history } from './subscription.fixtures.js';

function fold(events: SubscriptionEvent[], from: SubscriptionState = initialState()): KnownSubscription {
  const s = events.reduce(evolve, from);
  if (s.status === 'Initial') throw new Error('expected a known subscription');
  return s;
}

const YEAR: Term = { termUnit: 'P1Y', startDate: '2026-05-01T00:00:00Z', endDate: '2027-04-30T00:00:00Z' };
const meta = { now: NOW, source: 'reconciliation' as const };
const record = (status: string, overrides: Parameters<typeof details>[0] = {}): MicrosoftRecord => ({ details: details({ term: FIRST_TERM, ...overrides }), status });

t.test('agreeing records: no drift, no events', async (t) => {
  const s = fold(history('Subscribed'));
  t.same(driftOf(s, record('Subscribed')), []);
  t.same(convergeEvents(s, record('Subscribed'), meta), []);
});

t.test('each kind of drift is found and repaired, and converging again changes nothing', async (t) => {
  const cases: Array<{ name: string; microsoft: MicrosoftRecord; kinds: string[]; types: string[] }> = [
    { name: 'suspended at Microsoft', microsoft: record('Suspended'), kinds: ['status'], types: ['Suspended'] },
    { name: 'cancelled at Microsoft (after a plan change)', microsoft: record('Unsubscribed', { planId: 'gold' }), kinds: ['status', 'plan'], types: ['Unsubscribed', 'PlanChanged'] },
    { name: 'plan changed', microsoft: record('Subscribed', { planId: 'gold' }), kinds: ['plan'], types: ['PlanChanged'] },
    { name: 'seats changed', microsoft: record('Subscribed', { quantity: 12 }), kinds: ['quantity'], types: ['QuantityChanged'] },
    { name: 'term changed (monthly → yearly)', microsoft: record('Subscribed', { term: YEAR }), kinds: ['term'], types: ['DetailsRefreshed'] },
    { name: 'auto-renew off', microsoft: record('Subscribed', { autoRenew: false }), kinds: ['autoRenew'], types: ['DetailsRefreshed'] },
    { name: 'trial ended', microsoft: record('Subscribed', { isFreeTrial: true }), kinds: ['isFreeTrial'], types: ['DetailsRefreshed'] },
    { name: 'operations narrowed', microsoft: record('Subscribed', { allowedCustomerOperations: ['Read'] }), kinds: ['allowedCustomerOperations'], types: ['DetailsRefreshed'] },
  ];
  for (const c of cases) {
    const before = fold(history('Subscribed'));
    t.same(driftOf(before, c.microsoft), c.kinds, `${c.name}: drift kinds`);
    const events = convergeEvents(before, c.microsoft, meta);
    t.same(events.map((e) => e.type), c.types, `${c.name}: events`);
    for (const e of events) {
      t.equal(e.data.source, 'reconciliation', `${c.name}: ${e.type} says why`);
      t.equal(e.data.reported?.status, c.microsoft.status, `${c.name}: ${e.type} carries what Microsoft reported`);
    }
    const after = events.reduce(evolve, before as SubscriptionState);
    if (after.status === 'Initial') throw new Error('unreachable');
    t.same(driftOf(after, c.microsoft), [], `${c.name}: no drift left`);
    t.same(convergeEvents(after, c.microsoft, meta), [], `${c.name}: a second run finds nothing`);
  }
});

t.test('a pending purchase Microsoft activated is activated with Microsoft\'s plan, seats and term', async (t) => {
  const pending = fold(history('PendingFulfillmentStart'));
  const events = convergeEvents(pending, { details: details({ planId: 'gold', quantity: 8, term: YEAR }), status: 'Subscribed' }, meta);
  t.same(events.map((e) => e.type), ['Activated']);
  const after = fold(events, pending);
  t.match(after, { status: 'Subscribed', planId: 'gold', quantity: 8, term: YEAR, autoActivated: true });
});

t.test('what cannot be repaired is left as it is and still reported', async (t) => {
  const active = fold(history('Subscribed'));
  t.same(convergeEvents(active, record('PendingFulfillmentStart'), meta), [], 'no way back to pending');
  t.same(driftOf(active, record('PendingFulfillmentStart')), ['status'], 'the drift is still reported');
  const cancelled = fold(history('Unsubscribed'));
  const late = convergeEvents(cancelled, record('Subscribed', { planId: 'gold' }), meta);
  t.same(late.map((e) => e.type), ['PlanChanged'], "Unsubscribed is terminal, but takes Microsoft's final plan");
  t.equal(fold(late, cancelled).status, 'Unsubscribed', 'still Unsubscribed');
  t.same(driftOf(fold(late, cancelled), record('Subscribed', { planId: 'gold' })), ['status'], 'the status drift is still reported');
});

t.test('an unknown status or term unit of Microsoft\'s is not a crash', async (t) => {
  const s = fold(history('Subscribed'));
  const payg: Term = { termUnit: 'PAY', startDate: '2026-05-01T00:00:00Z', endDate: '2026-05-31T00:00:00Z' };
  const events = convergeEvents(s, { details: details({ term: payg }), status: 'Transferred' }, meta);
  t.same(events.map((e) => e.type), ['DetailsRefreshed'], 'the unknown status is left, the new term is taken');
  t.same(driftOf(fold(events, s), { details: details({ term: payg }), status: 'Transferred' }), []);
});

t.test('the command: unknown subscription refused, known one converged', async (t) => {
  const command = { type: 'ConvergeOnMicrosoft' as const, ...meta, microsoft: record('Suspended') };
  t.throws(() => decide(command, initialState()), { code: 'subscription-not-found' });
  t.same(decide(command, fold(history('Subscribed'))).map((e) => e.type), ['Suspended']);
});
