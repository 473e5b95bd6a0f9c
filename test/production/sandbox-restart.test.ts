/**
 * A sandbox restarted with the same DATA_DIR (`node dist/server.js` twice, SIGTERM in between) keeps both
 * sides: the ledger's subscriptions (its SQLite file) and Microsoft's (the emulator's state file), so an
 * operator change to a subscription bought before the restart goes through; and it keeps its generated
 * operator token, written once to <DATA_DIR>/operator-token with mode 0600.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startProduction } from '../support/production.js';
import type { ProductionChild } from '../support/production.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

type Json = Record<string, unknown>;

async function json(url: string, init: RequestInit = {}): Promise<{ status: number; body: Json }> {
  const res = await fetch(url, init);
  return { status: res.status, body: (await res.json()) as Json };
}

function sandboxLine(service: ProductionChild): Json {
  const line = service.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('no Microsoft credentials configured'));
  if (!line) throw new Error('no sandbox start-up line');
  return line;
}

t.test('a sandbox restarted on the same DATA_DIR keeps its subscriptions at both sides and its operator token', async (t) => {
  const dataDir = tempDir(t, 'prod-restart');
  const start = () => startProduction(t, process.execPath, ['dist/server.js'], { DATA_DIR: dataDir, RECONCILE_INTERVAL_MINUTES: '0' });

  const first = await start();
  const line = sandboxLine(first);
  const tokenFile = join(dataDir, 'operator-token');
  t.equal(line.operatorTokenFile, tokenFile, 'the start-up line says where the operator token is');
  t.match(String(line.msg), tokenFile, '… in its message too');
  t.equal(statSync(tokenFile).mode & 0o777, 0o600, 'the token file is readable by its owner only');
  t.notOk(first.logs.some((l) => JSON.stringify(l).includes(readFileSync(tokenFile, 'utf8').trim())), 'the token itself is not logged');
  const token = readFileSync(tokenFile, 'utf8').trim();
  const auth = { authorization: `Bearer ${token}` };
  const emulator = String(line.emulator);

  // An auto-activated purchase: the Subscribe webhook tells the ledger.
  const bought = await json(`${emulator}/emulator/purchases`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ planId: 'instant' }) });
  t.equal(bought.status, 201, JSON.stringify(bought.body));
  const id = String(bought.body.subscriptionId);
  await waitFor('the ledger to know the subscription', async () => (await json(`${first.url}/api/subscriptions/${id}`, { headers: auth })).body.status === 'Subscribed');
  process.kill(first.pid, 'SIGTERM');
  t.equal((await first.exited).code, 0, 'the first run stopped cleanly');
  t.ok(statSync(join(dataDir, 'emulator-state.json')).isFile(), "Microsoft's side was saved in DATA_DIR");

  const second = await start();
  const again = sandboxLine(second);
  t.match(String(again.msg), /its state restored from/, 'the start-up line says the emulator state was restored');
  t.equal(readFileSync(tokenFile, 'utf8').trim(), token, 'the same operator token');
  const secondEmulator = String(again.emulator);
  t.equal((await json(`${secondEmulator}/emulator/subscriptions/${id}`)).status, 200, 'Microsoft still knows the subscription');
  const ledger = await json(`${second.url}/api/subscriptions/${id}`, { headers: auth });
  t.equal(ledger.status, 200, 'the old token still opens the operator API');
  t.equal(ledger.body.status, 'Subscribed', 'the ledger still knows it');

  // The change that failed with SubscriptionNotFound before the emulator kept its state.
  const cancel = await json(`${second.url}/api/subscriptions/${id}/cancel`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' });
  t.equal(cancel.status, 202, `an operator change to a subscription bought before the restart is accepted: ${JSON.stringify(cancel.body)}`);
  await waitFor('the cancellation to reach both sides', async () => {
    const microsoft = (await json(`${secondEmulator}/emulator/subscriptions/${id}`)).body.subscription as Json | undefined;
    const ours = (await json(`${second.url}/api/subscriptions/${id}`, { headers: auth })).body;
    return microsoft?.saasSubscriptionStatus === 'Unsubscribed' && ours.status === 'Unsubscribed';
  }, 30_000);
  process.kill(second.pid, 'SIGTERM');
  const exit = await second.exited;
  const after = second.logs.slice(second.logs.findIndex((l) => l.msg === 'shutting down'));
  t.equal(exit.code, 0, `the second run stopped cleanly too: ${JSON.stringify(after.map((l) => `${String(l.time).slice(11)} ${String(l.component ?? l.process ?? l.lease ?? "")} ${String(l.msg)}`))} ${exit.stderr}`);
});
