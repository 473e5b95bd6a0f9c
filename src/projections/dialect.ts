/**
 * What differs between the two read-model databases, in one place. The projections write their DDL once, in
 * SQLite's words; `ddlFor('postgres', sql)` says it in PostgreSQL's:
 *
 * | SQLite | PostgreSQL |
 * |---|---|
 * | `INTEGER` (64-bit) | `BIGINT` (read back as a JS number: `pg-types` parser for int8, see postgres.target.ts) |
 * | `REAL` | `DOUBLE PRECISION` |
 * | `TEXT` (compared byte by byte) | `TEXT COLLATE "C"` (the same order: pages and exports list rows alike on both) |
 * | `TEXT COLLATE NOCASE` | `TEXT COLLATE "C"` (the read API compares those columns with `lower()`: `caseless`) |
 * | `WITHOUT ROWID` | (nothing: every table is a heap with its primary-key index) |
 * | `CREATE VIEW IF NOT EXISTS` | `CREATE OR REPLACE VIEW` |
 * | `INDEXED BY name` (a query's index hint) | (nothing: the planner picks the partial index itself) |
 *
 * Everything else the projections and queries use is common to both: `INSERT … ON CONFLICT (…) DO UPDATE SET
 * … WHERE …` with `excluded.` and table-qualified columns, partial indexes, `coalesce`, `CASE`, `CAST(… AS TEXT)`.
 */
export type Dialect = 'sqlite' | 'postgres';

export function ddlFor(dialect: Dialect, sql: string): string {
  if (dialect === 'sqlite') return sql;
  return sql
    .replace(/\bINTEGER\b/g, 'BIGINT')
    .replace(/\bREAL\b/g, 'DOUBLE PRECISION')
    .replace(/\s+COLLATE\s+NOCASE\b/gi, '')
    .replace(/\bTEXT\b(?=\s*(?:,|\n|NOT\b|PRIMARY\b|\)))/g, 'TEXT COLLATE "C"')
    .replace(/\)\s*WITHOUT\s+ROWID\s*;/gi, ');')
    .replace(/CREATE\s+VIEW\s+IF\s+NOT\s+EXISTS/gi, 'CREATE OR REPLACE VIEW');
}

/** A query in the target's words (SQLite's are the source). */
export function queryFor(dialect: Dialect, sql: string): string {
  return dialect === 'sqlite' ? sql : sql.replace(/\s+INDEXED\s+BY\s+[A-Za-z_][A-Za-z0-9_]*/g, '');
}

/** `column = @param` that ignores case on both targets (SQLite's NOCASE columns, plain TEXT on PostgreSQL). */
export function caseless(dialect: Dialect, column: string, param: string): string {
  return dialect === 'sqlite' ? `${column} = @${param}` : `lower(${column}) = lower(@${param})`;
}

/** The SQL that lists a table's columns in order, as rows `{ name }`, with the table as `@table`. */
export function columnsSql(dialect: Dialect): string {
  return dialect === 'sqlite'
    ? 'SELECT name FROM pragma_table_info(@table)'
    : 'SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = @table ORDER BY ordinal_position';
}

/** The SQL that tells whether a table or view exists, with its name as `@name`. */
export function relationExistsSql(dialect: Dialect): string {
  return dialect === 'sqlite'
    ? "SELECT 1 AS found FROM sqlite_master WHERE type IN ('table', 'view') AND name = @name"
    : "SELECT 1 AS found FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = @name";
}

/** A PostgreSQL schema name we create and quote: lower-case letters, digits and `_`. */
export function checkSchemaName(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`not a read-model schema name: ${schema}`);
  return schema;
}
