/**
 * Notifications benchmark (issue 11): customers change plans and seat counts at Microsoft at a steady rate, and
 * each change must be acknowledged by the service (PATCH operation `Success`) inside Microsoft's 10-second window.
 *
 * The real service (`src/server.ts`, a child process) against the built-in emulator in this process:
 * 1. BENCH_NOTIFY_SUBSCRIPTIONS subscriptions bought in bulk at the emulator (active, no webhooks), then taken
 *    into the service's ledger by its own reconciler (POST /api/reconcile: List subscriptions, RecordPurchase for
 *    each one it never saw) — the service's honest bulk path, through HTTP and its store.
 * 2. BENCH_NOTIFY_RATE customer changes a second for BENCH_NOTIFY_SECONDS, alternating ChangeQuantity and
 *    ChangePlan, round-robin over the subscriptions. Each sends its webhook at once, status InProgress, and opens
 *    the acknowledgement window.
 * 3. Per change: from the emulator sending the webhook to the service's PATCH `Success` reaching the emulator
 *    (the operation's `Succeeded`). Missed = no acknowledgement within Microsoft's 10 s (the window accepts it on
 *    its own: the customer got the change but the ISV never said yes), or none at all.
 *
 * Rates next to each other, from the same run: offered (what the customers did), ingest (webhooks answered 200
 * by the service), acknowledgements (PATCH Success reaching Microsoft). The service's CPU over the load window.
 *
 *   npm run bench:notifications                       # 10,000 subscriptions, 200 changes/s for 60 s
 *   BENCH_NOTIFY_SUBSCRIPTIONS=1000 BENCH_NOTIFY_RATE=50 BENCH_NOTIFY_SECONDS=10 npm run bench:notifications
 *   BENCH_PROFILE=/tmp/prof npm run bench:notifications    # the service writes a .cpuprofile there
 *
 * Writes bench/results/notifications.json (bench/support/results.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { startEmulator } from '../src/emulator/emulator.js';
import type { RunningEmulator } from '../src/emulator/emulator.js';
import { durableInsertsPerSecond } from './support/limits.js';
import { cpuSeconds, loadAverage, round1, sleep, spread, waitFor } from './support/measure.js';
import type { Spread } from './support/measure.js';
import { meetsGoal, writeResult } from './support/results.js';
import type { Figure } from './support/results.js';
import { emulatorEnv, startService } from './support/service.js';
import type { Service } from './support/service.js';

const SUBSCRIPTIONS = Number(process.env.BENCH_NOTIFY_SUBSCRIPTIONS ?? 10_000);
const RATE = Number(process.env.BENCH_NOTIFY_RATE ?? 200);
const SECONDS = Number(process.env.BENCH_NOTIFY_SECONDS ?? 60);
const PROFILE_DIR = process.env.BENCH_PROFILE;
/** Where the service's DATA_DIR goes (default the system's temp directory; /dev/shm takes the disk out). */
const BASE_DIR = process.env.BENCH_NOTIFY_DIR ?? tmpdir();
/** Another directory than the default is a different experiment: its own result file (notifications-shm.json). */
const BENCH = process.env.BENCH_NOTIFY_DIR ? `notifications-${basename(BASE_DIR)}` : 'notifications';
const WINDOW_MS = 10_000;
const OPERATOR_TOKEN = 'bench-operator-token-0123456789';
const command = process.env.BENCH_NOTIFY_DIR ? `BENCH_NOTIFY_DIR=${process.env.BENCH_NOTIFY_DIR} npm run bench:notifications` : 'npm run bench:notifications';

type Change = { operationId: string; subscriptionId: string; sentAt: number; ackedAt?: number };

