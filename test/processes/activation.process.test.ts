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
import { ProvisioningError } from '../../src/application/provisioner.js';
import { MarketplaceBadRequestError, MarketplaceForbiddenError, MarketplaceUnavailableError } from '../../src/marketplace/errors.js';
import type { NormalisedSubscription } from '../../src/marketplace/schemas.js';
import { activationProcess } from '../../src/processes/activation.process.js';
import { RetryLater } from '../../src/processes/runner/types.js';
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

/** The clock the process reads (commands, deadline, backoff); tests move it. */
type Clock = { ms: number };

async function world(t: Test, microsoft: FakeMicrosoft, provision: (s: KnownSubscription) => void = () => undefined) {
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const ledger = new SubscriptionLedger(store);
  const provisioned: string[] = [];
  const { logger, lines } = capturingLogger();
  const clock: Clock = { ms: Date.parse('2026-03-01T09:06:00.000Z') };
  const process = activationProcess({
    ledger,
    marketplace: microsoft,
    provisioner: {
      provision: async (s: KnownSubscription, reason) => {
        provisioned.push(`${s.subscriptionId} ${reason}`);
        provision(s);
      },
    },
    logger,
    backoffMs: 1000,
    now: () => new Date(clock.ms),
  });
  const at = '2026-03-01T09:05:00.000Z';
  await ledger.execute(id, { type: 'RecordPurchase', now: at, source: 'landing', subscription: details(), microsoftStatus: 'PendingFulfillmentStart' }, { actor: 'test' });
  await ledger.execute(id, { type: 'RequestActivation', now: at, source: 'landing', contact: CONTACT, planId: 'gold', quantity: 7 }, { actor: 'test', correlationId: 'corr-1' });
  const events = async (): Promise<RecordedEvent[]> => store.readStream(subscriptionStream(id));
  const requested = (await events()).find((e) => e.type === 'ActivationRequested');
  if (!requested) throw new Error('no ActivationRequested');
  /** One run; the RetryLater it ends with, if it does. */
  const run = async (): Promise<RetryLater | undefined> => {
    try {
      await process.handle(requested);
      return undefined;
    } catch (err) {
      if (err instanceof RetryLater) return err;
      throw err;
    }
  };
  return { process, ledger, provisioned, lines, events, requested, clock, run };
}

/** Microsoft's 30 days for this purchase, from its `created`. */
const DEADLINE = '2026-03-31T08:59:12.000Z';
const unavailable = (reason = 'busy') => new MarketplaceUnavailableError({ ...errorDetails, status: 503, reason });

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

t.test('a transient failure is recorded and the run ends with RetryLater; the next run activates', async (t) => {
  const microsoft = new FakeMicrosoft([unavailable(), 'Subscribed']);
  const w = await world(t, microsoft);
  const retry = await w.run();
  t.ok(retry instanceof RetryLater, 'the run ends: try again later');
  t.match(retry?.options, { afterMs: 1000, until: DEADLINE }, "after the backoff, until Microsoft's 30 days are up");
  t.match(retry?.message, /activation attempt 1 failed/);
  let events = await w.events();
  t.strictSame(events.map((e) => e.type), ['Purchased', 'ActivationRequested', 'ActivationFailed']);
  t.match(events[2], { data: { attempt: 1, final: false, retryAt: '2026-03-01T09:06:01.000Z' }, metadata: { actor: 'system:activation', causationId: w.requested.id } });
  t.match((await w.ledger.load(id)).state, { activation: { attempts: 1, failures: 1, nextAttemptAt: '2026-03-01T09:06:01.000Z', gaveUp: false } }, 'the pending state says when');
  t.ok(w.lines.some((l) => l.msg === 'activation attempt failed' && l.attempt === 1 && l.final === false && l.retryAt === '2026-03-01T09:06:01.000Z'));

  w.clock.ms += 1000;
  t.equal(await w.run(), undefined, 'the second run activates');
  events = await w.events();
  t.strictSame(events.map((e) => e.type), ['Purchased', 'ActivationRequested', 'ActivationFailed', 'Activated']);
  t.strictSame(w.provisioned.length, 2, 'each attempt provisions (idempotently)');
  const after = (await w.ledger.load(id)).state;
  t.ok(after.status === 'Subscribed' && after.activation.nextAttemptAt === undefined, 'activated: no next attempt');
});

