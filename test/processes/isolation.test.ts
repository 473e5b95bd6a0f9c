/**
 * Failure isolation in the catch-up runner (and the lease runner around it), on real SQLite files: a failing
 * event holds only its key (ProcessHandler.keyOf), is retried and then parked while the other keys go on;
 * RetryLater's deadline; parked and retrying keys survive a restart; the operator API lists them and retries
 * them; the checkpoint never moves past an event that is neither handled nor held; bounded concurrency across
 * keys with order within a key.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { SqliteEventStore } from '../../src/eventstore/sqlite.store.js';
import { processAdmin } from '../../src/processes/parked.js';
import type { ProcessAdmin } from '../../src/processes/parked.js';
import { checkpointStream, readCheckpoint, readCheckpointRecord } from '../../src/processes/runner/checkpoints.js';
import { RetryLater, startProcess } from '../../src/processes/runner/start.js';
import type { ProcessHandler, RunnerMode, RunnerOptions, RunningProcess } from '../../src/processes/runner/start.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';
import { capturingLogger, deferred } from './support.js';
import type { LogLine } from './support.js';

const NAME = 'work';
const TOKEN = 'operator-token-0123456789abcdef';
const fast: RunnerOptions = { mode: 'catch-up', retryBaseMs: 10, retryMaxMs: 50, retryLaterMaxMs: 50, maxAttempts: 3, checkpointAfterMs: 50 };

type Handled = { key: string; seq: number; position: bigint; by: string };

/**
 * Events `Work {key, seq}`, each in a stream of its own (so the ordering key is NOT the stream: keyOf reads it).
 * `fail` decides, per delivery, whether to throw.
 */
function workHandler(by: string, fail: (event: RecordedEvent, work: { key: string; seq: number }) => Promise<void> | void = () => undefined) {
  const handled: Handled[] = [];
  const deliveries: Array<{ key: string; seq: number }> = [];
  const handler: ProcessHandler = {
    name: NAME,
    streamPrefixes: ['work-'],
    keyOf: (event) => workOf(event).key,
    async handle(event) {
      const work = workOf(event);
      deliveries.push(work);
      await fail(event, work);
      handled.push({ ...work, position: event.position, by });
    },
  };
  return { handler, handled, deliveries, seqs: (key: string) => handled.filter((h) => h.key === key).map((h) => h.seq) };
}

function workOf(event: RecordedEvent): { key: string; seq: number } {
  const data = event.data as { key?: unknown; seq?: unknown };
  if (typeof data.key !== 'string' || typeof data.seq !== 'number') throw new Error('not a Work event');
  return { key: data.key, seq: data.seq };
}

async function append(store: SqliteEventStore, key: string, seq: number): Promise<bigint> {
  const result = await store.appendToStream(`work-${randomUUID()}`, [{ type: 'Work', data: { key, seq } }]);
  return result.position;
}

function open(t: Test, path: string): SqliteEventStore {
  const store = openSqliteStore({ path, pollIntervalMs: 20 });
  t.teardown(() => store.close());
  return store;
}

function run(t: Test, store: SqliteEventStore, handler: ProcessHandler, options: RunnerOptions = {}) {
  const { logger, lines } = capturingLogger();
  const process = startProcess(store, handler, logger, { ...fast, instanceId: randomUUID().slice(0, 8), ...options });
  t.teardown(() => process.stop());
  return { process, lines };
}

const adminFor = (store: SqliteEventStore, mode: RunnerMode = 'catch-up'): ProcessAdmin => processAdmin({ store, processes: () => [{ name: NAME, mode }] });

const parkedKeys = async (admin: ProcessAdmin) => ((await admin.held(NAME))?.parked ?? []).map((p) => p.key);

const line = (lines: LogLine[], msg: RegExp) => lines.find((l) => msg.test(l.msg));

