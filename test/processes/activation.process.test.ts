/**
 * The activation executor with fakes (no emulator): the I/O each step names, in order, and what ends up in
 * the ledger. The decisions themselves are tested pure in activation.workflow.test.ts.
 */
import t from 'tap';
import type { Test } from 'tap';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import type { KnownSubscription } from '../../src/domain/subscription/index.js';
import { subscriptionStream } from '../../src/domain/subscription/index.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { MarketplaceBadRequestError, MarketplaceUnavailableError } from '../../src/marketplace/errors.js';
import type { NormalisedSubscription } from '../../src/marketplace/schemas.js';
import { activationProcess } from '../../src/processes/activation.process.js';
import { CONTACT, FIRST_TERM, details } from '../domain/subscription.fixtures.js';
import { capturingLogger } from './support.js';

const id = details().subscriptionId;
const errorDetails = { call: 'getSubscription', method: 'GET', url: 'https://marketplace.test', requestId: 'r', correlationId: 'c' };

/** Microsoft as far as activation sees it: a status per Get, and an activate that may fail. */
class FakeMicrosoft {
  readonly calls: string[] = [];
  constructor(
    private readonly statuses: Array<string | Error>,
    private readonly activate: () => void = () => undefined,
  ) {}
  async getSubscription(subscriptionId: string): Promise<NormalisedSubscription> {
    this.calls.push(`get ${subscriptionId}`);
    const next = this.statuses.length > 1 ? this.statuses.shift() : this.statuses[0];
    if (next instanceof Error) throw next;
    return { id: subscriptionId, saasSubscriptionStatus: next, term: { ...FIRST_TERM, chargeDuration: 'P1M' } };
  }
  async activateSubscription(subscriptionId: string, plan: { planId: string; quantity?: number }): Promise<void> {
    this.calls.push(`activate ${subscriptionId} ${plan.planId}×${plan.quantity}`);
    this.activate();
  }
}

async function world(t: Test, microsoft: FakeMicrosoft) {
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const ledger = new SubscriptionLedger(store);
  const provisioned: string[] = [];
  const { logger, lines } = capturingLogger();
  const process = activationProcess({
    ledger,
    marketplace: microsoft,
    provisioner: { provision: async (s: KnownSubscription, reason) => void provisioned.push(`${s.subscriptionId} ${reason}`) },
    logger,
    backoffMs: 1,
    now: () => new Date('2026-03-01T09:06:00.000Z'),
  });
  const at = '2026-03-01T09:05:00.000Z';
  await ledger.execute(id, { type: 'RecordPurchase', now: at, source: 'landing', subscription: details(), microsoftStatus: 'PendingFulfillmentStart' }, { actor: 'test' });
  await ledger.execute(id, { type: 'RequestActivation', now: at, source: 'landing', contact: CONTACT, planId: 'gold', quantity: 7 }, { actor: 'test', correlationId: 'corr-1' });
  const events = async (): Promise<RecordedEvent[]> => store.readStream(subscriptionStream(id));
  const requested = (await events()).find((e) => e.type === 'ActivationRequested');
  if (!requested) throw new Error('no ActivationRequested');
  return { process, ledger, provisioned, lines, events, requested };
}

t.test('pending at Microsoft: provision, ask, activate, wait for Subscribed, confirm', async (t) => {
  const microsoft = new FakeMicrosoft(['PendingFulfillmentStart', 'PendingFulfillmentStart', 'Subscribed']);
  const w = await world(t, microsoft);
  await w.process.handle(w.requested);
  t.strictSame(w.provisioned, [`${id} activation`]);
  t.strictSame(microsoft.calls, [`get ${id}`, `activate ${id} gold×7`, `get ${id}`, `get ${id}`, `get ${id}`], 'ask, activate, look twice, then read for the confirmation');
  const events = await w.events();
  t.strictSame(events.map((e) => e.type), ['Purchased', 'ActivationRequested', 'Activated']);
  t.match(events[2], { data: { planId: 'gold', quantity: 7, autoActivated: false, term: FIRST_TERM, at: '2026-03-01T09:06:00.000Z' }, metadata: { actor: 'system:activation', correlationId: 'corr-1', causationId: w.requested.id } });
  t.strictSame(events[2]?.data, { ...(events[2]?.data ?? {}), term: { ...FIRST_TERM, chargeDuration: 'P1M' } }, "the term as Microsoft reported it, through the one term mapper (chargeDuration included, as at purchase)");
  t.ok(w.lines.some((l) => l.msg === 'Microsoft accepted the activation'));
});

