/** `projections:rebuild`: rebuild all or some projections in the service's file, or into another file; --list; bad usage. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { allProjections } from '../../src/projections/views/index.js';
import { main } from '../../src/cli/rebuild-projections.js';
import { createLogger } from '../../src/logger.js';
import { startProjections } from '../../src/projections/index.js';
import { openReadModelDb } from '../../src/projections/readmodel-db.js';
import { dump, storeWithHistory, sqliteOf } from './helpers.js';

const logger = createLogger('silent');

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } };
}

t.test('rebuilds the service\'s read models, one projection, or into another file', async (t) => {
  const { store, dir } = await storeWithHistory(t, { subscriptions: 30, seed: 21 });
  const env = { DATA_DIR: dir, LOG_LEVEL: 'silent' };
  const live = startProjections({ store, path: join(dir, 'readmodels.db'), logger });
  await live.idle();
  const expected = await dump(sqliteOf(live), allProjections);
  sqliteOf(live).prepare("UPDATE subscriptions SET status = 'Broken'").run(); // damage that a rebuild must repair
  await live.stop();

  const all = io();
  t.equal(await main([], env, all.io), 0, all.err.join('\n'));
  t.match(all.out.join('\n'), /rebuilt subscriptions, operations, metrics, usage: \d+ events in [\d.]+ s \(\d+ events\/s\)/);
  t.match(all.out.join('\n'), /subscriptions v3: subscriptions 30, subscriptions_state 30/);
  const db = openReadModelDb(join(dir, 'readmodels.db'));
  t.same(await dump(db, allProjections), expected, 'the file is as a clean build');
  db.close();

  const one = io();
  t.equal(await main(['operations'], env, one.io), 0);
  t.match(one.out.join('\n'), /rebuilt operations:/);

  const into = join(dir, 'snapshot', 'analysts.db');
  const copy = io();
  t.equal(await main(['--into', into], env, copy.io), 0);
  t.ok(existsSync(into), 'a snapshot file for analysts');
  const snap = openReadModelDb(into);
  t.same(await dump(snap, allProjections), expected);
  snap.close();

  const elsewhere = join(dir, 'elsewhere', 'read.db');
  const configured = io();
  t.equal(await main(['metrics'], { ...env, READMODELS_PATH: elsewhere }, configured.io), 0);
  t.match(configured.out.join('\n'), new RegExp(`in ${elsewhere.replaceAll('/', '\\/')}`), 'READMODELS_PATH, as the service');
  t.ok(existsSync(elsewhere));

  const list = io();
  t.equal(await main(['--list'], env, list.io), 0);
  t.match(list.out.join('\n'), /subscriptions\s+v3\s+position \d+\s+events applied \d+.*up to date/);
});

t.test('bad usage and bad configuration', async (t) => {
  const unknown = io();
  t.equal(await main(['nope'], {}, unknown.io), 64);
  t.match(unknown.err.join('\n'), /unknown projection nope[\s\S]*usage:/);
  const flag = io();
  t.equal(await main(['--frobnicate'], {}, flag.io), 64);
  const config = io();
  t.equal(await main([], { EVENT_STORE: 'postgres' }, config.io), 78);
  t.match(config.err.join('\n'), /configuration error: EVENT_STORE/);
  const help = io();
  t.equal(await main(['--help'], {}, help.io), 0);
  t.match(help.out.join('\n'), /--into FILE/);
});
