/**
 * Webhook ingest benchmark (issue 11): the real service (`src/server.ts`, a child process, its own event loop) on a
 * SQLite file holding N events already (bench/support/history-file.ts), receiving authenticated notifications over
 * HTTP from a load generator in this process (bench/support/http-load.ts: raw keep-alive sockets, cheap enough not
 * to be the bottleneck): `CONNECTIONS` requests in flight for `SECONDS`, each with a real token signed by the
 * built-in emulator's key (the service verifies it against the emulator's published keys) and a notification of its
 * own operation id. Each 200 means the delivery is durable in the store (WAL, synchronous=FULL).
 *
 * Before the load, the service is given time to let its read models catch up with the prefilled history (at most
 * BENCH_INGEST_SETTLE_SECONDS), so the figure is the steady state at that size, not a start-up.
 *
 * Limits measured in the same run, on the same machine:
 * - jose verification alone (the same token, the same key): what authenticating every request in full costs;
 * - one raw durable SQLite insert per transaction (one fsync each): what one fsync per request allows;
 * - raw durable inserts 50 to a transaction (one fsync per 50): what group commit allows, and how long one such
 *   commit holds the event loop (better-sqlite3 is synchronous).
 *
 *   npm run bench:ingest                                  # sizes 0, 100000, 1000000; 5 s each
 *   BENCH_INGEST_SIZES=0 BENCH_INGEST_SECONDS=3 npm run bench:ingest
 *   BENCH_INGEST_CPU_PROF=/tmp/prof BENCH_INGEST_SIZES=0 npm run bench:ingest && npx tsx bench/support/cpu-profile.ts /tmp/prof/*.cpuprofile
 *
 * Prints a table and writes bench/results/ingest.json (bench/support/results.ts).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { startEmulator } from '../src/emulator/emulator.js';
import { openSqliteStore } from '../src/eventstore/sqlite.store.js';
import { historyFile, readModelsFile } from './support/history-file.js';
import { runLoad } from './support/http-load.js';
import type { LoadFigures } from './support/http-load.js';
import { writeResult } from './support/results.js';
import type { Figure } from './support/results.js';
import { emulatorEnv, startService } from './support/service.js';

const SIZES = (process.env.BENCH_INGEST_SIZES ?? '0,100000,1000000').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_INGEST_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_INGEST_CONNECTIONS ?? 50);
const SETTLE_SECONDS = Number(process.env.BENCH_INGEST_SETTLE_SECONDS ?? 20);
/** How long a start may take before the size is given up (at 1M events the start-up is issue 11's other work). */
const READY_SECONDS = Number(process.env.BENCH_INGEST_READY_SECONDS ?? 45);
const GROUP = 50;
/** A directory: the service runs with --cpu-prof and leaves its profile there (read the top with bench/support/cpu-profile.ts). */
const CPU_PROF = process.env.BENCH_INGEST_CPU_PROF;
const command = `BENCH_INGEST_SIZES=${SIZES.join(',')} BENCH_INGEST_SECONDS=${SECONDS} BENCH_INGEST_CONNECTIONS=${CONNECTIONS} npx tsx bench/ingest.bench.ts`;

type Run = LoadFigures & { size: number; events: number; readyMs: number; settledMs: number; settled: boolean };

function notification(): string {
  return JSON.stringify({
    id: crypto.randomUUID(),
    activityId: crypto.randomUUID(),
    subscriptionId: crypto.randomUUID(),
    publisherId: 'contoso',
    offerId: 'fulfillment-ledger',
    planId: 'standard',
    quantity: 5,
    timeStamp: new Date().toISOString(),
    action: 'Suspend',
    status: 'Succeeded',
  });
}