/** The service's ledger learns the bulk-bought subscriptions from its own reconciler; resolves with its duration. */
async function reconcileAll(service: Service): Promise<{ ms: number; counts: unknown }> {
  const started = performance.now();
  const headers = { authorization: `Bearer ${OPERATOR_TOKEN}` };
  const res = await fetch(`${service.url}/api/reconcile`, { method: 'POST', headers });
  if (res.status !== 202) throw new Error(`POST /api/reconcile answered ${res.status}: ${await res.text()}`);
  const { runId } = (await res.json()) as { runId: string };
  const run = await waitFor(
    'the reconciliation run to finish',
    async () => {
      const r = await fetch(`${service.url}/api/reconciliations/${runId}`, { headers });
      const body = (await r.json()) as { status: string; counts: unknown };
      return body.status === 'finished' ? body : undefined;
    },
    30 * 60_000,
    500,
  );
  return { ms: performance.now() - started, counts: run.counts };
}

/** Notes, in this process, the moment each operation's PATCH Success reaches the emulator while it waits for us. */
function watchAcknowledgements(emulator: RunningEmulator, changes: Map<string, Change>): void {
  const m = emulator.marketplace;
  const original = m.updateOperation.bind(m);
  m.updateOperation = (subscriptionId, operationId, status) => {
    const waiting = m.state.operationById(operationId)?.status === 'InProgress';
    const op = original(subscriptionId, operationId, status);
    const change = changes.get(operationId);
    if (change && waiting && status === 'Success' && op.status !== 'InProgress' && change.ackedAt === undefined) change.ackedAt = performance.now();
    return op;
  };
}

/** RATE changes a second for SECONDS, alternating quantity and plan, round-robin over the subscriptions. */
async function offerChanges(emulator: RunningEmulator, ids: readonly string[], changes: Map<string, Change>): Promise<{ sent: number; ms: number }> {
  const plans = new Map<string, { planId: string; quantity: number }>();
  const total = Math.round(RATE * SECONDS);
  const started = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * RATE) + 1);
    for (; sent < due; sent++) {
      const subscriptionId = ids[sent % ids.length] as string;
      const now = plans.get(subscriptionId) ?? { planId: 'premium', quantity: 10 };
      const sentAt = performance.now();
      const op =
        sent % 2 === 0
          ? emulator.marketplace.changeQuantity(subscriptionId, now.quantity === 10 ? 11 : 10)
          : emulator.marketplace.changePlan(subscriptionId, now.planId === 'premium' ? 'standard' : 'premium');
      plans.set(subscriptionId, { planId: op.planId, quantity: op.quantity ?? now.quantity });
      changes.set(op.id, { operationId: op.id, subscriptionId, sentAt });
    }
    await sleep(5);
  }
  return { sent, ms: performance.now() - started };
}

type Outcome = {
  ack: Spread;
  acked: number;
  missed: number;
  never: number;
  offeredPerSecond: number;
  ackPerSecond: number;
  ingestPerSecond: number;
  webhook: Spread;
  webhookErrors: number;
};

/** Events a second over the span from the first to the last of them ((n - 1) / span): the same measure for every rate. */
function rate(times: readonly number[]): number {
  if (times.length < 2) return 0;
  const span = (Math.max(...times) - Math.min(...times)) / 1000;
  return span > 0 ? round1((times.length - 1) / span) : 0;
}

/** What the emulator saw: acknowledgement latencies, webhook answers, the rates. */
function outcome(emulator: RunningEmulator, changes: Map<string, Change>): Outcome {
  const all = [...changes.values()];
  const acked = all.filter((c): c is Change & { ackedAt: number } => c.ackedAt !== undefined);
  const latencies = acked.map((c) => c.ackedAt - c.sentAt);
  const missed = all.filter((c) => c.ackedAt === undefined || c.ackedAt - c.sentAt > WINDOW_MS).length;
  const ids = new Set(changes.keys());
  const deliveries = emulator.marketplace.deliveries().filter((d) => ids.has(d.operationId));
  const firstAttempts = deliveries.map((d) => d.attempts[0]).filter((a) => a !== undefined);
  const ok = firstAttempts.filter((a) => a.statusCode === 200);
  return {
    ack: spread(latencies),
    acked: latencies.length,
    missed,
    never: all.length - acked.length,
    offeredPerSecond: rate(all.map((c) => c.sentAt)),
    ackPerSecond: rate(acked.map((c) => c.ackedAt)),
    ingestPerSecond: rate(ok.map((a) => Date.parse(a.at) + a.durationMs)),
    webhook: spread(ok.map((a) => a.durationMs)),
    webhookErrors: firstAttempts.length - ok.length,
  };
}

