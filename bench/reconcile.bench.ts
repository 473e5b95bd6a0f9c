/**
 * Reconciliation benchmark: the reconciler against the built-in emulator (in this process, over 127.0.0.1)
 * holding BENCH_SUBSCRIPTIONS subscriptions, List subscriptions pages of BENCH_PAGE_SIZE, a temp SQLite store,
 * at the service's default call rate (BENCH_RATE calls/s). Not a timed test: it prints figures.
 *
 *   npm run bench:reconcile                      (with --expose-gc, as the npm script runs it: the heap retained after each run too)
 *   BENCH_SUBSCRIPTIONS=10000 BENCH_PAGE_SIZE=100 BENCH_RATE=10 BENCH_DRIFT=200 npm run bench:reconcile
 *
 * Three runs, each with its duration, the HTTP requests that reached Microsoft (the emulator), the run's own
 * call count, and the peak memory of the process (RSS and heap, sampled every 50 ms; the emulator's state lives
 * in the same process, so the baseline after setup is shown too):
 *   1. a ledger that has never heard of any of them: every subscription recorded (RecordPurchase);
 *   2. everything in line: nothing to do but read;
 *   3. BENCH_DRIFT subscriptions changed plan at Microsoft unheard: an operations check and a repair each.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SubscriptionLedger } from '../src/application/subscription-ledger.js';
import { startEmulator } from '../src/emulator/emulator.js';
import { openSqliteStore } from '../src/eventstore/sqlite.store.js';
import { createLogger } from '../src/logger.js';
import { FulfillmentClient } from '../src/marketplace/fulfillment-client.js';
import { StaticTokenProvider } from '../src/marketplace/token-provider.js';
import { Reconciler } from '../src/processes/reconciliation.process.js';
import type { RunOutcome } from '../src/processes/reconciliation.process.js';
import { writeResult } from './support/results.js';
import type { Figure } from './support/results.js';

const SUBSCRIPTIONS = Number(process.env.BENCH_SUBSCRIPTIONS ?? 10_000);
const PAGE_SIZE = Number(process.env.BENCH_PAGE_SIZE ?? 100);
const RATE = Number(process.env.BENCH_RATE ?? 10);
const DRIFT = Number(process.env.BENCH_DRIFT ?? 200);
const logger = createLogger('error');
const dir = mkdtempSync(join(tmpdir(), 'ledger-reconcile-bench-'));
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

function sampleMemory(): { stop(): { rss: number; heapUsed: number } } {
  let rss = 0;
  let heapUsed = 0;
  const sample = () => {
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    heapUsed = Math.max(heapUsed, m.heapUsed);
  };
  sample();
  const timer = setInterval(sample, 50);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { rss, heapUsed };
    },
  };
}

async function main() {
  const emulator = await startEmulator({ pageSize: PAGE_SIZE });
  const now = new Date();
  const ids: string[] = [];
  for (let i = 0; i < SUBSCRIPTIONS; i++) {
    const id = emulator.state.purchase({ planId: 'standard', quantity: 5 }, now).subscription.id;
    emulator.state.activate(id, {}, now);
    ids.push(id);
  }
  let requests = 0;
  const client = new FulfillmentClient({
    baseUrl: emulator.apiBaseUrl,
    tokenProvider: new StaticTokenProvider('bench'),
    logger,
    fetch: (input, init) => {
      requests++;
      return fetch(input, init);
    },
  });
  const store = openSqliteStore({ path: join(dir, 'events.db') });
  const ledger = new SubscriptionLedger(store);
  const reconciler = new Reconciler({ store, ledger, marketplace: client, logger, maxCallsPerSecond: RATE });
  global.gc?.();
  const base = process.memoryUsage();
  console.log(
    `${fmt(SUBSCRIPTIONS)} subscriptions in the emulator, pages of ${PAGE_SIZE}, at most ${RATE} calls/s; Node ${process.version}; ` +
      `memory after setup: RSS ${mb(base.rss)}, heap ${mb(base.heapUsed)}\n`,
  );
  console.log('run                           duration   HTTP requests   run calls   peak RSS    peak heap   counts');

  const figures: Figure[] = [];
  const runOnce = async (label: string): Promise<RunOutcome> => {
    const before = requests;
    const memory = sampleMemory();
    const started = performance.now();
    const result = await reconciler.trigger('cli');
    if (result.kind === 'busy') throw new Error('busy');
    const outcome = await result.done;
    const ms = performance.now() - started;
    const peak = memory.stop();
    global.gc?.();
    const retained = process.memoryUsage().heapUsed;
    const c = outcome.run?.counts;
    if (outcome.status !== 'finished' || !c) throw new Error(`run ${outcome.status}: ${outcome.error}`);
    console.log(
      `${label.padEnd(29)} ${`${(ms / 1000).toFixed(1)} s`.padStart(8)}   ${fmt(requests - before).padStart(13)}   ${fmt(c.calls).padStart(9)}   ` +
        `${mb(peak.rss).padStart(9)}   ${mb(peak.heapUsed).padStart(9)}   checked ${fmt(c.checked)}, drifted ${fmt(c.drifted)}, ` +
        `repaired ${fmt(c.repaired)}, purchases ${fmt(c.purchasesRecorded)}, in flight ${c.inFlight}, errors ${c.errors}` +
        (global.gc ? `; heap after GC ${mb(retained)}` : ''),
    );
    const what = `reconciliation run "${label}", ${fmt(SUBSCRIPTIONS)} subscriptions, pages of ${PAGE_SIZE}, at most ${RATE} calls/s`;
    figures.push(
      { name: `${what}: duration`, value: Math.round(ms) / 1000, unit: 's', limit: { name: 'its calls to Microsoft at the call rate', value: c.calls / RATE, unit: 's' }, note: `${fmt(requests - before)} HTTP requests; checked ${fmt(c.checked)}, drifted ${fmt(c.drifted)}, repaired ${fmt(c.repaired)}, purchases ${fmt(c.purchasesRecorded)}, errors ${c.errors}` },
      { name: `${what}: peak RSS`, value: Math.round(peak.rss / 1024 / 1024), unit: 'MiB', note: `the emulator's state lives in the same process: RSS after setup ${mb(base.rss)}` },
    );
    return outcome;
  };

  await runOnce('1. none recorded yet');
  await runOnce('2. all in line');
  for (const id of ids.slice(0, DRIFT)) emulator.state.accept(emulator.state.customerChange(id, { planId: 'premium' }, new Date()).id, new Date());
  await runOnce(`3. ${fmt(DRIFT)} plans changed unheard`);
  console.log(`wrote ${writeResult({ bench: 'reconcile', command: 'npm run bench:reconcile', figures, details: { subscriptions: SUBSCRIPTIONS, pageSize: PAGE_SIZE, rate: RATE, drift: DRIFT } })}`);

  await reconciler.close();
  await store.close();
  await emulator.close();
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => rmSync(dir, { recursive: true, force: true }));
