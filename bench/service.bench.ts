/**
 * Service benchmark (issue 11): what a customer and the machine notice, on an empty store and on one holding a
 * million events. The real service (`src/server.ts`, a child process) against the built-in emulator in this process.
 *
 * Per store size (BENCH_SERVICE_SIZES, default 0 and 1,000,000; the store pre-filled by bench/support/history-file.ts):
 * 1. Start-up: spawn → listening, → ready, → read models live (GET /api/read/status says `live`).
 * 2. Idle CPU: once caught up and quiet (2 s windows of CPU until two in a row agree), the service's user + system
 *    CPU from /proc/<pid>/stat over BENCH_IDLE_SECONDS (10) with no requests at all.
 * 3. Landing activation, BENCH_LANDING_CUSTOMERS (50) customers one after the other: a purchase at the emulator
 *    (not timed), then what the customer waits for — the landing page GET with Microsoft's purchase token (the
 *    service resolves it and records the purchase) and the activation POST (the form, 303 to the status page) —
 *    then, apart, the time until the status page says the subscription is active (the activation process called
 *    Microsoft's activate). Limit in the same run: the Microsoft calls alone (resolve + Get subscription + activate,
 *    straight to the emulator).
 *
 *   npm run bench:service
 *   BENCH_SERVICE_SIZES=0 BENCH_LANDING_CUSTOMERS=20 BENCH_IDLE_SECONDS=5 npm run bench:service
 *
 * Writes bench/results/service.json (bench/support/results.ts).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../src/emulator/emulator.js';
import type { RunningEmulator } from '../src/emulator/emulator.js';
import { historyFile } from './support/history-file.js';
import { cpuSeconds, loadAverage, round1, sleep, spread, waitFor } from './support/measure.js';
import type { Spread } from './support/measure.js';
import { writeResult } from './support/results.js';
import type { Figure } from './support/results.js';
import { emulatorEnv, serverArgs, startService } from './support/service.js';
import type { Service } from './support/service.js';

const SIZES = (process.env.BENCH_SERVICE_SIZES ?? '0,1000000').split(',').map(Number);
const CUSTOMERS = Number(process.env.BENCH_LANDING_CUSTOMERS ?? 50);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 10);
const OPERATOR_TOKEN = 'bench-operator-token-0123456789';
const command = 'npm run bench:service';
const auth = { authorization: `Bearer ${OPERATOR_TOKEN}` };

type Landing = { page: Spread; activate: Spread; customerWait: Spread; toActive: Spread; microsoft: Spread; failures: number };
type SizeResult = { size: number; events: number; listeningMs: number; readyMs: number; liveMs: number; settleMs: number; idleCpuPercent: number; load: number; landing: Landing };

function formField(page: string, name: string): string | undefined {
  return (new RegExp(`name="${name}"[^>]*value="([^"]*)"`).exec(page) ?? [])[1];
}

/** Resolves with the milliseconds since `started` once every read model says `live`. */
async function readModelsLive(service: Service, started: number): Promise<number> {
  await waitFor(
    'the read models to catch up',
    async () => {
      const res = await fetch(`${service.url}/api/read/status`, { headers: auth }).catch(() => undefined);
      await res?.arrayBuffer();
      return res?.headers.get('x-read-model-state') === 'live' ? true : undefined;
    },
    30 * 60_000,
    250,
  );
  return performance.now() - started;
}

/** CPU % of a core of `pid` over `ms`. */
async function cpuOver(pid: number, ms: number): Promise<number> {
  const before = cpuSeconds(pid);
  const t0 = performance.now();
  await sleep(ms);
  return ((cpuSeconds(pid) - before) / ((performance.now() - t0) / 1000)) * 100;
}

/** Waits until two 2-second CPU windows in a row agree (within 1 point or 30 %), at most 5 minutes; returns the wait. */
async function quiet(pid: number): Promise<number> {
  const t0 = performance.now();
  let previous = await cpuOver(pid, 2000);
  while (performance.now() - t0 < 5 * 60_000) {
    const now = await cpuOver(pid, 2000);
    if (Math.abs(now - previous) <= Math.max(1, 0.3 * previous)) break;
    previous = now;
  }
  return performance.now() - t0;
}

