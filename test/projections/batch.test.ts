/**
 * A projection's batch (`beginBatch`: rows kept in memory, written once at `flush`) gives exactly the tables of
 * `apply` event by event, whatever the batch boundaries, replays included: every table, the folded state's JSON
 * text and the positions included.
 */
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { allProjections } from '../../src/projections/views/index.js';
import type { ReadModelTarget } from '../../src/projections/target.js';
import { syntheticHistory } from '../support/synthetic-history.js';
import { dump, forEachTarget, recorder, rowCount, testTarget } from './helpers.js';

function recorded(): RecordedEvent[] {
  const record = recorder();
  const out: RecordedEvent[] = [];
  for (const a of syntheticHistory({ subscriptions: 80, seed: 11 })) for (const e of a.events) out.push(record(a.streamId, e.type, e.data, e.metadata ?? {}));
  return out;
}

const handled = (e: RecordedEvent) => (p: (typeof allProjections)[number]) => p.handles.has(e.type) && p.streamPrefixes.some((s) => e.streamId.startsWith(s));

async function eventByEvent(target: ReadModelTarget, events: readonly RecordedEvent[]): Promise<void> {
  await target.transaction(async (db) => {
    for (const e of events) for (const p of allProjections.filter(handled(e))) await p.apply(db, e);
  });
}

async function inBatches(target: ReadModelTarget, events: readonly RecordedEvent[], size: number): Promise<void> {
  for (let i = 0; i < events.length; i += size) {
    const slice = events.slice(i, i + size);
    await target.transaction(async (db) => {
      for (const p of allProjections) {
        const batch = p.beginBatch?.(db);
        try {
          for (const e of slice) if (handled(e)(p)) await p.apply(db, e);
          await batch?.flush();
        } finally {
          batch?.close();
        }
      }
    });
  }
}

await forEachTarget('batches of any size give the tables of event-by-event application; replays in a batch change nothing', async (t, kind) => {
  const events = recorded();
  // The usage read model (metering) writes each event at once: it has no batches, and this history has no usage.
  const batched = allProjections.filter((p) => p.name !== 'usage');
  t.ok(batched.every((p) => p.beginBatch), 'every projection but usage has batches');
  t.ok(events.length > 1000, `${events.length} events`);
  const reference = await testTarget(t, kind, allProjections);
  await eventByEvent(reference, events);
  const expected = await dump(reference, allProjections);
  const rows = rowCount(expected);
  t.ok(Object.entries(rows).every(([table, n]) => n > 0 || table === 'usage_hours'), `every table but usage_hours has rows: ${JSON.stringify(rows)}`);

  for (const size of kind === 'sqlite' ? [1, 7, 250, events.length] : [7, events.length]) {
    const db = await testTarget(t, kind, allProjections);
    await inBatches(db, events, size);
    t.same(await dump(db, allProjections), expected, `batches of ${size}: the same tables`);
  }

  // A batch that holds every event twice and the second half again (at-least-once, inside one batch).
  const db = await testTarget(t, kind, allProjections);
  await inBatches(db, [...events.flatMap((e) => [e, e]), ...events.slice(events.length / 2)], events.length * 3);
  t.same(await dump(db, allProjections), expected, 'duplicates inside a batch: the same tables');

});
