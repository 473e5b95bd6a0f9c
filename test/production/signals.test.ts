/**
 * The production entry points as real child processes: `npm start` (npm → exec sh scripts/start.sh → exec node
 * dist/server.js) and `node dist/server.js`. A signal sent to the top process shuts the service down cleanly
 * (its own 'shutting down' and 'stopped' lines, exit 0) and leaves nothing running: no process of the group,
 * no process anywhere with the test's DATA_DIR in its environment, nothing answering on the port.
 *
 * `npm test` builds dist/ before tap runs; `npm start` would build it itself when missing or stale.
 */
import t from 'tap';
import type { Test } from 'tap';
import { groupAlive, processesWithEnv, startProduction } from '../support/production.js';
import type { ProductionChild } from '../support/production.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

// npm start compiles first when dist/ is stale (tsc on a loaded 2-core machine can take over a minute).
t.setTimeout(600_000);

async function stopsCleanly(t: Test, service: ProductionChild, dataDir: string, signal: NodeJS.Signals): Promise<void> {
  t.equal((await fetch(`${service.url}/readyz`)).status, 200, 'ready before the signal');
  process.kill(service.pid, signal);
  const exit = await service.exited;
  t.equal(exit.code, 0, `the top process exits 0 after ${signal} (${exit.stderr.trim()})`);
  const shutting = service.logs.find((l) => l.msg === 'shutting down');
  t.equal(shutting?.signal, signal, 'the service itself received the signal and said so');
  t.ok(service.logs.some((l) => l.msg === 'stopped'), "the service's clean shutdown line");
  t.notOk(service.logs.some((l) => l.level === 50 || l.level === 60), 'no error while shutting down');
  // The group leader is reaped; any child left behind would keep the group alive.
  await waitFor('the process group to be empty', () => !groupAlive(service.pid), 10_000);
  t.same(processesWithEnv('DATA_DIR', dataDir), [], 'no process left with this DATA_DIR');
  await t.rejects(fetch(`${service.url}/healthz`), 'nothing answers on the port any more');
}

t.test('npm start: SIGTERM to the npm process reaches the service, which shuts down cleanly', async (t) => {
  const dataDir = tempDir(t, 'prod-npm');
  const service = await startProduction(t, 'npm', ['start'], { DATA_DIR: dataDir });
  t.ok(service.logs.some((l) => l.msg === 'ready'), 'ready');
  await stopsCleanly(t, service, dataDir, 'SIGTERM');
});

t.test('node dist/server.js: SIGTERM shuts it down cleanly', async (t) => {
  const dataDir = tempDir(t, 'prod-dist');
  const service = await startProduction(t, process.execPath, ['dist/server.js'], { DATA_DIR: dataDir });
  await stopsCleanly(t, service, dataDir, 'SIGTERM');
});

t.test('node dist/server.js: SIGINT (Ctrl-C) shuts it down cleanly too', async (t) => {
  const dataDir = tempDir(t, 'prod-int');
  const service = await startProduction(t, process.execPath, ['dist/server.js'], { DATA_DIR: dataDir });
  await stopsCleanly(t, service, dataDir, 'SIGINT');
});

t.test('a request in flight at SIGTERM is answered, and its keep-alive connection does not hold the shutdown up', async (t) => {
  const dataDir = tempDir(t, 'prod-inflight');
  // A grace period far shorter than Fastify's 72 s keep-alive: a connection left open would make it expire (exit 1).
  const service = await startProduction(t, process.execPath, ['dist/server.js'], { DATA_DIR: dataDir, SHUTDOWN_GRACE_MS: '8000', LANDING_SIGN_IN: 'off' /* the landing request must reach Microsoft, not the sign-in */ });
  const line = service.logs.find((l) => l.emulator !== undefined);
  const emulator = String(line?.emulator);
  const put = await fetch(`${emulator}/emulator/faults`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ api: { delay: { ms: 1500, operations: ['resolve'] } } }),
  });
  t.equal(put.status, 200);
  const bought = (await (await fetch(`${emulator}/emulator/purchases`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"planId":"standard","quantity":5}' })).json()) as { landingPageUrl: string };
  // The landing page resolves the token at Microsoft: held there for 1.5 s, so it is in flight when the signal comes.
  const landing = fetch(bought.landingPageUrl);
  await waitFor('the landing page to be waiting on Microsoft', async () => {
    const faults = (await (await fetch(`${emulator}/emulator/faults`)).json()) as { fired: { apiDelay: number } };
    return faults.fired.apiDelay > 0;
  });
  process.kill(service.pid, 'SIGTERM');
  const page = await landing;
  t.equal(page.status, 200, 'the request in flight was answered');
  t.match(await page.text(), /form/, '… with the landing page');
  const exit = await service.exited;
  t.equal(exit.code, 0, 'the shutdown finished within the grace period');
  t.notOk(service.logs.some((l) => l.msg === 'shutdown took longer than the grace period: exiting'));
});
