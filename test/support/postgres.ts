/**
 * PostgreSQL for the read-model tests: each test gets a database of its own (created here, dropped with
 * `FORCE` when it ends), so tests never see each other's schemas, locks or generations.
 *
 * The server is the one the machine runs (TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres);
 * nothing is started here. Where it does not answer, `postgresSkip` is the reason the PostgreSQL variants are
 * skipped with (tap prints it), and the SQLite variants still run.
 */
import pg from 'pg';
import type { Test } from 'tap';

export const POSTGRES_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let probe: Promise<string | false> | undefined;

/** false when PostgreSQL answers; else why the PostgreSQL variants are skipped. */
export function postgresSkip(): Promise<string | false> {
  probe ??= (async () => {
    const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return false as const;
    } catch (err) {
      return `PostgreSQL does not answer at ${POSTGRES_URL} (${(err as Error).message}); set TEST_POSTGRES_URL to run these`;
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return probe;
}

let counter = 0;

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A new empty database for this test; its URL. Dropped (connections closed) at teardown. */
export async function freshDatabase(t: Test, label = 'rm'): Promise<string> {
  const name = `${label}_test_${process.pid}_${Date.now().toString(36)}_${++counter}`;
  await admin((c) => c.query(`CREATE DATABASE "${name}"`));
  t.teardown(() => admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)));
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return url.toString();
}
