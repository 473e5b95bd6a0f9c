/**
 * The PostgreSQL read-model target (`READMODELS_URL=postgres://…`): the same projections and read API as over
 * SQLite, shared by every instance of the service and by analysts' tools.
 *
 * Layout (docs/read-models.md, "PostgreSQL"):
 * - `readmodels_control.current`: one row, the schema that holds the live generation of the read models;
 * - `rm_<n>`: a generation — every projection's tables, views and `projection_state`;
 * - `public.<table>`: a view per read-model table and view, over the live generation, for analysts.
 * A rebuild (`rebuildIntoNewSchema`, postgres.generations.ts) fills `rm_<n+1>` while `rm_<n>` stays live,
 * then switches the pointer and the public views in one transaction.
 *
 * One writer per projection: `claim(names)` takes a session advisory lock per projection on a connection of
 * its own, held for as long as that connection lives. A process that dies (SIGKILL, a lost network) loses its
 * connection and PostgreSQL releases its locks: another instance's next claim takes the projection over. The
 * lock is for economy, not for correctness: every batch re-reads its checkpoints `FOR UPDATE` inside its
 * transaction, so even two writers could never apply an event twice.
 */
import pg from 'pg';
import type { PoolClient, QueryResult } from 'pg';
import type { Logger } from '../logger.js';
import { checkSchemaName } from './dialect.js';
import { exposeLive } from './postgres.generations.js';
import type { Projection } from './projection.js';
import { toPositional, valuesOf } from './readmodel-sql.js';
import type { ReadModelSql, SqlParams, SqlRow } from './readmodel-sql.js';
import { TargetMoved } from './target.js';
import type { ReadModelTarget } from './target.js';

export type PostgresTarget = ReadModelTarget & {
  readonly dialect: 'postgres';
  /** The schema it reads and writes now (it changes when a target that follows the live generation moves). */
  readonly schema: string;
  /** The connection string, for a second target on another schema (a rebuild). */
  readonly url: string;
  /** Give up the advisory locks `claim` took (another instance may take the projections over at once). */
  release(): Promise<void>;
};

const INT8 = 20;
const NUMERIC = 1700;

/** BIGINT and NUMERIC as JS numbers, like SQLite's INTEGER and REAL (positions and counts stay far below 2^53). */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8 || oid === NUMERIC) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format ?? 'text');
  }) as typeof pg.types.getTypeParser,
};


/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable)';
  }
}

type Queryable = pg.Pool | PoolClient;

let cursors = 0;

/** A query's rows through a cursor, in a read-only snapshot of its own (a pool) or in the transaction (a client). */
async function* cursorRows(of: () => Queryable, sql: string, params: SqlParams | undefined): AsyncGenerator<SqlRow> {
  const q = of();
  const own = q instanceof pg.Pool ? await q.connect() : undefined;
  const client = own ?? (q as PoolClient);
  const name = `rm_rows_${++cursors}`;
  let failed: Error | undefined;
  try {
    if (own) await own.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const p = toPositional(sql);
    await client.query({ text: `DECLARE ${name} NO SCROLL CURSOR FOR ${p.text}`, values: valuesOf(p, params) });
    for (;;) {
      const page = await client.query(`FETCH 500 FROM ${name}`);
      yield* page.rows as SqlRow[];
      if (page.rows.length < 500) break;
    }
    await client.query(`CLOSE ${name}`);
  } catch (err) {
    failed = err as Error;
    throw err;
  } finally {
    if (own) {
      await own.query(failed ? 'ROLLBACK' : 'COMMIT').catch((e: unknown) => (failed = e as Error));
      own.release(failed);
    }
  }
}

function sqlOver(of: () => Queryable): ReadModelSql {
  const run = async (sql: string, params?: SqlParams): Promise<QueryResult> => {
    const p = toPositional(sql);
    return of().query({ text: p.text, values: valuesOf(p, params) });
  };
  return {
    dialect: 'postgres',
    run: async (sql, params) => (await run(sql, params)).rowCount ?? 0,
    get: async (sql, params) => (await run(sql, params)).rows[0] as SqlRow | undefined,
    all: async (sql, params) => (await run(sql, params)).rows as SqlRow[],
    exec: async (sql) => {
      await of().query(sql);
    },
    iterate: (sql, params) => cursorRows(of, sql, params),
  };
}

