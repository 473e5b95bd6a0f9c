/**
 * `fulfillment-ledger <command>` (the package's bin; `npx fulfillment-ledger --help`): one entry point for every
 * command of the project. The store is the one the service is configured with (same environment: EVENT_STORE,
 * DATA_DIR, EVENTSTORE_CONNECTION_STRING, READMODELS_PATH), embedded SQLite or EventStoreDB.
 *
 *   history <subscription-id>            every event, its source, who, and what it changed
 *   state <subscription-id> --at <time>  the subscription as it stood then
 *   export [--subscription ID] [--from T] [--to T] [--format jsonl|csv] [--output FILE]
 *   replay                               rebuild every read model into a fresh file and switch to it atomically
 *   verify [--stream ID]                 integrity chains + read models against a rebuild
 *   migrate --to <esdb://…>              copy the embedded store into EventStoreDB, resumable, verified
 *   rebuild [name …] [--into F] [--list] the read-model rebuild (npm run projections:rebuild)
 *   reconcile [--list]                   one reconciliation with Microsoft now (npm run reconcile)
 *
 * Every command: --help; --json for scripts (one JSON document on stdout); a progress bar on stderr for long
 * work, only when stderr is a terminal. Exit codes: 0 ok, 1 failure or differences found, 64 bad usage,
 * 75 another reconciliation is under way (reconcile), 78 bad configuration.
 */
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { pino } from 'pino';
import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import { parseInstant } from '../application/audit-history.js';
import type { ExportFilter, ExportFormat } from '../application/event-export.js';
import { ConfigError, loadConfig } from '../config.js';
import type { Config } from '../config.js';
import type { EventStore } from '../eventstore/eventstore.js';
import { openStore } from '../eventstore/open-store.js';
import { loggerOptions } from '../logger.js';
import { exportCommand, historyCommand, migrateCommand, replayCommand, stateCommand, verifyCommand } from './audit-commands.js';
import type { CliIo, CommandContext } from './audit-commands.js';
import { main as rebuildMain } from './rebuild-projections.js';
import { main as reconcileMain } from './reconcile.js';

export type { CliIo } from './audit-commands.js';

export const EXIT = { ok: 0, failure: 1, usage: 64, config: 78 } as const;

class UsageError extends Error {
  override name = 'UsageError';
}

const Id = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9._:@-]+$' });
const idCheck = Compile(Id);

function subscriptionId(value: string, what = 'subscription id'): string {
  if (!idCheck.Check(value)) throw new UsageError(`${what} must be 1-200 letters, digits or . _ : @ - (got ${JSON.stringify(value)})`);
  return value;
}

function instant(value: string, option: string): number {
  const ms = parseInstant(value);
  if (ms === undefined) throw new UsageError(`${option} must be an ISO-8601 time with a zone, e.g. 2026-03-01T10:00:00Z (got ${JSON.stringify(value)})`);
  return ms;
}

type Env = NodeJS.ProcessEnv;
type Run = (work: (ctx: CommandContext) => Promise<number>, json: boolean) => Promise<void>;

function runner(env: Env, io: CliIo, signal: AbortSignal | undefined, setCode: (code: number) => void): Run {
  return async (work, json) => {
    let config: Config;
    try {
      config = loadConfig({ LOG_LEVEL: 'warn', ...env });
    } catch (err) {
      if (err instanceof ConfigError) {
        io.err(`fulfillment-ledger: configuration error: ${err.message}`);
        setCode(EXIT.config);
        return;
      }
      throw err;
    }
    const logger = pino(loggerOptions(config.log.level), pino.destination(2));
    const store = await openStore(config.store, logger);
    try {
      setCode(await work({ config, store, io, logger, json, ...(signal ? { signal } : {}) }));
    } finally {
      await store.close();
    }
  };
}

const json = new Option('--json', 'print one JSON document for scripts instead of text');

