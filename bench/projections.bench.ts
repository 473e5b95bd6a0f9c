/**
 * Projection benchmark (issue 11): the read side at 1M events.
 *
 *   npm run bench:projections                 # 1,000,000 events (the store file is cached after the first run)
 *   BENCH_EVENTS=100000 npm run bench:projections
 *
 * On a store file pre-filled with BENCH_EVENTS events of synthetic history (bench/support/history-file.ts), in one run:
 * 1. raw: the store's readAll over every event, doing nothing with them: the limit the rebuild is measured against;
 * 2. rebuild: every projection rebuilt from scratch into a fresh read-model file (rebuildProjections, what
 *    `npm run projections:rebuild` does), with the peak RSS (sampled every 10 ms) and the longest event-loop stall;
 * 2b. the same rebuild into PostgreSQL (a database of its own on BENCH_POSTGRES_URL, default
 *    postgres://postgres@127.0.0.1:5432/postgres, dropped afterwards); skipped, and said so, where it does not answer;
 * 3. the real service as a child process (bench/support/service.ts) started with empty read models over the same
 *    store: GET /healthz every 20 ms while its projections catch up from zero (the longest answer is the longest
 *    an HTTP request waited), and the time until every projection is live at the last event;
 * 4. the service restarted with its read models caught up: time to ready, time until the projections are live,
 *    and whether `resumeAll` scanned the store (it must read the pending changes from the read model).
 *
 * Prints the figures and writes bench/results/projections.json (bench/support/results.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { openSqliteStore } from '../src/eventstore/sqlite.store.js';
import { createLogger } from '../src/logger.js';
import pg from 'pg';
import type { EventStore } from '../src/eventstore/eventstore.js';
import { allProjections, rebuildProjections } from '../src/projections/index.js';
import { openPostgresTarget } from '../src/projections/postgres.target.js';
import { historyFile } from './support/history-file.js';
import { meetsGoal, writeResult } from './support/results.js';
import type { Figure } from './support/results.js';
import { startService } from './support/service.js';
import type { Service } from './support/service.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000);
const CATCH_UP_TIMEOUT_MS = Number(process.env.BENCH_CATCHUP_TIMEOUT_S ?? 300) * 1000;
const TOKEN = 'bench-operator-token-0123456789';
const logger = createLogger('warn');
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const mib = (bytes: number) => bytes / 1024 / 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Watch = { peakRssMiB: number; rssBeforeMiB: number; maxStallMs: number };

/** Runs `work` while sampling RSS every 10 ms and the event loop's delay. */
async function watched<T>(work: () => Promise<T>): Promise<Watch & { result: T }> {
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const rssBefore = process.memoryUsage.rss();
  let peak = rssBefore;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 10);
  loop.enable();
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, peakRssMiB: mib(peak), rssBeforeMiB: mib(rssBefore), maxStallMs: loop.max / 1e6 };
  } finally {
    loop.disable();
    clearInterval(sampler);
  }
}

/** The last position of an event the projections read (a history may end with events of other streams: they never move a checkpoint). */
function lastPosition(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    const prefixes = [...new Set(allProjections.flatMap((p) => p.streamPrefixes))];
    const where = prefixes.map(() => 'substr(stream_id, 1, length(?)) = ?').join(' OR ');
    return Number(db.prepare(`SELECT max(position) FROM events WHERE ${where}`).pluck().get(...prefixes.flatMap((p) => [p, p])));
  } finally {
    db.close();
  }
}

type Status = { projections: Array<{ name: string; state: string; position?: string }> };