t.test('a poison event on key A is retried, then parked, while keys B and C are handled; a later event of A waits behind it', async (t) => {
  const store = open(t, join(tempDir(t), 'events.db'));
  const w = workHandler('x', (_e, work) => {
    if (work.key === 'A' && work.seq === 1) throw new Error('Microsoft: 404 subscription not found');
  });
  const admin = adminFor(store);
  const a1 = await append(store, 'A', 1);
  await append(store, 'B', 1);
  await append(store, 'C', 1);
  const { process, lines } = run(t, store, w.handler);
  await waitFor('A parked', async () => (await parkedKeys(admin)).includes('A'));
  await append(store, 'A', 2);
  await append(store, 'B', 2);
  await append(store, 'C', 2);
  await waitFor('B and C handled', () => w.seqs('B').length === 2 && w.seqs('C').length === 2);
  await process.idle();

  t.same([w.seqs('B'), w.seqs('C')], [[1, 2], [1, 2]], 'the other keys went on, in order');
  t.same(w.seqs('A'), [], 'nothing of A was handled');
  t.equal(w.deliveries.filter((d) => d.key === 'A' && d.seq === 1).length, 3, 'A/1 was attempted maxAttempts (3) times');
  t.equal(w.deliveries.filter((d) => d.key === 'A' && d.seq === 2).length, 0, 'A/2 was never attempted: it waits behind A/1');

  const held = await admin.held(NAME);
  t.equal(held?.retrying.length, 0);
  const parked = held?.parked[0];
  t.match(parked, {
    process: NAME,
    key: 'A',
    status: 'parked',
    attempts: 3,
    transient: false,
    lastError: 'Microsoft: 404 subscription not found',
    events: [{ position: a1.toString(), type: 'Work' }, { type: 'Work' }],
  });
  t.ok(parked && parked.firstFailureAt <= parked.lastFailureAt, 'first and last failure times');
  t.equal(parked?.events.length, 2, 'the poison event and the one queued behind it');

  const retries = lines.filter((l) => l.msg.startsWith('handler failed; retrying the event later'));
  t.equal(retries.length, 2, 'a warning for each retry scheduled');
  t.match(retries[0], { level: 40, key: 'A', attempt: 1, position: a1.toString(), eventType: 'Work', retryInMs: Number });
  t.match(line(lines, /^event parked/), { level: 50, key: 'A', attempt: 3, position: a1.toString(), why: 'failed 3 times', retry: `POST /api/processes/${NAME}/parked/A/retry` });
  await waitFor('the checkpoint to move past the parked event, which it records as held', async () => ((await readCheckpoint(store, NAME)) ?? 0n) > a1);
  t.pass('the checkpoint moved past the parked event');
});

t.test('RetryLater: retried with the backoff until its deadline, parked once past it; a deadline already past parks at once', async (t) => {
  const store = open(t, join(tempDir(t), 'events.db'));
  const untilSoon = new Date(Date.now() + 400).toISOString();
  let mixed = 0;
  const w = workHandler('x', (_e, work) => {
    if (work.key === 'late') throw new RetryLater('provisioning endpoint answered 503', { until: untilSoon, afterMs: 20 });
    if (work.key === 'past') throw new RetryLater('provisioning endpoint answered 503', { until: '2020-01-01T00:00:00.000Z' });
    if (work.key === 'mixed') throw ++mixed <= 3 ? new RetryLater('not yet') : new Error('refused');
  });
  const admin = adminFor(store);
  await append(store, 'past', 1);
  await append(store, 'late', 1);
  await append(store, 'mixed', 1);
  await append(store, 'fine', 1);
  const { lines } = run(t, store, w.handler, { maxAttempts: 2 });
  await waitFor('all three parked', async () => (await parkedKeys(admin)).length === 3, 10_000);
  t.match(
    ((await admin.held(NAME))?.parked ?? []).find((p) => p.key === 'mixed'),
    { attempts: 5, transient: false, lastError: 'refused' },
    'RetryLaters do not count towards maxAttempts: 3 of them, then 2 errors',
  );
  const parked = (await admin.held(NAME))?.parked ?? [];
  const past = parked.find((p) => p.key === 'past');
  const late = parked.find((p) => p.key === 'late');
  t.match(past, { attempts: 1, transient: true, until: '2020-01-01T00:00:00.000Z', lastError: 'RetryLater: provisioning endpoint answered 503' }, 'past its deadline: parked on the first failure');
  t.ok((late?.attempts ?? 0) > 2, `retried until its deadline although maxAttempts is 2 (${late?.attempts} attempts)`);
  t.equal(late?.until, untilSoon);
  t.ok(late && late.lastFailureAt >= untilSoon, 'the last attempt was at or after the deadline');
  t.same(w.seqs('fine'), [1]);
  t.match(line(lines, /RetryLater\); retrying it later/), { level: 40, key: 'late', transient: true, until: untilSoon });
});