async function joseLimit(token: string, metadataUrl: string, audience: string): Promise<number> {
  const metadata = (await (await fetch(metadataUrl)).json()) as { jwks_uri: string };
  const keys = createRemoteJWKSet(new URL(metadata.jwks_uri));
  await jwtVerify(token, keys, { audience });
  const until = performance.now() + 2000;
  let n = 0;
  while (performance.now() < until) {
    await jwtVerify(token, keys, { audience });
    n++;
  }
  return Math.round(n / 2);
}

/** Durable inserts of a notification-sized row, `perCommit` to a transaction: rows/s and the mean ms one commit takes. */
function rawInsertLimit(dir: string, perCommit: number): { perSecond: number; commitMs: number } {
  const db = new Database(join(dir, `raw-${perCommit}.db`));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT, data TEXT)');
  const insert = db.prepare('INSERT INTO events (stream_id, data) VALUES (?, ?)');
  const batch = db.transaction((from: number) => {
    for (let i = from; i < from + perCommit; i++) insert.run(`notification-${i}`, JSON.stringify({ i, body: 'x'.repeat(1200) }));
  });
  const started = performance.now();
  const until = started + 2000;
  let n = 0;
  let commits = 0;
  while (performance.now() < until) {
    batch(n);
    n += perCommit;
    commits++;
  }
  const elapsed = performance.now() - started;
  db.close();
  return { perSecond: Math.round(n / (elapsed / 1000)), commitMs: Math.round((elapsed / commits) * 100) / 100 };
}

/**
 * The store's own group commit, in this process: rounds of `perRound` concurrent appends of a notification-sized
 * event to distinct streams. Appends/s, and the mean time one batch holds the event loop (statements + fsync).
 */
async function storeGroupLimit(dir: string, perRound: number): Promise<{ perSecond: number; batchMs: number; meanBatch: number }> {
  const store = openSqliteStore({ path: join(dir, 'group.db'), checkpointIntervalMs: 0 });
  const data = { body: 'x'.repeat(1200), headers: { 'content-type': 'application/json' } };
  const started = performance.now();
  let n = 0;
  while (performance.now() - started < 2000) {
    await Promise.all(Array.from({ length: perRound }, (_, i) => store.appendToStream(`notification-${n + i}`, [{ type: 'NotificationReceived', data }])));
    n += perRound;
  }
  const elapsed = performance.now() - started;
  const stats = store.writeStats();
  await store.close();
  return { perSecond: Math.round(n / (elapsed / 1000)), batchMs: Math.round((stats.totalBatchMs / stats.batches) * 100) / 100, meanBatch: Math.round(stats.appends / stats.batches) };
}

type ProjectionStatus = { projections: Array<{ name: string; state: string; position?: string }> };

