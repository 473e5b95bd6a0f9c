import { spawn } from 'node:child_process';
import { childNodeArgs } from '../support/child.js';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';
import Database from 'better-sqlite3';
import { StoreError, StoreUnavailableError } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { eventStoreContract } from './contract.js';
import { tempDir } from '../support/temp.js';

const child = join(import.meta.dirname, 'fixtures', 'append-child.ts');

function startChild(args: string[]) {
  const proc = spawn(process.execPath, childNodeArgs(child, ...args), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: proc.stdout });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { proc, lines, exited };
}

eventStoreContract(t, 'sqlite (file)', async () => openSqliteStore({ path: join(tempDir(t, 'contract'), 'events.db'), pollIntervalMs: 50 }));

t.test('the database runs in WAL mode with full sync and survives reopening', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = openSqliteStore({ path });
  await store.appendToStream('subscription-1', [{ type: 'Purchased', data: { a: 1 } }]);
  await store.close();
  const raw = new Database(path, { readonly: true });
  t.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
  raw.close();
  const again = openSqliteStore({ path });
  t.teardown(() => again.close());
  t.same((await again.readStream('subscription-1')).map((e) => e.data), [{ a: 1 }]);
});

t.test('clear errors: closed store, reused event id in another stream, unserialisable data', async (t) => {
  const store = openSqliteStore({ path: join(tempDir(t), 'events.db') });
  await store.appendToStream('a-1', [{ id: '00000000-0000-4000-8000-000000000001', type: 'X', data: {} }]);
  await t.rejects(
    store.appendToStream('b-1', [{ id: '00000000-0000-4000-8000-000000000001', type: 'X', data: {} }]),
    { name: 'StoreError', message: /repeats an earlier append/ },
  );
  await t.rejects(store.appendToStream('c-1', [{ type: 'X', data: { big: 1n } }]), StoreError);
  t.same(await store.readStream('c-1'), [], 'nothing written by the failed append');
  await store.close();
  await t.rejects(store.readStream('a-1'), StoreUnavailableError);
});

t.test('crash: a process killed mid-stream loses nothing it had acknowledged', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const { proc, lines, exited } = startChild([path, 'crash-1', '100000']);
  let acked = 0;
  for await (const line of lines) {
    if (line.startsWith('ack ')) acked = Number(line.split(' ')[2]);
    if (acked >= 300) {
      proc.kill('SIGKILL');
      break;
    }
  }
  const result = await exited;
  t.equal(result.signal, 'SIGKILL', 'the writer was killed, not finished');
  const store = openSqliteStore({ path });
  t.teardown(() => store.close());
  const events = await store.readStream('crash-1');
  t.ok(events.length >= acked, `all ${acked} acknowledged appends are there (found ${events.length})`);
  t.same(
    events.slice(0, acked).map((e) => (e.data as { n: number }).n),
    Array.from({ length: acked }, (_, i) => i + 1),
    'in order, none missing',
  );
  // The store is usable after the crash: the next append continues the stream.
  const r = await store.appendToStream('crash-1', [{ type: 'After', data: {} }], { expectedRevision: BigInt(events.length - 1) });
  t.equal(r.nextExpectedRevision, BigInt(events.length));
});

t.test('two processes racing on one stream through one file: every append lands once, conflicts are reported', async (t) => {
  const path = join(tempDir(t), 'events.db');
  openSqliteStore({ path }).close(); // create the schema before the race
  const a = startChild([path, 'race-1', '200', 'race']);
  const b = startChild([path, 'race-1', '200', 'race']);
  const outputs = await Promise.all(
    [a, b].map(async (c) => {
      let done = '';
      for await (const line of c.lines) if (line.startsWith('done')) done = line;
      const exit = await c.exited;
      return { done, exit };
    }),
  );
  for (const o of outputs) t.equal(o.exit.code, 0, `writer exited cleanly ${o.exit.stderr}`);
  const store = openSqliteStore({ path });
  t.teardown(() => store.close());
  const events = await store.readStream('race-1');
  t.equal(events.length, 400, 'every append landed exactly once');
  t.same(events.map((e) => e.revision), Array.from({ length: 400 }, (_, i) => BigInt(i)), 'revisions are contiguous');
  const conflicts = outputs.reduce((sum, o) => sum + Number(/conflicts=(\d+)/.exec(o.done)?.[1] ?? 0), 0);
  t.comment(`conflicts seen by the two writers: ${conflicts}`);
});

t.test('a subscriber sees events appended by another process on the same file', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = openSqliteStore({ path, pollIntervalMs: 20 });
  t.teardown(() => store.close());
  const sub = store.subscribeToAll({ streamPrefixes: ['other-'] });
  const c = startChild([path, 'other-1', '5']);
  const seen: number[] = [];
  const timer = setTimeout(() => void sub.close(), 15000);
  for await (const e of sub) {
    seen.push((e.data as { n: number }).n);
    if (seen.length === 5) break;
  }
  clearTimeout(timer);
  await c.exited;
  t.same(seen, [1, 2, 3, 4, 5]);
});
