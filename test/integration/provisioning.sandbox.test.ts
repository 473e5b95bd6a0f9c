/**
 * The whole service as `npm start` runs it (HTTP on 127.0.0.1, SQLite file, the built-in emulator),
 * with the ISV's application on 127.0.0.1 behind PROVISIONING_WEBHOOK_URL: the HttpProvisioner as the
 * processes' provisioner and the integration process beside them, wired as runtime.ts is to wire them.
 *
 * The receiver answers 500, then is down, while a customer buys and activates: activation waits
 * (recording failures) until the ISV's application acknowledges the provisioning request, then
 * activates at Microsoft. A customer plan change is provisioned and acknowledged to Microsoft; a
 * suspension and reinstatement follow. The receiver gets every integration event once per key, in
 * order.
 */
import t from 'tap';
import { detailsFromMicrosoft } from '../../src/application/subscription-details.js';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { createHttpProvisioner } from '../../src/integration/http-provisioner.js';
import { loadIntegrationConfig } from '../../src/config.js';
import { startIntegrationEvents } from '../../src/processes/integration-events.process.js';
import { allProcessed, assertExactlyOnceInOrder, logger, processedFor, SECRET } from '../support/integration-world.js';
import { startReceiver } from '../support/isv-receiver.js';
import { startSandbox } from '../support/sandbox.js';
import { waitFor } from '../support/wait.js';

t.test('purchase → activation waits for the ISV → change, suspend, reinstate: the ISV gets everything once, in order', async (t) => {
  const receiver = await startReceiver(t, SECRET);
  const settings = loadIntegrationConfig({ PROVISIONING_WEBHOOK_URL: receiver.url, PROVISIONING_WEBHOOK_SECRET: SECRET, PROVISIONING_TIMEOUT_MS: '2000' });
  if (!settings) throw new Error('settings expected');
  const s = await startSandbox(t, {}, {
    provisioner: createHttpProvisioner({ url: settings.url, secrets: settings.secrets, timeoutMs: settings.timeoutMs, logger }),
    activation: { backoffMs: 100, maxBackoffMs: 400 },
  });
  const store = s.store() as EventStore;
  const integration = startIntegrationEvents({ store, settings, logger, runner: { retryBaseMs: 20, retryMaxMs: 200 }, delivery: { backoffBaseMs: 50, backoffMaxMs: 300 } });
  t.teardown(() => integration.stop());

  await receiver.setMode('error');
  const bought = s.emulator.marketplace.purchase({ planId: 'standard', quantity: 5 });
  const resolved = await s.marketplace.resolve(bought.token);
  const id = resolved.id;
  const sub = resolved.subscription ?? (await s.marketplace.getSubscription(id));
  const at = () => new Date().toISOString();
  await s.ledger.execute(id, { type: 'RecordPurchase', now: at(), source: 'landing', subscription: detailsFromMicrosoft(sub), microsoftStatus: sub.saasSubscriptionStatus ?? 'PendingFulfillmentStart' }, { actor: 'customer:test' });
  await s.ledger.execute(id, { type: 'RequestActivation', now: at(), source: 'landing', contact: { email: 'buyer@contoso.example' } }, { actor: 'customer:test' });

  const failures = async () => (await s.ledger.load(id)).events.filter((e) => e.type === 'ActivationFailed').map((e) => (e.data as { reason: string }).reason);
  await waitFor('activation to fail on the ISV’s 500', async () => (await failures()).some((r) => /answered 500/.test(r)));
  await receiver.setMode('down');
  await waitFor('activation to fail on a refused connection', async () => (await failures()).some((r) => /ECONNREFUSED|fetch failed/.test(r)));
  t.equal(s.emulator.state.subscription(id).status, 'PendingFulfillmentStart', 'Microsoft is not asked to activate before the ISV provisioned');
  t.equal(processedFor(receiver, id).length, 0, 'nothing reached the ISV yet');

  await receiver.setMode('up');
  await waitFor('Subscribed', async () => (await s.ledger.load(id)).state.status === 'Subscribed', 15_000);
  t.equal(s.emulator.state.subscription(id).status, 'Subscribed', 'activated at Microsoft once the ISV acknowledged');
  const provisioning = receiver.processed.filter((r) => r.type === 'provisioning.requested');
  t.match(provisioning.map((r) => r.json), [{ reason: 'activation', subscriptionId: id, subscription: { status: 'PendingFulfillmentStart', planId: 'standard' } }]);

  const op = s.emulator.marketplace.changePlan(id, 'premium');
  await waitFor('plan change acknowledged to Microsoft', () => s.emulator.state.operationById(op.id)?.status === 'Succeeded', 15_000);
  t.match(receiver.processed.filter((r) => r.type === 'provisioning.requested').map((r) => r.json), [{ reason: 'activation' }, { reason: 'plan-change', subscription: { planId: 'premium' } }]);
  s.emulator.marketplace.suspend(id);
  await waitFor('Suspended', async () => (await s.ledger.load(id)).state.status === 'Suspended');
  s.emulator.marketplace.reinstate(id);
  await waitFor('Reinstated', async () => (await s.ledger.load(id)).state.status === 'Subscribed');

  await allProcessed({ store, receiver }, [id]);
  await assertExactlyOnceInOrder(t, { store, receiver }, [id]);
  const types = processedFor(receiver, id).map((e) => e.type);
  t.match(types, [
    'subscription.purchased',
    'subscription.activation_requested',
    'subscription.activation_failed',
  ]);
  t.same(types.slice(-4), ['subscription.activated', 'subscription.plan_changed', 'subscription.suspended', 'subscription.reinstated']);
  t.ok(receiver.receipts.every((r) => r.verified), 'every request signed');
});