export type PostgresTargetOptions = {
  url: string;
  /** The schema; created when missing. */
  schema: string;
  logger?: Logger;
  /** Connections for reads and batches; default 4. */
  poolSize?: number;
  /** Check in every transaction that `schema` is still the live generation (readmodels_control.current); else `TargetMoved`. */
  followLive?: boolean;
};

const livePointerSql = 'SELECT schema_name FROM readmodels_control.current WHERE id = 1 FOR SHARE';

function newPool(url: string, schema: string, size: number, log: Logger | undefined): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: size, options: `-c search_path=${schema}`, types });
  pool.on('error', (err) => log?.warn({ err }, 'read-model PostgreSQL connection lost (the pool reconnects)'));
  return pool;
}

async function createSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock(hashtext($1))', ['readmodels_control:ddl']);
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
  } finally {
    await client.end();
  }
}

function lockKeys(schema: string, name: string): { space: string; key: string } {
  return { space: `fulfillment-ledger:${schema}`, key: name };
}

/** A PostgreSQL target on one schema (created when missing). */
export async function openPostgresTarget(options: PostgresTargetOptions): Promise<PostgresTarget> {
  let schema = checkSchemaName(options.schema);
  const log = options.logger;
  const size = options.poolSize ?? 4;
  await createSchema(options.url, schema);
  let pool = newPool(options.url, schema, size, log);
  let open = true;
  let locks: pg.Client | undefined;
  const held = new Set<string>();

  const lockClient = async (): Promise<pg.Client> => {
    if (locks) return locks;
    const client = new pg.Client({ connectionString: options.url, types });
    client.on('error', (err) => {
      log?.warn({ err }, 'read-model lock connection lost: the projections it held may be taken over');
      held.clear();
      if (locks === client) locks = undefined;
    });
    await client.connect();
    locks = client;
    return client;
  };

  const transaction = async <T>(fn: (tx: ReadModelSql) => Promise<T>): Promise<T> => {
    const client: PoolClient = await pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      if (options.followLive) {
        const live = (await client.query<{ schema_name: string }>(livePointerSql)).rows[0]?.schema_name;
        if (live !== undefined && live !== schema) throw new TargetMoved(live);
      }
      const result = await fn(sqlOver(() => client));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch((e: unknown) => (broken = e as Error));
      throw err;
    } finally {
      client.release(broken);
    }
  };

  const claim = async (names: readonly string[]): Promise<Set<string>> => {
    if (!open) return new Set();
    try {
      const client = await lockClient();
      for (const name of [...held].filter((n) => !names.includes(n))) {
        const { space, key } = lockKeys(schema, name);
        await client.query({ text: 'SELECT pg_advisory_unlock(hashtext($1), hashtext($2))', values: [space, key] });
        held.delete(name);
      }
      for (const name of names) {
        if (held.has(name)) continue;
        const { space, key } = lockKeys(schema, name);
        const r = await client.query<{ ok: boolean }>({ text: 'SELECT pg_try_advisory_lock(hashtext($1), hashtext($2)) AS ok', values: [space, key] });
        if (r.rows[0]?.ok) held.add(name);
      }
    } catch (err) {
      log?.warn({ err }, 'could not claim read-model projections; retrying later');
      held.clear();
    }
    return new Set(names.filter((n) => held.has(n)));
  };

  const release = async (): Promise<void> => {
    held.clear();
    const client = locks;
    locks = undefined;
    await client?.end().catch(() => undefined);
  };

  const moveTo = async (to: string): Promise<void> => {
    const next = checkSchemaName(to);
    if (next === schema) return;
    await release(); // the locks are per schema
    const old = pool;
    pool = newPool(options.url, next, size, log);
    log?.info({ from: schema, to: next }, 'read models moved to the new live generation');
    schema = next;
    await old.end().catch(() => undefined);
  };

  return {
    dialect: 'postgres',
    get schema() {
      return schema;
    },
    url: options.url,
    get where() {
      return `${redactUrl(options.url)} schema ${schema}`;
    },
    read: sqlOver(() => pool),
    moveTo,
    ...(options.followLive ? { afterReset: (projections: readonly Projection[]) => exposeLive(options.url, projections) } : {}),
    transaction,
    claim,
    release,
    isOpen: () => open,
    close: async () => {
      if (!open) return;
      open = false;
      await release();
      await pool.end();
    },
  };
}