t.test('already Subscribed at Microsoft: confirmed without activating', async (t) => {
  const microsoft = new FakeMicrosoft(['Subscribed']);
  const w = await world(t, microsoft);
  await w.process.handle(w.requested);
  t.strictSame(microsoft.calls, [`get ${id}`, `get ${id}`]);
  t.strictSame((await w.events()).map((e) => e.type), ['Purchased', 'ActivationRequested', 'Activated']);
  t.ok(w.lines.some((l) => l.msg === 'already active at Microsoft: recording it without activating again'));
});

t.test('a transient failure is recorded and retried after the backoff', async (t) => {
  const microsoft = new FakeMicrosoft([new MarketplaceUnavailableError({ ...errorDetails, status: 503, reason: 'busy' }), 'Subscribed']);
  const w = await world(t, microsoft);
  await w.process.handle(w.requested);
  const events = await w.events();
  t.strictSame(events.map((e) => e.type), ['Purchased', 'ActivationRequested', 'ActivationFailed', 'Activated']);
  t.match(events[2], { data: { attempt: 1, final: false }, metadata: { actor: 'system:activation', causationId: w.requested.id } });
  t.strictSame(w.provisioned.length, 2, 'each attempt provisions (idempotently)');
  t.ok(w.lines.some((l) => l.msg === 'activation attempt failed' && l.attempt === 1 && l.final === false));
});

t.test('five transient failures: the fifth is final', async (t) => {
  const microsoft = new FakeMicrosoft([new Error('socket hang up')]);
  const w = await world(t, microsoft);
  await w.process.handle(w.requested);
  const failures = (await w.events()).filter((e) => e.type === 'ActivationFailed').map((e) => e.data);
  t.match(failures, [1, 2, 3, 4, 5].map((attempt) => ({ attempt, final: attempt === 5, reason: 'socket hang up' })));
  t.equal(microsoft.calls.length, 5, 'one Get per attempt');
});

t.test('Microsoft refuses the activation (400): final at once', async (t) => {
  const microsoft = new FakeMicrosoft(['PendingFulfillmentStart'], () => {
    throw new MarketplaceBadRequestError({ ...errorDetails, call: 'activateSubscription', status: 400 });
  });
  const w = await world(t, microsoft);
  await w.process.handle(w.requested);
  const events = await w.events();
  t.strictSame(events.map((e) => e.type), ['Purchased', 'ActivationRequested', 'ActivationFailed']);
  t.match(events[2], { data: { attempt: 1, final: true } });
});

t.test('Unsubscribed at Microsoft: a final failure, no activate', async (t) => {
  const microsoft = new FakeMicrosoft(['Unsubscribed']);
  const w = await world(t, microsoft);
  await w.process.handle(w.requested);
  t.strictSame(microsoft.calls, [`get ${id}`]);
  const events = await w.events();
  t.match(events[2], { type: 'ActivationFailed', data: { final: true, reason: 'the subscription is Unsubscribed at Microsoft; it cannot be activated' } });
});

t.test('handled again after it is done (a redelivery): nothing more happens', async (t) => {
  const microsoft = new FakeMicrosoft(['Subscribed']);
  const w = await world(t, microsoft);
  await w.process.handle(w.requested);
  const calls = microsoft.calls.length;
  await w.process.handle(w.requested);
  t.equal(microsoft.calls.length, calls, 'no call to Microsoft');
  t.strictSame((await w.events()).map((e) => e.type), ['Purchased', 'ActivationRequested', 'Activated']);
});
