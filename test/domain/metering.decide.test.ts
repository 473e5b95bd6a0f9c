/**
 * The metering deciders, pure: an hour records new records once (idempotency key), late ones apart once it is
 * closed, freezes its totals at close, submits what is above the included quantity, settles each dimension once;
 * a month's included quantity is used up in order and never applied twice.
 */
import t from 'tap';
import { fold } from '../../src/domain/decider.js';
import { allowanceDecider, isSettled, awaitingAnswer, usageHourDecider } from '../../src/domain/metering/index.js';
import type { UsageHourEvent, UsageRecord } from '../../src/domain/metering/index.js';

const SUB = '5f2a3c4d-1b2e-4f5a-8b9c-0d1e2f3a4b5c';
const HOUR = '2026-12-01T08';
const now = '2026-12-01T09:10:00.000Z';
const rec = (key: string, dimension: string, quantity: number, minute = 5): UsageRecord => ({ dimension, quantity, effectiveTime: `${HOUR}:${String(minute).padStart(2, '0')}:00.000Z`, idempotencyKey: key });

function run(history: UsageHourEvent[], command: Parameters<typeof usageHourDecider.decide>[0]) {
  const state = fold(usageHourDecider, history);
  const events = usageHourDecider.decide(command, state);
  return { events, state: events.reduce(usageHourDecider.evolve, state), history: [...history, ...events] };
}

const record = (records: UsageRecord[]) => ({ type: 'RecordUsage' as const, subscriptionId: SUB, hour: HOUR, records, now });

t.test('records once per key; a key repeated in the same command or later records nothing', async (t) => {
  const a = run([], record([rec('k1', 'api', 2), rec('k2', 'api', 3.1), rec('k1', 'api', 2)]));
  t.same(a.events.map((e) => e.type), ['UsageRecorded', 'UsageRecorded']);
  const b = run(a.history, record([rec('k1', 'api', 2), rec('k3', 'gb', 0.2)]));
  t.same(b.events.map((e) => e.type), ['UsageRecorded'], 'k1 again: nothing');
  t.equal(b.state.dimensions.get('api')?.recorded, 5.1);
  t.equal(b.state.dimensions.get('gb')?.recorded, 0.2);
  t.throws(() => run([], record([rec('k9', 'api', 0)])), { code: 'invalid-quantity' });
  t.throws(() => run([], record([{ ...rec('k9', 'api', 1), effectiveTime: '2026-12-01T10:00:00.000Z' }])), { code: 'wrong-hour' });
});

t.test('close freezes the totals; a record after it is late, kept apart', async (t) => {
  const recorded = run([], record([rec('k1', 'api', 2, 5), rec('k2', 'api', 3, 40), rec('k3', 'gb', 1, 10)]));
  const closed = run(recorded.history, { type: 'CloseHour', subscriptionId: SUB, hour: HOUR, now });
  t.match(closed.events[0], { type: 'UsageHourClosed', data: { lines: [{ dimension: 'api', quantity: 5, records: 2, effectiveStartTime: `${HOUR}:40:00.000Z` }, { dimension: 'gb', quantity: 1 }] } });
  t.same(run(closed.history, { type: 'CloseHour', subscriptionId: SUB, hour: HOUR, now }).events, [], 'closing twice: nothing');
  const late = run(closed.history, record([rec('k4', 'api', 7)]));
  t.same(late.events.map((e) => e.type), ['LateUsageRecorded']);
  t.equal(late.state.dimensions.get('api')?.closed?.quantity, 5, 'the frozen total does not move');
  t.equal(late.state.dimensions.get('api')?.late, 7);
});

t.test('submit sends what is above the included quantity, once; settle once per dimension', async (t) => {
  const closed = run(run([], record([rec('k1', 'api', 10), rec('k2', 'gb', 1)])).history, { type: 'CloseHour', subscriptionId: SUB, hour: HOUR, now });
  const submitted = run(closed.history, { type: 'SubmitUsage', planId: 'basic', included: new Map([['api', 4], ['gb', 5]]), now });
  t.match(submitted.events, [
    { type: 'UsageSubmitted', data: { dimension: 'api', recorded: 10, included: 4, quantity: 6, planId: 'basic' } },
    { type: 'UsageSettled', data: { dimension: 'gb', status: 'Included', billed: 0, via: 'local' } },
  ]);
  t.same(run(submitted.history, { type: 'SubmitUsage', planId: 'basic', included: new Map(), now }).events, [], 'submitting again: nothing');
  t.same(awaitingAnswer(submitted.state).map((s) => s.dimension), ['api']);
  const answer = { dimension: 'api', status: 'Accepted', billed: 6, via: 'answer' as const, usageEventId: 'e1' };
  const settled = run(submitted.history, { type: 'SettleUsage', answers: [answer], now });
  t.equal(settled.events.length, 1);
  t.ok(isSettled(settled.state));
  t.same(run(settled.history, { type: 'SettleUsage', answers: [{ ...answer, via: 'duplicate' }], now }).events, [], 'a second answer changes nothing');
});

t.test('a month\'s included quantity is used up in order and applied once per hour and dimension', async (t) => {
  const cmd = (hour: string, recorded: number) => ({ type: 'ApplyIncluded' as const, subscriptionId: SUB, month: '2026-12', hour, lines: [{ dimension: 'api', recorded, includedPerMonth: 100 }], now });
  let state = allowanceDecider.initialState();
  const applied: number[] = [];
  for (const [hour, q] of [['2026-12-01T08', 60], ['2026-12-01T09', 60], ['2026-12-01T10', 60], ['2026-12-01T09', 60]] as const) {
    const events = allowanceDecider.decide(cmd(hour, q), state);
    for (const e of events) applied.push(e.data.applied);
    state = events.reduce(allowanceDecider.evolve, state);
  }
  t.same(applied, [60, 40, 0], '60, then the 40 left, then none; hour 09 again applies nothing');
  t.equal(state.used.get('api'), 100);
});
