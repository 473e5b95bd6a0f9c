/**
 * The projection runner over a real SQLite event store and read-model file: live equals rebuilt,
 * exactly-once across a failure in the middle of a batch and a restart, replays and at-least-once
 * deliveries, version bumps, rebuilds on demand and by another process, and EventStoreDB (stand-in).
 */
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { allProjections } from '../../src/projections/views/index.js';
import { subscriptionsProjection } from '../../src/projections/views/subscriptions.projection.js';
import { openEsdbStore } from '../../src/eventstore/esdb.store.js';
import type { EventStore, RecordedEvent } from '../../src/eventstore/eventstore.js';
import { createLogger } from '../../src/logger.js';
import { rebuildProjections, startProjections } from '../../src/projections/index.js';
import type { Projection } from '../../src/projections/projection.js';
import { openReadModelDb, readStates, resetProjection } from '../../src/projections/readmodel-db.js';
import { sqliteTarget } from '../../src/projections/sqlite.target.js';
import { startEsdbStandIn } from '../support/esdb-standin.js';
import { syntheticHistory, writeHistory } from '../support/synthetic-history.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';
import type { Dump } from './helpers.js';
import { dump, rowCount, storeUntil, storeWithHistory, stutteringStore, sqliteOf } from './helpers.js';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const SUBSCRIPTIONS = 120;

async function reference(t: Test, store: EventStore, name = 'reference.db') {
  const db = openReadModelDb(join(tempDir(t, 'reference'), name));
  t.teardown(() => db.close());
  await rebuildProjections({ store, db, logger });
  return await dump(db, allProjections);
}

t.test('live while events arrive = rebuilt from the same events; every table is filled', async (t) => {
  const { store, dir } = await storeWithHistory(t, { subscriptions: 60, seed: 1 });
  const live = startProjections({ store, path: join(dir, 'readmodels.db'), logger, batchSize: 37 });
  t.teardown(() => live.stop());
  await writeHistory(store, syntheticHistory({ subscriptions: 60, seed: 2, start: '2026-02-01T00:00:00.000Z' })); // while it runs
  await live.idle();
  t.same(live.status().map((s) => s.state), allProjections.map(() => 'live'));
  const liveDump = await dump(sqliteOf(live), allProjections);
  const counts = rowCount(liveDump);
  // The synthetic history has no metered usage: usage_hours stays empty (the metering tests fill it).
  t.ok(Object.entries(counts).every(([table, n]) => n > 0 || table === 'usage_hours'), `every table and view but usage_hours has rows: ${JSON.stringify(counts)}`);
  t.equal(counts.subscriptions, 120);

  const rebuiltDb = openReadModelDb(join(dir, 'rebuilt.db'));
  t.teardown(() => rebuiltDb.close());
  const result = await rebuildProjections({ store, db: rebuiltDb, logger });
  t.same(await dump(rebuiltDb, allProjections), liveDump, 'a rebuild from scratch gives exactly the live tables');
  t.ok(result.events > 1000, `rebuilt from ${result.events} events`);
});