t.test('a restart keeps parked keys parked and resumes retrying keys; the checkpoint record stays one event', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = open(t, path);
  let upstreamDown = true;
  const fail = (_e: RecordedEvent, work: { key: string }) => {
    if (work.key === 'poison') throw new Error('malformed');
    if (work.key === 'waiting' && upstreamDown) throw new RetryLater('ISV provisioning is down', { afterMs: 100 });
  };
  const first = workHandler('first', fail);
  const admin = adminFor(store);
  await append(store, 'poison', 1);
  await append(store, 'waiting', 1);
  await append(store, 'waiting', 2);
  await append(store, 'ok', 1);
  const one = run(t, store, first.handler, { retryLaterMaxMs: 200 });
  await waitFor('poison parked and waiting retrying', async () => {
    const held = await admin.held(NAME);
    return held?.parked.some((p) => p.key === 'poison') && held.retrying.some((r) => r.key === 'waiting' && r.attempts >= 2);
  });
  await one.process.idle();
  await one.process.stop();
  t.same(first.seqs('ok'), [1]);
  const attemptsBefore = first.deliveries.filter((d) => d.key === 'waiting').length;

  const second = workHandler('second', fail);
  const two = run(t, store, second.handler, { retryLaterMaxMs: 200 });
  await two.process.idle();
  await waitFor('the retrying key to be attempted again by the new runner', () => second.deliveries.some((d) => d.key === 'waiting'));
  t.equal(second.deliveries.filter((d) => d.key === 'poison').length, 0, 'the parked key is not attempted again');
  t.equal(second.deliveries.filter((d) => d.key === 'ok').length, 0, 'what was handled is not handed over again');
  t.same(await parkedKeys(admin), ['poison'], 'still listed as parked');
  const retrying = await waitFor('the new failures to be saved', async () =>
    (await admin.held(NAME))?.retrying.find((r) => r.key === 'waiting' && r.attempts > attemptsBefore),
  );
  t.ok(retrying.attempts > attemptsBefore, `the attempt count went on from ${attemptsBefore} (now ${retrying.attempts})`);
  t.match(line(two.lines, /^process started; resuming held keys/), { heldKeys: 2 });

  upstreamDown = false;
  await waitFor('the waiting key to be handled, in order', () => second.seqs('waiting').length === 2);
  t.same(second.seqs('waiting'), [1, 2]);
  await waitFor('the retrying key to leave the list', async () => (await admin.held(NAME))?.retrying.length === 0);
  t.equal((await store.readStream(checkpointStream(NAME))).length, 1, 'the checkpoint stream holds one event');
});

t.test('the operator API lists parked keys and retries one (lease mode): its events are handled in order and the list clears', async (t) => {
  const store = open(t, join(tempDir(t), 'events.db'));
  let broken = true;
  const w = workHandler('x', (_e, work) => {
    if (work.key === 'sub-1' && broken) throw new Error('Microsoft: 404');
  });
  const admin = adminFor(store, 'lease');
  const { process } = run(t, store, w.handler, { mode: 'lease', lease: { pollMs: 50, takeoverAfterMs: 1_500, heartbeatMs: 1_000 } });
  await append(store, 'sub-1', 1);
  await append(store, 'sub-1', 2);
  await append(store, 'sub-2', 1);
  await waitFor('sub-1 parked', async () => (await parkedKeys(admin)).includes('sub-1'));
  await append(store, 'sub-1', 3);
  await process.idle();
  await waitFor('sub-1/3 listed behind the parked event', async () => (await admin.held(NAME))?.parked[0]?.events.length === 3);

  const app = await buildApp({ logger: capturingLogger().logger, store: () => store, api: { operatorToken: [{ name: 'operator', token: TOKEN }, { name: 'alice', token: 'alice-token-0123456789abcdef' }], processes: { processes: () => admin } } });
  t.teardown(() => app.close());
  const auth = { authorization: `Bearer ${TOKEN}` };

  const unauthenticated = await app.inject({ method: 'GET', url: '/api/processes/parked' });
  t.equal(unauthenticated.statusCode, 401);
  t.match(unauthenticated.headers['content-type'], /application\/problem\+json/);

  const list = await app.inject({ method: 'GET', url: '/api/processes/parked', headers: auth });
  t.equal(list.statusCode, 200);
  t.match(list.json(), { parked: [{ process: NAME, key: 'sub-1', status: 'parked', attempts: 3, lastError: 'Microsoft: 404' }], retrying: [] });
  const one = await app.inject({ method: 'GET', url: `/api/processes/${NAME}/parked`, headers: auth });
  t.same(one.json(), list.json(), 'per process, the same');
  const processes = await app.inject({ method: 'GET', url: '/api/processes', headers: auth });
  t.match(processes.json(), { processes: [{ name: NAME, mode: 'lease', parked: 1, retrying: 0, heldEvents: 3, checkpoint: String }] });

  const unknown = await app.inject({ method: 'GET', url: '/api/processes/nope/parked', headers: auth });
  t.equal(unknown.statusCode, 404);
  t.match(unknown.json(), { title: 'process-not-found' });
  const notHeld = await app.inject({ method: 'POST', url: `/api/processes/${NAME}/parked/sub-2/retry`, headers: auth });
  t.equal(notHeld.statusCode, 404);
  t.match(notHeld.json(), { title: 'key-not-held', status: 404 });
  t.match(notHeld.headers['content-type'], /application\/problem\+json/);

  broken = false;
  const retried = await app.inject({ method: 'POST', url: `/api/processes/${NAME}/parked/sub-1/retry`, headers: { authorization: 'Bearer alice-token-0123456789abcdef', 'x-operator-id': 'mallory' } });
  t.equal(retried.statusCode, 202);
  t.same(retried.json(), { process: NAME, key: 'sub-1', status: 'retry-requested', was: 'parked', events: 3 });
  await waitFor('sub-1 handled', () => w.seqs('sub-1').length === 3);
  t.same(w.seqs('sub-1'), [1, 2, 3], 'in order');
  await waitFor('the list to clear', async () => (await admin.held(NAME))?.parked.length === 0);
  const after = await app.inject({ method: 'GET', url: '/api/processes/parked', headers: auth });
  t.same(after.json(), { parked: [], retrying: [] });
  const again = await app.inject({ method: 'POST', url: `/api/processes/${NAME}/parked/sub-1/retry`, headers: auth });
  t.equal(again.statusCode, 404, 'nothing left to retry');
  const requests = await store.readStream(`processctl-${NAME}`);
  t.match(requests.map((e) => [e.type, e.data]), [['ParkedRetryRequested', { key: 'sub-1', actor: 'operator:alice' }]], 'the request is recorded with the operator');
});

