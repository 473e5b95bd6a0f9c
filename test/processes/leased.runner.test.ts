/**
 * Lease mode on SQLite: several instances on ONE database file (each with its own connection, as two `npm start`
 * on one DATA_DIR would have), only the lease holder runs the process.
 */
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { SqliteEventStore } from '../../src/eventstore/sqlite.store.js';
import { readCheckpoint } from '../../src/processes/runner/checkpoints.js';
import { StoreUnavailableError } from '../../src/eventstore/eventstore.js';
import type { EventStore, ReadStreamOptions, StoreSubscription, SubscribeOptions } from '../../src/eventstore/eventstore.js';
import { leaseStream } from '../../src/processes/runner/lease.js';
import type { LeaseOptions } from '../../src/processes/runner/lease.js';
import { startProcess } from '../../src/processes/runner/start.js';
import type { RunnerOptions } from '../../src/processes/runner/start.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';
import { FakeOutside, capturingLogger, deferred, doneJobs, jobHandler, range, requestJobs } from './support.js';

// Generous for a loaded CI machine: a holder whose event loop stalls longer than takeoverAfterMs is rightly replaced.
const lease: Required<Omit<LeaseOptions, 'now'>> = { pollMs: 50, takeoverAfterMs: 1_500, heartbeatMs: 1_000 };
/** A holder that dies is replaced within this (see lease.ts), plus scheduling slack. */
const takeoverBound = lease.heartbeatMs + lease.takeoverAfterMs + 2 * lease.pollMs + 500;
const runner: RunnerOptions = { mode: 'lease', lease, checkpointEvery: 5, checkpointAfterMs: 60_000, retryBaseMs: 20 };

function openFile(t: Test, path: string): SqliteEventStore {
  const store = openSqliteStore({ path, pollIntervalMs: 20 });
  t.teardown(() => store.close());
  return store;
}

function instance(t: Test, path: string, by: string, outside: FakeOutside, prefix: string, extra: RunnerOptions = {}) {
  const store = openFile(t, path);
  const handler = jobHandler({ store, outside, by, prefix });
  const { logger, lines } = capturingLogger();
  const process = startProcess(store, handler, logger, { ...runner, instanceId: by, ...extra });
  t.teardown(() => process.stop());
  return { store, handler, process, lines };
}

async function allDone(store: SqliteEventStore, prefix: string, intents: readonly string[]) {
  return waitFor(`all ${intents.length} jobs done`, async () => {
    const done = await doneJobs(store, prefix, intents);
    return [...done.values()].every((d) => d.length > 0) ? done : undefined;
  }, 15_000);
}

t.test('startProcess on SQLite runs in lease mode by default', async (t) => {
  const store = openFile(t, join(tempDir(t), 'events.db'));
  const { logger } = capturingLogger();
  const process = startProcess(store, jobHandler({ store, outside: new FakeOutside(), by: 'x', prefix: 'job' }), logger, { lease });
  t.teardown(() => process.stop());
  t.equal(process.mode, 'lease');
  t.match(process.instanceId, /^.+:\d+:[0-9a-f]{8}$/, 'a generated instance id: host:pid:random');
  await process.idle();
  t.ok(process.active(), 'alone, it holds the lease and runs');
});

