/**
 * The emulator's state file (src/emulator/persistence.ts): saved after changes, loaded by the next emulator,
 * interrupted operations settled at load, an unreadable file set aside rather than half-loaded.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import type { Test } from 'tap';
import { startEmulator } from '../../src/emulator/emulator.js';
import { persistEmulator } from '../../src/emulator/persistence.js';
import { decodeSnapshot } from '../../src/emulator/snapshot.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

const log = pino({ level: 'silent' });
const fast = { intervalMs: 20, activeMs: 5_000 };

async function emulatorOn(t: Test, file: string) {
  // A long operation delay: a publisher DELETE stays NotStarted while the test restarts the emulator.
  const emulator = await startEmulator({ operationDelayMs: 600_000, ackWindowMs: 600_000 });
  const persisted = persistEmulator(emulator, file, log, fast);
  t.teardown(async () => {
    await emulator.close();
    persisted.close();
  });
  return { emulator, persisted };
}

const post = (url: string, body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

t.test('saved after a change, restored by the next emulator with the calendar and the counter', async (t) => {
  const file = join(tempDir(t, 'emu-state'), 'emulator-state.json');
  const a = await emulatorOn(t, file);
  t.notOk(a.persisted.restored, 'no file yet: starts empty');
  const res = await post(`${a.emulator.url}/emulator/purchases`, { planId: 'standard', quantity: 5 });
  t.equal(res.status, 201);
  const { subscriptionId, token } = (await res.json()) as { subscriptionId: string; token: string };
  await post(`${a.emulator.url}/emulator/clock/advance`, { hours: 3 });
  await waitFor('the state file', () => existsSync(file) && readFileSync(file, 'utf8').includes(subscriptionId));
  t.equal(statSync(file).mode & 0o777, 0o600, 'written for its owner only');
  await waitFor('the calendar offset saved', () => readFileSync(file, 'utf8').includes(`"calendarOffsetMs":${3 * 3_600_000}`));
  const offset = a.emulator.clock.offsetMs;
  await a.emulator.close();
  a.persisted.close();

  const b = await emulatorOn(t, file);
  t.ok(b.persisted.restored);
  t.equal(b.persisted.subscriptions, 1);
  t.equal(b.emulator.state.subscription(subscriptionId).quantity, 5, 'the subscription, as it was');
  t.equal(b.emulator.state.resolve(token, b.emulator.clock.now()).id, subscriptionId, 'the purchase token still resolves');
  t.equal(b.emulator.clock.offsetMs, offset, "Microsoft's calendar is where it was moved to");
  const next = b.emulator.marketplace.purchase({ planId: 'standard', quantity: 1 });
  t.equal(next.subscription.name, 'Subscription 2', 'the purchase counter carried on');
  t.ok(readdirSync(join(file, '..')).every((f) => !f.endsWith('.tmp')), 'no temporary file left behind');
});

t.test('operations the restart interrupted are settled as Microsoft would settle them', async (t) => {
  const file = join(tempDir(t, 'emu-state'), 'emulator-state.json');
  const a = await emulatorOn(t, file);
  const { subscription } = a.emulator.marketplace.purchase({ planId: 'instant' });
  const other = a.emulator.marketplace.purchase({ planId: 'standard', quantity: 5, autoActivate: true }).subscription;
  const deleted = a.emulator.marketplace.deleteSubscription(subscription.id);
  const change = a.emulator.marketplace.changeQuantity(other.id, 3);
  t.equal(deleted.status, 'NotStarted');
  a.persisted.save();
  await a.emulator.close();
  a.persisted.close();

  const b = await emulatorOn(t, file);
  t.equal(b.emulator.state.operationById(deleted.id)?.status, 'Failed', 'a request Microsoft never processed fails');
  t.match(b.emulator.state.operationById(deleted.id)?.errorMessage, /restarted/);
  t.equal(b.emulator.state.isLocked(subscription.id), false, 'and no longer locks its subscription');
  t.equal(b.emulator.state.subscription(subscription.id).status, 'Subscribed');
  const op = b.emulator.state.operationById(change.id);
  t.ok(op?.status === 'Succeeded' || op?.status === 'Failed', `an open change is settled (${op?.status})`);
  t.equal(b.emulator.state.isLocked(other.id), false);
});

t.test('an unreadable state file is set aside and the emulator starts empty', async (t) => {
  const dir = tempDir(t, 'emu-state');
  const file = join(dir, 'emulator-state.json');
  writeFileSync(file, '{"version":1,"subscriptions":[{"id":');
  const a = await emulatorOn(t, file);
  t.notOk(a.persisted.restored);
  t.equal(a.emulator.state.subscriptions().length, 0);
  const aside = readdirSync(dir).filter((f) => f.startsWith('emulator-state.json.unreadable-'));
  t.equal(aside.length, 1, 'the bad file is kept aside for a look');
  t.notOk(existsSync(file));
});

t.test('the snapshot decoder names the first wrong field', async (t) => {
  t.match(decodeSnapshot('not json'), { problem: /not JSON/ });
  t.match(decodeSnapshot('{"version":2}'), { problem: /.+/ });
  const ok = decodeSnapshot(JSON.stringify({ version: 1, savedAt: 'x', calendarOffsetMs: 0, counter: 0, subscriptions: [], operations: [], tokens: [] }));
  t.ok('snapshot' in ok, 'an empty state decodes');
});