t.test('the operator API refuses a retry in persistent mode (EventStoreDB parks there) and answers 503 before the store is open', async (t) => {
  const store = open(t, join(tempDir(t), 'events.db'));
  let admin: ProcessAdmin | undefined;
  const app = await buildApp({ logger: capturingLogger().logger, store: () => store, api: { operatorToken: TOKEN, processes: { processes: () => admin } } });
  t.teardown(() => app.close());
  const auth = { authorization: `Bearer ${TOKEN}` };
  const early = await app.inject({ method: 'GET', url: '/api/processes', headers: auth });
  t.equal(early.statusCode, 503);
  admin = adminFor(store, 'persistent');
  const res = await app.inject({ method: 'POST', url: `/api/processes/${NAME}/parked/x/retry`, headers: auth });
  t.equal(res.statusCode, 409);
  t.match(res.json(), { title: 'parked-in-eventstoredb' });
  t.same((await app.inject({ method: 'GET', url: '/api/processes/parked', headers: auth })).json(), { parked: [], retrying: [] });
});

t.test('the checkpoint never moves past an event in flight, whatever completes after it; a restart hands it over again', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = open(t, path);
  const gate = deferred();
  let dying = true;
  const first = workHandler('first', async (_e, work) => {
    if (work.key === 'slow') {
      await gate.promise;
      if (dying) throw new Error('the instance died before recording its work');
    }
  });
  let before = 0n;
  for (let i = 1; i <= 3; i++) before = await append(store, 'early', i);
  const slow = await append(store, 'slow', 1);
  for (let i = 1; i <= 20; i++) await append(store, `k${i % 5}`, i);
  const one = run(t, store, first.handler, { checkpointEvery: 2, checkpointAfterMs: 20 });
  await waitFor('the events before and after the slow one handled', () => first.handled.length === 23);
  const last = first.handled.reduce((m, h) => (h.position > m ? h.position : m), 0n);
  // Give the saver every chance to save what it would: a save comes at least every two events.
  await append(store, 'k9', 21);
  await waitFor('one more handled', () => first.handled.length === 24);
  const saved = await waitFor('a checkpoint at the event before the slow one', async () => {
    const record = await readCheckpointRecord(store, NAME);
    return record && record.position >= before ? record : undefined;
  });
  t.ok(last > slow, 'later events completed before the slow one');
  t.ok(saved.position < slow, `the checkpoint (${saved.position}) stays before the event in flight (${slow})`);
  t.same(saved.held, [], 'and holds nothing: the slow event is in flight, not held');
  // "Kill" it: stop while the slow event is in flight; the event fails as the instance goes away.
  const stopping = one.process.stop();
  gate.resolve();
  await stopping;
  t.same(first.seqs('slow'), [], 'the slow event was not handled');
  const afterStop = await readCheckpointRecord(store, NAME);
  t.ok(afterStop && afterStop.position < slow, 'nor did the final save move past it');

  dying = false;
  const second = workHandler('second');
  const two = run(t, store, second.handler);
  await two.process.idle();
  t.same(second.seqs('slow'), [1], 'the restarted runner handled it');
  t.equal(second.seqs('early').length, 0, 'the events before the checkpoint were not handed over again');
  t.ok(second.handled.length > 1, `the events after it were handed over again (${second.handled.length}): handlers are idempotent`);
  await waitFor('the checkpoint to pass every event', async () => ((await readCheckpoint(store, NAME)) ?? 0n) >= last);
});