/** The Microsoft calls of one activation, straight to the emulator: what the service cannot be faster than. */
async function microsoftAlone(emulator: RunningEmulator): Promise<number> {
  const bought = emulator.marketplace.purchase({ planId: 'premium', quantity: 5 }, { silent: true });
  const headers = { authorization: 'Bearer bench', 'content-type': 'application/json' };
  const api = `${emulator.apiBaseUrl}/saas/subscriptions`;
  const v = 'api-version=2018-08-31';
  const t0 = performance.now();
  const resolved = await fetch(`${api}/resolve?${v}`, { method: 'POST', headers: { ...headers, 'x-ms-marketplace-token': bought.token } });
  await resolved.arrayBuffer();
  await (await fetch(`${api}/${bought.subscription.id}?${v}`, { headers })).arrayBuffer();
  const activated = await fetch(`${api}/${bought.subscription.id}/activate?${v}`, { method: 'POST', headers, body: JSON.stringify({ planId: 'premium', quantity: 5 }) });
  await activated.arrayBuffer();
  if (!resolved.ok || !activated.ok) throw new Error(`the emulator answered resolve ${resolved.status}, activate ${activated.status}`);
  return performance.now() - t0;
}

/** One customer from the landing redirect to the activation form's answer, then to active. */
async function customer(emulator: RunningEmulator, service: Service): Promise<{ page: number; activate: number; toActive: number } | undefined> {
  const bought = emulator.marketplace.purchase({ planId: 'premium', quantity: 5, beneficiary: { emailId: 'ada@fabrikam.example' } }, { silent: true });
  const t0 = performance.now();
  const pageRes = await fetch(`${service.url}/landing?token=${encodeURIComponent(bought.token)}`);
  const page = await pageRes.text();
  const t1 = performance.now();
  const sig = formField(page, 'sig');
  if (pageRes.status !== 200 || !sig) return undefined;
  const form = new URLSearchParams({ subscriptionId: bought.subscription.id, sig, email: 'ada@fabrikam.example', name: 'Ada Lovelace' });
  const posted = await fetch(`${service.url}/landing/activate`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString(), redirect: 'manual' });
  await posted.arrayBuffer();
  const t2 = performance.now();
  const location = posted.headers.get('location');
  if (posted.status !== 303 || !location) return undefined;
  const statusUrl = new URL(location.replace(/(\/landing\/subscriptions\/[^?]+)/, '$1/status'), service.url);
  await waitFor(
    'the subscription to be active',
    async () => {
      const r = await fetch(statusUrl);
      const body = (await r.json()) as { phase?: string; final?: boolean };
      if (body.final && body.phase !== 'active') throw new Error(`activation ended ${body.phase}`);
      return body.phase === 'active' ? true : undefined;
    },
    60_000,
    10,
  );
  return { page: t1 - t0, activate: t2 - t1, toActive: performance.now() - t2 };
}

async function landing(emulator: RunningEmulator, service: Service): Promise<Landing> {
  const page: number[] = [];
  const activate: number[] = [];
  const wait: number[] = [];
  const toActive: number[] = [];
  const microsoft: number[] = [];
  let failures = 0;
  for (let i = 0; i < CUSTOMERS; i++) {
    const c = await customer(emulator, service);
    if (!c) failures++;
    else {
      page.push(c.page);
      activate.push(c.activate);
      wait.push(c.page + c.activate);
      toActive.push(c.toActive);
    }
    microsoft.push(await microsoftAlone(emulator));
  }
  return { page: spread(page), activate: spread(activate), customerWait: spread(wait), toActive: spread(toActive), microsoft: spread(microsoft), failures };
}

async function measureSize(emulator: RunningEmulator, work: string, size: number): Promise<SizeResult> {
  const dir = join(work, `size-${size}`);
  mkdirSync(dir);
  const events = size > 0 ? await historyFile(size, join(dir, 'events.db')) : 0;
  const started = performance.now();
  const service = await startService({ DATA_DIR: dir, ...emulatorEnv(emulator), RECONCILE_INTERVAL_MINUTES: '0' });
  try {
    emulator.setWebhookUrl(`${service.url}/webhook`);
    emulator.setLandingPageUrl(`${service.url}/landing`);
    const liveMs = await readModelsLive(service, started);
    const pid = service.proc.pid as number;
    const settleMs = await quiet(pid);
    const idleCpuPercent = round1(await cpuOver(pid, IDLE_SECONDS * 1000));
    const load = loadAverage();
    console.log(`${events} events: listening ${Math.round(service.listeningMs)} ms, ready ${Math.round(service.readyMs)} ms, live ${Math.round(liveMs)} ms; idle CPU ${idleCpuPercent} % (load ${load})`);
    const l = await landing(emulator, service);
    console.log(`  landing GET p99 ${l.page.p99} ms, activation POST p99 ${l.activate.p99} ms, both p99 ${l.customerWait.p99} ms; to active p99 ${l.toActive.p99} ms; Microsoft alone p99 ${l.microsoft.p99} ms; failures ${l.failures}`);
    return { size, events, listeningMs: Math.round(service.listeningMs), readyMs: Math.round(service.readyMs), liveMs: Math.round(liveMs), settleMs: Math.round(settleMs), idleCpuPercent, load, landing: l };
  } finally {
    await service.stop();
  }
}