t.test('two instances on one SQLite file: every event is handled once, by the lease holder only', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const outside = new FakeOutside();
  const prefix = 'job';
  const intents = range(40);
  const a = instance(t, path, 'A', outside, prefix);
  await requestJobs(a.store, prefix, intents.slice(0, 20));
  await a.process.idle();
  const b = instance(t, path, 'B', outside, prefix);
  const bStarted = Date.now();
  await b.process.idle();
  t.ok(a.process.active(), 'A, first, holds the lease');
  t.notOk(b.process.active(), 'B waits');
  await requestJobs(b.store, prefix, intents.slice(20));
  const done = await allDone(a.store, prefix, intents);
  // Let B wait through a few heartbeats: it must keep asking, A must keep answering, and B must not run.
  await new Promise((r) => setTimeout(r, 2 * lease.heartbeatMs));

  t.same(intents.filter((i) => outside.callsFor(i) !== 1), [], 'exactly one outside call per intent');
  t.same([...done.values()].filter((d) => d.length !== 1), [], 'exactly one JobDone per intent');
  const requested = a.handler.deliveries.filter((d) => d.type === 'JobRequested');
  t.equal(requested.length, 40, 'A was handed each JobRequested once');
  t.equal(b.handler.deliveries.length, 0, 'B was handed nothing');
  t.notOk(b.process.active(), 'B still waits');

  const leaseEvents = await a.store.readStream(leaseStream('jobs'));
  const types = leaseEvents.map((e) => e.type);
  t.equal(types.filter((x) => x === 'LeaseAcquired').length, 1, 'one acquisition');
  t.ok(types.includes('LeaseRequested') && types.includes('LeaseRenewed'), 'B asked, A answered');
  const renewals = types.filter((x) => x === 'LeaseRenewed').length;
  const allowed = Math.ceil((Date.now() - bStarted) / lease.heartbeatMs) + 1;
  t.ok(renewals <= allowed, `renewals only as often as B asks: ${renewals} in ${Date.now() - bStarted} ms (at most ${allowed})`);
});

t.test('the holder dies in the middle of an outside call: the other instance takes over within the lease time, resumes from the checkpoint, and makes no second call', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const outside = new FakeOutside();
  const prefix = 'job';
  const intents = range(12);
  const a = instance(t, path, 'A', outside, prefix);
  await a.process.idle();
  const b = instance(t, path, 'B', outside, prefix);
  await b.process.idle();
  t.ok(a.process.active() && !b.process.active(), 'A holds the lease, B waits');

  // Job 12's call reaches the outside system, and A "dies" before it hears back: its connection to the file is
  // closed (it can neither record nor answer B), and its handler never returns.
  const hang = deferred();
  let diedAt = 0;
  let checkpointAtDeath: bigint | undefined;
  let closed = false;
  outside.trap('i012', async () => {
    // A's checkpoint saves are appends like any other: with group commit they commit a turn of the event loop
    // later, and the handlers run 4 at a time, so i012's call can start before the save of the first ten lands.
    // A dies once a checkpoint of its is durable (the scenario: a holder that has checkpointed, then dies mid-call).
    await waitFor('a checkpoint of A', () => readCheckpoint(b.store, 'jobs'), 5_000);
    diedAt = Date.now();
    await a.store.close();
    // What A left: a save still queued when it died is answered (committed) by close(), so read it after.
    checkpointAtDeath = await readCheckpoint(b.store, 'jobs');
    closed = true;
    await hang.promise;
  });
  t.teardown(() => hang.reject(new Error('test over')));
  await requestJobs(b.store, prefix, intents);
  await waitFor('A to die', () => closed, 10_000);
  await waitFor('B to hold the lease', () => b.process.active(), takeoverBound + 2_000, 10);
  const tookMs = Date.now() - diedAt;
  t.ok(tookMs <= takeoverBound, `B took over ${tookMs} ms after A died (bound ${takeoverBound} ms)`);
  const tookOver = b.lines.find((l) => l.msg === 'lease taken over: the holder left a request unanswered');
  t.equal(tookOver?.previous, 'A', 'B logged the takeover from A');
  const done = await allDone(b.store, prefix, intents);

  t.same(intents.filter((i) => outside.callsFor(i) !== 1), [], 'exactly one outside call per intent, the one A made for i012 included');
  t.same(done.get('i012'), [{ intent: 'i012', by: 'B', how: 'found-done' }], 'B found i012 done outside and only recorded it');
  t.same(intents.slice(0, 11).filter((i) => done.get(i)?.[0]?.by !== 'A'), [], 'the first 11 were done by A');

  t.ok(checkpointAtDeath !== undefined, `A had saved a checkpoint (${checkpointAtDeath}) before it died`);
  const handedToB = b.handler.deliveries;
  t.ok(handedToB.length > 0, 'B was handed events');
  t.same(handedToB.filter((d) => d.position <= (checkpointAtDeath ?? 0n)), [], 'B resumed after the checkpoint, not from the start');
  const firstAfter = a.handler.deliveries.find((d) => d.position > (checkpointAtDeath ?? 0n));
  t.equal(handedToB[0]?.position, firstAfter?.position, "B's first event is the first one after the checkpoint");
  t.ok(handedToB.some((d) => d.intent === 'i012' && d.type === 'JobRequested'), 'B was handed the event A died on');
});

