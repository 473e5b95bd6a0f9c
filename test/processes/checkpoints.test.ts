/**
 * Process checkpoints on both stores: a save keeps the `checkpoint-<name>` stream at one event, a read takes
 * only the last event, and a store written before the bound (one event per save, never trimmed) still reads
 * its newest checkpoint and is trimmed by the next save.
 */
import { join } from 'node:path';
import t from 'tap';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { openEsdbStore } from '../../src/eventstore/esdb.store.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { checkpointStream, readCheckpoint, saveCheckpoint } from '../../src/processes/runner/checkpoints.js';
import { startEsdbStandIn } from '../support/esdb-standin.js';
import { tempDir } from '../support/temp.js';
import { unique } from './support.js';

const standIn = await startEsdbStandIn();
t.teardown(() => standIn.stop());

const stores: Array<[string, () => Promise<EventStore>]> = [
  ['sqlite', async () => openSqliteStore({ path: join(tempDir(t, 'checkpoints'), 'events.db') })],
  ['eventstoredb (stand-in)', () => openEsdbStore(standIn.connectionString)],
];

for (const [kind, open] of stores) {
  t.test(`${kind}: a checkpoint stream holds one event however often it is saved`, async (t) => {
    const store = await open();
    t.teardown(() => store.close());
    const name = unique('ckpt');
    t.equal(await readCheckpoint(store, name), undefined, 'no checkpoint yet');
    for (let p = 1n; p <= 20n; p++) await saveCheckpoint(store, name, p * 100n);
    t.equal(await readCheckpoint(store, name), 2000n, 'the last save wins');
    const events = await store.readStream(checkpointStream(name));
    t.equal(events.length, 1, 'one event left in the stream');
    t.equal(events[0]?.revision, 19n, 'the twentieth');
    t.equal(events[0]?.type, 'CheckpointStored');
  });

  t.test(`${kind}: a long checkpoint stream from before the bound still reads its last event, and is trimmed`, async (t) => {
    const store = await open();
    t.teardown(() => store.close());
    const name = unique('old');
    // What the previous version wrote: one event per save, no bound.
    for (let p = 1; p <= 30; p++) {
      await store.appendToStream(checkpointStream(name), [
        { type: 'CheckpointStored', data: { position: String(p * 10) }, metadata: { actor: `system:${name}` } },
      ]);
    }
    t.equal((await store.readStream(checkpointStream(name))).length, 30, 'thirty events, as an old store has');
    t.equal(await readCheckpoint(store, name), 300n, 'the last event wins');
    await saveCheckpoint(store, name, 310n);
    t.equal(await readCheckpoint(store, name), 310n);
    t.same((await store.readStream(checkpointStream(name))).map((e) => e.revision), [30n], 'the next save trims the rest');
  });
}
