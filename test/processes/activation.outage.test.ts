/**
 * Microsoft unreachable while a customer's activation is under way, end to end in one process: the activation
 * process under the catch-up runner, the Fulfillment client over HTTP to the marketplace emulator (its
 * `serverError` fault), a real SQLite store. Backoffs are small (options) so the test is quick; the decisions are
 * the production ones.
 *
 * - An outage far longer than the old give-up (5 attempts, about 40 s at the default backoff) ends in a final
 *   failure no more: every failure is recorded with when the next attempt is due, and the activation succeeds
 *   once Microsoft answers again, activating exactly once.
 * - An outage that outlasts the time for activating (Microsoft's 30 days, here shrunk to seconds) ends in a
 *   final failure, and the process stops trying.
 */
import t from 'tap';
import type { Test } from 'tap';
import { immediateProvisioner } from '../../src/application/provisioner.js';
import { detailsFromMicrosoft } from '../../src/application/subscription-details.js';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import { startEmulator } from '../../src/emulator/emulator.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { activationProcess } from '../../src/processes/activation.process.js';
import type { ActivationOptions } from '../../src/processes/activation.process.js';
import { startProcess } from '../../src/processes/runner/start.js';
import { waitFor } from '../support/wait.js';
import { capturingLogger } from './support.js';

type FailedData = { attempt: number; final: boolean; reason: string; retryAt?: string };

async function world(t: Test, policy: Partial<ActivationOptions>) {
  const emulator = await startEmulator();
  t.teardown(() => emulator.close());
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  const ledger = new SubscriptionLedger(store);
  const { logger, lines } = capturingLogger();
  // One HTTP attempt per call: each activation attempt meets the fault once.
  const marketplace = new FulfillmentClient({ baseUrl: emulator.apiBaseUrl, tokenProvider: new StaticTokenProvider('x'), logger, retry: { maxAttempts: 1 } });
  let activateCalls = 0;
  const counted = {
    getSubscription: marketplace.getSubscription.bind(marketplace),
    activateSubscription: async (...args: Parameters<FulfillmentClient['activateSubscription']>) => {
      activateCalls++;
      return marketplace.activateSubscription(...args);
    },
  };
  const handler = activationProcess({ ledger, marketplace: counted, provisioner: immediateProvisioner, logger, ...policy });
  const running = startProcess(store, handler, logger, { mode: 'catch-up', retryBaseMs: 10, retryMaxMs: 50 });
  t.teardown(() => running.stop());

  const bought = emulator.marketplace.purchase({ planId: 'standard', quantity: 3 });
  const id = bought.subscription.id;
  const sub = await marketplace.getSubscription(id);
  const at = () => new Date().toISOString();
  await ledger.execute(id, { type: 'RecordPurchase', now: at(), source: 'landing', subscription: detailsFromMicrosoft(sub), microsoftStatus: 'PendingFulfillmentStart' }, { actor: 'test' });
  const failures = async (): Promise<FailedData[]> =>
    (await ledger.load(id)).events.filter((e) => e.type === 'ActivationFailed').map((e) => e.data as FailedData);
  const requestActivation = () =>
    ledger.execute(id, { type: 'RequestActivation', now: at(), source: 'landing', contact: { email: 'buyer@contoso.example' } }, { actor: 'test' });
  return { emulator, ledger, id, lines, failures, requestActivation, running, activateCalls: () => activateCalls };
}

t.test('Microsoft unreachable for many more attempts than the old give-up: no final failure, activated when it answers again', async (t) => {
  const w = await world(t, { backoffMs: 20, maxBackoffMs: 80 });
  const OUTAGE = 12; // attempts that meet a 500 (the old process gave up for good after 5)
  w.emulator.faults.set({ api: { serverError: { times: OUTAGE, operations: ['getSubscription'] } } });
  await w.requestActivation();

  await waitFor('Subscribed', async () => (await w.ledger.load(w.id)).state.status === 'Subscribed', 60_000);
  const failures = await w.failures();
  t.equal(failures.length, OUTAGE, 'every attempt during the outage failed and was recorded');
  t.strictSame(failures.map((f) => f.attempt), Array.from({ length: OUTAGE }, (_, i) => i + 1), 'numbered one by one');
  t.ok(failures.every((f) => !f.final), 'none of them final');
  t.ok(failures.every((f) => typeof f.retryAt === 'string' && !Number.isNaN(Date.parse(f.retryAt))), 'each says when the next attempt is due');
  t.match(failures[0], { reason: /500/ });
  t.equal(w.emulator.state.subscription(w.id).status, 'Subscribed', 'Microsoft has it Subscribed');
  t.equal(w.activateCalls(), 1, 'activated exactly once');
  const state = (await w.ledger.load(w.id)).state;
  t.match(state, { status: 'Subscribed', activation: { attempts: OUTAGE, gaveUp: false } });
  t.ok(state.status === 'Subscribed' && state.activation.nextAttemptAt === undefined, 'no next attempt once activated');
});

t.test('an outage that outlasts the time for activating: the failure past the deadline is final, and the trying stops', async (t) => {
  // The 30 days, shrunk: a few seconds from Microsoft's `created`.
  const w = await world(t, { backoffMs: 20, maxBackoffMs: 100, deadlineMs: 3_000 });
  w.emulator.faults.set({ api: { serverError: { operations: ['getSubscription'] } } });
  await w.requestActivation();

  await waitFor('a final failure', async () => (await w.failures()).some((f) => f.final), 60_000);
  const failures = await w.failures();
  const last = failures.at(-1);
  t.match(last, { final: true, reason: /not retried: the time for activating this purchase (ends|ended) at/ });
  t.notOk(last && 'retryAt' in last, 'no next attempt');
  t.ok(failures.slice(0, -1).every((f) => !f.final && f.retryAt), 'the ones before were retried');
  t.ok(failures.length > 5, `${failures.length} attempts, not five`);
  await w.running.idle();
  const settled = failures.length;
  t.equal((await w.failures()).length, settled, 'no attempt after the final failure');
  t.match((await w.ledger.load(w.id)).state, { status: 'PendingFulfillmentStart', activation: { gaveUp: true } });
  t.equal(w.activateCalls(), 0, 'Microsoft was never asked to activate');
});
