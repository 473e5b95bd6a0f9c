/**
 * `evolve` and the purity of the decider.
 * - A realistic life, driven through `decide` command by command, produces exactly the expected events,
 *   and folding them gives exactly the expected state (every field, as stored).
 * - `evolve` edge cases: what it ignores, what it merges.
 * - Purity: no mutation of inputs (deep-frozen), the same inputs give the same outputs, no clock or randomness.
 */
import t from 'tap';
import { fold } from '../../src/domain/decider.js';
import { decide, evolve, initialState, subscriptionDecider } from '../../src/domain/subscription/index.js';
import type { SubscriptionCommand, SubscriptionEvent, SubscriptionState } from '../../src/domain/subscription/index.js';
import { asStored, deepFreeze } from '../support/given-when-then.js';
import { CONTACT, FIRST_TERM, SECOND_TERM, T, because, details, history, known, purchased } from './subscription.fixtures.js';

const at = (day: number, hour = 9): string => `2026-03-${String(day).padStart(2, '0')}T${String(hour).padStart(2, '0')}:00:00.000Z`;

/** A life: purchase, a failed then successful activation, changes from both sides, a policy refusal, renewal, suspension, cancellation. */
const life: Array<{ command: SubscriptionCommand; events: SubscriptionEvent[] }> = [
  {
    command: { type: 'RecordPurchase', now: at(1), source: 'landing', subscription: details(), microsoftStatus: 'PendingFulfillmentStart' },
    events: [{ type: 'Purchased', data: { ...because(at(1), 'landing'), ...details(), microsoftStatus: 'PendingFulfillmentStart' } }],
  },
  {
    command: { type: 'RequestActivation', now: at(1, 10), source: 'landing', contact: CONTACT, planId: 'silver', quantity: 5 },
    events: [{ type: 'ActivationRequested', data: { ...because(at(1, 10), 'landing'), planId: 'silver', quantity: 5, contact: CONTACT } }],
  },
  {
    command: { type: 'RecordActivationFailure', now: at(1, 11), source: 'process', reason: 'Activate answered 503', final: false },
    events: [{ type: 'ActivationFailed', data: { ...because(at(1, 11), 'process'), reason: 'Activate answered 503', attempt: 1, final: false } }],
  },
  {
    command: { type: 'ConfirmActivation', now: at(1, 12), source: 'process', planId: 'silver', quantity: 5, term: FIRST_TERM },
    events: [{ type: 'Activated', data: { ...because(at(1, 12), 'process'), planId: 'silver', quantity: 5, autoActivated: false, term: FIRST_TERM } }],
  },
  {
    command: { type: 'ApplyQuantityChange', now: at(5), source: 'webhook', operationId: 'op-q1', quantity: 12, requestSource: 'Azure' },
    events: [{ type: 'QuantityChanged', data: { ...because(at(5), 'webhook'), operationId: 'op-q1', quantity: 12, previousQuantity: 5, requestSource: 'Azure' } }],
  },
  {
    command: { type: 'RequestPlanChange', now: at(10), source: 'operator', requestId: 'req-1', planId: 'gold' },
    events: [{ type: 'PlanChangeRequested', data: { ...because(at(10), 'operator'), requestId: 'req-1', planId: 'gold', previousPlanId: 'silver' } }],
  },
  {
    command: { type: 'RecordChangeSubmitted', now: at(10, 10), source: 'process', requestId: 'req-1', operationId: 'op-p1' },
    events: [{ type: 'ChangeSubmitted', data: { ...because(at(10, 10), 'process'), requestId: 'req-1', operationId: 'op-p1' } }],
  },
  {
    command: { type: 'ApplyPlanChange', now: at(10, 11), source: 'webhook', operationId: 'op-p1', planId: 'gold', requestSource: 'Partner' },
    events: [
      {
        type: 'PlanChanged',
        data: { ...because(at(10, 11), 'webhook'), operationId: 'op-p1', planId: 'gold', previousPlanId: 'silver', requestSource: 'Partner' },
      },
    ],
  },
  {
    command: {
      type: 'RefuseChange',
      now: at(20),
      source: 'webhook',
      operationId: 'op-x1',
      action: 'ChangeQuantity',
      quantity: 500,
      reason: 'more seats than the licence allows',
    },
    events: [
      {
        type: 'ChangeRejected',
        data: { ...because(at(20), 'webhook'), operationId: 'op-x1', action: 'ChangeQuantity', quantity: 500, reason: 'more seats than the licence allows' },
      },
    ],
  },
  {
    command: { type: 'Renew', now: '2026-04-01T00:05:00.000Z', source: 'webhook', operationId: 'op-r1', term: SECOND_TERM },
    events: [{ type: 'Renewed', data: { ...because('2026-04-01T00:05:00.000Z', 'webhook'), operationId: 'op-r1', term: SECOND_TERM } }],
  },
  {
    command: { type: 'Suspend', now: T.suspended, source: 'webhook', operationId: 'op-s1' },
    events: [{ type: 'Suspended', data: { ...because(T.suspended, 'webhook'), operationId: 'op-s1' } }],
  },
  {
    command: { type: 'Reinstate', now: '2026-04-05T08:00:00.000Z', source: 'webhook', operationId: 'op-re1' },
    events: [{ type: 'Reinstated', data: { ...because('2026-04-05T08:00:00.000Z', 'webhook'), operationId: 'op-re1' } }],
  },
  {
    command: { type: 'Unsubscribe', now: T.unsubscribed, source: 'webhook', operationId: 'op-u1', reason: 'cancelled in the Azure portal' },
    events: [{ type: 'Unsubscribed', data: { ...because(T.unsubscribed, 'webhook'), operationId: 'op-u1', reason: 'cancelled in the Azure portal' } }],
  },
];

