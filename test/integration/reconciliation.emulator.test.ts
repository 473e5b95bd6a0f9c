/**
 * Reconciliation end to end: the whole service (runtime, built-in emulator, a SQLite file) over real HTTP on
 * 127.0.0.1, and `npm run reconcile` as real child processes against the emulator and a SQLite file.
 *
 * Every kind of drift is made at Microsoft without the service hearing of it (the emulator's state changed
 * directly, so no webhook is sent, or the webhook URL pointing nowhere while Microsoft accepts a change
 * unacknowledged): one run repairs all of it, a second finds nothing. A run killed mid-way leaves nothing
 * half-applied and is resumed from its last page; a second instance is refused while one runs.
 */
import { missingProvenance } from '../support/provenance.js';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import { main } from '../../src/cli/reconcile.js';
import { reconciliationIndexStream, reconciliationStream } from '../../src/domain/reconciliation/index.js';
import { subscriptionStream } from '../../src/domain/subscription/index.js';
import { startEmulator } from '../../src/emulator/emulator.js';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { childNodeArgs } from '../support/child.js';
import { clientFor, differences, recordAsLanded, silently } from '../support/reconcile-world.js';
import { startSandbox } from '../support/sandbox.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

/** A port nothing listens on (the service is down). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

type Sandbox = Awaited<ReturnType<typeof startSandbox>>;
const TOKEN = 'test-operator-token-0123456789';

async function api(s: Sandbox, method: 'GET' | 'POST', path: string, token = TOKEN): Promise<{ status: number; type: string; body: Record<string, unknown> }> {
  const res = await fetch(`${s.url}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: (await res.json()) as Record<string, unknown> };
}

async function finishedRun(s: Sandbox, runId: string): Promise<Record<string, unknown>> {
  return waitFor(`run ${runId} finished`, async () => {
    const { body } = await api(s, 'GET', `/api/reconciliations/${runId}`);
    return body.status === 'finished' ? body : undefined;
  }, 30_000);
}

t.test('every kind of drift, made while the service heard nothing: one run repairs it all, a second finds nothing', async (t) => {
  const s = await startSandbox(t, { RECONCILE_INTERVAL_MINUTES: '0', RECONCILE_MAX_CALLS_PER_SECOND: '200' }, { emulator: { pageSize: 3, ackWindowMs: 300 } });
  const ms = silently(s.emulator);
  const landed = async (planId: string, activate = true): Promise<string> => {
    const id = ms.purchase({ planId, ...(planId === 'standard' ? { quantity: 5 } : {}) });
    if (activate) ms.activate(id);
    await recordAsLanded(s.ledger, s.marketplace, id);
    return id;
  };
  const expected = new Map<string, string[]>();

  // In line first: recorded as the landing page and the activation would have (a suspension heard of by webhook).
  const unsubscribed = await landed('standard');
  const planned = await landed('standard');
  const seats = await landed('standard');
  const suspended = await landed('standard');
  const reinstated = await landed('standard');
  ms.suspend(reinstated);
  await s.ledger.execute(reinstated, { type: 'Suspend', now: new Date().toISOString(), source: 'webhook', operationId: 'b2c4e6f8-0a1b-4c3d-8e5f-6a7b8c9d0e1f' }, { actor: 'microsoft' });
  const renewed = await landed('basic');
  const cancelledPending = await landed('standard', false);
  const activatedThere = await landed('standard', false);
  const autoRenewOff = await landed('basic');
  const whileDown = await landed('standard');
  const untouched = await landed('standard');
  // The refresh process reads Microsoft's record back after Activated and Suspended: let it finish first, so that
  // what follows is heard of by nobody.
  await s.processes()?.idle();

  // A dropped webhook for every action Microsoft sends.
  const subscribed = ms.purchase({ planId: 'instant' }); // Subscribe: auto-activated, never heard of
  expected.set(subscribed, ['unrecorded']);
  ms.unsubscribe(unsubscribed); // Unsubscribe: the customer cancelled at Microsoft
  expected.set(unsubscribed, ['status']);
  ms.changePlan(planned, 'premium'); // ChangePlan: P1M → P1Y, the term changes with it
  expected.set(planned, ['plan', 'term']);
  ms.changeQuantity(seats, 12); // ChangeQuantity
  expected.set(seats, ['quantity']);
  ms.suspend(suspended); // Suspend
  expected.set(suspended, ['status']);
  ms.reinstate(reinstated); // Reinstate
  expected.set(reinstated, ['status']);
  ms.renew(renewed); // Renew: the term moves on
  expected.set(renewed, ['term']);

  // A purchase that never landed (the customer closed the tab before the landing page), and one cancelled since.
  const neverLanded = ms.purchase({ planId: 'standard', quantity: 3 });
  expected.set(neverLanded, ['unrecorded']);
  ms.unsubscribe(cancelledPending); // a cancellation on Microsoft's side of a purchase pending here
  expected.set(cancelledPending, ['status']);
  ms.activate(activatedThere); // activated at Microsoft, the confirmation lost
  expected.set(activatedThere, ['status', 'term']);
  ms.autoRenew(autoRenewOff, false);
  expected.set(autoRenewOff, ['autoRenew']);

  // A plan changed while the service was down: the webhook goes nowhere, Microsoft accepts it when the window ends.
  const webhookUrl = s.emulator.webhookUrl;
  s.emulator.setWebhookUrl(`http://127.0.0.1:${await closedPort()}/webhook`);
  const op = s.emulator.marketplace.changePlan(whileDown, 'premium');
  await waitFor('Microsoft to accept the unacknowledged change', () => s.emulator.state.operationById(op.id)?.status === 'Succeeded');
  expected.set(whileDown, ['plan', 'term']);

  const before = await differences(s.ledger, s.marketplace);
  t.same(Object.fromEntries([...before].map(([id, kinds]) => [id, [...kinds].sort()])), Object.fromEntries([...expected].map(([id, kinds]) => [id, [...kinds].sort()])), 'each drift as intended');

  t.equal((await api(s, 'POST', '/api/reconcile', 'wrong-token-0123456789')).status, 401, 'operator auth');
  const [a, b] = await Promise.all([api(s, 'POST', '/api/reconcile'), api(s, 'POST', '/api/reconcile')]);
  const accepted = [a, b].find((r) => r.status === 202);
  const refused = [a, b].find((r) => r.status === 409);
  t.ok(accepted && refused, `two triggers at once: one 202, one 409 (got ${a.status}, ${b.status})`);
  t.match(refused?.type, /application\/problem\+json/);
  t.equal(refused?.body.runId, accepted?.body.runId, 'the 409 names the run under way');
  const runId = String(accepted?.body.runId);
  t.equal(accepted?.body.location, `/api/reconciliations/${runId}`);

  const run = await finishedRun(s, runId);
  s.emulator.setWebhookUrl(webhookUrl);
  const drifted = expected.size;
  t.match(run.counts, { checked: drifted + 1, drifted, purchasesRecorded: 2, repaired: drifted - 2, inFlight: 0, unrepairable: 0, errors: 0 });
  t.match(run.counts, { drifts: { status: 5, plan: 2, quantity: 1, term: 4, autoRenew: 1, unrecorded: 2 } });
  t.equal(run.pages, Math.ceil((drifted + 1) / 3));
  t.same([...(await differences(s.ledger, s.marketplace)).entries()], [], 'the ledger says what Microsoft says');
  t.equal((await s.ledger.load(neverLanded)).state.status, 'PendingFulfillmentStart', 'the purchase that never landed waits for fulfilment');
  t.equal((await s.ledger.load(subscribed)).state.status, 'Subscribed');
  t.equal((await s.ledger.load(untouched)).events.length, 2, 'Purchased, Activated: nothing added where nothing differed');

  const list = await api(s, 'GET', '/api/reconciliations');
  t.match(list.body, { runs: [{ runId, status: 'finished', trigger: 'api', counts: { repaired: drifted - 2 } }] });
  const again = await api(s, 'POST', '/api/reconcile');
  t.equal(again.status, 202);
  const second = await finishedRun(s, String(again.body.runId));
  t.match(second.counts, { checked: drifted + 1, drifted: 0, repaired: 0, purchasesRecorded: 0 }, 'the second run finds nothing');
  t.equal((await api(s, 'GET', '/api/reconciliations/0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e')).status, 404);
  const store = s.store();
  if (store) t.same(await missingProvenance(store, ['reconciliation-', 'reconciliations-']), [], 'every reconciliation event carries correlationId and causationId');
  const repairs = (await s.ledger.load(whileDown)).events.filter((e) => e.metadata.actor === 'system:reconciliation');
  t.ok(repairs.length > 0 && repairs.every((e) => e.metadata.correlationId === runId && e.metadata.causationId === runId), 'repairs are correlated with, and caused by, their run');
});

// ── npm run reconcile, as child processes ───────────────────────────────────────────────────────

function definedOnly(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

type CliWorld = { env: Record<string, string>; store: EventStore; ledger: SubscriptionLedger; client: ReturnType<typeof clientFor> };

async function cliWorld(t: Test, subscriptions: number): Promise<CliWorld & { ids: string[] }> {
  const emulator = await startEmulator({ pageSize: 2 });
  t.teardown(() => emulator.close());
  const dir = tempDir(t, 'reconcile-cli');
  const store = openSqliteStore({ path: join(dir, 'events.db'), pollIntervalMs: 20 });
  t.teardown(() => store.close());
  const ledger = new SubscriptionLedger(store);
  const client = clientFor(emulator);
  const ms = silently(emulator);
  const ids: string[] = [];
  for (let i = 0; i < subscriptions; i++) {
    const id = ms.purchase({ planId: 'standard', quantity: 5 });
    ms.activate(id);
    if (i % 2 === 0) {
      await recordAsLanded(ledger, client, id);
      ms.suspend(id);
      ms.unsubscribe(id); // repaired by two events, Suspended and Unsubscribed: in one append, or not at all
    }
    ids.push(id);
  }
  const env: Record<string, string> = {
    ...definedOnly(process.env), // the test's loader settings (its compile cache): a child without them boots far slower
    EVENT_STORE: 'sqlite',
    DATA_DIR: dir,
    LOG_LEVEL: 'silent',
    MARKETPLACE_API_URL: emulator.apiBaseUrl,
    MARKETPLACE_STATIC_TOKEN: 'emulator-accepts-any-token',
    RECONCILE_TAKEOVER_MS: '1000',
  };
  return { env, store, ledger, client, ids };
}

function startCli(env: Record<string, string>): { child: ChildProcess; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, childNodeArgs(join(process.cwd(), 'src/cli/reconcile.ts')), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, exited };
}

async function runIdOf(store: EventStore): Promise<string> {
  return waitFor('a run claimed in the index', async () => {
    const last = await store.readLastEvent(reconciliationIndexStream);
    const runs = (last?.data as { runs?: { runId: string }[] } | undefined)?.runs;
    return runs?.[0]?.runId;
  }, 120_000);
}

async function pagesOf(store: EventStore, runId: string): Promise<number> {
  return (await store.readStream(reconciliationStream(runId))).filter((e) => e.type === 'ReconciliationPageChecked').length;
}

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } };
}

/** `npm run reconcile` in this process (another instance on the file), until the claim left behind has expired. */
async function reconcileUntilNotBusy(env: Record<string, string>): Promise<{ code: number; out: string[]; err: string[] }> {
  return waitFor('a reconcile that is not refused as busy', async () => {
    const o = io();
    const code = await main([], env, o.io);
    return code === 75 ? undefined : { code, out: o.out, err: o.err };
  }, 30_000, 200);
}

