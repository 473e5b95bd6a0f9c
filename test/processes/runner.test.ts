/**
 * startProcess: the mode it picks, and what the uncoordinated `catch-up` mode does with two instances (the reason
 * the other modes exist).
 */
import { join } from 'node:path';
import t from 'tap';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { defaultRunnerMode, startProcess } from '../../src/processes/runner/start.js';
import type { RunnerMode } from '../../src/processes/runner/start.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';
import { FakeOutside, capturingLogger, doneJobs, jobHandler, range, requestJobs } from './support.js';

t.test('the default mode: lease for SQLite (and any store without competing consumers)', async (t) => {
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  t.equal(defaultRunnerMode(store), 'lease');
  const lookalike: EventStore = Object.assign(Object.create(store) as EventStore, { kind: 'eventstoredb' as const });
  t.equal(defaultRunnerMode(lookalike), 'lease', 'an EventStoreDB store without persistentSubscription (a wrapper) gets the lease');
});

t.test("mode 'catch-up' runs without coordination: alone it is fine, two instances both handle every event", async (t) => {
  const path = join(tempDir(t), 'events.db');
  const outside = new FakeOutside();
  const instances = ['A', 'B'].map((by) => {
    const store = openSqliteStore({ path, pollIntervalMs: 20 });
    t.teardown(() => store.close());
    const handler = jobHandler({ store, outside, by, prefix: 'job' });
    const process = startProcess(store, handler, capturingLogger().logger, { mode: 'catch-up', instanceId: by });
    t.teardown(() => process.stop());
    return { store, handler, process };
  });
  const [a, b] = instances as [(typeof instances)[number], (typeof instances)[number]];
  t.same([a.process.mode, b.process.mode], ['catch-up', 'catch-up'] satisfies RunnerMode[]);
  await requestJobs(a.store, 'job', range(10));
  await waitFor('all done', async () => [...(await doneJobs(a.store, 'job', range(10))).values()].every((d) => d.length > 0));
  await Promise.all([a.process.idle(), b.process.idle()]);
  t.ok(a.process.active() && b.process.active(), 'both run');
  const delivered = (h: typeof a.handler) => h.deliveries.filter((d) => d.type === 'JobRequested').length;
  t.same([delivered(a.handler), delivered(b.handler)], [10, 10], 'each JobRequested reached BOTH instances: only idempotent handlers stand between that and double calls');
  await a.process.stop();
  t.notOk(a.process.active(), 'stopped');
});

t.test('an unknown mode is refused', async (t) => {
  const store = openSqliteStore({ path: ':memory:' });
  t.teardown(() => store.close());
  t.throws(
    () => startProcess(store, jobHandler({ store, outside: new FakeOutside(), by: 'x', prefix: 'job' }), capturingLogger().logger, { mode: 'round-robin' as RunnerMode }),
    /unknown runner mode round-robin/,
  );
});
