/**
 * `npm run projections:rebuild -- [name ...] [--into FILE] [--list]`
 *
 * Rebuilds read models from scratch: drops the named projections' tables (all of them when none is
 * named), recreates them empty and replays every event into them, then prints what it did. The event
 * store is the one the service is configured with (same environment: EVENT_STORE, DATA_DIR,
 * EVENTSTORE_CONNECTION_STRING, READMODELS_PATH); the read models are READMODELS_PATH, by default
 * `<DATA_DIR>/readmodels.db`, unless `--into` names another file (a snapshot for analysts, or a check that a rebuild gives the same tables).
 *
 * Safe while the service runs: each batch re-reads the checkpoints under SQLite's write lock, so the
 * service notices the reset, follows it, and no event is applied twice. Readers see the tables fill
 * up again meanwhile (`GET /api/read/status` says `rebuilding`).
 *
 * Exit codes: 0 done, 1 failed, 64 bad usage, 78 bad configuration.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { ConfigError, loadConfig } from '../config.js';
import type { Config } from '../config.js';
import { openStore } from '../eventstore/open-store.js';
import { loggerOptions } from '../logger.js';
import { allProjections, openReadModelDb, rebuildPostgresGeneration, rebuildProjections } from '../projections/index.js';
import { sqliteSql } from '../projections/readmodel-sql.js';
import { readStates } from '../projections/readmodel-db.js';
import { currentGeneration } from '../projections/generations.js';

export type CliIo = { out: (line: string) => void; err: (line: string) => void };

const usage = `usage: npm run projections:rebuild -- [name ...] [--into FILE] [--list]
  name        a projection to rebuild (default: all): ${allProjections.map((p) => p.name).join(', ')}
  --into FILE rebuild into FILE instead of READMODELS_PATH (default <DATA_DIR>/readmodels.db)
  --list      show the projections in the file (version, position, rows applied) and rebuild nothing`;

export async function main(argv: readonly string[], environment: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (err) {
    io.err(`projections:rebuild: ${messageOf(err)}\n${usage}`);
    return 64;
  }
  if (args.values.help) {
    io.out(usage);
    return 0;
  }
  const known = new Set(allProjections.map((p) => p.name));
  const unknown = args.positionals.filter((n) => !known.has(n));
  if (unknown.length > 0) {
    io.err(`projections:rebuild: unknown projection ${unknown.join(', ')}\n${usage}`);
    return 64;
  }

  let config: Config;
  try {
    config = loadConfig({ LOG_LEVEL: 'warn', ...environment });
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`projections:rebuild: configuration error: ${err.message}`);
      return 78;
    }
    throw err;
  }
  // The file in use: after a `replay`, the generation its pointer names (src/projections/generations.ts).
  const path = args.values.into ? resolve(args.values.into) : currentGeneration(config.projections.path).path;

  if (args.values.list) {
    const db = openReadModelDb(path);
    try {
      const states = await readStates(sqliteSql(db));
      io.out(`read models: ${path}`);
      for (const p of allProjections) {
        const s = states.get(p.name);
        const note = !s ? 'not built yet' : s.version !== p.version ? `version ${s.version} in the file, ${p.version} in the code: the service will rebuild it` : 'up to date';
        io.out(`  ${p.name.padEnd(14)} v${p.version}  position ${s?.position?.toString() ?? '-'}  events applied ${s?.eventsApplied ?? 0}  rebuilt ${s?.rebuiltAt ?? '-'}  (${note})`);
      }
    } finally {
      db.close();
    }
    return 0;
  }

  const logger = pino(loggerOptions(config.log.level), pino.destination(2));
  const store = await openStore(config.store, logger);
  try {
    const names = args.positionals.length > 0 ? args.positionals : allProjections.map((p) => p.name);
    if (config.projections.url && !args.values.into) {
      if (args.positionals.length > 0) throw new Error('over PostgreSQL a rebuild builds every projection into a new schema: name none');
      io.out(`rebuilding every projection into a new PostgreSQL schema from the ${config.store.kind} event store …`);
      const r = await rebuildPostgresGeneration({ store, url: config.projections.url, logger });
      io.out(`rebuilt into ${r.schema} (was ${r.previous}), switched: ${r.events} events in ${(r.ms / 1000).toFixed(2)} s (${r.eventsPerSecond} events/s)`);
      return 0;
    }
    io.out(`rebuilding ${names.join(', ')} in ${path} from the ${config.store.kind} event store …`);
    const result = await rebuildProjections({ store, path, logger, names });
    io.out(`rebuilt ${result.projections.join(', ')}: ${result.events} events in ${(result.ms / 1000).toFixed(2)} s (${result.eventsPerSecond} events/s)`);
    const db = openReadModelDb(path);
    try {
      for (const p of allProjections.filter((q) => names.includes(q.name))) {
        const counts = p.tables.map((t) => `${t} ${String(db.prepare(`SELECT count(*) FROM "${t}"`).pluck().get())}`);
        io.out(`  ${p.name} v${p.version}: ${counts.join(', ')}`);
      }
    } finally {
      db.close();
    }
    return 0;
  } catch (err) {
    logger.error({ err }, 'rebuild failed');
    io.err(`projections:rebuild: failed: ${messageOf(err)}`);
    return 1;
  } finally {
    await store.close();
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { into: { type: 'string' }, list: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2), process.env, { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) }).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`projections:rebuild: ${err instanceof Error && err.stack ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
