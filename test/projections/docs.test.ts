/**
 * docs/read-models.md is what analysts read: every example SQL runs against a real read-model file and
 * returns rows, and every table, view and column of the file is documented. On PostgreSQL: the read-only role
 * of the docs is created, and every PostgreSQL example runs as that role against the `public` views.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import t from 'tap';
import { allProjections } from '../../src/projections/views/index.js';
import { createLogger } from '../../src/logger.js';
import { rebuildProjections } from '../../src/projections/index.js';
import { openReadModelDb } from '../../src/projections/readmodel-db.js';
import { writePlanPrices, analystViews } from '../../src/projections/analysts.js';
import { openReadModelTarget, startProjections } from '../../src/projections/index.js';
import { sqliteTarget } from '../../src/projections/sqlite.target.js';
import { freshDatabase, postgresSkip } from '../support/postgres.js';
import { storeWithHistory } from './helpers.js';

const skip = await postgresSkip(); // before any test is defined: tap ends the file once they are done
const doc = readFileSync(fileURLToPath(new URL('../../docs/read-models.md', import.meta.url)), 'utf8');
const { store, dir } = await storeWithHistory(t, { subscriptions: 150, seed: 31, start: new Date(Date.now() - 120 * 86_400_000).toISOString() });
const db = openReadModelDb(join(dir, 'readmodels.db'));
t.teardown(() => db.close());
await rebuildProjections({ store, db, logger: createLogger('silent') });
const prices = [
  { offerId: 'ledger-analytics', planId: 'team', monthlyPrice: 12.5, currency: 'USD' },
  { offerId: 'ledger-analytics', planId: 'enterprise', monthlyPrice: 40, currency: 'USD' },
];
await writePlanPrices(sqliteTarget(db), prices);

t.test('every example SQL runs and returns rows', async (t) => {
  const blocks = [...doc.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => (m[1] as string).trim());
  t.ok(blocks.length >= 10, `${blocks.length} examples`);
  for (const sql of blocks) {
    const rows = db.prepare(sql).all();
    t.ok(rows.length > 0, `${sql.split('\n')[0]} … → ${rows.length} rows`);
  }
});

t.test('every table, view and column is documented', async (t) => {
  const documented = new Set([...doc.matchAll(/`([a-z_]+)`/g)].map((m) => m[1] as string));
  const objects = ['projection_state', 'plan_prices', ...analystViews.map((v) => v.name), ...allProjections.flatMap((p) => [...p.tables, ...p.views])];
  for (const name of objects) {
    t.ok(documented.has(name), `${name} is documented`);
    const columns = db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(name) as string[];
    const missing = columns.filter((c) => !documented.has(c));
    if (name !== 'subscriptions_state') t.same(missing, [], `${name}: every column is documented`);
  }
});

t.test('PostgreSQL: the read-only role of the docs, and every PostgreSQL example run as that role', { skip }, async (t) => {
  const url = await freshDatabase(t, 'docs');
  const logger = createLogger('silent');
  const running = startProjections({ store, target: await openReadModelTarget({ path: '', url, planPrices: prices }, logger), ownsTarget: true, logger });
  t.teardown(() => running.stop());
  await running.idle();
  const role = `ledger_analyst_${process.pid}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  t.teardown(async () => {
    await admin.query(`DROP OWNED BY ${role}`).catch(() => undefined); // its privileges here; then the role (cluster-wide)
    await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    await admin.end();
  });
  const setup = doc.match(/```sql postgres-admin\n([\s\S]*?)```/)?.[1];
  t.ok(setup, 'the docs say how to create the role');
  await admin.query((setup ?? '').replaceAll('ledger_analyst', role));
  const analyst = new URL(url);
  analyst.username = role;
  analyst.password = 'change-me';
  const reader = new pg.Client({ connectionString: analyst.toString() });
  await reader.connect();
  t.teardown(() => reader.end());
  const blocks = [...doc.matchAll(/```sql postgres\n([\s\S]*?)```/g)].map((m) => (m[1] as string).trim());
  t.ok(blocks.length >= 6, `${blocks.length} PostgreSQL examples`);
  for (const sql of blocks) {
    const rows = (await reader.query(sql)).rows;
    t.ok(rows.length > 0, `${sql.split('\n')[0]} … → ${rows.length} rows`);
  }
  await t.rejects(reader.query("UPDATE subscriptions SET status = 'x'"), /permission denied|cannot update view/, 'the analyst cannot write');
});