t.test('killed mid-way (SIGKILL): nothing half-applied; the next run resumes from the last recorded page', async (t) => {
  const w = await cliWorld(t, 16);
  const before = await differences(w.ledger, w.client);
  t.equal(before.size, 16, '8 unrecorded, 8 cancelled at Microsoft');
  const { child, exited } = startCli({ ...w.env, RECONCILE_MAX_CALLS_PER_SECOND: '2' });
  const runId = await runIdOf(w.store);
  await waitFor('two pages recorded', async () => (await pagesOf(w.store, runId)) >= 2, 60_000);
  child.kill('SIGKILL');
  const killed = await exited;
  t.equal(killed.signal, 'SIGKILL');
  const pagesAtKill = await pagesOf(w.store, runId);
  t.ok(pagesAtKill < 8, `killed before the last page (${pagesAtKill} of 8 recorded)`);

  const after = await differences(w.ledger, w.client);
  for (const id of w.ids) {
    const now = after.get(id);
    const was = before.get(id);
    t.ok(now === undefined || JSON.stringify(now) === JSON.stringify(was), `${id.slice(0, 8)}: in line, or exactly as before (${JSON.stringify(now)})`);
    const types = (await w.store.readStream(subscriptionStream(id))).map((e) => e.type);
    t.not(types.at(-1), 'Suspended', `${id.slice(0, 8)}: no repair left half-way`);
  }

  const resumed = await reconcileUntilNotBusy({ ...w.env, RECONCILE_MAX_CALLS_PER_SECOND: '100' });
  t.equal(resumed.code, 0, resumed.err.join('\n'));
  t.match(resumed.out.join('\n'), new RegExp(`run ${runId} resumed`));
  t.match(resumed.out.join('\n'), /finished in [\d.]+ s: 8 pages/);
  t.same([...(await differences(w.ledger, w.client)).entries()], [], 'everything in line');
  const history = (await w.store.readStream(reconciliationStream(runId))).map((e) => e.type);
  t.same(history.filter((x) => x !== 'ReconciliationPageChecked'), ['ReconciliationStarted', 'ReconciliationResumed', 'ReconciliationFinished'], 'no interruption recorded: it was killed');
  t.equal(history.filter((x) => x === 'ReconciliationPageChecked').length, 8, 'each page recorded once: the resume started after the last recorded one');
});