async function caughtUp(svc: Service, last: number): Promise<boolean> {
  const res = await fetch(`${svc.url}/api/read/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
  if (res.status !== 200) return false;
  const status = (await res.json()) as Status;
  return status.projections.every((p) => p.state === 'live' && Number(p.position ?? -1) >= last);
}

/** Log lines of the service after it was ready, counted by message. */
function countLines(svc: Service, match: (msg: string) => boolean): { count: number } {
  const seen = { count: 0 };
  if (svc.proc.stdout) {
    createInterface({ input: svc.proc.stdout }).on('line', (line) => {
      try {
        if (match(String((JSON.parse(line) as { msg?: unknown }).msg))) seen.count++;
      } catch {
        // not a log line
      }
    });
  }
  return seen;
}

/** Polls /healthz every 20 ms until the projections are live at `last`: the longest answer, the samples, the time. */
async function catchUpWhilePolling(svc: Service, last: number): Promise<{ maxMs: number; p99Ms: number; samples: number; liveAfterMs: number; timedOut: boolean }> {
  const started = performance.now();
  const latencies: number[] = [];
  let nextStatus = 0;
  let timedOut = false;
  for (;;) {
    const t0 = performance.now();
    // An answer that does not come within the timeout counts as the timeout (the service's event loop is held).
    const left = Math.max(1, Math.floor(CATCH_UP_TIMEOUT_MS - (t0 - started)));
    const answered = await fetch(`${svc.url}/healthz`, { signal: AbortSignal.timeout(left) }).then((res) => res.arrayBuffer().then(() => true), () => false);
    latencies.push(performance.now() - t0);
    if (answered && performance.now() >= nextStatus) {
      nextStatus = performance.now() + 250;
      if (await caughtUp(svc, last)) break;
    }
    if (performance.now() - started > CATCH_UP_TIMEOUT_MS) {
      timedOut = true;
      break;
    }
    await sleep(Math.max(0, 20 - (performance.now() - t0)));
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    maxMs: sorted[sorted.length - 1] ?? 0,
    p99Ms: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
    samples: sorted.length,
    liveAfterMs: performance.now() - started,
    timedOut,
  };
}

async function untilCaughtUp(svc: Service, last: number): Promise<number> {
  const started = performance.now();
  while (!(await caughtUp(svc, last))) {
    if (performance.now() - started > CATCH_UP_TIMEOUT_MS) throw new Error('the restarted service did not get live');
    await sleep(20);
  }
  return performance.now() - started;
}

const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

type PgRebuild = { skipped?: string; events: number; ms: number; eventsPerSecond: number; server?: string; where?: string };

/** The rebuild into a fresh PostgreSQL database (created and dropped here). */
async function postgresRebuild(store: EventStore): Promise<PgRebuild> {
  const admin = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 });
  try {
    await admin.connect();
  } catch (err) {
    return { skipped: `PostgreSQL does not answer at ${POSTGRES_URL}: ${(err as Error).message}`, events: 0, ms: 0, eventsPerSecond: 0 };
  }
  const name = `bench_readmodels_${process.pid}`;
  try {
    const server = String((await admin.query<{ v: string }>('SHOW server_version')).rows[0]?.v);
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${name}"`);
    const url = new URL(POSTGRES_URL);
    url.pathname = `/${name}`;
    const target = await openPostgresTarget({ url: url.toString(), schema: 'rm_bench' });
    try {
      const r = await rebuildProjections({ store, target, logger });
      return { events: r.events, ms: r.ms, eventsPerSecond: r.eventsPerSecond, server, where: `${url.hostname}:${url.port || 5432}` };
    } finally {
      await target.close();
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => undefined);
    await admin.end();
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'ledger-projections-bench-'));
  try {
    const eventsPath = join(dir, 'events.db'); // src/config.ts: <DATA_DIR>/events.db
    const prefill = performance.now();
    const events = await historyFile(EVENTS, eventsPath);
    const last = lastPosition(eventsPath);
    console.log(`store: ${fmt(events)} events (last position ${last}), ready in ${((performance.now() - prefill) / 1000).toFixed(1)} s; Node ${process.version}`);

    // 1. Raw reads, then 2. the rebuild, in this process.
    const store = openSqliteStore({ path: eventsPath });
    let count = 0;
    const t0 = performance.now();
    for await (const _e of store.readAll()) count++;
    const rawPerSecond = (count / (performance.now() - t0)) * 1000;
    console.log(`raw readAll: ${fmt(rawPerSecond)} events/s`);
    // Caught up = idle (nothing writes meanwhile): the last event need not be one the projections read.
    const rebuild = await watched(() => rebuildProjections({ store, path: join(dir, 'rebuilt.db'), logger }));
    const pg = await postgresRebuild(store);
    await store.close();
    const rebuildPerSecond = rebuild.result.eventsPerSecond;
    const ratio = (rebuildPerSecond / rawPerSecond) * 100;
    console.log(
      `rebuild: ${fmt(rebuild.result.events)} events in ${(rebuild.result.ms / 1000).toFixed(1)} s = ${fmt(rebuildPerSecond)} events/s (${ratio.toFixed(1)} % of raw); ` +
        `RSS ${fmt(rebuild.rssBeforeMiB)} → ${fmt(rebuild.peakRssMiB)} MiB; longest event-loop stall ${fmt(rebuild.maxStallMs)} ms`,
    );

    if (pg.skipped) console.log(`rebuild into PostgreSQL: skipped (${pg.skipped})`);
    else console.log(`rebuild into PostgreSQL: ${fmt(pg.events)} events in ${(pg.ms / 1000).toFixed(1)} s = ${fmt(pg.eventsPerSecond)} events/s (${((pg.eventsPerSecond / rawPerSecond) * 100).toFixed(1)} % of raw)`);

    // 3. The service over the same store, read models empty: /healthz during the catch-up from zero.
    const env = { DATA_DIR: dir, READMODELS_PATH: join(dir, 'readmodels.db'), OPERATOR_TOKEN: TOKEN, LOG_LEVEL: 'info' };
    const first = await startService(env);
    const catchUp = await catchUpWhilePolling(first, last).finally(() => first.stop());
    const catchUpS = (first.readyMs + catchUp.liveAfterMs) / 1000;
    console.log(
      `catch-up from zero (service, child process): ${catchUp.timedOut ? `NOT live after ${CATCH_UP_TIMEOUT_MS / 1000} s (BENCH_CATCHUP_TIMEOUT_S)` : 'live at the last event'} ${catchUpS.toFixed(1)} s after spawn; ` +
        `/healthz every 20 ms: max ${fmt(catchUp.maxMs)} ms, p99 ${fmt(catchUp.p99Ms)} ms over ${catchUp.samples} requests`,
    );

    // 4. Restart with the read models caught up (as far as step 3 got them).
    const second = await startService(env);
    const scans = countLines(second, (msg) => msg.includes('scanning the subscription streams'));
    const liveAfterMs = await untilCaughtUp(second, catchUp.timedOut ? 0 : last).finally(async () => {
      await sleep(500); // resumeAll runs once the projections are live: give its log line time to arrive
      await second.stop();
    });
    console.log(
      `restart, read models caught up: listening ${fmt(second.listeningMs)} ms, ready ${fmt(second.readyMs)} ms, projections live ${fmt(second.readyMs + liveAfterMs)} ms after spawn; resumeAll store scans: ${scans.count}`,
    );

    const command = `BENCH_EVENTS=${EVENTS} npm run bench:projections`;
    const missed = (f: Figure, why: string): Figure => (meetsGoal(f) === false ? { ...f, note: why } : f);
    const figures: Figure[] = [
      missed(
        {
          name: `rebuild all read models, ${fmt(events)} events`,
          value: Math.round(rebuildPerSecond),
          unit: 'events/s',
          goal: { op: '>=', value: 100_000 },
          limit: { name: 'raw readAll, same store, same run', value: Math.round(rawPerSecond), unit: 'events/s' },
        },
        REBUILD_WHY,
      ),
      missed({ name: 'rebuild / raw readAll', value: Number(ratio.toFixed(1)), unit: '%', goal: { op: '>=', value: 25 } }, REBUILD_WHY),
      ...(pg.skipped
        ? []
        : [
            {
              name: `rebuild all read models into PostgreSQL, ${fmt(events)} events`,
              value: Math.round(pg.eventsPerSecond),
              unit: 'events/s',
              limit: { name: 'raw readAll, same store, same run', value: Math.round(rawPerSecond), unit: 'events/s' },
              note: `PostgreSQL ${pg.server} on ${pg.where}; same projections and batches as SQLite (${fmt(rebuildPerSecond)} events/s in this run); every statement a round trip`,
            },
          ]),
      missed(
        { name: 'rebuild in this benchmark process: peak RSS', value: Math.round(rebuild.peakRssMiB), unit: 'MiB', note: `RSS before the rebuild ${Math.round(rebuild.rssBeforeMiB)} MiB (after the raw read)` },
        `RSS before the rebuild ${Math.round(rebuild.rssBeforeMiB)} MiB: this process had just read every event and holds the benchmark's own state; the goal (< 300 MB) is judged on ` +
          "bench:replay's figure, a rebuild in a process of its own.",
      ),
      { name: 'rebuild: longest event-loop stall (CLI, 5,000-event batches up to 500 ms)', value: Math.round(rebuild.maxStallMs), unit: 'ms' },
      missed({ name: `restart with read models caught up, ${fmt(events)} events: ready`, value: Number((second.readyMs / 1000).toFixed(2)), unit: 's', goal: { op: '<', value: 2 } }, `listening after ${Math.round(second.listeningMs)} ms: most of the start is before the store opens (loading the modules: Node's module loader ~40 % of a start-up profile), the rest opening the 1M-event store and the read models. ` +
          'What would reach it: a start that loads less (Node 24\'s compile cache in the production image, Dockerfile), and the store and read models opened while the modules of the routes load.'),
      { name: 'restart with read models caught up: projections live', value: Number(((second.readyMs + liveAfterMs) / 1000).toFixed(2)), unit: 's' },
      { name: 'restart: resumeAll scans of the store', value: scans.count, unit: 'scans', goal: { op: '<=', value: 0 } },
      missed(
        { name: `catch-up from empty read models, ${fmt(events)} events: longest GET /healthz (every 20 ms)`, value: Math.round(catchUp.maxMs), unit: 'ms', goal: { op: '<', value: 100 } },
`p99 ${Math.round(catchUp.p99Ms)} ms over ${catchUp.samples} answers. The projection runner holds the event loop for one batch (its read and its transaction), ` +
          'sized to take 80 % of 25 ms; the longer answers are sporadic and not attributed yet (a major GC of the catch-up\'s garbage, or an fsync of the store on the same loop, are the suspects). ' +
          'What would reach it: the catch-up on a worker thread with its own connection, so the HTTP loop never waits for a batch, a GC or an fsync of it.',
      ),
      {
        name: 'catch-up from empty read models: spawn to live at the last event',
        value: Number(catchUpS.toFixed(1)),
        unit: 's',
        ...(catchUp.timedOut ? { note: `not live when the bench gave up (BENCH_CATCHUP_TIMEOUT_S); the restart below then measures a partly caught-up file` } : {}),
      },
    ];
    const path = writeResult({
      bench: 'projections',
      command,
      figures,
      details: { events, lastPosition: last, rebuild: rebuild.result, postgresRebuild: pg, catchUp, restart: { listeningMs: second.listeningMs, readyMs: second.readyMs, liveAfterMs } },
    });
    console.log(`\nwrote ${path}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const REBUILD_WHY =
  'Measured (CPU profile, 100k events): the rebuild costs ~14x the raw read, spread over the views\' own work: the operations view ' +
  '(decoding each notification, its webhook body parsed again, one in-memory upsert per event) ~25 %, the subscriptions fold ' +
  '(evolve, the state\'s JSON read and written once per subscription per batch, a 57-column row with 9 indexes) ~30 %, metrics ~13 %, ' +
  'the commits ~17 %, the store\'s read ~7 %. Rows are already read and written once per batch. Dropping the secondary indexes or fsyncs during a rebuild changed nothing measurable (tried). What would reach it: keep the ' +
  'folded states in memory across batches (no JSON round trip), parse each event\'s data lazily and only for the views that need it, ' +
  'and fold the views in parallel (a worker thread per view, each with its own transaction and checkpoint).';

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