const lifeEvents = life.flatMap((step) => step.events);

/** The state after the Reinstate (step 12 of 13), every field as stored. */
const reinstated = {
  ...details(),
  status: 'Subscribed',
  planId: 'gold',
  quantity: 12,
  term: { termUnit: 'P1M', startDate: SECOND_TERM.startDate, endDate: SECOND_TERM.endDate },
  purchasedAt: at(1),
  appliedOperations: ['op-q1', 'op-p1', 'op-x1', 'op-r1', 'op-s1', 'op-re1'],
  settledRequests: ['req-1'],
  contact: CONTACT,
  activation: { requestedAt: at(1, 10), planId: 'silver', quantity: 5, failures: 1, attempts: 1, lastError: 'Activate answered 503', gaveUp: false },
  autoActivated: false,
  activatedAt: at(1, 12),
  lastRenewedAt: '2026-04-01T00:05:00.000Z',
};

t.test('a realistic life, command by command, emits exactly the expected events', async (t) => {
  let state: SubscriptionState = initialState();
  for (const step of life) {
    const emitted = decide(deepFreeze(step.command), deepFreeze(state));
    t.strictSame(asStored(emitted), asStored(step.events), `${step.command.type} → ${step.events.map((e) => e.type).join(', ')}`);
    state = emitted.reduce(evolve, state);
  }
  t.equal(state.status, 'Unsubscribed');
});

t.test('folding the life gives the expected state at each point', async (t) => {
  const upTo = (n: number): SubscriptionState => fold(subscriptionDecider, lifeEvents.slice(0, n));

  t.strictSame(upTo(0), { status: 'Initial' }, 'nothing: Initial');
  t.strictSame(
    asStored(upTo(1)),
    { ...details(), status: 'PendingFulfillmentStart', purchasedAt: at(1), appliedOperations: [], settledRequests: [], activation: { failures: 0, attempts: 0, gaveUp: false }, autoActivated: false },
    'after the purchase: pending, every detail Microsoft gave',
  );
  t.match(known(upTo(3)), { status: 'PendingFulfillmentStart', contact: CONTACT, activation: { requestedAt: at(1, 10), failures: 1, gaveUp: false } });
  t.match(known(upTo(4)), { status: 'Subscribed', activatedAt: at(1, 12), term: FIRST_TERM, autoActivated: false });
  t.match(known(upTo(6)), { planId: 'silver', quantity: 12, pendingChange: { kind: 'plan', requestId: 'req-1', planId: 'gold', requestedAt: at(10) } });
  t.match(known(upTo(7)), { pendingChange: { operationId: 'op-p1' } });
  t.match(known(upTo(8)), { planId: 'gold', pendingChange: undefined });
  t.match(known(upTo(11)), { status: 'Suspended', suspendedAt: T.suspended, term: SECOND_TERM });
  t.strictSame(asStored(upTo(12)), reinstated, 'after the reinstatement: every field');
  t.strictSame(
    asStored(upTo(13)),
    { ...reinstated, status: 'Unsubscribed', unsubscribedAt: T.unsubscribed, appliedOperations: [...reinstated.appliedOperations, 'op-u1'] },
    'after the cancellation: every field',
  );
});

