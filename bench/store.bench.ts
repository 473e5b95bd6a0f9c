/**
 * Embedded store benchmark: our SQLite event store next to raw better-sqlite3 on the same
 * machine, same file settings (WAL, synchronous=FULL), same run, so our layer's overhead is a ratio.
 *
 *   npm run bench:store                      # defaults
 *   BENCH_SINGLE=2000 BENCH_BATCHED=200000 BENCH_BATCH=100 BENCH_ROUNDS=3 npm run bench:store
 *
 * Each round runs ours then raw on fresh files; the table shows the median of the rounds, because
 * fsync-bound figures swing with whatever else the disk is doing.
 *
 * Then the prefix reads a caught-up subscription makes on a wake-up, at each store size in BENCH_PREFIX_SIZES
 * (default 10000,100000,1000000): an old-shaped file (schema 1) is written, opened (the in-place migration is timed),
 * and each read is timed next to the query version 1 ran (prepared on every call, stream_id range, sorted) on the
 * same file in the same run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openSqliteStore } from '../src/eventstore/sqlite.store.js';
import type { SqliteEventStore } from '../src/eventstore/sqlite.store.js';
import { writeResult } from './support/results.js';
import type { Figure } from './support/results.js';

const SINGLE = Number(process.env.BENCH_SINGLE ?? 2000);
const BATCHED = Number(process.env.BENCH_BATCHED ?? 100000);
const BATCH = Number(process.env.BENCH_BATCH ?? 100);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PREFIX_SIZES = (process.env.BENCH_PREFIX_SIZES ?? '10000,100000,1000000').split(',').map(Number).filter((n) => n > 0);

const dir = mkdtempSync(join(tmpdir(), 'ledger-bench-'));
/** What bench/results/store.json gets (bench/report.ts): the same figures as the printed tables. */
const figures: Figure[] = [];
const payload = (n: number) => ({
  subscriptionId: `6f1ab3d8-0000-4000-8000-${String(n).padStart(12, '0')}`,
  planId: 'gold',
  quantity: n % 50,
  at: '2026-11-24T00:00:00.000Z',
  source: 'webhook',
  operationId: `op-${n}`,
});
const meta = { actor: 'bench', correlationId: 'bench' };

function rate(count: number, ms: number): number {
  return Math.round((count / ms) * 1000);
}

async function time(fn: () => Promise<void> | void): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

async function ours(round: number) {
  const store = openSqliteStore({ path: join(dir, `ours-${round}.db`) });
  const single = await time(async () => {
    for (let i = 0; i < SINGLE; i++) {
      await store.appendToStream(`subscription-${i % 500}`, [{ type: 'QuantityChanged', data: payload(i), metadata: meta }]);
    }
  });
  const batched = await time(async () => {
    for (let i = 0; i < BATCHED; i += BATCH) {
      const events = Array.from({ length: BATCH }, (_, j) => ({ type: 'QuantityChanged', data: payload(i + j), metadata: meta }));
      await store.appendToStream(`bulk-${i / BATCH}`, events, { expectedRevision: 'no_stream' });
    }
  });
  let read = 0;
  const readAll = await time(async () => {
    for await (const _e of store.readAll()) read++;
  });
  await store.close();
  return { single, batched, readAll, read };
}

