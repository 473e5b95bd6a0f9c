/**
 * Projection benchmark: how fast the read models are rebuilt from scratch, next to how fast the same
 * store delivers the same events when nothing is done with them, in the same run.
 *
 *   npm run bench:projections
 *   BENCH_EVENTS=200000 BENCH_ROUNDS=5 BENCH_BATCH=500 npm run bench:projections
 *
 * 1. Writes a realistic history (synthetic-history.ts: subscriptions through the real decider, with
 *    their webhook notification streams, interleaved in time) of at least BENCH_EVENTS events into a
 *    temp SQLite event store, one append per stream step, as the service writes them.
 * 2. Each round measures: the store's readAll over every event; a catch-up subscribeToAll over the
 *    projections' streams (what the runner consumes) doing nothing; a rebuild of all projections into a
 *    fresh read-model file; and each projection rebuilt alone. The table shows the median per round.
 * 3. Around the full rebuild, and around a catch-up as the service runs it at start (runProjections, batch 500):
 *    the peak RSS (sampled every 10 ms, and the process's maxRSS) and the longest event-loop stall
 *    (monitorEventLoopDelay), i.e. the longest an HTTP request would have waited for the event loop.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { allProjections } from '../src/projections/views/index.js';
import type { RecordedEvent } from '../src/eventstore/eventstore.js';
import { openSqliteStore } from '../src/eventstore/sqlite.store.js';
import { createLogger } from '../src/logger.js';
import { rebuildProjections } from '../src/projections/index.js';
import { runProjections } from '../src/projections/runner.js';
import { countEvents, syntheticHistory } from '../test/support/synthetic-history.js';
import type { Append } from '../test/support/synthetic-history.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 100_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BATCH = Number(process.env.BENCH_BATCH ?? 2000);
const logger = createLogger('warn');
const dir = mkdtempSync(join(tmpdir(), 'ledger-projections-bench-'));
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;

/** Runs `work` while sampling RSS every 10 ms and the event loop's delay: peak RSS and the longest stall. */
type Watch = { rssBefore: number; peakRss: number; heapBefore: number; peakHeap: number; maxStallMs: number };
async function watched<T>(work: () => Promise<T>): Promise<Watch & { result: T }> {
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const rssBefore = process.memoryUsage.rss();
  const heapBefore = process.memoryUsage().heapUsed;
  let peakRss = rssBefore;
  let peakHeap = heapBefore;
  const sample = () => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  };
  const sampler = setInterval(sample, 10);
  loop.enable();
  try {
    const result = await work();
    sample();
    return { result, rssBefore, peakRss, heapBefore, peakHeap, maxStallMs: loop.max / 1e6 };
  } finally {
    loop.disable();
    clearInterval(sampler);
  }
}