t.test('evolve', async (t) => {
  const subscribed = fold(subscriptionDecider, history('Subscribed'));

  t.test('only a purchase starts a stream; a second purchase changes nothing', async (t) => {
    const initial = initialState();
    for (const event of history('Suspended').slice(1)) t.equal(evolve(initial, event), initial, `${event.type} on Initial is ignored`);
    t.equal(evolve(subscribed, purchased({ subscription: { planId: 'gold' } })), subscribed, 'a second Purchased is ignored');
  });

  t.test('initialState is a fresh object each time', async (t) => {
    t.not(initialState(), initialState());
    t.strictSame(initialState(), { status: 'Initial' });
  });

  t.test('a ChangeSubmitted for another request changes nothing', async (t) => {
    const pending = history('Subscribed').concat({
      type: 'CancellationRequested',
      data: { ...because(T.changeRequested, 'operator'), requestId: 'req-1' },
    });
    const state = fold(subscriptionDecider, pending);
    t.equal(evolve(state, { type: 'ChangeSubmitted', data: { ...because(T.changeSubmitted, 'process'), requestId: 'req-9', operationId: 'op-9' } }), state);
  });

  t.test('an operation id is recorded once, even if two events carry it', async (t) => {
    const renewed: SubscriptionEvent = { type: 'Renewed', data: { ...because(T.changeRequested, 'webhook'), operationId: 'op-r1' } };
    const state = fold(subscriptionDecider, [...history('Subscribed'), renewed, renewed]);
    t.strictSame(known(state).appliedOperations, ['op-r1']);
  });

  t.test('Activated merges the term and keeps the quantity it does not mention', async (t) => {
    const state = evolve(fold(subscriptionDecider, [purchased()]), {
      type: 'Activated',
      data: { ...because(T.activated, 'process'), planId: 'silver', autoActivated: false, term: { startDate: '2026-03-01T00:00:00Z' } },
    });
    t.match(known(state), { quantity: 5, term: { termUnit: 'P1M', startDate: '2026-03-01T00:00:00Z' } });
  });

  t.test('Unsubscribed clears a pending change', async (t) => {
    const events: SubscriptionEvent[] = [
      ...history('Subscribed'),
      { type: 'PlanChangeRequested', data: { ...because(T.changeRequested, 'operator'), requestId: 'req-1', planId: 'gold', previousPlanId: 'silver' } },
      { type: 'Unsubscribed', data: because(T.unsubscribed, 'reconciliation') },
    ];
    const state = fold(subscriptionDecider, events);
    t.match(known(state), { status: 'Unsubscribed', pendingChange: undefined, unsubscribedAt: T.unsubscribed });
  });
});

t.test('purity', async (t) => {
  t.test('evolve never mutates the state or the event it is given', async (t) => {
    let state: SubscriptionState = deepFreeze(initialState());
    for (const event of lifeEvents) {
      const snapshot = JSON.stringify(state);
      const frozen = deepFreeze(structuredClone(event));
      const next = evolve(state, frozen);
      t.equal(JSON.stringify(state), snapshot, `${event.type}: the previous state is unchanged`);
      state = deepFreeze(next);
    }
    t.equal(state.status, 'Unsubscribed');
  });

  t.test('decide never mutates the state or the command, and the same inputs give the same events', async (t) => {
    let state: SubscriptionState = initialState();
    for (const step of life) {
      const frozenState = deepFreeze(structuredClone(state));
      const frozenCommand = deepFreeze(structuredClone(step.command));
      const before = JSON.stringify([frozenState, frozenCommand]);
      const first = decide(frozenCommand, frozenState);
      const second = decide(frozenCommand, frozenState);
      t.strictSame(second, first, `${step.command.type}: the same events twice`);
      t.not(second, first, `${step.command.type}: a new array each time`);
      t.equal(JSON.stringify([frozenState, frozenCommand]), before, `${step.command.type}: inputs unchanged`);
      state = first.reduce(evolve, state);
    }
  });

  t.test('decide on a frozen state: nothing it emits shares mutable state with it', async (t) => {
    const state = deepFreeze(fold(subscriptionDecider, history('Subscribed')));
    const [event] = decide({ type: 'Renew', now: T.unsubscribed, source: 'webhook', operationId: 'op-r', term: SECOND_TERM }, state);
    t.ok(event && !Object.isFrozen(event) && !Object.isFrozen(event.data), 'the emitted event is a new object');
  });

  t.test('decide and evolve read no clock and no randomness: time comes in the command', async (t) => {
    const RealDate = Date;
    const realRandom = Math.random;
    class NoClockDate extends RealDate {
      constructor(...args: [] | [string | number]) {
        if (args.length === 0) throw new Error('the domain read the clock (new Date())');
        super(args[0]);
      }
      static override now(): number {
        throw new Error('the domain read the clock (Date.now())');
      }
    }
    globalThis.Date = NoClockDate as DateConstructor;
    Math.random = () => {
      throw new Error('the domain used Math.random()');
    };
    let outcome: SubscriptionState | Error;
    try {
      let state: SubscriptionState = initialState();
      for (const step of life) state = decide(step.command, state).reduce(evolve, state);
      outcome = state;
    } catch (error) {
      outcome = error instanceof Error ? error : new Error(String(error));
    } finally {
      globalThis.Date = RealDate;
      Math.random = realRandom;
    }
    t.notOk(outcome instanceof Error, outcome instanceof Error ? outcome.message : 'no clock, no randomness');
    t.match(outcome, { status: 'Unsubscribed', unsubscribedAt: T.unsubscribed });
  });
});
