/**
 * Embedded store benchmark: our SQLite event store next to raw better-sqlite3 on the same
 * machine, same file settings (WAL, synchronous=FULL), same run, so our layer's overhead is a ratio.
 *
 *   npm run bench:store                      # defaults
 *   BENCH_SINGLE=2000 BENCH_BATCHED=200000 BENCH_BATCH=100 BENCH_ROUNDS=3 npm run bench:store
 *
 * Each round runs ours then raw on fresh files; the table shows the median of the rounds, because
 * fsync-bound figures swing with whatever else the disk is doing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openSqliteStore } from '../src/eventstore/sqlite.store.js';

const SINGLE = Number(process.env.BENCH_SINGLE ?? 2000);
const BATCHED = Number(process.env.BENCH_BATCHED ?? 100000);
const BATCH = Number(process.env.BENCH_BATCH ?? 100);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const dir = mkdtempSync(join(tmpdir(), 'ledger-bench-'));
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
  }
  if (read !== (rs[0] as Run).read) console.log(`note: ours read ${read} events, raw read ${(rs[0] as Run).read}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