async function main() {
  // 1. A history of at least EVENTS events.
  const appends: Append[] = [];
  let subscriptions = 0;
  for (let part = 0; countEvents(appends) < EVENTS; part++) {
    const n = Math.ceil((EVENTS - countEvents(appends)) / 17) + 50;
    const start = new Date(Date.parse('2025-01-01T00:00:00.000Z') + part * 90 * 86_400_000).toISOString();
    appends.push(...syntheticHistory({ subscriptions: n, seed: 1000 + part, start }));
    subscriptions += n;
  }
  const total = countEvents(appends);
  const store = openSqliteStore({ path: join(dir, 'events.db') });
  const written = performance.now();
  let last = 0n;
  const lastByPrefix = new Map<string, bigint>();
  for (let i = 0; i < appends.length; i++) {
    const a = appends[i] as Append;
    last = (await store.appendToStream(a.streamId, a.events)).position;
    lastByPrefix.set(`${a.streamId.split('-')[0]}-`, last);
    if (i % 20_000 === 0 && i > 0) process.stderr.write(`  written ${fmt(i)} / ${fmt(appends.length)} appends\n`);
  }
  const writeMs = performance.now() - written;
  const appendCount = appends.length;
  appends.length = 0; // the history in memory is not part of what is measured below
  console.log(`event store: ${fmt(total)} events (${fmt(subscriptions)} subscriptions, ${fmt(appendCount)} appends) written in ${(writeMs / 1000).toFixed(1)} s; last position ${last}`);
  console.log(`Node ${process.version}, batch ${BATCH} events per read-model transaction, ${ROUNDS} rounds (median shown)\n`);

  const prefixes = [...new Set(allProjections.flatMap((p) => p.streamPrefixes))];
  const results = new Map<string, number[]>();
  const record = (name: string, events: number, ms: number) => {
    const list = results.get(name) ?? [];
    list.push((events / ms) * 1000);
    results.set(name, list);
  };
  let fileSize = 0;
  const watch = new Map<string, Watch[]>();
  const noteWatch = (name: string, w: Watch) => watch.set(name, [...(watch.get(name) ?? []), w]);

  for (let round = 0; round < ROUNDS; round++) {
    // Raw reads: the whole log, then what the runner consumes (a catch-up subscription), doing nothing.
    let count = 0;
    let t0 = performance.now();
    for await (const _e of store.readAll()) count++;
    record('store readAll, every event (raw)', count, performance.now() - t0);

    count = 0;
    t0 = performance.now();
    const sub = store.subscribeToAll({ streamPrefixes: prefixes });
    for await (const e of sub as AsyncIterable<RecordedEvent>) {
      count++;
      if (e.position >= last) break;
    }
    await sub.close();
    record('store subscribeToAll catch-up, nothing done (raw)', count, performance.now() - t0);

    const path = join(dir, `readmodels-${round}.db`);
    const watchedAll = await watched(() => rebuildProjections({ store, path, logger, until: last, batchSize: BATCH }));
    const all = watchedAll.result;
    record('rebuild: all projections', all.events, all.ms);
    noteWatch(`rebuild: all projections (batch ${BATCH})`, watchedAll);

    // A catch-up as at the service's start: the service's runner (batch 500) from an empty read-model file.
    t0 = performance.now();
    const catchUp = await watched(async () => {
      const runner = runProjections({ store, path: join(dir, `catchup-${round}.db`), logger, projections: allProjections });
      await runner.waitForPosition(last);
      const events = runner.eventsSeen();
      await runner.stop();
      return events;
    });
    record('catch-up at start: all projections (service runner, batch 500)', catchUp.result, performance.now() - t0);
    noteWatch('catch-up at start (service runner, batch 500)', catchUp);
    fileSize = statSync(path).size;
    for (const p of allProjections) {
      // Alone, a projection subscribes to its own streams only: it is done at the last event of those.
      const until = p.streamPrefixes.reduce((max, prefix) => { const at = lastByPrefix.get(prefix) ?? 0n; return at > max ? at : max; }, 0n);
      const one = await rebuildProjections({ store, path: join(dir, `readmodels-${round}-${p.name}.db`), logger, names: [p.name], projections: [p], until, batchSize: BATCH });
      record(`rebuild: ${p.name} alone`, one.events, one.ms);
    }
  }

  const raw = median(results.get('store readAll, every event (raw)') ?? [0]);
  const width = Math.max(...[...results.keys()].map((k) => k.length));
  console.log(`${'measure'.padEnd(width)}  events/s   vs raw readAll`);
  for (const [name, rates] of results) {
    const m = median(rates);
    console.log(`${name.padEnd(width)}  ${fmt(m).padStart(9)}   ${((m / raw) * 100).toFixed(1).padStart(5)} %`);
  }
  console.log(`\n${'while (max over rounds)'.padEnd(width)}  RSS before → peak   heap used before → peak   longest event-loop stall`);
  for (const [name, list] of watch) {
    const max = (f: (w: Watch) => number) => Math.max(...list.map(f));
    const rss = `${mib(max((w) => w.rssBefore))} → ${mib(max((w) => w.peakRss))}`;
    const heap = `${mib(max((w) => w.heapBefore))} → ${mib(max((w) => w.peakHeap))}`;
    console.log(`${name.padEnd(width)}  ${rss.padStart(17)}   ${heap.padStart(23)}   ${max((w) => w.maxStallMs).toFixed(0).padStart(5)} ms`);
  }
  console.log(`process maxRSS (whole run, history generation included): ${mib(process.resourceUsage().maxRSS * 1024)}`);
  console.log(`\nread-model file after a full rebuild: ${(fileSize / 1024 / 1024).toFixed(1)} MiB (WAL checkpointed on close)`);
  await store.close();
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => rmSync(dir, { recursive: true, force: true }));