/** Appends to the store per change: webhook receipt, the subscription's command, the acknowledgement, the outcome. */
const APPENDS_PER_CHANGE = 4;

/** Why a figure misses its goal, from what this run measured. */
function whyMissed(o: Outcome, cpu: { percent: number; msPerChange: number }, load: string, fsyncs: number): string {
  const cpuBound = cpu.msPerChange > 0 ? Math.round(1000 / cpu.msPerChange) : 0;
  const diskBound = Math.round(fsyncs / APPENDS_PER_CHANGE);
  return (
    `missed: webhooks were accepted at ${o.ingestPerSecond}/s (p99 ${o.webhook.p99} ms). The service spent ${cpu.msPerChange} ms of CPU per change accepted ` +
    `(receipt, processing, read models, logs on one event loop: at most ~${cpuBound} changes/s on a whole core) and got only ${cpu.percent} % of a core ` +
    `(load average ${load} on ${cpus().length} cores, shared with this benchmark's own process: the emulator answering the service and the webhook sender); its ${APPENDS_PER_CHANGE} fsync'd appends per change block that ` +
    `event loop (this disk: ${fsyncs} durable transactions/s in the same run, at most ~${diskBound} changes/s). ` +
    'What would reach it: less CPU per change (validate once, group commit of concurrent appends in one transaction and fsync off the event loop, ' +
    'the process managers on a thread of their own), the acknowledgement and outcome in one append.'
  );
}

function figures(o: Outcome, cpu: { percent: number; msPerChange: number }, load: string, fsyncs: number): Figure[] {
  const cpuPercent = cpu.percent;
  const cond = `${RATE}/s for ${SECONDS} s over ${SUBSCRIPTIONS.toLocaleString('en-US')} subscriptions`;
  const why = whyMissed(o, cpu, load, fsyncs);
  const withWhy = (f: Figure): Figure => (meetsGoal(f) === false ? { ...f, note: f.note ? `${f.note}. ${why}` : why } : f);
  const all: Figure[] = [
    { name: `receipt → Success at Microsoft, p50 (${cond})`, value: o.ack.p50, unit: 'ms' },
    { name: `receipt → Success at Microsoft, p99 (${cond})`, value: o.ack.p99, unit: 'ms', goal: { op: '<', value: 1000 }, limit: { name: "Microsoft's acknowledgement window", value: WINDOW_MS, unit: 'ms' } },
    { name: `receipt → Success at Microsoft, max (${cond})`, value: o.ack.max, unit: 'ms' },
    { name: `changes not acknowledged within 10 s (${cond})`, value: o.missed, unit: 'changes', goal: { op: '<=', value: 0 }, note: `${o.never} never acknowledged, of ${o.acked + o.never} offered` },
    {
      name: `acknowledgements per second (${cond})`,
      value: o.ackPerSecond,
      unit: 'acks/s',
      goal: { op: '>=', value: round1(0.99 * o.offeredPerSecond) },
      limit: { name: 'webhooks accepted (200) per second by the service, same run', value: o.ingestPerSecond, unit: 'req/s' },
      note: `offered ${o.offeredPerSecond}/s; every rate is (n - 1) / (last - first), so a rate that keeps up trails the offered one by the spread of latencies over the run: the goal is 99 % of the offered rate`,
    },
    { name: `webhook answered 200, p99 (${cond})`, value: o.webhook.p99, unit: 'ms', note: `${o.webhookErrors} first attempts not answered 200` },
    { name: `service CPU while under this load (${cond})`, value: cpuPercent, unit: '% of a core', note: `machine load average ${load} on ${cpus().length} cores (this benchmark's emulator and load generator run beside the service)` },
    { name: `durable one-row SQLite transactions per second in the data directory (${BASE_DIR}), right after the load`, value: fsyncs, unit: 'tx/s', note: `each change costs the service ${APPENDS_PER_CHANGE} such appends (webhook receipt, the subscription command, the acknowledgement, the outcome), each on the event loop` },
  ];
  return all.map(withWhy);
}

