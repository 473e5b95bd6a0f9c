/**
 * Prefix reads on the SQLite store: the schema-2 migration of an old file, the same events as the query they
 * replace, index ranges in the query plan, and wake-ups only for subscriptions that can have something new.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { migrateSchema } from '../../src/eventstore/sqlite-migrate.js';
import { categoryOf, readStatement } from '../../src/eventstore/sqlite-reads.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { childNodeArgs } from '../support/child.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

/** The schema files were created with before version 2 (no category column, no index, no trigger). */
const schemaV1 = `
CREATE TABLE events (position INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, stream_id TEXT NOT NULL,
  revision INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, recorded_at TEXT NOT NULL,
  UNIQUE (stream_id, revision));
CREATE TABLE streams (stream_id TEXT PRIMARY KEY, revision INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO store_info (key, value) VALUES ('schema_version', '1');
CREATE TABLE store_probe (id INTEGER PRIMARY KEY CHECK (id = 1), probed_at TEXT NOT NULL, pad BLOB NOT NULL);
`;

const streamIds = ['subscription-1', 'subscription-12', 'notification-1', 'outbox-a', 'nodash', 'x-y-1', 'x-y-2', 'x-z', 'subx-1'];

/** An old-shaped file of `count` events over `streamIds`, written the way version 1 wrote them. */
function oldFile(path: string, count: number): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(schemaV1);
  const insert = db.prepare('INSERT INTO events (event_id, stream_id, revision, type, data, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const stream = db.prepare('INSERT INTO streams (stream_id, revision) VALUES (?, ?) ON CONFLICT (stream_id) DO UPDATE SET revision = excluded.revision');
  const revs = new Map<string, number>();
  db.transaction(() => {
    for (let i = 0; i < count; i++) {
      const s = streamIds[(i * 7) % streamIds.length] as string;
      const rev = (revs.get(s) ?? -1) + 1;
      revs.set(s, rev);
      insert.run(randomUUID(), s, rev, 'Old', JSON.stringify({ i }), '{}', '2026-01-01T00:00:00.000Z');
      stream.run(s, rev);
    }
  })();
  db.close();
}

/** The query prefix reads ran before version 2, run on a connection of its own. */
function oldQuery(db: Db, after: number, prefixes: string[]): number[] {
  const parts = prefixes.map(() => '(stream_id >= ? AND stream_id < ?)');
  const where = prefixes.length ? ` AND (${parts.join(' OR ')})` : '';
  const sql = `SELECT position FROM events WHERE position > ?${where} ORDER BY position`;
  return db.prepare(sql).pluck().all(after, ...prefixes.flatMap((p) => [p, `${p}\uffff`])) as number[];
}

async function positions(events: AsyncIterable<RecordedEvent>): Promise<number[]> {
  const out: number[] = [];
  for await (const e of events) out.push(Number(e.position));
  return out;
}

function uncategorised(db: Db): number {
  return db.prepare('SELECT count(*) FROM events WHERE category IS NULL').pluck().get() as number;
}

t.test('an old-shaped file is migrated in place at open: every row gets its category, the index, version 2', async (t) => {
  const path = join(tempDir(t), 'events.db');
  oldFile(path, 2500);
  const store = openSqliteStore({ path });
  await store.appendToStream('subscription-1', [{ type: 'New', data: {} }]);
  const raw = new Database(path, { readonly: true });
  t.teardown(() => raw.close());
  const rows = raw.prepare('SELECT stream_id, category FROM events').all() as Array<{ stream_id: string; category: string }>;
  t.equal(rows.length, 2501);
  t.same(rows.filter((r) => r.category !== categoryOf(r.stream_id)), [], 'every category is the stream id up to its first -');
  t.equal(raw.prepare("SELECT value FROM store_info WHERE key = 'schema_version'").pluck().get(), '2');
  t.ok(raw.prepare("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'events_category'").get(), 'the index exists');
  t.equal((await positions(store.readAll({ streamPrefixes: ['subscription-'] }))).length, oldQuery(raw, 0, ['subscription-']).length);
  await store.close();
  const again = openSqliteStore({ path });
  t.equal((await again.readStream('subscription-1')).at(-1)?.type, 'New', 'the migrated file opens again');
  await again.close();
});

