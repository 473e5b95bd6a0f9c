/**
 * `replay` with a service serving reads: the read models are rebuilt into a fresh file while the service keeps
 * answering from the old one (every read during the replay is complete), then the pointer switches atomically and
 * the service follows (it serves the new file, and applies new events to it). And `verify`: the read models against
 * a rebuild, every damaged row named, exit 1; and the event log's integrity chain, an event altered in the SQLite
 * file named, exit 1.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { createLogger } from '../../src/logger.js';
import { followGenerations, rebuildProjections } from '../../src/projections/index.js';
import { currentGeneration, generationPath, pointerPathOf } from '../../src/projections/generations.js';
import { openReadModelDb } from '../../src/projections/readmodel-db.js';
import { sqliteDbOf } from '../../src/projections/sqlite.target.js';
import { allProjections } from '../../src/projections/views/index.js';
import { syntheticHistory, writeHistory } from '../support/synthetic-history.js';
import { dump, storeWithHistory } from '../projections/helpers.js';
import { waitFor } from '../support/wait.js';
import { cli, jsonOf } from './helpers.js';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const TOKEN = 'test-operator-token-0123456789';

t.test('replay switches a serving service to a fresh file atomically; verify names every difference', async (t) => {
  const { store, dir } = await storeWithHistory(t, { subscriptions: 40, seed: 5 });
  const base = join(dir, 'readmodels.db');
  const service = followGenerations({ store, basePath: base, projections: allProjections, logger, checkIntervalMs: 20 });
  t.teardown(() => service.stop());
  await service.idle();
  const app = await buildApp({ logger, store: () => store, api: { operatorToken: TOKEN, readModels: { readModels: () => service } } });
  t.teardown(() => app.close());
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const read = async () => {
    const res = await fetch(`${url}/api/read/subscriptions?limit=500`, { headers: { authorization: `Bearer ${TOKEN}` } });
    return { status: res.status, total: ((await res.json()) as { total: number }).total };
  };
  t.same(await read(), { status: 200, total: 40 });

  // Readers keep reading while the replay runs; every answer must be complete.
  let reading = true;
  const answers: Array<{ status: number; total: number }> = [];
  const readers = (async () => {
    while (reading) answers.push(await read());
  })();
  const env = { DATA_DIR: dir };
  const replay = await cli(['replay', '--json'], env);
  t.equal(replay.code, 0, replay.err);
  const result = jsonOf(replay) as { generation: number; path: string; events: number };
  t.match(result, { generation: 1, path: generationPath(base, 1) });
  t.ok(existsSync(pointerPathOf(base)), 'the pointer file');
  t.equal(currentGeneration(base).path, generationPath(base, 1));
  await service.checkNow();
  await waitFor('the service to switch', () => service.current().generation === 1);
  reading = false;
  await readers;
  t.ok(answers.length > 0, `${answers.length} reads during the replay and the switch`);
  t.ok(answers.every((a) => a.status === 200 && a.total === 40), 'every read during the replay was complete');
  t.equal(sqliteDbOf(service.target).name, generationPath(base, 1), 'the service reads the new file');
  t.same(await read(), { status: 200, total: 40 });

  // New events after the switch go to the new file.
  await writeHistory(store, syntheticHistory({ subscriptions: 3, seed: 99 }));
  await service.idle();
  t.same(await read(), { status: 200, total: 43 }, 'the service applies new events to the new file');
  const fresh = openReadModelDb(':memory:');
  await rebuildProjections({ store, db: fresh, logger });
  t.same(await dump(service.target, allProjections), await dump(fresh, allProjections), 'the switched-to read models equal a clean rebuild');
  fresh.close();

  const second = await cli(['replay'], env);
  t.equal(second.code, 0, second.err);
  t.match(second.out, /switched from generation 1 .* to generation 2/);
  await service.checkNow();
  await waitFor('the second switch', () => service.current().generation === 2);
  t.notOk(existsSync(base), 'the generation before the one replaced is removed');
  t.ok(existsSync(generationPath(base, 1)), 'the one replaced stays until the next replay');

  const clean = await cli(['verify', '--json'], env);
  t.equal(clean.code, 0, clean.out + clean.err);
  t.match(jsonOf(clean), { ok: true, chains: { status: 'ok', report: { ok: true, problemCount: 0 } }, readModels: { ok: true, differences: [] } });

  const victim = (sqliteDbOf(service.target).prepare('SELECT subscription_id FROM subscriptions ORDER BY subscription_id LIMIT 2').all() as Array<{ subscription_id: string }>).map((r) => r.subscription_id);
  sqliteDbOf(service.target).prepare("UPDATE subscriptions SET status = 'Tampered' WHERE subscription_id = ?").run(victim[0]);
  sqliteDbOf(service.target).prepare('DELETE FROM subscriptions WHERE subscription_id = ?').run(victim[1]);
  const damaged = await cli(['verify', '--json'], env);
  t.equal(damaged.code, 1, 'differences: exit 1');
  const report = jsonOf(damaged) as { ok: boolean; readModels: { differences: Array<{ table: string; differing: Array<{ key: string; live: { status: string } }>; onlyRebuilt: Array<{ subscription_id: string }> }> } };
  t.equal(report.ok, false);
  const table = report.readModels.differences.find((d) => d.table === 'subscriptions');
  t.match(table?.differing, [{ key: JSON.stringify([victim[0]]), live: { status: 'Tampered' } }], 'the altered row, named');
  t.match(table?.onlyRebuilt, [{ subscription_id: victim[1] }], 'the deleted row, named');
  const text = await cli(['verify'], env);
  t.equal(text.code, 1);
  t.match(text.out, /read models: DIFFERENT from a rebuild/);
  t.match(text.out, new RegExp(`row \\["${victim[0]}"\\] differs`));
  t.match(text.out, /chains: ok \(\d+ streams, \d+ events/);

  // An event altered directly in the SQLite file: the chain names it.
  const events = new Database(join(dir, 'events.db'));
  const altered = events.prepare("SELECT event_id AS id, stream_id FROM events WHERE stream_id LIKE 'subscription-%' ORDER BY position LIMIT 1 OFFSET 7").get() as { id: string; stream_id: string };
  events.prepare("UPDATE events SET data = json_set(data, '$.tampered', 1) WHERE event_id = ?").run(altered.id);
  events.close();
  const tampered = await cli(['verify', '--json'], env);
  t.equal(tampered.code, 1, 'an altered event: exit 1');
  t.match(jsonOf(tampered), { ok: false, chains: { status: 'failed', report: { ok: false, problems: [{ kind: 'altered', streamId: altered.stream_id, eventId: altered.id }] } } }, 'the altered event, named');
  const tamperedText = await cli(['verify'], env);
  t.match(tamperedText.out, new RegExp(`altered: ${altered.stream_id} revision \\d+ \\(event ${altered.id}\\)`));
});
