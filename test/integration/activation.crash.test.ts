/**
 * A service killed in the middle of activation — after Microsoft accepted the activation, before we
 * recorded it — resumes on restart and activates exactly once.
 *
 * The service runs as a real child process (`src/server.ts`) on a real SQLite file; Microsoft is the
 * emulator in this test process, reached through a small proxy. The moment the emulator has
 * answered 200 to `activate`, the proxy kills the service (SIGKILL) instead of passing the answer
 * on, so the service cannot make the confirming Get subscription call it needs before it records
 * `Activated`: Microsoft has activated, we have not recorded it.
 */
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { subscriptionStream } from '../../src/domain/subscription/index.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { startEmulator } from '../../src/emulator/emulator.js';
import { startKillingProxy } from '../support/killing-proxy.js';
import { startKillableService } from '../support/killable-service.js';
import type { KillableService } from '../support/killable-service.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

const operatorToken = 'crash-test-operator-token-000';

const startService = (t: Test, env: Record<string, string>) => startKillableService(t, operatorToken, env);

t.test('killed after Microsoft accepted the activation: the restart confirms it without activating again', async (t) => {
  const emulator = await startEmulator();
  t.teardown(() => emulator.close());
  const dataDir = tempDir(t, 'crash');
  let activateCalls = 0;
  let victim: KillableService | undefined;
  const proxyUrl = await startKillingProxy(
    t,
    emulator.url,
    (req) => req.method === 'POST' && req.url?.includes('/activate') === true && ++activateCalls === 1,
    () => victim?.proc.kill('SIGKILL'),
  );
  const env = {
    DATA_DIR: dataDir,
    MARKETPLACE_API_URL: `${proxyUrl}/api`,
    MARKETPLACE_STATIC_TOKEN: 'emulator-accepts-any-token',
    WEBHOOK_TENANT_ID: emulator.publisherTenantId,
    WEBHOOK_AUDIENCE: emulator.publisherAppId,
    WEBHOOK_OPENID_METADATA_URL: emulator.openIdConfigurationUrl,
    SQLITE_POLL_INTERVAL_MS: '50',
  };

  victim = startService(t, env);
  const url = await victim.ready;
  emulator.setWebhookUrl(`${url}/webhook`);
  const bought = emulator.marketplace.purchase({ planId: 'standard', quantity: 3 });
  const landing = await fetch(`${url}/landing?token=${encodeURIComponent(bought.token)}`);
  t.equal(landing.status, 200, 'the landing page recorded the purchase');
  const id = bought.subscription.id;
  const activate = await fetch(`${url}/api/subscriptions/${id}/activate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${operatorToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ contact: { email: 'buyer@contoso.example' } }),
  });
  t.equal(activate.status, 202, 'activation requested');
  t.equal(await victim.exited, 'SIGKILL', 'the service was killed mid-activation');
  t.equal(activateCalls, 1);
  t.equal(emulator.state.subscription(id).status, 'Subscribed', 'Microsoft has it Subscribed');

  // Before the restart: our record still says pending (Activated was never written).
  const file = openSqliteStore({ path: join(dataDir, 'events.db') });
  const before = (await file.readStream(subscriptionStream(id))).map((e) => e.type);
  await file.close();
  t.same(before, ['Purchased', 'ActivationRequested'], 'the record stopped at ActivationRequested');
  const again = startService(t, env);
  const url2 = await again.ready;
  const state = await waitFor('the restarted service to record the activation', async () => {
    const res = await fetch(`${url2}/api/subscriptions/${id}`, { headers: { authorization: `Bearer ${operatorToken}` } });
    const body = (await res.json()) as { status: string };
    return body.status === 'Subscribed' ? body : undefined;
  }, 20_000);
  t.equal(state.status, 'Subscribed');
  const events = (await (await fetch(`${url2}/api/subscriptions/${id}/events`, { headers: { authorization: `Bearer ${operatorToken}` } })).json()) as {
    events: Array<{ type: string; data: { autoActivated?: boolean } }>;
  };
  const types = events.events.map((e) => e.type);
  t.same(types.filter((x) => x === 'Activated').length, 1, 'one Activated event');
  t.notOk(types.includes('ActivationFailed'), 'no failure was recorded');
  t.equal(activateCalls, 1, 'Microsoft was asked to activate exactly once');
  t.ok(again.logs.some((l) => l.msg === 'already active at Microsoft: recording it without activating again'), 'the restart saw Microsoft had already activated it');
  again.proc.kill('SIGTERM');
  t.equal(await again.exited, 0, 'clean shutdown');
});