/** Waits until every projection says it is live (caught up), at most SETTLE_SECONDS. */
async function settle(url: string, operatorToken: string): Promise<{ ms: number; settled: boolean }> {
  const started = performance.now();
  while (performance.now() - started < SETTLE_SECONDS * 1000) {
    try {
      const res = await fetch(`${url}/api/read/status`, { headers: { authorization: `Bearer ${operatorToken}` } });
      if (res.ok) {
        const status = (await res.json()) as ProjectionStatus;
        if (status.projections.length > 0 && status.projections.every((p) => p.state === 'live')) return { ms: performance.now() - started, settled: true };
      } else await res.arrayBuffer();
    } catch {
      // not answering yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return { ms: performance.now() - started, settled: false };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const emulator = await startEmulator({ operationDelayMs: 50 });
const token = await emulator.signer.webhookToken();
if (!token) throw new Error('the emulator signed no webhook token');
const env = emulatorEnv(emulator);
const work = mkdtempSync(join(tmpdir(), 'ledger-ingest-'));
const runs: Run[] = [];
const notReady: Array<{ size: number; events: number; reason: string }> = [];
try {
  const jose = await joseLimit(token, emulator.openIdConfigurationUrl, emulator.publisherAppId);
  const single = rawInsertLimit(work, 1);
  const grouped = rawInsertLimit(work, GROUP);
  const store = await storeGroupLimit(work, GROUP);
  for (const size of SIZES) {
    const dir = join(work, `size-${size}`);
    mkdirSync(dir);
    const events = size > 0 ? await historyFile(size, join(dir, 'events.db')) : 0;
    // A service that has run with this history has its read models caught up: the figure is ingest at this size, not
    // ingest during a catch-up from zero (measured apart by bench:projections).
    if (size > 0) await readModelsFile(size, join(dir, 'readmodels.db'));
    const service = await startService({ DATA_DIR: dir, ...env }, { nodeArgs: CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`] : [], readyTimeoutMs: READY_SECONDS * 1000 }).catch((err: unknown) => {
      notReady.push({ size, events, reason: err instanceof Error ? err.message : String(err) });
      return undefined;
    });
    if (!service) continue;
    try {
      const settled = await settle(service.url, env.OPERATOR_TOKEN as string);
      const load = await runLoad({
        url: service.url,
        path: '/webhook',
        connections: CONNECTIONS,
        seconds: SECONDS,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: notification,
      });
      runs.push({ size, events, readyMs: Math.round(service.readyMs), settledMs: Math.round(settled.ms), settled: settled.settled, ...load });
    } finally {
      await service.stop();
    }
  }

  console.log(`webhook ingest: ${CONNECTIONS} connections, ${SECONDS} s per size`);
  console.log(`limits in this run: jose verification alone ${jose}/s; raw durable inserts, one per commit ${single.perSecond}/s (${single.commitMs} ms each); ${GROUP} per commit ${grouped.perSecond}/s (${grouped.commitMs} ms per commit)`);
  console.log(`the store's group commit, ${GROUP} concurrent appends at a time: ${store.perSecond} appends/s, ${store.meanBatch} per batch, ${store.batchMs} ms per batch holding the event loop`);
  console.log('stored events   accepted/s    p50 ms    p99 ms    max ms   errors   vs empty   settled');
  const empty = runs.find((r) => r.size === 0);
  for (const r of runs) {
    const vsEmpty = empty ? (r.perSecond / empty.perSecond).toFixed(2) : '–';
    console.log(
      `${String(r.events).padStart(13)}   ${String(r.perSecond).padStart(10)}   ${String(r.p50Ms).padStart(7)}   ${String(r.p99Ms).padStart(7)}   ${String(r.maxMs).padStart(7)}   ${String(r.errors).padStart(6)}   ${vsEmpty.padStart(8)}   ${r.settled ? `${(r.settledMs / 1000).toFixed(1)} s` : `no (${SETTLE_SECONDS} s)`}`,
    );
  }
  const load = loadavg().map((l) => l.toFixed(1)).join(' / ');
  // Where the service's CPU went (a --cpu-prof of the service, empty store, 10 s of this load, 2026-12-02, after the asynchronous logger).
  const profiled =
    'service profile while ingesting (empty store, self time by module): the store\'s appends, reads and chain hash ~17 %, the HTTP client of the notification process ' +
    'calling Microsoft (undici) ~11 %, pino ~7 %, better-sqlite3 ~4 %, GC ~4 %, the live projections ~4 %, Fastify ~2 %, the rest spread thin; idle ~2 %: the one event loop is saturated';
  const why = (what: string) =>
    `${what} in this run (load average ${load} on ${cpus().length} cores; the load generator and the emulator run in this benchmark's process beside the service): the limits measured beside it were the store's group commit ${store.perSecond} appends/s ` +
    `(${store.batchMs} ms per batch of ${store.meanBatch} holding the event loop), raw ${GROUP} rows per commit ${grouped.perSecond}/s, one fsync each ${single.perSecond}/s, jose alone ${jose}/s. ${profiled}. ` +
    'What would reach it: the work each delivery sets off elsewhere in the service (the notification process calling Microsoft and recording the outcome, the live projections, the process managers\' checkpoints) moved off the webhook\'s event loop (a worker thread or a process of its own: on one event loop the service is CPU-bound well before the store\'s group-commit limit), fewer log lines per delivery (3 now: Fastify\'s two and the inbox\'s), and the commit\'s fsync off the event loop when fsync is slow.';
  for (const n of notReady) console.log(`${String(n.events).padStart(13)}   not measured: ${n.reason}`);
  const groupLimit = { name: `raw durable inserts, ${GROUP} per commit (group-commit limit)`, value: grouped.perSecond, unit: 'rows/s' };
  const figures: Figure[] = [];
  const largest = runs.find((r) => r.size === Math.max(...SIZES));
  for (const r of [empty, largest === empty ? undefined : largest]) {
    if (!r) continue;
    const at = r.size === 0 ? 'empty store' : `${r.events.toLocaleString('en-US')} events`;
    figures.push(
      { name: `webhook ingest, ${CONNECTIONS} connections, ${at}`, value: r.perSecond, unit: 'req/s', goal: { op: '>=', value: 5000 }, limit: groupLimit, ...(r.perSecond >= 5000 ? {} : { note: why(`${r.perSecond} req/s`) }) },
      { name: `webhook ingest p99, ${CONNECTIONS} connections, ${at}`, value: r.p99Ms, unit: 'ms', goal: { op: '<', value: 25 }, limit: { name: `one raw commit of ${GROUP} rows`, value: grouped.commitMs, unit: 'ms' }, ...(r.p99Ms < 25 ? {} : { note: why(`p99 ${r.p99Ms} ms`) }) },
    );
  }
  for (const n of notReady) {
    figures.push({
      name: `webhook ingest, ${CONNECTIONS} connections, ${n.events.toLocaleString('en-US')} events`,
      value: 0,
      unit: 'req/s',
      goal: { op: '>=', value: 5000 },
      note: `not measured: ${n.reason} (the start-up at this size reads the whole history before it says ready; issue 11's start-up work). What would reach it: a start that does not depend on the history's size.`,
    });
  }
  if (empty && largest && largest !== empty) {
    const ratio = Math.round((largest.perSecond / empty.perSecond) * 100) / 100;
    const settledNote = largest.settled ? '' : ` The read models had not caught up with the ${largest.events} events within ${SETTLE_SECONDS} s, so their catch-up ran during the load (issue 11's projection work).`;
    figures.push({
      name: `webhook ingest at ${largest.events.toLocaleString('en-US')} events / empty store`,
      value: ratio,
      unit: '×',
      goal: { op: '>=', value: 0.9 },
      ...(ratio >= 0.9 && largest.settled ? {} : { note: `${ratio >= 0.9 ? '' : `${ratio}× in this run (load average ${load}). Not profiled at this size yet: each delivery reads and writes B-trees (the events\' indexes, the operations read model and its indexes) ten times larger than at 100k, beyond what SQLite\'s page caches hold. What would reach it: a profile at 1M, then a larger page cache for the store or fewer index writes per delivery, and the same work off the webhook\'s event loop as for the rate.`}${settledNote}`.trim() }),
    });
  }
  const path = writeResult({
    bench: 'ingest',
    command,
    figures,
    details: {
      connections: CONNECTIONS,
      seconds: SECONDS,
      limits: { joseVerifyPerSecond: jose, rawDurableInsertPerSecond: single.perSecond, rawInsertCommitMs: single.commitMs, rawGroupCommitPerSecond: grouped.perSecond, rawGroupCommitMs: grouped.commitMs, groupSize: GROUP, storeGroupCommitPerSecond: store.perSecond, storeBatchMs: store.batchMs, storeMeanBatch: store.meanBatch },
      runs,
      notReady,
      medianPerSecond: median(runs.map((r) => r.perSecond)),
    },
  });
  console.log(`wrote ${path}`);
} finally {
  await emulator.close();
  rmSync(work, { recursive: true, force: true });
}