t.test('a clean stop releases the lease and the waiting instance takes over at once', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const outside = new FakeOutside();
  const prefix = 'job';
  const a = instance(t, path, 'A', outside, prefix);
  await a.process.idle();
  const b = instance(t, path, 'B', outside, prefix, { lease: { ...lease, takeoverAfterMs: 5_000, heartbeatMs: 10_000 } });
  await b.process.idle();
  await requestJobs(a.store, prefix, range(3));
  await allDone(a.store, prefix, range(3));
  const stoppedAt = Date.now();
  await a.process.stop();
  await waitFor('B to hold the lease', () => b.process.active(), 3_000);
  t.ok(Date.now() - stoppedAt < 2_000, `B took over ${Date.now() - stoppedAt} ms after A released (long before its 5 s takeover)`);
  const types = (await b.store.readStream(leaseStream('jobs'))).map((e) => e.type);
  t.equal(types.at(-1), 'LeaseAcquired');
  t.equal(types.at(-2), 'LeaseReleased');
  await requestJobs(b.store, prefix, ['later']);
  await allDone(b.store, prefix, ['later']);
  t.equal(outside.callsFor('later'), 1);
  t.same(range(3).map((i) => outside.callsFor(i)), [1, 1, 1], 'B did not call again for what A had done');
});

t.test('alone, an instance writes one lease event when it starts and one when it stops — no heartbeat', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const a = instance(t, path, 'A', new FakeOutside(), 'job');
  await a.process.idle();
  await new Promise((r) => setTimeout(r, 3 * lease.heartbeatMs));
  t.same((await a.store.readStream(leaseStream('jobs'))).map((e) => e.type), ['LeaseAcquired']);
  await a.process.stop();
  t.same((await a.store.readStream(leaseStream('jobs'))).map((e) => e.type), ['LeaseAcquired', 'LeaseReleased']);
});

t.test('restarted after a crash (the dead holder never released): the new instance takes over after takeoverAfterMs', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const outside = new FakeOutside();
  const first = instance(t, path, 'first', outside, 'job');
  await first.process.idle();
  await requestJobs(first.store, 'job', ['before']);
  await allDone(first.store, 'job', ['before']);
  await first.store.close(); // dies: no release
  const startedAt = Date.now();
  const second = instance(t, path, 'second', outside, 'job');
  await second.process.idle();
  t.notOk(second.process.active(), 'it does not take a lease it has not asked for');
  await waitFor('the restarted instance to hold the lease', () => second.process.active(), 5_000);
  const waited = Date.now() - startedAt;
  t.ok(waited >= lease.takeoverAfterMs - 50 && waited <= lease.takeoverAfterMs + 1_000, `waited ${waited} ms (takeoverAfterMs ${lease.takeoverAfterMs})`);
  t.same((await second.store.readStream(leaseStream('jobs'))).map((e) => e.type), ['LeaseAcquired', 'LeaseRequested', 'LeaseAcquired']);
  await requestJobs(second.store, 'job', ['after']);
  await allDone(second.store, 'job', ['after']);
  t.same([outside.callsFor('before'), outside.callsFor('after')], [1, 1]);
});

t.test('an instance that loses its lease stops handling events', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const outside = new FakeOutside();
  const a = instance(t, path, 'A', outside, 'job');
  await a.process.idle();
  t.ok(a.process.active());
  // Another instance (say, after a long freeze of A) takes the lease: forge that with a conditional append.
  const other = openFile(t, path);
  const events = await other.readStream(leaseStream('jobs'));
  await other.appendToStream(leaseStream('jobs'), [
    { type: 'LeaseAcquired', data: { instanceId: 'Z', at: new Date().toISOString(), until: new Date(Date.now() + 60_000).toISOString(), previous: 'A' } },
  ], { expectedRevision: BigInt(events.length - 1) });
  await waitFor('A to notice', () => !a.process.active(), 2_000);
  t.ok(a.lines.some((l) => l.msg === 'lease lost: this instance stops running the process' && l.reason === 'held by Z'), 'A logged why');
  await requestJobs(other, 'job', ['unhandled']);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(a.handler.deliveries.filter((d) => d.intent === 'unhandled').length, 0, 'A no longer handles events');
  t.equal(outside.callsFor('unhandled'), 0);
  // Z's holder never answers A's request: A gets it back after takeoverAfterMs and handles the event.
  await waitFor('A to take the lease back', () => a.process.active(), takeoverBound + 2_000);
  await allDone(other, 'job', ['unhandled']);
  t.equal(outside.callsFor('unhandled'), 1);
});

