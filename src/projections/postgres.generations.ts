/**
 * Generations of the read models on PostgreSQL: which schema is live, and the atomic switch to a new one.
 *
 * `readmodels_control.current` holds one row: the live schema (`rm_<n>`). The service opens that schema at
 * start; a rebuild builds `rm_<n+1>` beside it while the service keeps applying to `rm_<n>`, then
 * `switchGeneration` in ONE transaction moves the pointer and recreates, in the analysts' schema (`public`),
 * one view per read-model table and view over the new generation. Readers of `public.*` see the old tables or
 * the new, never a mix; running instances notice the pointer at their next batch and move over
 * (runner.ts, `GenerationSwitched`), continuing the new schema from its own checkpoints.
 */
import pg from 'pg';
import type { Projection } from './projection.js';
import { analystViews, planPricesSql } from './analysts.js';
import { checkSchemaName, ddlFor } from './dialect.js';

const CONTROL = 'readmodels_control';
export const FIRST_GENERATION = 'rm_1';

const controlDdl = `
CREATE SCHEMA IF NOT EXISTS ${CONTROL};
CREATE TABLE IF NOT EXISTS ${CONTROL}.current (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  schema_name TEXT NOT NULL,
  generation  INTEGER NOT NULL,
  switched_at TEXT NOT NULL
);
`;

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function ensureControl(c: pg.Client): Promise<void> {
  await c.query('SELECT pg_advisory_lock(hashtext($1))', [`${CONTROL}:ddl`]);
  try {
    await c.query(controlDdl);
  } finally {
    await c.query('SELECT pg_advisory_unlock(hashtext($1))', [`${CONTROL}:ddl`]);
  }
}

export type Generation = { schema: string; generation: number };

async function currentOf(c: pg.Client): Promise<Generation | undefined> {
  const r = await c.query<{ schema_name: string; generation: number }>(`SELECT schema_name, generation FROM ${CONTROL}.current WHERE id = 1`);
  const row = r.rows[0];
  return row ? { schema: row.schema_name, generation: Number(row.generation) } : undefined;
}

/** The live generation; the first (`rm_1`) is recorded when there is none yet. */
export async function liveGeneration(url: string): Promise<Generation> {
  return withClient(url, async (c) => {
    await ensureControl(c);
    await c.query(`INSERT INTO ${CONTROL}.current (id, schema_name, generation, switched_at) VALUES (1, $1, 1, $2) ON CONFLICT (id) DO NOTHING`, [
      FIRST_GENERATION,
      new Date().toISOString(),
    ]);
    const g = await currentOf(c);
    if (!g) throw new Error('readmodels_control.current has no row');
    return g;
  });
}

/** The live schema as the database says now (inside a batch: `SELECT … FOR SHARE`, so a switch waits for the batch). */
export const liveSchemaSql = `SELECT schema_name FROM ${CONTROL}.current WHERE id = 1 FOR SHARE`;

/** A schema for the next generation, unused so far (dropped first if a failed rebuild left it behind). */
export async function nextGeneration(url: string): Promise<Generation> {
  return withClient(url, async (c) => {
    await ensureControl(c);
    const live = (await currentOf(c)) ?? { schema: FIRST_GENERATION, generation: 0 };
    const generation = live.generation + 1;
    const schema = checkSchemaName(`rm_${generation}`);
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    return { schema, generation };
  });
}

/**
 * Make `next` the live generation, in one transaction: the pointer, and `public.<name>` views over every table
 * and view of `projections` in the new schema. Generations older than the one it replaces are dropped; the one
 * it replaces stays until the next switch (instances still on it move over at their next batch).
 */
export async function switchGeneration(url: string, next: Generation, projections: readonly Projection[], analystsSchema = 'public'): Promise<void> {
  const schema = checkSchemaName(next.schema);
  const exposed = checkSchemaName(analystsSchema);
  await withClient(url, async (c) => {
    await ensureControl(c);
    await c.query('BEGIN');
    try {
      const before = await c.query<{ schema_name: string; generation: number }>(`SELECT schema_name, generation FROM ${CONTROL}.current WHERE id = 1 FOR UPDATE`);
      const previous = before.rows[0];
      await c.query(
        `INSERT INTO ${CONTROL}.current (id, schema_name, generation, switched_at) VALUES (1, $1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET schema_name = excluded.schema_name, generation = excluded.generation, switched_at = excluded.switched_at`,
        [schema, next.generation, new Date().toISOString()],
      );
      await exposeIn(c, exposed, schema, projections);
      const old = await c.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE nspname ~ '^rm_[0-9]+$' AND nspname NOT IN ($1, $2)`, [
        schema,
        previous?.schema_name ?? schema,
      ]);
      for (const { nspname } of old.rows) await c.query(`DROP SCHEMA "${checkSchemaName(nspname)}" CASCADE`);
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK');
      throw err;
    }
  });
}

/** (Re)create `exposed.<name>` as `SELECT * FROM schema.<name>` for every table and view of the projections and `projection_state`. */
async function exposeIn(c: pg.Client, exposed: string, schema: string, projections: readonly Projection[]): Promise<void> {
  const names = ['projection_state', ...projections.flatMap((p) => [...p.tables, ...p.views])];
  for (const name of names) {
    await c.query(`DROP VIEW IF EXISTS "${exposed}"."${name}" CASCADE`);
    await c.query(`CREATE VIEW "${exposed}"."${name}" AS SELECT * FROM "${schema}"."${name}"`);
  }
  // The analysts' own views read those (dropped with them above): recreated over the new ones.
  await c.query(`SET LOCAL search_path TO "${exposed}"`);
  await c.query(ddlFor('postgres', planPricesSql));
  for (const v of analystViews) {
    await c.query(`DROP VIEW IF EXISTS ${v.name}`);
    await c.query(`CREATE VIEW ${v.name} AS ${v.sql}`);
  }
}

/** Every view of the analysts' schema is there and reads `schema` (then a start leaves them, and views built on them, alone). */
async function exposedOver(c: pg.Client, exposed: string, schema: string, projections: readonly Projection[]): Promise<boolean> {
  const names = ['projection_state', ...projections.flatMap((p) => [...p.tables, ...p.views]), ...analystViews.map((v) => v.name)];
  const r = await c.query<{ viewname: string; definition: string }>('SELECT viewname, definition FROM pg_views WHERE schemaname = $1', [exposed]);
  const views = new Map(r.rows.map((v) => [v.viewname, v.definition]));
  const own = new Set(analystViews.map((v) => v.name));
  return names.every((n) => views.has(n) && (own.has(n) || (views.get(n) ?? '').includes(`${schema}.${n}`)));
}

/**
 * Expose the live generation in the analysts' schema when a view is missing or reads another schema (at start,
 * after a projection was reset: dropping its tables dropped the views over them).
 */
export async function exposeLive(url: string, projections: readonly Projection[], analystsSchema = 'public'): Promise<void> {
  await withClient(url, async (c) => {
    await ensureControl(c);
    await c.query('BEGIN');
    try {
      const live = await c.query<{ schema_name: string }>(`SELECT schema_name FROM ${CONTROL}.current WHERE id = 1 FOR UPDATE`);
      const schema = live.rows[0]?.schema_name;
      const exposed = checkSchemaName(analystsSchema);
      if (schema && !(await exposedOver(c, exposed, checkSchemaName(schema), projections))) await exposeIn(c, exposed, schema, projections);
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK');
      throw err;
    }
  });
}