function raw(round: number) {
  const db = new Database(join(dir, `raw-${round}.db`));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(`CREATE TABLE events (position INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, stream_id TEXT NOT NULL,
    revision INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, recorded_at TEXT NOT NULL, UNIQUE (stream_id, revision))`);
  const insert = db.prepare('INSERT INTO events (event_id, stream_id, revision, type, data, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const now = new Date().toISOString();
  const row = (i: number, stream: string, rev: number) =>
    [crypto.randomUUID(), stream, rev, 'QuantityChanged', JSON.stringify(payload(i)), JSON.stringify(meta), now] as const;
  const revs = new Map<string, number>();
  const single = performance.now();
  for (let i = 0; i < SINGLE; i++) {
    const s = `subscription-${i % 500}`;
    const rev = (revs.get(s) ?? -1) + 1;
    revs.set(s, rev);
    insert.run(...row(i, s, rev)); // autocommit: one transaction per insert, like one append
  }
  const singleMs = performance.now() - single;
  const many = db.transaction((i: number) => {
    for (let j = 0; j < BATCH; j++) insert.run(...row(i + j, `bulk-${i / BATCH}`, j));
  });
  const batched = performance.now();
  for (let i = 0; i < BATCHED; i += BATCH) many.immediate(i);
  const batchedMs = performance.now() - batched;
  let read = 0;
  const readStart = performance.now();
  // Keyset pages of 1000 rows, the same access pattern the store uses, minus its mapping.
  const page = db.prepare('SELECT * FROM events WHERE position > ? ORDER BY position LIMIT 1000');
  for (let after = 0; ; ) {
    const rows = page.all(after) as Array<{ position: number; data: string; metadata: string }>;
    for (const r of rows) {
      JSON.parse(r.data);
      JSON.parse(r.metadata);
      read++;
    }
    if (rows.length < 1000) break;
    after = (rows[rows.length - 1] as { position: number }).position;
  }
  const readMs = performance.now() - readStart;
  db.close();
  return { single: singleMs, batched: batchedMs, readAll: readMs, read };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** Events cycle through these streams' categories, a few hundred streams each, like a ledger's history. */
const categories = ['subscription-', 'notification-', 'outbox-', 'operation-', 'reconciliation-'];

/** A schema-1 file of `count` events, written in one transaction (fast; the shape is what matters). */
function oldShapedFile(path: string, count: number): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(`CREATE TABLE events (position INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, stream_id TEXT NOT NULL,
    revision INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, recorded_at TEXT NOT NULL, UNIQUE (stream_id, revision));
    CREATE TABLE streams (stream_id TEXT PRIMARY KEY, revision INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    INSERT INTO store_info (key, value) VALUES ('schema_version', '1');
    CREATE TABLE store_probe (id INTEGER PRIMARY KEY CHECK (id = 1), probed_at TEXT NOT NULL, pad BLOB NOT NULL);`);
  const insert = db.prepare('INSERT INTO events (event_id, stream_id, revision, type, data, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const stream = db.prepare('INSERT INTO streams (stream_id, revision) VALUES (?, ?) ON CONFLICT (stream_id) DO UPDATE SET revision = excluded.revision');
  const revs = new Map<string, number>();
  const now = new Date().toISOString();
  const metaJson = JSON.stringify(meta);
  db.transaction(() => {
    for (let i = 0; i < count; i++) {
      const s = `${categories[i % categories.length]}${Math.floor(i / categories.length) % 300}`;
      const rev = (revs.get(s) ?? -1) + 1;
      revs.set(s, rev);
      insert.run(crypto.randomUUID(), s, rev, 'QuantityChanged', JSON.stringify(payload(i)), metaJson, now);
    }
    for (const [s, rev] of revs) stream.run(s, rev);
  })();
  db.close();
}

/** Mean ms per call, repeating for at least 400 ms (and 5 calls). */
async function perCall(fn: () => Promise<unknown> | unknown): Promise<number> {
  let n = 0;
  const start = performance.now();
  while (n < 5 || performance.now() - start < 400) {
    await fn();
    n++;
  }
  return (performance.now() - start) / n;
}

/** Version 1's page read: prepared on every call, an OR of stream_id ranges, ordered by position. */
function oldPage(db: Database.Database, after: number, prefixes: string[], limit: number): unknown[] {
  const where = prefixes.map(() => '(stream_id >= ? AND stream_id < ?)').join(' OR ');
  const rows = db.prepare(`SELECT * FROM events WHERE position > ? AND (${where}) ORDER BY position LIMIT ?`)
    .all(after, ...prefixes.flatMap((p) => [p, `${p}\uffff`]), limit) as Array<{ data: string; metadata: string }>;
  return rows.map((r) => [JSON.parse(r.data), JSON.parse(r.metadata)]);
}

/**
 * Page queries the store runs per append, with one caught-up subscription per category and appends to one of them,
 * each append waiting until its subscriber has the event (one at a time, so wake-ups are not merged).
 */
async function queriesPerAppend(store: SqliteEventStore, tail: number, appends: number): Promise<number> {
  const counts = categories.map(() => 0);
  const subs = categories.map((c) => store.subscribeToAll({ after: BigInt(tail), streamPrefixes: [c] }));
  const loops = subs.map(async (sub, i) => {
    for await (const _e of sub) counts[i] = (counts[i] as number) + 1;
  });
  await new Promise((r) => setTimeout(r, 50)); // every subscription made its first read and waits
  const target = categories.indexOf('notification-');
  const before = store.readStats().pageQueries;
  for (let i = 0; i < appends; i++) {
    await store.appendToStream('notification-bench', [{ type: 'Received', data: payload(i), metadata: meta }]);
    while ((counts[target] as number) <= i) await new Promise((r) => setImmediate(r));
  }
  const queries = store.readStats().pageQueries - before;
  await Promise.all(subs.map((s) => s.close()));
  await Promise.all(loops);
  return queries / appends;
}

async function prefixCosts(size: number): Promise<string[]> {
  const path = join(dir, `prefix-${size}.db`);
  const built = await time(() => oldShapedFile(path, size));
  let store: SqliteEventStore | undefined;
  const migrated = await time(() => { store = openSqliteStore({ path, pollIntervalMs: 3_600_000 }); });
  const s = store as SqliteEventStore;
  const raw = new Database(path, { readonly: true });
  const lastOf = (c: string) => raw.prepare('SELECT MAX(position) FROM events WHERE category = ?').pluck().get(c) as number;
  const out: string[] = [];
  const row = (what: string, oldMs: number, newMs: number) => {
    figures.push({ name: `${what} at ${size.toLocaleString('en-US')} events`, value: Number(newMs.toPrecision(3)), unit: 'ms per call', limit: { name: 'the version 1 query, same file, same run', value: Number(oldMs.toPrecision(3)), unit: 'ms per call' } });
    return out.push([`${what} at ${size}`.padEnd(66), oldMs.toFixed(3).padStart(10), newMs.toFixed(3).padStart(10), (oldMs / newMs).toFixed(0).padStart(8)].join(' '));
  };
  for (const prefixes of [['notification-'], ['notification-', 'subscription-']]) {
    const caughtUp = Math.max(...prefixes.map(lastOf));
    const oneBack = caughtUp - categories.length; // one event of the first category left to read
    const label = prefixes.length === 1 ? 'notification-' : 'notification- + subscription-';
    row(`wake-up read, nothing new (${label})`, await perCall(() => oldPage(raw, caughtUp, prefixes, 1000)), await perCall(() => s.readPage(BigInt(caughtUp), 1000, prefixes)));
    row(`catch-up page of 1000 from the start (${label})`, await perCall(() => oldPage(raw, 0, prefixes, 1000)), await perCall(() => s.readPage(0n, 1000, prefixes)));
    row(`catch-up page of 1000 from the middle (${label})`, await perCall(() => oldPage(raw, size / 2, prefixes, 1000)), await perCall(() => s.readPage(BigInt(size / 2), 1000, prefixes)));
    row(`wake-up read, 1 new event (${label})`, await perCall(() => oldPage(raw, oneBack, prefixes, 1000)), await perCall(() => s.readPage(BigInt(oneBack), 1000, prefixes)));
  }
  const tail = raw.prepare('SELECT MAX(position) FROM events').pluck().get() as number;
  row('idle poll tick (v1: the read; now: the change mark)', await perCall(() => oldPage(raw, tail, ['notification-'], 1000)), await perCall(() => s.changeMark()));
  raw.close();
  const perAppend = await queriesPerAppend(s, tail, 200);
  await s.close();
  rmSync(path, { force: true });
  figures.push({ name: `page queries per append, ${categories.length} caught-up subscriptions (one per category), ${size.toLocaleString('en-US')} events`, value: Number(perAppend.toFixed(2)), unit: 'queries', limit: { name: 'version 1 woke every subscription', value: categories.length, unit: 'queries' } });
  out.push(`  ${size} events: old-shaped file written in ${(built / 1000).toFixed(1)} s, migrated in place at open in ${(migrated / 1000).toFixed(1)} s; `
    + `page queries per append with ${categories.length} caught-up subscriptions (one per category): ${perAppend.toFixed(2)} (v1 woke all ${categories.length})`);
  return out;
}

try {
  type Run = { single: number; batched: number; readAll: number; read: number };
  const os: Run[] = [];
  const rs: Run[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    os.push(await ours(round));
    rs.push(raw(round));
  }
  const m = (runs: Run[], k: 'single' | 'batched' | 'readAll') => median(runs.map((r) => r[k]));
  const read = (os[0] as Run).read;
  const rows = [
    ['single appends (1 event, 1 transaction)', SINGLE, m(os, 'single'), m(rs, 'single')],
    [`batched appends (${BATCH} events per append)`, BATCHED, m(os, 'batched'), m(rs, 'batched')],
    ['read all (events/s)', read, m(os, 'readAll'), m(rs, 'readAll')],
  ] as const;
  console.log(`embedded store benchmark: node ${process.version}, WAL + synchronous=FULL, median of ${ROUNDS} rounds`);
  console.log(['what'.padEnd(44), 'ours/s'.padStart(10), 'raw/s'.padStart(10), 'ours/raw'.padStart(9)].join(' '));
  for (const [what, count, ms, rawMs] of rows) {
    const a = rate(count, ms);
    const b = rate(count, rawMs);
    console.log([what.padEnd(44), String(a).padStart(10), String(b).padStart(10), (a / b).toFixed(2).padStart(9)].join(' '));
    figures.push({ name: what.includes('/s') ? what : `${what}, per second`, value: a, unit: what.startsWith('read') ? 'events/s' : 'appends/s', limit: { name: 'raw better-sqlite3, same settings, same run', value: b, unit: what.startsWith('read') ? 'events/s' : 'appends/s' }, note: `median of ${ROUNDS} rounds` });
  }
  if (read !== (rs[0] as Run).read) console.log(`note: ours read ${read} events, raw read ${(rs[0] as Run).read}`);
  if (PREFIX_SIZES.length > 0) {
    console.log('');
    console.log(`prefix read / wake-up cost (ms per call; v1 = the query before schema 2, same file, same run; ${categories.length} interleaved categories)`);
    console.log(['what'.padEnd(66), 'v1 ms'.padStart(10), 'now ms'.padStart(10), 'v1/now'.padStart(8)].join(' '));
    for (const size of PREFIX_SIZES) for (const line of await prefixCosts(size)) console.log(line);
  }
  console.log(`wrote ${writeResult({ bench: 'store', command: 'npm run bench:store', figures, details: { single: SINGLE, batched: BATCHED, batch: BATCH, rounds: ROUNDS, prefixSizes: PREFIX_SIZES } })}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
