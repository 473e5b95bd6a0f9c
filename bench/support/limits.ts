/**
 * Limits the benchmarks measure in the same run, on the same disk, to set a figure next to.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

/**
 * Durable one-row SQLite transactions a second in `dir` (WAL, synchronous=FULL, the event store's settings): what
 * one fsync per append allows on this disk now (a shared disk: it varies with the other work on the machine).
 */
export function durableInsertsPerSecond(dir: string, ms = 2000): number {
  const path = join(dir, `fsync-probe-${process.pid}.db`);
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT, data TEXT)');
    const insert = db.prepare('INSERT INTO events (stream_id, data) VALUES (?, ?)');
    const one = db.transaction((i: number) => insert.run(`notification-${i}`, JSON.stringify({ i, body: 'x'.repeat(400) })));
    const until = performance.now() + ms;
    let n = 0;
    while (performance.now() < until) one(n++);
    return Math.round(n / (ms / 1000));
  } finally {
    db.close();
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
  }
}