t.test('a run that comes back before the next attempt is due makes none', async (t) => {
  const microsoft = new FakeMicrosoft([unavailable(), 'Subscribed']);
  const w = await world(t, microsoft);
  await w.run();
  const calls = microsoft.calls.length;
  w.clock.ms += 400;
  const early = await w.run();
  t.match(early?.options, { afterMs: 600, until: DEADLINE }, 'the rest of the backoff');
  t.match(early?.message, /next activation attempt is due at 2026-03-01T09:06:01\.000Z/);
  t.equal(microsoft.calls.length, calls, 'no call to Microsoft');
  t.equal(w.provisioned.length, 1, 'no provisioning');
  t.equal((await w.events()).length, 3, 'nothing recorded');
});

t.test('Microsoft unreachable far longer than five attempts: every failure is retried, the backoff grows to its cap, and it activates when Microsoft is back', async (t) => {
  const outage = Array.from({ length: 14 }, () => new Error('connect ECONNREFUSED 127.0.0.1:443'));
  const microsoft = new FakeMicrosoft([...outage, 'Subscribed']);
  const w = await world(t, microsoft);
  const pauses: number[] = [];
  for (let i = 0; i < 14; i++) {
    const retry = await w.run();
    if (!retry) throw new Error(`run ${i + 1} did not ask to be retried`);
    pauses.push(retry.options.afterMs ?? -1);
    w.clock.ms += retry.options.afterMs ?? 0;
  }
  t.strictSame(pauses, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900].map((s) => s * 1000), '1 s doubling, capped at 15 minutes');
  const failures = (await w.events()).filter((e) => e.type === 'ActivationFailed').map((e) => e.data);
  t.equal(failures.length, 14);
  t.match(failures, Array.from({ length: 14 }, (_, i) => ({ attempt: i + 1, final: false, reason: 'connect ECONNREFUSED 127.0.0.1:443' })), 'none final');
  t.equal(await w.run(), undefined, 'Microsoft answers again: activated');
  t.equal((await w.ledger.load(id)).state.status, 'Subscribed');
});

t.test("past Microsoft's 30 days: the failure is final", async (t) => {
  const microsoft = new FakeMicrosoft([unavailable()]);
  const w = await world(t, microsoft);
  w.clock.ms = Date.parse(DEADLINE) + 1;
  t.equal(await w.run(), undefined, 'no retry asked for');
  const events = await w.events();
  t.match(events.at(-1), { type: 'ActivationFailed', data: { attempt: 1, final: true, reason: /not retried: the time for activating this purchase ended at 2026-03-31T08:59:12\.000Z/ } });
  t.notOk('retryAt' in (events.at(-1)?.data as object), 'no next attempt');
  t.match((await w.ledger.load(id)).state, { activation: { gaveUp: true } });
});

t.test("our credentials refused (403): retried, not final (an operator can fix them)", async (t) => {
  const microsoft = new FakeMicrosoft([new MarketplaceForbiddenError({ ...errorDetails, status: 403 })]);
  const w = await world(t, microsoft);
  const retry = await w.run();
  t.ok(retry instanceof RetryLater);
  t.match((await w.events()).at(-1), { type: 'ActivationFailed', data: { final: false } });
});

t.test("the ISV's product not acknowledging provisioning: recorded, retried later, honouring its Retry-After", async (t) => {
  let isvDown = true;
  const microsoft = new FakeMicrosoft(['Subscribed']);
  const w = await world(t, microsoft, () => {
    if (isvDown) throw new ProvisioningError("provisioning in the ISV's application failed: answered 503", 503, false, 120_000);
  });
  const retry = await w.run();
  t.match(retry?.options, { afterMs: 120_000, until: DEADLINE }, "the ISV's Retry-After, longer than the backoff");
  t.strictSame(microsoft.calls, [], 'Microsoft is not asked before the ISV provisioned');
  t.match((await w.events()).at(-1), { type: 'ActivationFailed', data: { attempt: 1, final: false, reason: /answered 503/ } });
  isvDown = false;
  w.clock.ms += 120_000;
  t.equal(await w.run(), undefined);
  t.equal((await w.ledger.load(id)).state.status, 'Subscribed');
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
