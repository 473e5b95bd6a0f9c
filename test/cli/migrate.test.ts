/**
 * `migrate --to`: the embedded store copied into EventStoreDB — here the gRPC stand-in (test/support/esdb-standin.ts)
 * through the real client; a real server too when EVENTSTORE_CONNECTION_STRING is set. Ids, order, revisions and
 * metadata (a chainHash too) are kept; an interruption half-way, even between an append and its checkpoint, is
 * resumed without a duplicate or a gap; the verification names what differs.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { migrateEvents, readCheckpoint, verifyMigration } from '../../src/application/migrate-store.js';
import type { EventStore, RecordedEvent } from '../../src/eventstore/eventstore.js';
import { openEsdbStore } from '../../src/eventstore/esdb.store.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { startEsdbStandIn } from '../support/esdb-standin.js';
import { syntheticHistory, writeHistory } from '../support/synthetic-history.js';
import { tempDir } from '../support/temp.js';
import { cli, jsonOf } from './helpers.js';

async function source(t: Test, seed: number) {
  const dir = tempDir(t, 'migrate');
  const store = openSqliteStore({ path: join(dir, 'events.db'), pollIntervalMs: 20 });
  t.teardown(() => store.close());
  await writeHistory(store, syntheticHistory({ subscriptions: 12, seed }));
  // A bounded stream (process checkpoints keep their last events only) and metadata with a chain hash.
  for (let i = 0; i < 5; i++) await store.appendToStream(`checkpoint-test${seed}`, [{ type: 'CheckpointSaved', data: { i } }], { keepLast: 2 });
  await store.appendToStream(`audit-${seed}`, [{ type: 'Noted', data: { n: 1 }, metadata: { actor: 'operator:dana', chainHash: 'sha256:abc', correlationId: 'c1' } }]);
  return { dir, store };
}

async function all(store: EventStore): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  for await (const e of store.readAll()) out.push(e);
  return out;
}

/** Dies like a killed process right after its `dieAfter`-th append reached the target (before the checkpoint is saved). */
function dyingAfter(target: EventStore, dieAfter: number): EventStore {
  let n = 0;
  return {
    ...target,
    kind: target.kind,
    readStream: (s, o) => target.readStream(s, o),
    readAll: (o) => target.readAll(o),
    async appendToStream(s, e, o) {
      const result = await target.appendToStream(s, e, o);
      if (++n === dieAfter) throw new Error('killed');
      return result;
    },
  };
}

t.test('copies everything, is interrupted half-way twice (abort, death after an append), resumes, and verifies', async (t) => {
  const standIn = await startEsdbStandIn();
  t.teardown(() => standIn.stop());
  const { dir, store } = await source(t, 7);
  const target = await openEsdbStore(standIn.connectionString);
  t.teardown(() => target.close());
  const events = await all(store);
  const checkpointPath = join(dir, 'migrate-checkpoint.json');
  const options = { source: store, targetName: 'standin', checkpointPath, pageSize: 7 };

  const abort = new AbortController();
  await t.rejects(migrateEvents({ ...options, target, signal: abort.signal, onProgress: (n) => n >= events.length / 3 && abort.abort(new Error('interrupted')) }), /interrupted/);
  const first = readCheckpoint(checkpointPath);
  t.ok(first && first.copied > 0 && first.copied < events.length, `a checkpoint part-way (${first?.copied} of ${events.length})`);

  await t.rejects(migrateEvents({ ...options, target: dyingAfter(target, Math.floor(events.length / 3)) }), /killed/, 'dies after an append, before its checkpoint');
  const mid = (await verifyMigration(store, target)).ok;
  t.notOk(mid, 'not complete yet: the verification says so');

  const resumed = await migrateEvents({ ...options, target });
  t.ok(resumed.resumedAfter, 'resumed after the checkpoint');
  t.ok(resumed.skipped >= 1, 'the events copied after the last checkpoint are recognised, not copied again');
  const copied = await all(target);
  t.same(copied.map((e) => [e.streamId, e.id, e.type]), events.map((e) => [e.streamId, e.id, e.type]), 'same events, same order, no duplicate, no gap');
  const bounded = (e: { streamId: string }) => e.streamId.startsWith('checkpoint-');
  t.same(copied.filter((e) => !bounded(e)).map((e) => e.metadata), events.filter((e) => !bounded(e)).map((e) => e.metadata), 'metadata verbatim, and the chainHash the target wrote equals the source\'s');
  const withoutHash = ({ chainHash: _h, ...rest }: Record<string, unknown>) => rest;
  t.same(copied.filter(bounded).map((e) => withoutHash(e.metadata)), events.filter(bounded).map((e) => withoutHash(e.metadata)), 'a renumbered (bounded) stream: metadata verbatim but its chain, which starts afresh at 0');
  t.ok(copied.filter(bounded).some((e, i) => e.metadata.chainHash !== events.filter(bounded)[i]?.metadata.chainHash), 'the renumbered stream has a chain of its own in the target');
  const subscriptionStream = events.find((e) => e.streamId.startsWith('subscription-'))?.streamId ?? '';
  t.same((await target.readStream(subscriptionStream)).map((e) => e.revision), (await store.readStream(subscriptionStream)).map((e) => e.revision), 'revisions kept');
  const report = await verifyMigration(store, target);
  t.ok(report.ok, JSON.stringify(report.differences));
  t.match(report.chains, { ok: true, problemCount: 0 }, "the target's chains verify");
  t.ok(report.chains.verified >= events.length - 2, `${report.chains.verified} hashes recomputed in the target`);
  t.same(report.renumbered, ['checkpoint-test7'], 'the bounded stream is reported as renumbered from 0');

  const rerun = await migrateEvents({ ...options, target });
  t.match(rerun, { copied: events.length, appended: 0 }, 'a re-run appends nothing more');
  t.equal((await all(target)).length, events.length);

  await target.appendToStream(`intruder-${randomUUID()}`, [{ type: 'X', data: {} }]);
  const broken = await verifyMigration(store, target);
  t.notOk(broken.ok, 'an event only in the target fails the verification');
  t.match(broken.differences, [{ problem: 'in the target only' }]);
});

