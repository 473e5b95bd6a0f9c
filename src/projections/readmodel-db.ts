/**
 * The projections' bookkeeping in the read-model database, on either target: `projection_state` holds the
 * checkpoint (global position) and code version every projection's tables reflect; `resetProjection` and
 * `prepareProjections` make the tables match the code (a changed projection rebuilds only its own tables).
 */
import { ddlFor, relationExistsSql } from './dialect.js';
import type { Projection } from './projection.js';
import type { ReadModelSql } from './readmodel-sql.js';
import type { ReadModelTarget } from './target.js';

export { openReadModelDb, READ_MODEL_BUSY_TIMEOUT_MS } from './sqlite.target.js';

export const stateSchema = `
CREATE TABLE IF NOT EXISTS projection_state (
  name           TEXT PRIMARY KEY,
  version        INTEGER NOT NULL,
  position       INTEGER,          -- last global position applied; NULL = nothing yet
  events_applied INTEGER NOT NULL DEFAULT 0,
  rebuilt_at     TEXT NOT NULL,
  updated_at     TEXT NOT NULL
) WITHOUT ROWID;
`;

export type StoredState = { version: number; position: bigint | undefined; eventsApplied: number; rebuiltAt: string; updatedAt: string };

const stateSql = 'SELECT name, version, CAST(position AS TEXT) AS position, events_applied, rebuilt_at, updated_at FROM projection_state';

/** Every projection's stored state; `lock` (PostgreSQL, inside a transaction) locks the rows until it ends. */
export async function readStates(sql: ReadModelSql, lock = false): Promise<Map<string, StoredState>> {
  const rows = await sql.all(lock && sql.dialect === 'postgres' ? `${stateSql} FOR UPDATE` : stateSql);
  return new Map(
    rows.map((r) => [
      String(r.name),
      {
        version: Number(r.version),
        position: r.position === null || r.position === undefined ? undefined : BigInt(String(r.position)),
        eventsApplied: Number(r.events_applied),
        rebuiltAt: String(r.rebuilt_at),
        updatedAt: String(r.updated_at),
      },
    ]),
  );
}

export async function ensureStateTable(sql: ReadModelSql): Promise<void> {
  await sql.exec(ddlFor(sql.dialect, stateSchema));
}

export async function saveProgress(sql: ReadModelSql, name: string, position: bigint, applied: number, now: string): Promise<void> {
  await sql.run('UPDATE projection_state SET position = @position, events_applied = events_applied + @applied, updated_at = @now WHERE name = @name', {
    position,
    applied,
    now,
    name,
  });
}

async function relationExists(sql: ReadModelSql, name: string): Promise<boolean> {
  return (await sql.get(relationExistsSql(sql.dialect), { name })) !== undefined;
}

/** Inside a transaction: drop the projection's tables and views, recreate them empty, set its checkpoint back to the start. */
export async function resetProjectionIn(sql: ReadModelSql, projection: Projection, now: string): Promise<void> {
  const cascade = sql.dialect === 'postgres' ? ' CASCADE' : '';
  for (const view of projection.views) await sql.exec(`DROP VIEW IF EXISTS "${view}"${cascade}`);
  for (const table of projection.tables) await sql.exec(`DROP TABLE IF EXISTS "${table}"${cascade}`);
  await sql.exec(ddlFor(sql.dialect, projection.schemaSql));
  await sql.run(
    `INSERT INTO projection_state (name, version, position, events_applied, rebuilt_at, updated_at) VALUES (@name, @version, NULL, 0, @now, @now)
     ON CONFLICT (name) DO UPDATE SET version = excluded.version, position = NULL, events_applied = 0, rebuilt_at = excluded.rebuilt_at, updated_at = excluded.updated_at`,
    { name: projection.name, version: projection.version, now },
  );
}

/** Drop the projection's tables and views, recreate them empty, and set its checkpoint back to the start: one transaction. */
export async function resetProjection(target: ReadModelTarget, projection: Projection, now = new Date().toISOString()): Promise<void> {
  await ensureStateTable(target.read);
  await target.transaction((tx) => resetProjectionIn(tx, projection, now));
}

export type Preparation = { name: string; action: 'created' | 'kept' | 'rebuilt'; reason?: string };

/**
 * Make every projection's tables match its code: a projection met for the first time gets its tables;
 * one whose stored version differs from its code's, or whose tables were removed by hand, is reset
 * (to be rebuilt from the first event); the others keep their tables and checkpoint. One transaction per
 * projection, deciding on the state it reads under the write lock (two instances starting together agree).
 */
export async function prepareProjections(target: ReadModelTarget, projections: readonly Projection[]): Promise<Preparation[]> {
  await ensureStateTable(target.read);
  const out: Preparation[] = [];
  for (const p of projections) {
    out.push(
      await target.transaction(async (tx): Promise<Preparation> => {
        if (tx.dialect === 'postgres') await tx.get("SELECT pg_advisory_xact_lock(hashtext('readmodels:' || current_schema())) AS locked");
        const stored = (await readStates(tx, true)).get(p.name);
        const now = new Date().toISOString();
        if (!stored) {
          await resetProjectionIn(tx, p, now);
          return { name: p.name, action: 'created' };
        }
        if (stored.version !== p.version) {
          await resetProjectionIn(tx, p, now);
          return { name: p.name, action: 'rebuilt', reason: `stored version ${stored.version}, code version ${p.version}` };
        }
        const missing: string[] = [];
        for (const t of [...p.tables, ...p.views]) if (!(await relationExists(tx, t))) missing.push(t);
        if (missing.length > 0) {
          await resetProjectionIn(tx, p, now);
          return { name: p.name, action: 'rebuilt', reason: `missing ${missing.join(', ')}` };
        }
        if (tx.dialect === 'sqlite') await tx.exec(p.schemaSql); // new indexes of the same version are harmless; IF NOT EXISTS keeps the rest
        return { name: p.name, action: 'kept' };
      }),
    );
  }
  return out;
}