t.test('a second instance is refused while a run is under way; Ctrl-C interrupts it; the next run resumes it', async (t) => {
  const w = await cliWorld(t, 40);
  const { child, exited } = startCli({ ...w.env, RECONCILE_MAX_CALLS_PER_SECOND: '1' });
  const runId = await runIdOf(w.store);
  await waitFor('the run started', async () => (await w.store.readStream(reconciliationStream(runId))).length > 0, 60_000);

  const second = io();
  t.equal(await main([], w.env, second.io), 75, 'the second instance does not start another run');
  t.match(second.err.join('\n'), new RegExp(`run ${runId} is under way`));

  child.kill('SIGINT');
  const stopped = await exited;
  t.equal(stopped.code, 1, stopped.stderr);
  t.match(stopped.stderr, /interrupted: SIGINT received/);
  const types = (await w.store.readStream(reconciliationStream(runId))).map((e) => e.type);
  t.equal(types.at(-1), 'ReconciliationInterrupted', 'the interruption is recorded');
  const listed = io();
  t.equal(await main(['--list'], w.env, listed.io), 0);
  t.match(listed.out.join('\n'), new RegExp(`${runId}.*cli\\s+interrupted`));

  const resumed = io();
  t.equal(await main([], { ...w.env, RECONCILE_MAX_CALLS_PER_SECOND: '200' }, resumed.io), 0, resumed.err.join('\n'));
  t.match(resumed.out.join('\n'), new RegExp(`run ${runId} resumed`), 'the interrupted run is resumed at once: its claim was released');
  t.same([...(await differences(w.ledger, w.client)).entries()], []);
});

t.test('reconcile: bad usage, bad configuration', async (t) => {
  const usage = io();
  t.equal(await main(['--nope'], {}, usage.io), 64);
  t.match(usage.err.join('\n'), /usage: npm run reconcile/);
  const help = io();
  t.equal(await main(['--help'], {}, help.io), 0);
  const config = io();
  t.equal(await main([], { RECONCILE_MAX_CALLS_PER_SECOND: '0' }, config.io), 78);
  t.match(config.err, [/^reconcile: configuration error: RECONCILE_MAX_CALLS_PER_SECOND: must be a number above 0 and at most 1000/]);
  t.equal(config.err.length, 1, 'one line');
});