function auditCommands(program: Command, run: Run, env: Env): void {
  program
    .command('history')
    .description('every event of a subscription in order: time, type, source (landing page, webhook with its operation id, operator, reconciliation, process), who, and what it changed')
    .argument('<subscription-id>')
    .addOption(json)
    .action((id: string, o: { json?: boolean }) => run((ctx) => historyCommand(ctx, subscriptionId(id)), o.json === true));
  program
    .command('state')
    .description('the subscription exactly as it stood at a moment (the events recorded at or before it, folded)')
    .argument('<subscription-id>')
    .requiredOption('--at <time>', 'ISO-8601 time with a zone, e.g. 2026-03-01T10:00:00Z')
    .addOption(json)
    .action((id: string, o: { at: string; json?: boolean }) => {
      const at = instant(o.at, '--at');
      return run((ctx) => stateCommand(ctx, subscriptionId(id), at), o.json === true);
    });
  program
    .command('export')
    .description('the event log, streamed: all, one subscription (with the raw Microsoft notifications behind its changes) or a time range')
    .option('--subscription <id>', 'only this subscription and its notifications')
    .option('--from <time>', 'events recorded at or after this ISO-8601 time')
    .option('--to <time>', 'events recorded before this ISO-8601 time')
    .addOption(new Option('--format <format>', 'JSON Lines or CSV').choices(['jsonl', 'csv']).default('jsonl'))
    .option('--output <file>', 'write to this file instead of stdout')
    .action((o: { subscription?: string; from?: string; to?: string; format: ExportFormat; output?: string }) => {
      const filter: ExportFilter = {
        ...(o.subscription !== undefined ? { subscriptionId: subscriptionId(o.subscription, '--subscription') } : {}),
        ...(o.from !== undefined ? { fromMs: instant(o.from, '--from') } : {}),
        ...(o.to !== undefined ? { toMs: instant(o.to, '--to') } : {}),
      };
      if (filter.fromMs !== undefined && filter.toMs !== undefined && filter.fromMs >= filter.toMs) throw new UsageError('--from must be before --to');
      return run((ctx) => exportCommand(ctx, filter, o.format, o.output ? resolve(o.output) : undefined), false);
    });
  program
    .command('replay')
    .description('rebuild every read model from the first event into a fresh file and switch to it atomically (a running service serves the old file until then)')
    .addOption(json)
    .action((o: { json?: boolean }) => run((ctx) => replayCommand(ctx), o.json === true));
  program
    .command('verify')
    .description('check the integrity chains, and rebuild the read models in a scratch file and compare them with the live ones; exit 1 on any difference')
    .option('--stream <stream-id>', 'check the chain of this stream only')
    .addOption(json)
    .action((o: { stream?: string; json?: boolean }) => run((ctx) => verifyCommand(ctx, o.stream === undefined ? undefined : subscriptionId(o.stream, '--stream')), o.json === true));
  program
    .command('migrate')
    .description('copy every event of the embedded store into EventStoreDB (ids, order, revisions, metadata), resumable, verified at the end')
    .requiredOption('--to <connection-string>', 'the EventStoreDB, e.g. esdb://localhost:2113?tls=false')
    .option('--checkpoint <file>', 'where progress is kept (default <DATA_DIR>/migrate-checkpoint.json)')
    .addOption(json)
    .action((o: { to: string; checkpoint?: string; json?: boolean }) => {
      if (!/^(esdb|esdb\+discover|kurrentdb|kurrentdb\+discover|kdb|kdb\+discover):\/\//.test(o.to)) throw new UsageError('--to must be an EventStoreDB connection string (esdb://host:2113?tls=false)');
      return run(async (ctx) => {
        if (ctx.store.kind !== 'sqlite') throw new UsageError('migrate copies the embedded store: run it with EVENT_STORE=sqlite (the default)');
        const { openEsdbStore } = await import('../eventstore/esdb.store.js');
        const target = await openEsdbStore(o.to, { logger: ctx.logger });
        try {
          const checkpoint = o.checkpoint ? resolve(o.checkpoint) : join(dirname(ctx.config.projections.path), 'migrate-checkpoint.json');
          return await migrateCommand(ctx, target, o.to, checkpoint);
        } finally {
          await target.close();
        }
      }, o.json === true);
    });
  void env;
}

function program(env: Env, io: CliIo, signal: AbortSignal | undefined, setCode: (code: number) => void): Command {
  const p = new Command('fulfillment-ledger')
    .description('Fulfillment Ledger: the auditors\' and operators\' commands (docs/audit-cli.md)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, '')), writeErr: (s) => io.err(s.replace(/\n$/, '')) })
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', '\nExit codes: 0 ok, 1 failure or differences found, 64 bad usage, 75 reconciliation already under way, 78 bad configuration.');
  auditCommands(p, runner(env, io, signal, setCode), env);
  p.command('rebuild').description('rebuild read models in place or into another file (also npm run projections:rebuild); rebuild --help');
  p.command('reconcile').description('reconcile every subscription with Microsoft now (also npm run reconcile); reconcile --help');
  return p;
}

/** The CLI with its output given (tests call it in-process); resolves to the exit code. */
export async function main(argv: readonly string[], env: Env, io: CliIo, signal?: AbortSignal): Promise<number> {
  const [first, ...rest] = argv;
  if (first === 'rebuild' || first === 'projections:rebuild') return rebuildMain(rest, env, io);
  if (first === 'reconcile') return reconcileMain(rest, env, io, signal);
  let code: number = EXIT.ok;
  try {
    await program(env, io, signal, (c) => (code = c)).parseAsync([...argv], { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (err instanceof UsageError) {
      io.err(`fulfillment-ledger: ${err.message}`);
      return EXIT.usage;
    }
    io.err(`fulfillment-ledger: failed: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT.failure;
  }
}

/** The process: real stdout/stderr, Ctrl-C aborts the work (migrate keeps its checkpoint), exit with the code. */
export async function run(argv: readonly string[]): Promise<void> {
  const abort = new AbortController();
  for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => abort.abort(new Error(`${s} received`)));
  const io: CliIo = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`), stdout: process.stdout, tty: process.stderr.isTTY === true };
  const code = await main(argv, process.env, io, abort.signal);
  process.exitCode = code;
  // Let stdout drain (a pipe), then leave even if a library keeps a handle open.
  process.stdout.write('', () => process.exit(code));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) void run(process.argv.slice(2));
