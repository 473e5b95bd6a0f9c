/**
 * Webhook ingest benchmark (issue 11): the real service (`src/server.ts`, a child process, its own event loop) on a
 * SQLite file holding N events already, receiving authenticated notifications over HTTP from a load generator in
 * this process: `CONNECTIONS` requests in flight for `SECONDS`, each with a real token signed by the built-in
 * emulator's key (the service verifies it against the emulator's published keys) and a notification of its own
 * operation id. Each 200 means the delivery is durable in the store.
 *
 * Limits measured in the same run, on the same machine:
 * - jose verification alone (the same token, the same key): what authentication costs;
 * - one raw durable SQLite insert per request (WAL, synchronous=FULL, one transaction each): what one fsync per
 *   request allows, without group commit.
 *
 *   npm run bench:ingest                                   # sizes 0 and 100000
 *   BENCH_INGEST_SIZES=0,100000,1000000 BENCH_INGEST_SECONDS=10 BENCH_INGEST_CONNECTIONS=50 npm run bench:ingest
 *
 * Prints a table and writes bench/results/ingest.json (machine-readable, to see a regression).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { startEmulator } from '../src/emulator/emulator.js';
import { openSqliteStore } from '../src/eventstore/sqlite.store.js';
import { syntheticHistory, writeHistory } from '../test/support/synthetic-history.js';
import { emulatorEnv, startService } from './support/service.js';

const SIZES = (process.env.BENCH_INGEST_SIZES ?? '0,100000').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_INGEST_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_INGEST_CONNECTIONS ?? 50);
const root = join(import.meta.dirname, '..');

type Figures = { size: number; events: number; requests: number; perSecond: number; p50Ms: number; p99Ms: number; errors: number; statuses: Record<string, number> };

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** N events of realistic subscription history, written straight into the store before the service starts. */
async function prefill(path: string, size: number): Promise<number> {
  if (size === 0) return 0;
  const store = openSqliteStore({ path });
  let written = 0;
  for (let seed = 1; written < size; seed++) {
    const appends = syntheticHistory({ subscriptions: 2000, seed });
    const take = appends.slice(0, Math.max(1, Math.ceil((size - written) / 3)));
    await writeHistory(store, take);
    written += take.reduce((n, a) => n + a.events.length, 0);
  }
  await store.close();
  return written;
}

async function load(url: string, token: string): Promise<Omit<Figures, 'size' | 'events'>> {
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  const until = Date.now() + SECONDS * 1000;
  const started = Date.now();
  const worker = async () => {
    while (Date.now() < until) {
      const body = JSON.stringify({
        id: crypto.randomUUID(),
        activityId: crypto.randomUUID(),
        subscriptionId: crypto.randomUUID(),
        publisherId: 'contoso',
        offerId: 'fulfillment-ledger',
        planId: 'standard',
        quantity: 5,
        timeStamp: new Date().toISOString(),
        action: 'Suspend',
        status: 'Succeeded',
      });
      const t0 = performance.now();
      try {
        const res = await fetch(`${url}/webhook`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body });
        await res.arrayBuffer();
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status === 200) latencies.push(performance.now() - t0);
        else errors++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  const elapsed = (Date.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    perSecond: Math.round(latencies.length / elapsed),
    p50Ms: Math.round(percentile(latencies, 50) * 10) / 10,
    p99Ms: Math.round(percentile(latencies, 99) * 10) / 10,
    errors,
    statuses,
  };
}

async function joseLimit(token: string, metadataUrl: string, audience: string): Promise<number> {
  const metadata = (await (await fetch(metadataUrl)).json()) as { jwks_uri: string };
  const keys = createRemoteJWKSet(new URL(metadata.jwks_uri));
  await jwtVerify(token, keys, { audience });
  const until = performance.now() + 2000;
  let n = 0;
  while (performance.now() < until) {
    await jwtVerify(token, keys, { audience });
    n++;
  }
  return Math.round(n / 2);
}

function rawInsertLimit(dir: string): number {
  const db = new Database(join(dir, 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT, data TEXT)');
  const insert = db.prepare('INSERT INTO events (stream_id, data) VALUES (?, ?)');
  const one = db.transaction((i: number) => insert.run(`notification-${i}`, JSON.stringify({ i, body: 'x'.repeat(400) })));
  const until = performance.now() + 2000;
  let n = 0;
  while (performance.now() < until) one(n++);
  db.close();
  return Math.round(n / 2);
}

const emulator = await startEmulator({ operationDelayMs: 50 });
const metadataUrl = emulator.openIdConfigurationUrl;
const token = await emulator.signer.webhookToken();
if (!token) throw new Error('the emulator signed no webhook token');
const work = mkdtempSync(join(tmpdir(), 'ledger-ingest-'));
const results: Figures[] = [];
try {
  const jose = await joseLimit(token, metadataUrl, emulator.publisherAppId);
  const raw = rawInsertLimit(work);
  for (const size of SIZES) {
    const dir = join(work, `size-${size}`);
    mkdirSync(dir);
    const events = await prefill(join(dir, 'events.db'), size);
    const service = await startService({ DATA_DIR: dir, ...emulatorEnv(emulator) });
    try {
      results.push({ size, events, ...(await load(service.url, token)) });
    } finally {
      await service.stop();
    }
  }
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`;
  console.log(`webhook ingest: ${CONNECTIONS} connections, ${SECONDS} s per size; ${machine}`);
  console.log(`limits in this run: jose verification alone ${jose}/s; one raw durable SQLite insert per request ${raw}/s`);
  console.log('stored events   accepted/s    p50 ms    p99 ms   errors   vs empty   vs raw-insert limit');
  const empty = results.find((r) => r.size === 0)?.perSecond;
  for (const r of results) {
    const vsEmpty = empty ? (r.perSecond / empty).toFixed(2) : '–';
    console.log(
      `${String(r.events).padStart(13)}   ${String(r.perSecond).padStart(10)}   ${String(r.p50Ms).padStart(7)}   ${String(r.p99Ms).padStart(7)}   ${String(r.errors).padStart(6)}   ${vsEmpty.padStart(8)}   ${(r.perSecond / raw).toFixed(2).padStart(8)}`,
    );
  }
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(
    join(root, 'bench', 'results', 'ingest.json'),
    `${JSON.stringify({ at: new Date().toISOString(), machine, connections: CONNECTIONS, seconds: SECONDS, limits: { joseVerifyPerSecond: jose, rawDurableInsertPerSecond: raw }, results }, null, 2)}\n`,
  );
} finally {
  await emulator.close();
  rmSync(work, { recursive: true, force: true });
}