t.test('the migration is idempotent, runs in batches, and finishes one cut short', async (t) => {
  const path = join(tempDir(t), 'events.db');
  oldFile(path, 1000);
  const db = new Database(path);
  t.teardown(() => db.close());
  // Cut short: the column and some rows filled, no index, version still 1.
  db.exec('ALTER TABLE events ADD COLUMN category TEXT');
  db.exec("UPDATE events SET category = 'wrong-but-kept' WHERE position <= 10");
  const report = migrateSchema(db, 300);
  t.same(report, { from: 1, backfilled: 990, batches: 4 }, 'only the rows without a category, 300 per transaction');
  t.equal(uncategorised(db), 0);
  t.equal(migrateSchema(db, 300), undefined, 'nothing left to do on a version-2 file');
  // A writer of the previous version (no category in its insert) on a migrated file: the trigger fills it.
  db.prepare("INSERT INTO events (event_id, stream_id, revision, type, data, metadata, recorded_at) VALUES (?, 'notification-old', 0, 'Old', '{}', '{}', 'now')").run(randomUUID());
  t.equal(db.prepare("SELECT category FROM events WHERE stream_id = 'notification-old'").pluck().get(), 'notification-');
  const store = openSqliteStore({ path });
  t.teardown(() => store.close());
  const got = await positions(store.readAll({ streamPrefixes: ['notification-'] }));
  t.same(got, oldQuery(db, 10, ['notification-']), "an old writer's event is read through the category");
});

t.test('two processes opening the same old file at once both migrate it safely', async (t) => {
  const path = join(tempDir(t), 'events.db');
  oldFile(path, 120_000);
  const child = join(import.meta.dirname, 'fixtures', 'append-child.ts');
  const run = (stream: string) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const proc = spawn(process.execPath, childNodeArgs(child, path, stream, '3'), { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      proc.on('exit', (code) => resolve({ code, stderr }));
    });
  const results = await Promise.all([run('subscription-a'), run('notification-b')]);
  t.same(results.map((r) => r.code), [0, 0], results.map((r) => r.stderr).join('\n'));
  const raw = new Database(path, { readonly: true });
  t.teardown(() => raw.close());
  t.equal(uncategorised(raw), 0, 'every row has its category');
  t.equal(raw.prepare('SELECT count(*) FROM events').pluck().get(), 120_006);
  const store = openSqliteStore({ path });
  t.teardown(() => store.close());
  t.same(await positions(store.readAll({ streamPrefixes: ['notification-'] })), oldQuery(raw, 0, ['notification-']));
});

t.test('prefix reads return exactly the events the previous query returned, in order, across pages', async (t) => {
  const path = join(tempDir(t), 'events.db');
  oldFile(path, 600);
  const store = openSqliteStore({ path, pageSize: 7 });
  t.teardown(() => store.close());
  for (let i = 0; i < 60; i++) await store.appendToStream(streamIds[i % streamIds.length] as string, [{ type: 'New', data: { i } }]);
  const raw = new Database(path, { readonly: true });
  t.teardown(() => raw.close());
  const sets = [
    ['subscription-'], ['notification-', 'subscription-'], ['subscription-1'], ['sub'], ['nodash'], ['x-y-'], ['x-'],
    ['subscription-', 'subscription-12'], ['zzz-'], [], ['outbox-', 'x-y-', 'nodash'],
  ];
  for (const prefixes of sets) {
    for (const after of [0, 1, 333, 640]) {
      const got = await positions(store.readAll({ after: BigInt(after), streamPrefixes: prefixes }));
      t.same(got, oldQuery(raw, after, prefixes), `${JSON.stringify(prefixes)} after ${after}`);
    }
  }
  const limited = await positions(store.readAll({ streamPrefixes: ['notification-', 'subscription-'], maxCount: 20 }));
  t.same(limited, oldQuery(raw, 0, ['notification-', 'subscription-']).slice(0, 20), 'maxCount over merged ranges');
});

t.test('a whole-category prefix is an index range: no scan of the table, no sort', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = openSqliteStore({ path });
  await store.appendToStream('subscription-1', [{ type: 'New', data: {} }]);
  await store.close();
  const raw = new Database(path, { readonly: true });
  t.teardown(() => raw.close());
  for (const prefixes of [['subscription-'], ['notification-', 'subscription-', 'outbox-']]) {
    const { sql, args } = readStatement(prefixes);
    const plan = (raw.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args(0, 10)) as Array<{ detail: string }>).map((r) => r.detail);
    const ranges = plan.filter((d) => /^SEARCH events USING INDEX events_category \(category=\? AND (?:rowid|position)>\?\)$/.test(d));
    t.equal(ranges.length, prefixes.length, `one index range per category: ${plan.join('; ')}`);
    t.notOk(plan.some((d) => /SCAN|TEMP B-TREE/.test(d)), 'no full scan, no temp b-tree sort');
  }
});

