/**
 * A catch-up shares the event loop: while the runner applies a long history that the subscription serves
 * from memory, an HTTP server in the same process answers and timers fire (they are counted from inside the
 * projection, so no timing bound is involved), and the events already applied are not kept alive.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import t from 'tap';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { createLogger } from '../../src/logger.js';
import type { Projection } from '../../src/projections/projection.js';
import { runProjections } from '../../src/projections/runner.js';
import { countEvents, syntheticHistory } from '../support/synthetic-history.js';
import { storeWithHistory } from './helpers.js';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const HISTORY = { subscriptions: 400, seed: 11, start: '2026-01-05T08:00:00.000Z' };
const appends = syntheticHistory(HISTORY);
const TOTAL = countEvents(appends);
const TYPES = new Set(appends.flatMap((a) => a.events.map((e) => e.type)));

/** A projection that only watches: `onEvent` sees each event (and its index) as the runner applies it. */
function probe(onEvent: (e: RecordedEvent, index: number) => void): Projection {
  let index = 0;
  return {
    name: 'probe',
    version: 1,
    description: 'test probe',
    schemaSql: 'CREATE TABLE IF NOT EXISTS probe (n INTEGER)',
    tables: ['probe'],
    views: [],
    streamPrefixes: ['subscription-', 'notification-'],
    handles: TYPES,
    apply: async (_db, e) => onEvent(e, index++),
  };
}

t.test('HTTP is answered and timers fire while a catch-up of thousands of events runs', async (t) => {
  const { store, dir } = await storeWithHistory(t, HISTORY);
  const server = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

  let answers = 0;
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  t.teardown(() => clearInterval(timer));
  let stopped = false;
  const client = (async () => {
    while (!stopped) {
      const res = await fetch(url);
      await res.text();
      answers++;
    }
  })();

  const seen: Array<{ answers: number; ticks: number }> = [];
  const running = runProjections({
    store,
    path: join(dir, 'readmodels.db'),
    logger,
    projections: [probe(() => seen.push({ answers, ticks }))],
    batchSize: 50,
  });
  t.teardown(() => running.stop());
  await running.idle();
  stopped = true;
  await client;

  t.equal(seen.length, TOTAL, `every one of the ${TOTAL} events was applied`);
  const first = seen[0] as { answers: number; ticks: number };
  const last = seen[seen.length - 1] as { answers: number; ticks: number };
  t.ok(last.answers - first.answers >= 3, `HTTP answered during the catch-up (${last.answers - first.answers} answers between the first and the last event)`);
  t.ok(last.ticks - first.ticks >= 3, `a timer fired during the catch-up (${last.ticks - first.ticks} ticks)`);
});

t.test('events already applied are not kept alive during a catch-up', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const { store, dir } = await storeWithHistory(t, HISTORY);
  const refs: Array<WeakRef<RecordedEvent>> = [];
  const at = Math.floor((TOTAL * 3) / 4);
  let alive = -1;
  const running = runProjections({
    store,
    path: join(dir, 'readmodels.db'),
    logger,
    projections: [
      probe((e, i) => {
        refs.push(new WeakRef(e));
        if (i !== at) return;
        gc();
        alive = refs.slice(0, Math.floor(TOTAL / 2)).filter((r) => r.deref() !== undefined).length;
      }),
    ],
    batchSize: 50,
  });
  t.teardown(() => running.stop());
  await running.idle();
  t.ok(alive >= 0, 'the check ran');
  // The store's current page (1000 events) and the batch may hold some; the first half of the history must be gone.
  t.ok(alive < TOTAL / 4, `${alive} of the first ${Math.floor(TOTAL / 2)} events still alive at event ${at}`);
});
