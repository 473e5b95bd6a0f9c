/**
 * `npm run reconcile -- [--list]`
 *
 * Runs one reconciliation now (docs/reconciliation.md) against the store and Microsoft the service is configured
 * with (same environment: EVENT_STORE, DATA_DIR, EVENTSTORE_CONNECTION_STRING, MARKETPLACE_*), waits for it and
 * prints its counts; or resumes the unfinished run. Safe while the service runs: one run at a time across every
 * instance and this command (the claim in the store). Without Microsoft credentials (a sandbox) it calls the
 * emulator of the running `npm start`, at EMULATOR_PORT on 127.0.0.1.
 *
 * Ctrl-C interrupts the run: it is recorded as interrupted and the next run resumes it from its last page.
 *
 * Exit codes: 0 finished, 1 failed or interrupted, 64 bad usage, 75 another run is under way, 78 bad configuration.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { SubscriptionLedger } from '../application/subscription-ledger.js';
import { ConfigError, loadConfig } from '../config.js';
import type { Config } from '../config.js';
import type { Run, RunCounts } from '../domain/reconciliation/index.js';
import { openStore } from '../eventstore/open-store.js';
import { loggerOptions } from '../logger.js';
import type { Logger } from '../logger.js';
import { createFulfillmentClient, DEFAULT_MARKETPLACE_API_URL } from '../marketplace/fulfillment-client.js';
import type { FulfillmentClient } from '../marketplace/fulfillment-client.js';
import { createTokenProvider } from '../marketplace/token-provider.js';
import { Reconciler } from '../processes/reconciliation.process.js';
import type { RunSummary } from '../processes/reconciliation.process.js';

export type CliIo = { out: (line: string) => void; err: (line: string) => void };

const usage = `usage: npm run reconcile -- [--list]
  (nothing)  reconcile every subscription with Microsoft now (or resume the unfinished run) and print the counts
  --list     show the last runs and change nothing`;

function parse(argv: readonly string[]) {
  return parseArgs({ args: [...argv], allowPositionals: false, options: { list: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Microsoft's API as configured; in a sandbox, the emulator of the running service. */
function client(config: Config, logger: Logger): FulfillmentClient {
  const { sandbox, apiUrl, ...credentials } = config.marketplace;
  const baseUrl = sandbox ? `http://127.0.0.1:${config.emulator.port}/api` : (apiUrl ?? DEFAULT_MARKETPLACE_API_URL);
  const tokenProvider = createTokenProvider({ ...credentials, ...(sandbox && !credentials.staticToken ? { staticToken: 'sandbox' } : {}) }, { logger });
  return createFulfillmentClient({ baseUrl, tokenProvider, logger: logger.child({ component: 'marketplace' }) });
}

/** `plan 3, term 1` : the kinds found. */
function kinds(counts: RunCounts): string {
  const found = Object.entries(counts.drifts).filter(([, n]) => n > 0);
  return found.length ? ` (${found.map(([k, n]) => `${k} ${n}`).join(', ')})` : '';
}

export function describeCounts(c: RunCounts): string {
  return (
    `${c.checked} checked, ${c.drifted} drifted${kinds(c)}, ${c.repaired} repaired, ${c.purchasesRecorded} purchases recorded, ` +
    `${c.inFlight} in flight, ${c.unrepairable} unrepairable, ${c.errors} errors, ${c.calls} calls to Microsoft`
  );
}

function describeRun(run: Run): string {
  return `${run.pages} pages, ${describeCounts(run.counts)}`;
}

function describeSummary(r: RunSummary): string {
  const progress = r.counts ? `${r.pages ?? 0} pages, ${describeCounts(r.counts)}` : 'no progress recorded';
  const took = r.durationMs !== undefined ? ` in ${(r.durationMs / 1000).toFixed(1)} s` : '';
  return `  ${r.runId}  ${r.startedAt}  ${r.trigger.padEnd(8)} ${r.status.padEnd(11)}${took}: ${progress}`;
}

async function reconcileOnce(reconciler: Reconciler, io: CliIo, signal: AbortSignal | undefined, where: string): Promise<number> {
  const result = await reconciler.trigger('cli');
  if (result.kind === 'busy') {
    io.err(`reconcile: run ${result.runId} is under way on ${result.instanceId} (claimed until ${result.until}); not starting another`);
    return 75;
  }
  io.out(`reconcile: run ${result.runId} ${result.kind} against ${where}`);
  const stop = (): void => void reconciler.close(messageOf(signal?.reason));
  signal?.addEventListener('abort', stop, { once: true });
  const outcome = await result.done;
  signal?.removeEventListener('abort', stop);
  if (outcome.status === 'finished' && outcome.run) {
    io.out(`reconcile: run ${outcome.runId} finished in ${((outcome.run.durationMs ?? 0) / 1000).toFixed(1)} s: ${describeRun(outcome.run)}`);
    return 0;
  }
  const progress = outcome.run ? ` after ${describeRun(outcome.run)}` : '';
  const why = outcome.status === 'lost' ? 'taken over by another instance' : `interrupted: ${outcome.error ?? 'unknown reason'}`;
  io.err(`reconcile: run ${outcome.runId} ${why}${progress}; the next run resumes it`);
  return 1;
}

export async function main(argv: readonly string[], environment: NodeJS.ProcessEnv, io: CliIo, signal?: AbortSignal): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (err) {
    io.err(`reconcile: ${messageOf(err)}\n${usage}`);
    return 64;
  }
  if (args.values.help) {
    io.out(usage);
    return 0;
  }
  let config: Config;
  try {
    config = loadConfig({ LOG_LEVEL: 'warn', ...environment });
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`reconcile: configuration error: ${err.message}`);
      return 78;
    }
    throw err;
  }
  const logger = pino(loggerOptions(config.log.level), pino.destination(2));
  const store = await openStore(config.store, logger);
  const marketplace = client(config, logger);
  const reconciler = new Reconciler({
    store,
    ledger: new SubscriptionLedger(store),
    marketplace,
    logger,
    maxCallsPerSecond: config.reconciliation.maxCallsPerSecond,
    takeoverAfterMs: config.reconciliation.takeoverAfterMs,
  });
  try {
    if (args.values.list) {
      const runs = await reconciler.list();
      io.out(runs.length ? `reconcile: the last ${runs.length} runs, newest first` : 'reconcile: no run recorded yet');
      for (const r of runs) io.out(describeSummary(r));
      return 0;
    }
    return await reconcileOnce(reconciler, io, signal, marketplace.baseUrl.href);
  } catch (err) {
    logger.error({ err }, 'reconcile failed');
    io.err(`reconcile: failed: ${messageOf(err)}`);
    return 1;
  } finally {
    await reconciler.close();
    await store.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const abort = new AbortController();
  for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => abort.abort(new Error(`${s} received`)));
  main(process.argv.slice(2), process.env, { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) }, abort.signal).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`reconcile: ${err instanceof Error && err.stack ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