t.test('an append wakes only the subscriptions whose prefixes match its stream', async (t) => {
  const store = openSqliteStore({ path: join(tempDir(t), 'events.db'), pollIntervalMs: 3_600_000 });
  t.teardown(() => store.close());
  const sub = store.subscribeToAll({ streamPrefixes: ['notification-'] });
  const seen: string[] = [];
  const iterating = (async () => {
    for await (const e of sub) seen.push(e.type);
  })();
  await store.appendToStream('notification-1', [{ type: 'First', data: {} }]);
  await waitFor('the first notification', () => seen.length === 1);
  const before = store.readStats().pageQueries;
  for (let i = 0; i < 50; i++) await store.appendToStream(`subscription-${i}`, [{ type: 'Other', data: {} }]);
  await new Promise((r) => setImmediate(r));
  t.equal(store.readStats().pageQueries, before, '50 appends to another category: no read');
  await store.appendToStream('notification-2', [{ type: 'Second', data: {} }]);
  await waitFor('the second notification', () => seen.length === 2);
  t.equal(store.readStats().pageQueries, before + 1, 'one matching append: one read');
  t.same(seen, ['First', 'Second']);
  await sub.close();
  await iterating;
});

t.test('an idle poll runs no query until another connection appends, and then sees it', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = openSqliteStore({ path, pollIntervalMs: 10 });
  const other = openSqliteStore({ path });
  t.teardown(async () => {
    await store.close();
    await other.close();
  });
  const sub = store.subscribeToAll({ streamPrefixes: ['notification-'] });
  const seen: string[] = [];
  const iterating = (async () => {
    for await (const e of sub) seen.push(e.streamId);
  })();
  await waitFor('the subscription to be caught up', () => store.readStats().pollChecks >= 2);
  const { pageQueries, pollChecks } = store.readStats();
  await waitFor('ten idle poll ticks', () => store.readStats().pollChecks >= pollChecks + 10);
  t.equal(store.readStats().pageQueries, pageQueries, 'nothing changed: no page query');
  await other.appendToStream('notification-9', [{ type: 'FromElsewhere', data: {} }]);
  await waitFor('the other connection’s event', () => seen.length === 1);
  t.same(seen, ['notification-9']);
  await sub.close();
  await iterating;
});

t.test('caught-up subscriptions share one poll timer, and every one of them sees another connection’s append at a tick', async (t) => {
  const path = join(tempDir(t), 'events.db');
  const store = openSqliteStore({ path, pollIntervalMs: 20 });
  const other = openSqliteStore({ path });
  t.teardown(async () => {
    await store.close();
    await other.close();
  });
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const before = timers();
  const prefixes = ['notification-', 'subscription-', 'lease-', 'checkpoint-', 'usage-'];
  const seen = prefixes.map(() => [] as string[]);
  const subs = prefixes.flatMap((prefix, i) =>
    [0, 1].map(() => {
      const sub = store.subscribeToAll({ streamPrefixes: [prefix] });
      const iterating = (async () => {
        for await (const e of sub) seen[i]?.push(e.streamId);
      })();
      return { sub, iterating };
    }),
  );
  await waitFor('ten subscriptions caught up and waiting', () => store.readStats().pollChecks >= 20);
  t.ok(timers() - before <= 1, `ten idle subscriptions keep at most one more timer (${timers() - before})`);
  for (const prefix of prefixes) await other.appendToStream(`${prefix}elsewhere`, [{ type: 'FromElsewhere', data: {} }]);
  await waitFor('every subscription to see the other connection’s event of its streams', () => seen.every((s) => s.length === 2));
  t.same(seen, prefixes.map((p) => [`${p}elsewhere`, `${p}elsewhere`]));
  for (const { sub } of subs) await sub.close();
  await Promise.all(subs.map((s) => s.iterating));
  t.equal(timers(), before, 'no timer left once they are closed');
});
