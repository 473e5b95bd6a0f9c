/**
 * The seam between the projections (and the read API) and the database that holds the read models: three
 * calls, `run`, `get` and `all`, over one SQL text written once in the subset SQLite and PostgreSQL share
 * (`INSERT … ON CONFLICT … DO UPDATE`, `coalesce`, `CASE`, `CAST(x AS TEXT)`, named parameters `@name`).
 *
 * Why this seam and not a query builder or a second copy of every query (docs/read-models.md, "Two targets"):
 * the projections' SQL is small and already almost portable; what differs is a handful of things that this
 * file and `dialect.ts` hold in one place — placeholders (`@name` → `$1`), the DDL types (INTEGER → BIGINT,
 * REAL → DOUBLE PRECISION, NOCASE columns), and how a table's columns are listed.
 *
 * The calls are asynchronous because PostgreSQL's are. Over SQLite they run synchronously and return settled
 * promises: between two statements of a transaction only microtasks run, never an HTTP request or a timer, so
 * a SQLite transaction still holds the event loop from BEGIN to COMMIT as better-sqlite3's own did.
 */
import Sqlite from 'better-sqlite3';
import type { Database, Statement } from 'better-sqlite3';
import { queryFor } from './dialect.js';
import type { Dialect } from './dialect.js';

export type SqlParams = Readonly<Record<string, unknown>>;
export type SqlRow = Record<string, unknown>;

/** A connection or a transaction on the read models. */
export type ReadModelSql = {
  readonly dialect: Dialect;
  /** A statement without rows; resolves to the number of rows it changed. */
  run(sql: string, params?: SqlParams): Promise<number>;
  get(sql: string, params?: SqlParams): Promise<SqlRow | undefined>;
  all(sql: string, params?: SqlParams): Promise<SqlRow[]>;
  /** Several statements without parameters (DDL). */
  exec(sql: string): Promise<void>;
  /**
   * The rows of a query one at a time, from one consistent snapshot, without holding them all in memory or the
   * projections' connection busy (CSV exports): SQLite reads from a read-only connection of its own (an
   * in-memory database, which has none, is read at once), PostgreSQL through a cursor in a read-only transaction.
   */
  iterate(sql: string, params?: SqlParams): AsyncIterable<SqlRow>;
};

/** Prepared statements of one SQLite database, made once per SQL text. */
const statements = new WeakMap<Database, Map<string, Statement>>();

export function sqliteStatement(db: Database, sql: string): Statement {
  let cache = statements.get(db);
  if (!cache) statements.set(db, (cache = new Map()));
  let stmt = cache.get(sql);
  if (!stmt) cache.set(sql, (stmt = db.prepare(sql)));
  return stmt;
}

const bound = (params: SqlParams | undefined): SqlParams[] => (params === undefined ? [] : [params]);

/** A SQLite database behind the seam (its statements run at once; see above). */
export function sqliteSql(db: Database): ReadModelSql {
  return {
    dialect: 'sqlite',
    run: (sql, params) => {
      const stmt = sqliteStatement(db, sql);
      return Promise.resolve(stmt.run(...bound(params)).changes);
    },
    get: (sql, params) => {
      const stmt = sqliteStatement(db, sql);
      return Promise.resolve(stmt.get(...bound(params)) as SqlRow | undefined);
    },
    all: (sql, params) => {
      const stmt = sqliteStatement(db, sql);
      return Promise.resolve(stmt.all(...bound(params)) as SqlRow[]);
    },
    exec: (sql) => {
      db.exec(sql);
      return Promise.resolve();
    },
    iterate: (sql, params) => sqliteRows(db, sql, params),
  };
}

async function* sqliteRows(db: Database, sql: string, params: SqlParams | undefined): AsyncGenerator<SqlRow> {
  if (db.memory) {
    const rows = sqliteStatement(db, sql).all(...bound(params)) as SqlRow[];
    yield* rows;
    return;
  }
  const own = new Sqlite(db.name, { readonly: true, fileMustExist: true });
  try {
    let n = 0;
    for (const row of own.prepare(sql).iterate(...bound(params)) as IterableIterator<SqlRow>) {
      yield row;
      if (++n % 500 === 0) await new Promise<void>((resolve) => setImmediate(resolve)); // a long export must not starve the service
    }
  } finally {
    own.close();
  }
}

/** `@name` placeholders → `$1, $2, …` with the names in order (outside string literals and quoted names); cached. */
export type Positional = { text: string; names: string[] };
const positional = new Map<string, Positional>();

export function toPositional(source: string): Positional {
  const known = positional.get(source);
  if (known) return known;
  const sql = queryFor('postgres', source);
  const names: string[] = [];
  const index = new Map<string, number>();
  let text = '';
  let i = 0;
  while (i < sql.length) {
    const c = sql[i] as string;
    if (c === "'" || c === '"') {
      const end = sql.indexOf(c, i + 1);
      const stop = end === -1 ? sql.length : end + 1;
      text += sql.slice(i, stop);
      i = stop;
      continue;
    }
    const m = c === '@' ? /^@([A-Za-z_][A-Za-z0-9_]*)/.exec(sql.slice(i, i + 64)) : null;
    if (m) {
      const name = m[1] as string;
      let n = index.get(name);
      if (n === undefined) {
        names.push(name);
        index.set(name, (n = names.length));
      }
      text += `$${n}`;
      i += m[0].length;
      continue;
    }
    text += c;
    i++;
  }
  const result = { text, names };
  positional.set(source, result);
  return result;
}

/** The values of a positional statement, in order; a missing name is an error here, not a NULL. */
export function valuesOf(p: Positional, params: SqlParams | undefined): unknown[] {
  return p.names.map((name) => {
    if (!params || !(name in params)) throw new Error(`SQL parameter @${name} has no value`);
    const v = params[name];
    return v === undefined ? null : typeof v === 'boolean' ? (v ? 1 : 0) : v;
  });
}