function figuresOf(r: SizeResult): Figure[] {
  const at = `${r.events.toLocaleString('en-US')} events`;
  const big = r.events >= 1_000_000;
  const l = r.landing;
  const limit = { name: 'the Microsoft calls alone (resolve, Get subscription, activate), p99', value: l.microsoft.p99, unit: 'ms' };
  return [
    { name: `landing activation, page GET + activation POST, p99, ${at}`, value: l.customerWait.p99, unit: 'ms', ...(big ? { goal: { op: '<', value: 50 } as const } : {}), limit, note: `p50 ${l.customerWait.p50} ms, max ${l.customerWait.max} ms; GET p99 ${l.page.p99} ms, POST p99 ${l.activate.p99} ms; ${l.customerWait.n} customers one after the other, ${l.failures} failed` + (big && l.customerWait.p99 >= 50 ? '. Missed: with 50 customers the p99 is the slowest or second slowest; the median is far below it, so the slow ones are single requests that waited for other work on the same event loop (a projection batch of up to ~25 ms, the process managers, a GC), not attributed one by one. What would reach it: the projections and process managers off the HTTP event loop (a worker thread).' : '') },
    { name: `landing activation, POST → status page says active, p99, ${at}`, value: l.toActive.p99, unit: 'ms', note: `p50 ${l.toActive.p50} ms; the activation process calls Microsoft's activate; polled every 10 ms` },
    { name: `idle CPU with no requests, ${at}`, value: r.idleCpuPercent, unit: '% of a core', ...(big ? { goal: { op: '<', value: 1 } as const } : {}), note: `over ${IDLE_SECONDS} s once the read models were live and the CPU settled (${Math.round(r.settleMs / 1000)} s); machine load average ${r.load}` + (big && r.idleCpuPercent >= 1 ? '. Missed: measured right after a catch-up of every event from empty read models, when V8 is still collecting what it left (an idle service at 0 events measured well under 1 % in the same run). What would reach it: a catch-up that leaves less garbage, or measuring a while later; not verified.' : '') },
    {
      name: `start-up to ready, ${at} (${serverArgs()[0]?.endsWith('server.js') ? 'compiled' : 'sources through tsx'}, Node ${process.versions.node})`,
      value: r.readyMs,
      unit: 'ms',
      goal: { op: '<', value: 1000 },
      note:
        `listening after ${r.listeningMs} ms` +
        (r.readyMs < 1000
          ? ''
          : '. Missed: most of it is loading the modules (a CPU profile of the start: Node\'s module loader ~40 %, the route schemas\' compile, Fastify\'s plugins). ' +
            'What would reach it: the production image\'s Node 24 with V8\'s compile cache filled at build time (Dockerfile: NODE_COMPILE_CACHE); measured apart, not by this ' +
            'benchmark, on this machine on 2026-12-02: Node 24.22 0.96-1.04 s to ready without the cache, 0.81-0.87 s with it.'),
    },
    { name: `start-up to read models live, ${at}`, value: r.liveMs, unit: 'ms' },
  ];
}

async function main(): Promise<void> {
  const emulator = await startEmulator({ operationDelayMs: 50 });
  const work = mkdtempSync(join(tmpdir(), 'ledger-service-'));
  const results: SizeResult[] = [];
  try {
    for (const size of SIZES) {
      results.push(await measureSize(emulator, work, size));
      // After each size, so that a long run stopped at the next one still leaves what it measured.
      const path = writeResult({ bench: 'service', command, figures: results.flatMap(figuresOf), details: { customers: CUSTOMERS, idleSeconds: IDLE_SECONDS, sizes: SIZES, results } });
      console.log(`wrote ${path}`);
    }
  } finally {
    await emulator.close();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