t.test('a holder that cannot read its lease stops before a request could expire, and resumes when it can read again', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const file = openFile(t, path);
  let failing = false;
  // The same store, except that lease reads fail while `failing` is set (a disk or network fault).
  const flaky: EventStore = Object.assign(Object.create(file) as EventStore, {
    kind: file.kind,
    readStream: (streamId: string, options?: ReadStreamOptions) => {
      if (failing && streamId === leaseStream('jobs')) return Promise.reject(new StoreUnavailableError('disk on fire'));
      return file.readStream(streamId, options);
    },
  });
  const { logger, lines } = capturingLogger();
  const outside = new FakeOutside();
  const process = startProcess(flaky, jobHandler({ store: file, outside, by: 'A', prefix: 'job' }), logger, { ...runner, instanceId: 'A' });
  t.teardown(() => process.stop());
  await process.idle();
  t.ok(process.active());
  failing = true;
  const since = Date.now();
  await waitFor('A to fence itself', () => !process.active(), lease.takeoverAfterMs + 1_000, 10);
  const fencedAfter = Date.now() - since;
  t.ok(fencedAfter < lease.takeoverAfterMs, `stopped ${fencedAfter} ms after reads began to fail (before takeoverAfterMs ${lease.takeoverAfterMs})`);
  t.ok(lines.some((l) => l.reason === 'could not confirm the lease in time'), 'and said why');
  failing = false;
  await waitFor('A to resume', () => process.active(), 2_000, 10);
  t.same((await file.readStream(leaseStream('jobs'))).map((e) => e.type), ['LeaseAcquired'], 'the stream still said A held it: nothing was written');
  await requestJobs(file, 'job', ['after']);
  await allDone(file, 'job', ['after']);
  t.equal(outside.callsFor('after'), 1);
});

t.test('a holder whose subscription fails restarts its runner from the checkpoint instead of sitting on the lease', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const file = openFile(t, path);
  let failures = 1;
  // The same store, except that the first subscription fails at once (the store went away for a moment).
  const flaky: EventStore = Object.assign(Object.create(file) as EventStore, {
    kind: file.kind,
    subscribeToAll: (options?: SubscribeOptions): StoreSubscription => {
      if (failures-- <= 0) return file.subscribeToAll(options);
      return {
        close: async () => undefined,
        [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(new StoreUnavailableError('gone for a moment')) }),
      };
    },
  });
  const { logger, lines } = capturingLogger();
  const outside = new FakeOutside();
  const process = startProcess(flaky, jobHandler({ store: file, outside, by: 'A', prefix: 'job' }), logger, { ...runner, instanceId: 'A' });
  t.teardown(() => process.stop());
  await requestJobs(file, 'job', ['x']);
  await allDone(file, 'job', ['x']);
  t.ok(lines.some((l) => l.msg === 'process stopped unexpectedly'), 'the first runner failed');
  t.ok(lines.some((l) => l.msg === 'the process runner stopped unexpectedly; restarting it from the checkpoint'), 'and was restarted');
  t.equal(outside.callsFor('x'), 1);
  t.ok(process.active());
});

t.test('stopping a process that never got the lease ends quietly and writes nothing', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const a = instance(t, path, 'A', new FakeOutside(), 'job');
  await a.process.idle();
  const b = instance(t, path, 'B', new FakeOutside(), 'job');
  await b.process.idle();
  const before = (await b.store.readStream(leaseStream('jobs'))).length;
  await b.process.stop();
  const after = await b.store.readStream(leaseStream('jobs'));
  t.notOk(after.slice(before).some((e) => (e.data as { instanceId?: string }).instanceId === 'B' && e.type !== 'LeaseRequested'), 'B released nothing');
  t.ok(a.process.active(), 'A still runs');
});

