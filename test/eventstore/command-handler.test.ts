import t from 'tap';
import type { Decider, EventDecoder } from '../../src/domain/decider.js';
import { DomainError } from '../../src/domain/errors.js';
import { ConcurrencyError } from '../../src/eventstore/eventstore.js';
import { handleCommand, loadAggregate } from '../../src/eventstore/command-handler.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { subscriptionDecider, subscriptionStream } from '../../src/domain/subscription/index.js';

type Cmd = { type: 'Add'; n: number } | { type: 'Noop' };
type Ev = { type: 'Added'; data: { n: number } };
const counter: Decider<Cmd, number, Ev> & EventDecoder<Ev> = {
  initialState: () => 0,
  evolve: (s, e) => s + e.data.n,
  decide: (c, s) => {
    if (c.type === 'Noop') return [];
    if (s + c.n > 1000) throw new DomainError('too-big', 'over 1000');
    return [{ type: 'Added', data: { n: c.n } }];
  },
  decode: (stored) => {
    const d = stored.data;
    if (stored.type !== 'Added' || typeof d !== 'object' || d === null || !('n' in d) || typeof d.n !== 'number') return undefined;
    return { type: 'Added', data: { n: d.n } };
  },
};

t.test('read → fold → decide → append', async (t) => {
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const r = await handleCommand(store, 'counter-1', counter, { type: 'Add', n: 5 }, { metadata: { actor: 'test' } });
  t.equal(r.state, 5);
  t.equal(r.revision, 0n);
  t.equal(r.attempts, 1);
  const noop = await handleCommand(store, 'counter-1', counter, { type: 'Noop' });
  t.same(noop.events, [], 'nothing to do appends nothing');
  t.equal(noop.revision, 0n);
  const agg = await loadAggregate(store, 'counter-1', counter);
  t.equal(agg.state, 5);
  t.equal(agg.events[0]?.metadata.actor, 'test', 'metadata reaches the store');
  await t.rejects(handleCommand(store, 'counter-1', counter, { type: 'Add', n: 2000 }), DomainError);
});

t.test('concurrent commands without a pinned revision all land, through bounded retries', async (t) => {
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const results = await Promise.all(
    Array.from({ length: 10 }, (_, i) => handleCommand(store, 'counter-2', counter, { type: 'Add', n: i + 1 }, { maxRetries: 20 })),
  );
  const final = await loadAggregate(store, 'counter-2', counter);
  t.equal(final.state, 55, 'every command applied exactly once');
  t.equal(final.events.length, 10);
  t.comment(`attempts: ${results.map((r) => r.attempts).join(',')}`);
});

t.test('a pinned revision (If-Match) that is stale is a ConcurrencyError, not a retry', async (t) => {
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  await handleCommand(store, 'counter-3', counter, { type: 'Add', n: 1 });
  await handleCommand(store, 'counter-3', counter, { type: 'Add', n: 1 });
  await t.rejects(handleCommand(store, 'counter-3', counter, { type: 'Add', n: 1 }, { expectedRevision: 0n }), ConcurrencyError);
  const ok = await handleCommand(store, 'counter-3', counter, { type: 'Add', n: 1 }, { expectedRevision: 1n });
  t.equal(ok.revision, 2n);
});

t.test('the subscription decider through the handler: a repeated Microsoft operation is a no-op', async (t) => {
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const id = '6f1ab3d8-0000-4000-8000-000000000001';
  const stream = subscriptionStream(id);
  const now = '2026-11-24T00:00:00.000Z';
  await handleCommand(store, stream, subscriptionDecider, {
    type: 'RecordPurchase',
    now,
    source: 'landing',
    microsoftStatus: 'Subscribed',
    subscription: {
      subscriptionId: id,
      name: 'Contoso',
      offerId: 'offer',
      planId: 'silver',
      quantity: 5,
      purchaser: { emailId: 'a@contoso.com' },
      beneficiary: { emailId: 'a@contoso.com' },
      term: { termUnit: 'P1M' },
      autoRenew: true,
      isFreeTrial: false,
      isTest: false,
      allowedCustomerOperations: ['Read', 'Update', 'Delete'],
    },
  });
  const cmd = { type: 'Suspend' as const, now, source: 'webhook' as const, operationId: 'op-1' };
  const first = await handleCommand(store, stream, subscriptionDecider, cmd);
  const again = await handleCommand(store, stream, subscriptionDecider, cmd);
  t.same(first.events.map((e) => e.type), ['Suspended']);
  t.same(again.events, [], 'the redelivered operation changes nothing');
  t.equal((await store.readStream(stream)).length, 3, 'Purchased, Activated, Suspended');
});
