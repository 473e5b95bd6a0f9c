/**
 * The projection runner on both targets (SQLite and PostgreSQL, helpers.forEachTarget): live equals rebuilt; a
 * failure in the middle of a batch leaves nothing half-applied (rows and checkpoints roll back together) and a
 * restart continues to the same tables. PostgreSQL only: a rebuild into a new generation while a runner is live,
 * switched atomically — the runner follows, the analysts' `public` views read the new schema.
 */
import pg from 'pg';
import type { Test } from 'tap';
import type { EventStore, RecordedEvent } from '../../src/eventstore/eventstore.js';
import { createLogger } from '../../src/logger.js';
import { allProjections, openReadModelTarget, rebuildPostgresGeneration, rebuildProjections, startProjections } from '../../src/projections/index.js';
import type { Projection } from '../../src/projections/projection.js';
import { liveGeneration } from '../../src/projections/postgres.generations.js';
import { readStates } from '../../src/projections/readmodel-db.js';
import type { ReadModelTarget } from '../../src/projections/target.js';
import { subscriptionsProjection } from '../../src/projections/views/subscriptions.projection.js';
import { freshDatabase } from '../support/postgres.js';
import { syntheticHistory, writeHistory } from '../support/synthetic-history.js';
import { waitFor } from '../support/wait.js';
import { dump, forEachTarget, rowCount, storeUntil, storeWithHistory, testTarget } from './helpers.js';
import type { TargetKind } from './helpers.js';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

async function rebuilt(t: Test, kind: TargetKind, store: EventStore): Promise<ReadModelTarget> {
  const target = await testTarget(t, kind, allProjections, { file: true });
  await rebuildProjections({ store, target, logger });
  return target;
}

await forEachTarget('live while events arrive = rebuilt from the same events', async (t, kind) => {
  const { store } = await storeWithHistory(t, { subscriptions: 40, seed: 1 });
  const target = await testTarget(t, kind, allProjections, { file: true });
  const live = startProjections({ store, target, logger, batchSize: 37 });
  t.teardown(() => live.stop());
  await writeHistory(store, syntheticHistory({ subscriptions: 40, seed: 2, start: '2026-02-01T00:00:00.000Z' }));
  await live.idle();
  t.same(live.status().map((s) => s.state), allProjections.map(() => 'live'));
  const liveDump = await dump(target, allProjections);
  t.equal(rowCount(liveDump).subscriptions, 80);
  t.same(await dump(await rebuilt(t, kind, store), allProjections), liveDump, 'a rebuild from scratch gives exactly the live tables');
});

await forEachTarget('a failure in the middle of a batch leaves nothing half-applied; a restart continues to the same result', async (t, kind) => {
  const { store } = await storeWithHistory(t, { subscriptions: 60, seed: 3 });
  const expected = await dump(await rebuilt(t, kind, store), allProjections);
  const target = await testTarget(t, kind, allProjections, { file: true });
  let applied = 0;
  let failed: RecordedEvent | undefined;
  const flaky: Projection = {
    ...subscriptionsProjection,
    async apply(db, event) {
      await subscriptionsProjection.apply(db, event);
      if (++applied === 400 && !failed) {
        failed = event;
        throw new Error('crash in the middle of a batch');
      }
    },
  };
  const projections = allProjections.map((p) => (p === subscriptionsProjection ? flaky : p));
  const first = startProjections({ store, target, logger, projections, batchSize: 100, retryBaseMs: 60_000 });
  await waitFor('the failure', () => first.status().some((s) => s.state === 'failing'));
  const states = await readStates(target.read);
  const checkpoint = states.get('subscriptions')?.position ?? 0n;
  t.ok(failed && checkpoint < failed.position, `checkpoint ${checkpoint} is before the failing event ${failed?.position}`);
  for (const p of allProjections) t.equal(states.get(p.name)?.position, checkpoint, `${p.name}: same checkpoint (one transaction for all)`);
  const atCheckpoint = await testTarget(t, kind, allProjections, { file: true });
  await rebuildProjections({ store: storeUntil(store, checkpoint), target: atCheckpoint, logger });
  t.same(await dump(target, allProjections), await dump(atCheckpoint, allProjections), 'the tables equal a clean build up to the checkpoint');
  await first.stop();

  const second = startProjections({ store, target, logger, projections, batchSize: 100 });
  t.teardown(() => second.stop());
  await second.idle();
  t.same(await dump(target, allProjections), expected, 'after the restart: the same tables as a clean build');
});

await forEachTarget('a rebuild into a new generation while live, switched atomically: the runner follows, public views read it', async (t, kind) => {
  if (kind === 'sqlite') {
    t.pass('SQLite: a rebuild into a fresh file, renamed into place by `replay` (runner.test.ts: rebuilds on the same file)');
    return;
  }
  const { store } = await storeWithHistory(t, { subscriptions: 30, seed: 12 });
  const url = await freshDatabase(t, 'generations');
  const prices = [{ offerId: 'ledger-analytics', planId: 'team', monthlyPrice: 12.5, currency: 'EUR' }];
  const target = await openReadModelTarget({ path: '', url, planPrices: prices }, logger);
  const live = startProjections({ store, target, ownsTarget: true, logger });
  t.teardown(() => live.stop());
  await live.idle();
  t.equal((await liveGeneration(url)).schema, 'rm_1');

  const result = await rebuildPostgresGeneration({ store, url, logger });
  t.match(result, { schema: 'rm_2', previous: 'rm_1', switched: true });
  await writeHistory(store, syntheticHistory({ subscriptions: 10, seed: 13, start: '2026-05-01T00:00:00.000Z' }));
  await waitFor('the runner to follow the switch', () => (target as ReadModelTarget & { schema: string }).schema === 'rm_2', 30_000);
  await live.idle();

  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  t.teardown(() => admin.end());
  const count = async (sql: string) => Number((await admin.query<{ n: string }>(sql)).rows[0]?.n);
  t.equal(await count('SELECT count(*) AS n FROM rm_2.subscriptions'), 40, 'the new generation has every subscription, the later ones applied by the runner that followed');
  t.equal(await count('SELECT count(*) AS n FROM public.subscriptions'), 40, 'public.subscriptions reads the new generation');
  const view = (await admin.query<{ definition: string }>("SELECT definition FROM pg_views WHERE schemaname = 'public' AND viewname = 'subscriptions'")).rows[0]?.definition;
  t.match(view, /rm_2\.subscriptions/);
  const mrr = (await admin.query<{ mrr: number; currency: string }>("SELECT mrr, currency FROM public.analytics_mrr WHERE plan_id = 'team' AND is_test = 0")).rows;
  t.ok(mrr.length === 1 && Number(mrr[0]?.mrr) > 0 && mrr[0]?.currency === 'EUR', `revenue of the priced plan survives the switch: ${JSON.stringify(mrr)}`);
  const fresh = await testTarget(t, 'postgres', allProjections);
  await rebuildProjections({ store, target: fresh, logger });
  t.same(await dump(target, allProjections), await dump(fresh, allProjections), 'after the switch and more events: equal to a rebuild');

  // A rebuild on demand drops and recreates the metrics tables: the views over them come back with them.
  await live.rebuild('metrics');
  t.equal(await count("SELECT count(*) AS n FROM public.analytics_mrr WHERE plan_id = 'team' AND is_test = 0"), 1, 'the analyst views over a reset projection are recreated');
  t.ok((await count('SELECT count(*) AS n FROM public.metrics_daily')) > 0, 'public.metrics_daily reads the rebuilt table');
});