async function main(): Promise<void> {
  const emulator = await startEmulator({ pageSize: 1000 });
  const dir = mkdtempSync(join(BASE_DIR, 'ledger-notify-'));
  const env: Record<string, string> = { DATA_DIR: dir, ...emulatorEnv(emulator), RECONCILE_MAX_CALLS_PER_SECOND: '1000', RECONCILE_INTERVAL_MINUTES: '0' };
  const service = await startService(env, PROFILE_DIR ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] } : {});
  try {
    emulator.setWebhookUrl(`${service.url}/webhook`);
    const bought = emulator.marketplace.purchaseMany({ planId: 'premium', quantity: 10 }, SUBSCRIPTIONS, 'Subscribed');
    const setup = await reconcileAll(service);
    console.log(`setup: ${SUBSCRIPTIONS} subscriptions taken in by the reconciler in ${(setup.ms / 1000).toFixed(1)} s ${JSON.stringify(setup.counts)}`);
    await sleep(1000);

    const changes = new Map<string, Change>();
    watchAcknowledgements(emulator, changes);
    const pid = service.proc.pid as number;
    const cpu0 = cpuSeconds(pid);
    const t0 = performance.now();
    const offer = await offerChanges(emulator, bought.map((s) => s.id), changes);
    const load = loadAverage().toFixed(2);
    await waitFor('every change acknowledged or past its window', () => ([...changes.values()].every((c) => c.ackedAt !== undefined || performance.now() - c.sentAt > WINDOW_MS + 2000) ? true : undefined), 5 * 60_000, 250);
    // From the first change to the last answer: the service's CPU for all the work the changes caused.
    const cpuUsed = cpuSeconds(pid) - cpu0;
    const cpuPercent = round1((cpuUsed / ((performance.now() - t0) / 1000)) * 100);
    const o = outcome(emulator, changes);
    const offered = o.offeredPerSecond;
    const fsyncs = durableInsertsPerSecond(dir);
    const accepted = o.webhook.n;
    const cpu = { percent: cpuPercent, msPerChange: accepted > 0 ? round1((cpuUsed * 1000) / accepted) : 0 };

    console.log(`offered ${offer.sent} changes at ${offered}/s; ingest ${o.ingestPerSecond}/s (webhook p99 ${o.webhook.p99} ms); acks ${o.ackPerSecond}/s`);
    console.log(`receipt → Success: p50 ${o.ack.p50} ms, p99 ${o.ack.p99} ms, max ${o.ack.max} ms; missed ${o.missed} (never ${o.never}); service CPU ${cpuPercent} % of a core; load ${load}`);
    const path = writeResult({
      bench: BENCH,
      command,
      figures: figures(o, cpu, load, fsyncs),
      details: { dataDir: BASE_DIR, cpu, load, durableInsertsPerSecond: fsyncs, subscriptions: SUBSCRIPTIONS, rate: RATE, seconds: SECONDS, offered: offer.sent, setupMs: Math.round(setup.ms), reconciliation: setup.counts, ...o },
    });
    console.log(`wrote ${path}`);
  } finally {
    await service.stop();
    await emulator.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
