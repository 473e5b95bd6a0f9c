/**
 * A service killed between submitting an hour's usage and recording Microsoft's answer — Microsoft accepted the
 * batch, we never heard — settles it on restart without billing twice.
 *
 * The service runs as a real child process (`src/server.ts`) on a real SQLite file; Microsoft is the emulator in
 * this test process, reached through a small proxy. The moment the emulator has answered 200 to the first
 * `batchUsageEvent`, the proxy kills the service (SIGKILL) instead of passing the answer on: `UsageSubmitted` is
 * recorded, `UsageSettled` is not. After the restart the process sends the same hour again; Microsoft answers
 * `Duplicate` with the event it accepted, which settles the record.
 */
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { usageHourStream } from '../../src/domain/metering/index.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { startEmulator } from '../../src/emulator/emulator.js';
import { inHour, meteredCatalogue, postUsage } from '../support/metering-world.js';
import { startKillingProxy } from '../support/killing-proxy.js';
import { startKillableService } from '../support/killable-service.js';
import type { KillableService } from '../support/killable-service.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

const operatorToken = 'metering-crash-operator-token-000';

const startService = (t: Test, env: Record<string, string>) => startKillableService(t, operatorToken, env);

t.test('killed after Microsoft accepted the usage, before it was recorded: one billed event, a settled record', async (t) => {
  const emulator = await startEmulator({ catalogue: meteredCatalogue });
  t.teardown(() => emulator.close());
  const dataDir = tempDir(t, 'metering-crash');
  let batches = 0;
  let victim: KillableService | undefined;
  const proxyUrl = await startKillingProxy(
    t,
    emulator.url,
    (req) => req.method === 'POST' && req.url?.includes('/batchUsageEvent') === true && ++batches === 1,
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
    METERING_SUBMIT_DELAY_MS: '0',
  };

  victim = startService(t, env);
  const url = await victim.ready;
  emulator.setWebhookUrl(`${url}/webhook`);
  const bought = emulator.marketplace.purchase({ planId: 'basic' });
  const id = bought.subscription.id;
  t.equal((await fetch(`${url}/landing?token=${encodeURIComponent(bought.token)}`)).status, 200, 'the landing page recorded the purchase');
  const activate = await fetch(`${url}/api/subscriptions/${id}/activate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${operatorToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ contact: { email: 'buyer@contoso.example' } }),
  });
  t.equal(activate.status, 202, 'activation requested');
  await waitFor('the activation', async () => {
    const res = await fetch(`${url}/api/subscriptions/${id}`, { headers: { authorization: `Bearer ${operatorToken}` } });
    return ((await res.json()) as { status: string }).status === 'Subscribed';
  }, 30_000);

  const hour = inHour(2, 0).slice(0, 13);
  const usage = await postUsage(url, operatorToken, [
    { subscriptionId: id, dimension: 'api-calls', quantity: 40, effectiveTime: inHour(2, 10), idempotencyKey: 'a' },
    { subscriptionId: id, dimension: 'api-calls', quantity: 2.5, effectiveTime: inHour(2, 50), idempotencyKey: 'b' },
    { subscriptionId: id, dimension: 'gb', quantity: 7, effectiveTime: inHour(2, 30), idempotencyKey: 'c' },
  ]);
  t.equal(usage.status, 200, 'usage recorded');
  t.equal(await victim.exited, 'SIGKILL', 'the service was killed mid-submission');
  t.equal(emulator.meter.accepted({ resourceId: id }).length, 2, 'Microsoft accepted both dimensions');

  const file = openSqliteStore({ path: join(dataDir, 'events.db') });
  const before = (await file.readStream(usageHourStream(id, hour))).map((e) => e.type);
  await file.close();
  t.equal(before.filter((x) => x === 'UsageSubmitted').length, 2, 'submitted before the call');
  t.notOk(before.includes('UsageSettled'), 'the answer was never recorded');

  const again = startService(t, env);
  const url2 = await again.ready;
  const events = await waitFor('the restarted service to settle the hour', async () => {
    const res = await fetch(`${url2}/api/read/usage?period=hour&subscriptionId=${id}`, { headers: { authorization: `Bearer ${operatorToken}` } });
    const body = (await res.json()) as { rows?: Array<{ pending: number; accepted: number; dimension: string }> };
    return body.rows?.length === 2 && body.rows.every((r) => r.pending === 0) ? body.rows : undefined;
  }, 30_000);
  t.same(Object.fromEntries(events.map((r) => [r.dimension, r.accepted])), { 'api-calls': 42.5, gb: 7 }, 'settled with what Microsoft bills');
  t.equal(emulator.meter.accepted({ resourceId: id }).length, 2, 'still one billed event per dimension and hour');
  t.equal(batches, 2, 'the restart sent the hour once more');
  again.proc.kill('SIGTERM');
  t.equal(await again.exited, 0, 'clean shutdown');

  const after = openSqliteStore({ path: join(dataDir, 'events.db') });
  const recorded = await after.readStream(usageHourStream(id, hour));
  await after.close();
  const settled = recorded.filter((e) => e.type === 'UsageSettled').map((e) => e.data as { status: string; via: string; usageEventId?: string });
  t.same(settled.map((s) => [s.status, s.via]), [['Accepted', 'duplicate'], ['Accepted', 'duplicate']], "settled through Microsoft's duplicate");
  const ids = new Set(emulator.meter.accepted({ resourceId: id }).map((u) => u.usageEventId));
  t.ok(settled.every((s) => s.usageEventId !== undefined && ids.has(s.usageEventId)), 'each record carries the id of the event Microsoft accepted');
  t.equal(recorded.filter((e) => e.type === 'UsageSubmitted').length, 2, 'submitted once per dimension: the same figures sent again');
});
