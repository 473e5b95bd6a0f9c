/**
 * The HttpProvisioner against a real receiver on 127.0.0.1: it waits for the ISV's 2xx, sends a
 * signed `provisioning.requested` with a stable idempotency key, and throws on a non-2xx, on a
 * refused connection and when the answer does not come within the timeout.
 */
import t from 'tap';
import { evolve, initialState } from '../../src/domain/subscription/index.js';
import type { KnownSubscription } from '../../src/domain/subscription/index.js';
import { createHttpProvisioner, provisionerFor, provisioningKey, ProvisioningError } from '../../src/integration/http-provisioner.js';
import { loadIntegrationConfig } from '../../src/config.js';
import { immediateProvisioner } from '../../src/application/provisioner.js';
import { logger, purchase, SECRET } from '../support/integration-world.js';
import { startReceiver } from '../support/isv-receiver.js';

function subscription(id = '80000000-0000-4000-8000-00000000000e'): KnownSubscription {
  let s = evolve(initialState(), { type: 'Purchased', data: { ...purchase(id), at: '2026-05-01T10:00:00.000Z', source: 'landing', microsoftStatus: 'PendingFulfillmentStart' } });
  s = evolve(s, { type: 'ActivationRequested', data: { at: '2026-05-01T10:01:00.000Z', source: 'landing', planId: 'silver', quantity: 5, contact: { email: 'it@contoso.example' } } });
  if (s.status === 'Initial') throw new Error('unreachable');
  return s;
}

t.test('waits for the 2xx, signed, with a stable idempotency key', async (t) => {
  const receiver = await startReceiver(t, SECRET);
  const provisioner = createHttpProvisioner({ url: receiver.url, secrets: [SECRET], timeoutMs: 2000, logger });
  await receiver.setMode('slow', { delayMs: 300 });
  const s = subscription();
  const started = Date.now();
  await provisioner.provision(s, 'activation');
  const waited = Date.now() - started;
  t.ok(waited >= 290, `resolved only after the receiver answered (${waited} ms)`);
  const [r] = receiver.receipts;
  t.equal(r?.status, 200);
  t.ok(r?.verified, 'the signature verifies with the shared secret');
  t.equal(r?.type, 'provisioning.requested');
  t.equal(r?.key, provisioningKey(s, 'activation'));
  t.match(r?.json, {
    id: r?.key,
    type: 'provisioning.requested',
    version: 1,
    subscriptionId: s.subscriptionId,
    reason: 'activation',
    subscription: { status: 'PendingFulfillmentStart', planId: 'silver', quantity: 5, contact: { email: 'it@contoso.example' }, beneficiary: { emailId: 'user@contoso.example' } },
  });

  await receiver.setMode('up');
  await provisioner.provision(s, 'activation');
  t.equal(receiver.receipts[1]?.key, r?.key, 'the same request again carries the same key');
  const changed = evolve(s, { type: 'PlanChanged', data: { at: '2026-05-02T10:00:00.000Z', source: 'webhook', operationId: 'op-1', planId: 'gold', previousPlanId: 'silver' } }) as KnownSubscription;
  await provisioner.provision(changed, 'plan-change');
  t.not(receiver.receipts[2]?.key, r?.key, 'a plan change is a new request');
  t.match(receiver.receipts[2]?.json, { reason: 'plan-change', subscription: { planId: 'gold' } });
});

t.test('a non-2xx, a refused connection and a timeout throw, so the calling process retries', async (t) => {
  const receiver = await startReceiver(t, SECRET);
  const provisioner = createHttpProvisioner({ url: receiver.url, secrets: [SECRET], timeoutMs: 300, logger });
  const s = subscription();

  await receiver.setMode('error');
  const e500 = await provisioner.provision(s, 'activation').then(() => undefined, (err: unknown) => err);
  t.ok(e500 instanceof ProvisioningError);
  t.match(e500, { status: 500, timedOut: false, message: /answered 500/ });

  await receiver.setMode('slow', { delayMs: 1500 });
  const started = Date.now();
  const slow = await provisioner.provision(s, 'activation').then(() => undefined, (err: unknown) => err);
  const took = Date.now() - started;
  t.match(slow, { name: 'ProvisioningError', timedOut: true, message: /no answer within 300 ms/ });
  t.ok(took < 1200, `gave up after ${took} ms, not when the receiver finally answered`);

  await receiver.setMode('down');
  const refused = await provisioner.provision(s, 'activation').then(() => undefined, (err: unknown) => err);
  t.match(refused, { name: 'ProvisioningError', message: /ECONNREFUSED|fetch failed/ });

  const redirect = createHttpProvisioner({
    url: 'http://127.0.0.1:1/never',
    secrets: [SECRET],
    timeoutMs: 300,
    logger,
    fetch: async () => new Response(null, { status: 302, headers: { location: 'https://elsewhere.example/' } }),
  });
  t.match(await redirect.provision(s, 'activation').then(() => undefined, (err: unknown) => err), { status: 302 }, 'a redirect is not an acknowledgement');
});

t.test('provisionerFor: immediate without a URL, the webhook with one', async (t) => {
  t.equal(provisionerFor(undefined, logger), immediateProvisioner);
  const receiver = await startReceiver(t, SECRET);
  const p = provisionerFor(loadIntegrationConfig({ PROVISIONING_WEBHOOK_URL: receiver.url, PROVISIONING_WEBHOOK_SECRET: SECRET }), logger);
  t.not(p, immediateProvisioner);
  await p.provision(subscription(), 'quantity-change');
  t.equal(receiver.processed.length, 1);
});
