/**
 * The embedded store on a small volume that fills up (issue 10): a real tmpfs of a few MiB, filled by the
 * store's own events. A failed append is reported and leaves nothing behind; ping() (/readyz) says why;
 * once space is freed the store truncates its WAL and works again, by itself and after a restart.
 */
import { existsSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { StoreUnavailableError } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { SqliteEventStore } from '../../src/eventstore/sqlite.store.js';
import { StoreNotWritableError } from '../../src/eventstore/write-health.js';
import { mountTmpfs, tmpfsUnavailable } from '../support/tmpfs.js';
import { waitFor } from '../support/wait.js';

const batch = (k: number) => Array.from({ length: 20 }, (_, n) => ({ type: 'Filled', data: { k, n, pad: 'x'.repeat(2000) } }));

/** Appends a batch to a new stream each time until the volume is full; returns how many batches were acknowledged and the error. */
async function appendUntilFull(store: SqliteEventStore): Promise<{ acked: number; error: unknown }> {
  for (let k = 0; k < 10_000; k++) {
    try {
      await store.appendToStream(`full-${k}`, batch(k), { expectedRevision: 'no_stream' });
    } catch (error) {
      return { acked: k, error };
    }
  }
  throw new Error('the volume never filled up');
}

async function countFilled(store: SqliteEventStore, streams: number): Promise<number> {
  let n = 0;
  for (let k = 0; k < streams; k++) n += (await store.readStream(`full-${k}`)).length;
  return n;
}

const skip = tmpfsUnavailable() ?? false;

t.test('a full volume: the failing append writes nothing, /readyz says disk full, freeing space brings it back, restarts included', { skip }, async (t) => {
  const dir = mountTmpfs(t, 8);
  const path = join(dir, 'events.db');
  const spare = join(dir, 'other-data.bin');
  writeFileSync(spare, Buffer.alloc(2 * 1024 * 1024)); // something else on the volume, deleted later to make room
  const options = { path, checkpointIntervalMs: 0, writeProbeIntervalMs: 100 };
  let store = openSqliteStore(options);
  t.teardown(() => store.close());

  const { acked, error } = await appendUntilFull(store);
  t.ok(acked > 0, `${acked} batches fitted before the volume was full`);
  t.ok(error instanceof StoreUnavailableError, 'the append that did not fit fails with StoreUnavailableError (503)');
  t.match(error, { message: new RegExp(`^stream full-${acked}: append failed: disk full`) });
  t.same(await store.readStream(`full-${acked}`), [], 'and none of its 20 events is there: never half-written');
  const notReady = await store.ping().then(() => undefined, (e: unknown) => e);
  t.ok(notReady instanceof StoreNotWritableError, 'ping (/readyz) fails');
  t.match(notReady, { reason: 'cannot write: disk full' });

  // A clean restart on the still-full volume: it opens and reads, and says it cannot write.
  await store.close();
  store = openSqliteStore(options);
  t.equal(await countFilled(store, acked), acked * 20, 'every acknowledged event is there after the restart');
  await t.rejects(store.ping(), { name: 'StoreNotWritableError', message: 'cannot write: disk full' }, 'still not ready: the probe cannot write either');

  rmSync(spare);
  await waitFor('ping to succeed once there is room', () => store.ping().then(() => true, () => false), 15_000);
  t.pass('ready again by itself, without a restart');
  const wal = `${path}-wal`;
  await waitFor('the WAL to be cut back', () => !existsSync(wal) || statSync(wal).size <= 256 * 1024, 15_000);
  t.pass('the WAL was checkpointed and truncated after the outage');
  await store.appendToStream(`full-${acked}`, batch(acked), { expectedRevision: 'no_stream' });
  t.equal((await store.readStream(`full-${acked}`)).length, 20, 'the append that failed goes through now');

  await store.close();
  store = openSqliteStore(options);
  await store.ping();
  t.equal(await countFilled(store, acked + 1), (acked + 1) * 20, 'a clean restart on the same volume: everything is there and it is ready');
});