t.test('a failure in the middle of a batch leaves nothing half-applied; a restart continues to the same result', async (t) => {
  const { store, dir } = await storeWithHistory(t, { subscriptions: SUBSCRIPTIONS, seed: 3 });
  const expected = await reference(t, store);
  const path = join(dir, 'readmodels.db');

  let applied = 0;
  let failed: RecordedEvent | undefined;
  const flaky: Projection = {
    ...subscriptionsProjection,
    async apply(db, event) {
      await subscriptionsProjection.apply(db, event);
      if (++applied === 700 && !failed) {
        failed = event;
        throw new Error('crash in the middle of a batch');
      }
    },
  };
  const projections = allProjections.map((p) => (p === subscriptionsProjection ? flaky : p));
  const first = startProjections({ store, path, logger, projections, batchSize: 100, retryBaseMs: 60_000 });
  await waitFor('the failure', () => first.status().some((s) => s.state === 'failing'));
  t.match(first.status()[0]?.lastError, /projection subscriptions failed on \w+ at position \d+.*crash in the middle of a batch/);

  // What is stored is exactly the state at the stored checkpoints: the failed batch left no trace.
  const states = (await readStates(first.target.read));
  const checkpoint = states.get('subscriptions')?.position ?? 0n;
  t.ok(failed && checkpoint < failed.position, `checkpoint ${checkpoint} is before the failing event ${failed?.position}`);
  for (const p of allProjections) t.equal(states.get(p.name)?.position, checkpoint, `${p.name}: same checkpoint (one transaction for all)`);
  const maxRow = sqliteOf(first).prepare('SELECT max(position) FROM subscriptions').pluck().get() as number;
  t.ok(BigInt(maxRow) <= checkpoint, 'no row reflects an event after the checkpoint');
  const atCheckpoint = await (async () => {
    const db = openReadModelDb(join(dir, 'at-checkpoint.db'));
    t.teardown(() => db.close());
    await rebuildProjections({ store: storeUntil(store, checkpoint), db, logger });
    return await dump(db, allProjections);
  })();
  t.same(await dump(sqliteOf(first), allProjections), atCheckpoint, 'the tables equal a clean build up to the checkpoint');
  await first.stop();

  const second = startProjections({ store, path, logger, projections, batchSize: 100 });
  t.teardown(() => second.stop());
  await second.idle();
  t.same(await dump(sqliteOf(second), allProjections), expected, 'after the restart: the same tables as a clean build');
});

t.test('replays change nothing: checkpoints set back, at-least-once deliveries', async (t) => {
  const { store, dir } = await storeWithHistory(t, { subscriptions: SUBSCRIPTIONS, seed: 4 });
  const expected = await reference(t, store);
  const path = join(dir, 'readmodels.db');
  const first = startProjections({ store, path, logger });
  await first.idle();
  await first.stop();

  // Set every checkpoint back by 1500 events: the runner re-applies them onto rows that already reflect them.
  const db = openReadModelDb(path);
  db.prepare('UPDATE projection_state SET position = position - 1500').run();
  db.close();
  const again = startProjections({ store, path, logger });
  await again.idle();
  t.same(await dump(sqliteOf(again), allProjections), expected, 'replaying 1500 events changed nothing');
  await again.stop();

  const stuttering = startProjections({ store: stutteringStore(store), path: join(dir, 'stutter.db'), logger, batchSize: 64 });
  t.teardown(() => stuttering.stop());
  await stuttering.idle();
  t.same(await dump(sqliteOf(stuttering), allProjections), expected, 'every event delivered twice, and runs of 50 again: same tables');
});

t.test('a projection whose version changed is rebuilt; tables removed by hand are rebuilt; the others keep their checkpoint', async (t) => {
  const { store, dir } = await storeWithHistory(t, { subscriptions: 40, seed: 5 });
  const expected = await reference(t, store);
  const path = join(dir, 'readmodels.db');
  const v1 = startProjections({ store, path, logger });
  await v1.idle();
  const before = new Map(v1.status().map((s) => [s.name, s]));
  sqliteOf(v1).prepare("UPDATE subscriptions SET plan_id = 'stale'").run(); // what old code may have left
  sqliteOf(v1).exec('DROP VIEW metrics_free_trials');
  await v1.stop();

  const v2: Projection = { ...subscriptionsProjection, version: subscriptionsProjection.version + 1 };
  const projections = allProjections.map((p) => (p === subscriptionsProjection ? v2 : p));
  const next = startProjections({ store, path, logger, projections });
  t.teardown(() => next.stop());
  await next.idle();
  const status = new Map(next.status().map((s) => [s.name, s]));
  t.equal(status.get('subscriptions')?.version, subscriptionsProjection.version + 1);
  t.not(status.get('subscriptions')?.rebuiltAt, before.get('subscriptions')?.rebuiltAt, 'subscriptions rebuilt');
  t.not(status.get('metrics')?.rebuiltAt, before.get('metrics')?.rebuiltAt, 'metrics rebuilt: one of its views was missing');
  t.equal(status.get('operations')?.rebuiltAt, before.get('operations')?.rebuiltAt, 'operations kept');
  t.equal(status.get('operations')?.eventsApplied, before.get('operations')?.eventsApplied, 'and applied nothing again');
  t.equal(sqliteOf(next).prepare("SELECT count(*) FROM subscriptions WHERE plan_id = 'stale'").pluck().get(), 0, 'nothing stale survives');
  t.same(await dump(sqliteOf(next), allProjections), expected);
});