t.test('bounded concurrency across keys, one event at a time and in order within a key', async (t) => {
  const store = open(t, join(tempDir(t), 'events.db'));
  const keys = ['a', 'b', 'c', 'd', 'e', 'f'];
  for (let seq = 1; seq <= 5; seq++) for (const key of keys) await append(store, key, seq);
  let inFlight = 0;
  let most = 0;
  const perKey = new Map<string, number>();
  let overlapWithinKey = false;
  const gate = deferred();
  const w = workHandler('x', async (_e, work) => {
    inFlight++;
    most = Math.max(most, inFlight);
    perKey.set(work.key, (perKey.get(work.key) ?? 0) + 1);
    if ((perKey.get(work.key) ?? 0) > 1) overlapWithinKey = true;
    try {
      await gate.promise;
      await new Promise((r) => setImmediate(r));
    } finally {
      inFlight--;
      perKey.set(work.key, (perKey.get(work.key) ?? 1) - 1);
    }
  });
  const { process } = run(t, store, w.handler, { concurrency: 3 });
  await waitFor('three keys in flight', () => inFlight === 3);
  gate.resolve();
  await process.idle();
  t.equal(w.handled.length, 30);
  t.equal(most, 3, 'at most `concurrency` events at once, and that many');
  t.notOk(overlapWithinKey, 'never two events of one key at once');
  t.same(keys.filter((k) => w.seqs(k).join() !== '1,2,3,4,5'), [], 'each key in order');
});

t.test('a key parked past the checkpoint (a slower key holds it back) is listed at once, and after a restart is neither lost nor doubled', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = open(t, path);
  const admin = adminFor(store);
  const gate = deferred();
  let broken = true;
  let dying = true;
  const fail = async (_e: RecordedEvent, work: { key: string }) => {
    if (work.key === 'slow') {
      await gate.promise;
      if (dying) throw new Error('the instance died before recording its work');
    }
    if (work.key === 'bad' && broken) throw new Error('refused');
  };
  const first = workHandler('first', fail);
  await append(store, 'early', 1);
  const slow = await append(store, 'slow', 1);
  const bad = await append(store, 'bad', 1);
  await append(store, 'bad', 2);
  const one = run(t, store, first.handler);
  await waitFor('bad parked', async () => (await parkedKeys(admin)).includes('bad'));
  const record = await readCheckpointRecord(store, NAME);
  t.ok(record && record.position < slow && bad > record.position, `the checkpoint (${record?.position}) is before both`);
  const listed = (await admin.held(NAME))?.parked[0]?.events ?? [];
  t.equal(listed[0]?.position, bad.toString(), 'listed with the failing event first');
  t.equal(listed.length, 2, 'and the one behind it');
  // "Kill" it while the slow event is in flight: the checkpoint stays before it, the parked key is saved past it.
  const stopping = one.process.stop();
  gate.resolve();
  await stopping;
  const saved = await readCheckpointRecord(store, NAME);
  t.ok(saved && saved.position < slow, 'the checkpoint is still before the slow event');
  dying = false;

  const second = workHandler('second', fail);
  const two = run(t, store, second.handler);
  await two.process.idle();
  t.same(await parkedKeys(admin), ['bad'], 'still parked after the restart');
  t.equal(second.deliveries.filter((d) => d.key === 'bad').length, 0, 'not attempted: the redelivered events are recognised as held');
  broken = false;
  t.match(await admin.retry(NAME, 'bad', 'operator:test'), { outcome: 'requested', events: 2 });
  await waitFor('bad handled', () => second.seqs('bad').length >= 2);
  await two.process.idle();
  t.same(second.seqs('bad'), [1, 2], 'each event once, in order');
  t.same(second.seqs('slow'), [1], 'the slow event was handed over again and handled');
  await waitFor('the list to clear', async () => (await parkedKeys(admin)).length === 0);
});
