/**
 * The fault suite's isolation case (issue 10): what stopped all processing before no longer does.
 * - A validly signed notification for a subscription Microsoft does not know (the "poison" notification), then a
 *   genuine Suspend of another customer right behind it.
 * - The ISV's provisioning endpoint failing for one customer for a while, and other customers activating meanwhile.
 * Everything else goes on: the genuine Suspend is applied, the other activations complete, the poison is recorded
 * as unverified with its reason, and the customer whose provisioning failed is activated once it works again,
 * every failed attempt recorded and none final.
 */
import t from 'tap';
import { ProvisioningError } from '../../src/application/provisioner.js';
import type { Provisioner } from '../../src/application/provisioner.js';
import { detailsFromMicrosoft } from '../../src/application/subscription-details.js';
import { notificationStream } from '../../src/domain/notification/index.js';
import { startSandbox } from '../support/sandbox.js';
import { waitFor } from '../support/wait.js';

type Sandbox = Awaited<ReturnType<typeof startSandbox>>;

async function landed(s: Sandbox, planId = 'standard'): Promise<string> {
  const bought = s.emulator.marketplace.purchase({ planId, quantity: 2 });
  const id = bought.subscription.id;
  const sub = await s.marketplace.getSubscription(id);
  const now = () => new Date().toISOString();
  await s.ledger.execute(id, { type: 'RecordPurchase', now: now(), source: 'landing', subscription: detailsFromMicrosoft(sub), microsoftStatus: 'PendingFulfillmentStart' }, { actor: 'test' });
  await s.ledger.execute(id, { type: 'RequestActivation', now: now(), source: 'landing', contact: { email: 'it@contoso.example' } }, { actor: 'test' });
  return id;
}

const status = async (s: Sandbox, id: string) => (await s.ledger.load(id)).state;

t.test('a poison notification and one customer\'s provisioning outage hold up nobody else', async (t) => {
  const failing = new Set<string>();
  const attempts = new Map<string, number>();
  const provisioner: Provisioner = {
    async provision(subscription) {
      attempts.set(subscription.subscriptionId, (attempts.get(subscription.subscriptionId) ?? 0) + 1);
      if (failing.has(subscription.subscriptionId)) throw new ProvisioningError('the ISV product answered 503', 503);
    },
  };
  const s = await startSandbox(t, {}, { provisioner, activation: { backoffMs: 200, maxBackoffMs: 1000 } });

  // A customer already active, whose genuine Suspend will come right behind the poison.
  const active = await landed(s);
  await waitFor('the first customer active', async () => (await status(s, active)).status === 'Subscribed', 20_000);

  // One customer's provisioning fails; two others land after it.
  const stuckId = await (async () => {
    const bought = s.emulator.marketplace.purchase({ planId: 'standard', quantity: 3 });
    failing.add(bought.subscription.id);
    const sub = await s.marketplace.getSubscription(bought.subscription.id);
    const now = new Date().toISOString();
    await s.ledger.execute(bought.subscription.id, { type: 'RecordPurchase', now, source: 'landing', subscription: detailsFromMicrosoft(sub), microsoftStatus: 'PendingFulfillmentStart' }, { actor: 'test' });
    await s.ledger.execute(bought.subscription.id, { type: 'RequestActivation', now, source: 'landing', contact: { email: 'it@contoso.example' } }, { actor: 'test' });
    return bought.subscription.id;
  })();
  await waitFor('the failing customer to have failed twice', () => (attempts.get(stuckId) ?? 0) >= 2, 20_000);
  const others = [await landed(s), await landed(s)];

  // The poison: signed like every real delivery, for a subscription Microsoft has never heard of.
  const poison = s.emulator.marketplace.sendNotification({ subscriptionId: crypto.randomUUID(), action: 'Suspend', record: 'Succeeded' });
  const genuine = s.emulator.marketplace.suspend(active);

  await waitFor('the genuine Suspend behind the poison to be applied', async () => (await status(s, active)).status === 'Suspended', 20_000);
  t.pass('the genuine Suspend was applied');
  for (const id of others) await waitFor(`customer ${id} to activate during the other's outage`, async () => (await status(s, id)).status === 'Subscribed', 20_000);
  t.pass('the other customers activated while one customer\'s provisioning failed');

  const store = s.store();
  if (!store) throw new Error('no store');
  const outcome = await waitFor('the poison to be recorded', async () => {
    const events = await store.readStream(notificationStream(poison.injected.operation.id));
    return events.find((e) => e.type === 'NotificationProcessed')?.data as { outcome: string; detail: string } | undefined;
  });
  t.equal(outcome.outcome, 'unverified', `the poison is recorded, not applied: ${outcome.detail}`);
  t.equal((await waitFor('the genuine one recorded', async () => {
    const events = await store.readStream(notificationStream(genuine.id));
    return events.find((e) => e.type === 'NotificationProcessed')?.data as { outcome: string } | undefined;
  })).outcome, 'applied');

  const during = await status(s, stuckId);
  t.equal(during.status, 'PendingFulfillmentStart', 'the customer whose provisioning fails is still pending');
  if (during.status !== 'Initial') {
    t.ok(during.activation.failures >= 2, `its failed attempts are recorded (${during.activation.failures})`);
    t.equal(during.activation.gaveUp, false, 'none of them final');
  }

  // The ISV's product comes back: the waiting customer is activated, exactly once.
  failing.delete(stuckId);
  await waitFor('the waiting customer to activate once provisioning works', async () => (await status(s, stuckId)).status === 'Subscribed', 30_000);
  const { events } = await s.ledger.load(stuckId);
  t.equal(events.filter((e) => e.type === 'Activated').length, 1, 'activated once');
  t.equal(s.emulator.state.subscription(stuckId).status, 'Subscribed', 'and Microsoft has it Subscribed');
  const final = events.filter((e) => e.type === 'ActivationFailed' && (e.data as { final?: boolean }).final === true);
  t.equal(final.length, 0, 'no failure was final');

  // A plan change whose provisioning fails waits (backing off) rather than being parked, and completes after.
  failing.add(active);
  const reinstated = s.emulator.marketplace.reinstate(active);
  void reinstated;
  await waitFor('the reinstatement, here and at Microsoft', async () => (await status(s, active)).status === 'Subscribed' && s.emulator.state.subscription(active).status === 'Subscribed' && s.emulator.state.pendingOperations(active).length === 0, 20_000);
  const before = attempts.get(active) ?? 0;
  const change = s.emulator.marketplace.changeQuantity(active, 4);
  // More failures than the runner's bounded retries of an unexpected error (8): a RetryLater is never parked for that.
  await waitFor('provisioning of the change to have failed ten times', () => (attempts.get(active) ?? 0) >= before + 10, 30_000);
  const held = (await (await fetch(`${s.url}/api/processes/parked`, { headers: { authorization: `Bearer ${s.operatorToken}` } })).json()) as { parked: unknown[]; retrying: unknown[] };
  t.notMatch(JSON.stringify(held.parked), active, 'the change is not parked…');
  t.match(JSON.stringify(held.retrying), active, '…but retrying, visible under /api');
  failing.delete(active);
  const applied = await waitFor('the change processed once provisioning works', async () => {
    const events = await store.readStream(notificationStream(change.id));
    return events.find((e) => e.type === 'NotificationProcessed')?.data as { outcome: string } | undefined;
  }, 30_000);
  t.equal(applied.outcome, 'applied');
  t.match(await status(s, active), { quantity: 4 }, 'with the new seats');
});