t.test('rebuild on demand while live, and a rebuild by another process (the CLI) on the same file', async (t) => {
  const { store, dir } = await storeWithHistory(t, { subscriptions: SUBSCRIPTIONS, seed: 6 });
  const path = join(dir, 'readmodels.db');
  const live = startProjections({ store, path, logger, batchSize: 50 });
  t.teardown(() => live.stop());
  await live.idle();
  const before = await dump(sqliteOf(live), allProjections);

  await live.rebuild('operations');
  t.same(await dump(sqliteOf(live), allProjections), before, 'rebuild(operations) ends where it started');
  await t.rejects(live.rebuild('nope'), /unknown projection/);

  // Another process resets every projection in the same file and replays into it, while the service keeps running.
  const cli = rebuildProjections({ store, path, logger, batchSize: 50 });
  await writeHistory(store, syntheticHistory({ subscriptions: 20, seed: 7, start: '2026-05-01T00:00:00.000Z' }));
  await cli;
  await live.idle();
  const expected = await reference(t, store, 'expected-after.db');
  t.same(await dump(sqliteOf(live), allProjections), expected, 'both runners together applied every event exactly once');
  t.ok(live.status().every((s) => s.state === 'live'), 'the service followed the reset');
});

t.test('another process moved a projection to another version: it is left alone here', async (t) => {
  const { store, dir } = await storeWithHistory(t, { subscriptions: 10, seed: 8 });
  const path = join(dir, 'readmodels.db');
  const live = startProjections({ store, path, logger });
  t.teardown(() => live.stop());
  await live.idle();
  const other = openReadModelDb(path);
  await resetProjection(sqliteTarget(other), { ...subscriptionsProjection, version: 9 });
  other.close();
  await writeHistory(store, syntheticHistory({ subscriptions: 3, seed: 9, start: '2026-06-01T00:00:00.000Z' }));
  await waitFor('superseded', () => live.status().find((s) => s.name === 'subscriptions')?.state === 'superseded');
  await live.idle();
  t.equal(sqliteOf(live).prepare('SELECT count(*) FROM subscriptions').pluck().get(), 0, 'the other version\'s (empty) tables are not written to');
  t.match(live.status().find((s) => s.name === 'subscriptions'), { state: 'superseded', lastError: `version 9, this code has ${subscriptionsProjection.version}` });
  t.equal(live.status().find((s) => s.name === 'operations')?.state, 'live');
});

t.test('projections run on EventStoreDB (the gRPC stand-in) and build the same read models', async (t) => {
  const { store, dir } = await storeWithHistory(t, { subscriptions: 40, seed: 10 });
  const fromSqlite = await reference(t, store);
  const standIn = await startEsdbStandIn();
  t.teardown(() => standIn.stop());
  const esdb = await openEsdbStore(standIn.connectionString);
  t.teardown(() => esdb.close());
  const runner = startProjections({ store: esdb, path: join(dir, 'esdb-readmodels.db'), logger });
  t.teardown(() => runner.stop());
  await writeHistory(esdb, syntheticHistory({ subscriptions: 40, seed: 10 })); // arrives live
  await runner.idle();
  const strip = (d: Dump) => JSON.parse(JSON.stringify(d, (k, v: unknown) => (k === 'position' ? undefined : v))) as unknown;
  t.same(strip(await dump(sqliteOf(runner), allProjections)), strip(fromSqlite), 'same rows (positions differ between stores: commit positions vs row ids)');
  const positions = (await readStates(runner.target.read)).get('subscriptions')?.position ?? 0n;
  t.ok(positions > 10_000n, `checkpoints are EventStoreDB commit positions (${positions})`);
});