t.test('the CLI: migrate --to, --json, exit codes; refuses another target\'s checkpoint', async (t) => {
  const standIn = await startEsdbStandIn();
  t.teardown(() => standIn.stop());
  const { dir, store } = await source(t, 8);
  const count = (await all(store)).length;
  await store.close();
  const env = { DATA_DIR: dir };
  const ran = await cli(['migrate', '--to', standIn.connectionString, '--json'], env);
  t.equal(ran.code, 0, ran.err);
  t.match(jsonOf(ran), { ok: true, copy: { copied: count }, verification: { ok: true, events: count } });
  t.ok(existsSync(join(dir, 'migrate-checkpoint.json')), 'the checkpoint in DATA_DIR');
  const again = await cli(['migrate', '--to', standIn.connectionString], env);
  t.equal(again.code, 0);
  t.match(again.out, /verification passed/);
  // The other commands on EventStoreDB (the migrated copy): the same history and the same export, event for event.
  let id = '';
  const sqlite = openSqliteStore({ path: join(dir, 'events.db') });
  for await (const e of sqlite.readAll({ streamPrefixes: ['subscription-'], maxCount: 1 })) id = e.streamId.slice('subscription-'.length);
  await sqlite.close();
  const esdbEnv = { DATA_DIR: dir, EVENTSTORE_CONNECTION_STRING: standIn.connectionString };
  const strip = (ran: Awaited<ReturnType<typeof cli>>) => (jsonOf(ran) as { events: Array<Record<string, unknown>> }).events.map(({ position: _p, recordedAt: _r, ...rest }) => rest);
  t.same(strip(await cli(['history', id, '--json'], esdbEnv)), strip(await cli(['history', id, '--json'], env)), 'history on EventStoreDB = on the embedded store');
  const ids = (ran: Awaited<ReturnType<typeof cli>>) => ran.stdout.split('\n').filter((l) => l).map((l) => (JSON.parse(l) as { eventId: string }).eventId);
  t.same(ids(await cli(['export'], esdbEnv)), ids(await cli(['export'], env)), 'export on EventStoreDB: the same events in the same order');

  const other = await cli(['migrate', '--to', 'esdb://127.0.0.1:1?tls=false'], env);
  t.equal(other.code, 1, 'a checkpoint of another target: refused');
  t.match(other.err, /checkpoint of a migration to/);
  t.equal((await cli(['migrate', '--to', 'postgres://x'], env)).code, 64, 'not an EventStoreDB connection string: usage');
  t.equal((await cli(['migrate'], env)).code, 64, '--to is required');
});

const real = process.env.EVENTSTORE_CONNECTION_STRING;
t.test('against a real EventStoreDB', { skip: real ? false : 'EVENTSTORE_CONNECTION_STRING is not set: the real-server migration was skipped (the stand-in tests above ran)' }, async (t) => {
  const { dir, store } = await source(t, Date.now() % 100_000);
  const target = await openEsdbStore(real ?? '');
  t.teardown(() => target.close());
  const ours = new Set((await all(store)).map((e) => e.id));
  const result = await migrateEvents({ source: store, target, targetName: 'real', checkpointPath: join(dir, 'cp.json') });
  t.equal(result.copied, ours.size);
  // A real server holds other tests' events: check ours, stream by stream.
  for (const e of await all(store)) {
    const copiedStream = await target.readStream(e.streamId);
    t.ok(copiedStream.some((c) => c.id === e.id && JSON.stringify(c.data) === JSON.stringify(e.data)), `${e.streamId} ${e.id}`);
  }
});
