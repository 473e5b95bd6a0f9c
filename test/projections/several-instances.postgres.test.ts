/**
 * Done when (issue 15): two instances of the read side, real OS processes, on one PostgreSQL database and one
 * event store. The first claims every projection; the second stands by and serves reads from the same tables.
 * The first is SIGKILLed inside a batch's transaction; PostgreSQL frees its advisory locks with its connection,
 * the second claims the projections and continues from the stored checkpoints. In the end the read models equal
 * a rebuild from scratch (no event lost, none applied twice: the daily counters would show it), and both
 * instances (the survivor and a restarted first one) give the same answers.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Test } from 'tap';
import { createLogger } from '../../src/logger.js';
import { allProjections, rebuildProjections } from '../../src/projections/index.js';
import { openPostgresTarget } from '../../src/projections/postgres.target.js';
import { liveGeneration } from '../../src/projections/postgres.generations.js';
import { childNodeArgs } from '../support/child.js';
import { freshDatabase } from '../support/postgres.js';
import { syntheticHistory, writeHistory } from '../support/synthetic-history.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';
import { dump, forEachTarget, storeWithHistory } from './helpers.js';

const entry = join(import.meta.dirname, 'fixtures', 'instance.ts');
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

type Instance = { url: string; logs: Array<Record<string, unknown>>; exited: Promise<string | number | null> };

async function startInstance(t: Test, name: string, env: Record<string, string>): Promise<Instance> {
  const proc = spawn(process.execPath, childNodeArgs(entry), { env: { ...process.env, INSTANCE: name, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void proc.kill('SIGKILL'));
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const logs: Array<Record<string, unknown>> = [];
  createInterface({ input: proc.stdout }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  });
  const exited = new Promise<string | number | null>((resolve) => proc.on('exit', (code, signal) => resolve(signal ?? code)));
  void exited.then((how) => how !== 'SIGKILL' && how !== 0 && t.comment(`instance ${name} exited with ${String(how)}: ${stderr.slice(-2000)}`));
  const listening = await waitFor(`instance ${name} listening`, () => logs.find((l) => l.msg === 'listening'), 60_000);
  return { url: String(listening.url), logs, exited };
}

const get = async (i: Instance, path: string): Promise<Record<string, unknown>> => (await (await fetch(`${i.url}${path}`)).json()) as Record<string, unknown>;
type Status = { status: Array<{ name: string; state: string; position?: string }> };
const states = async (i: Instance) => ((await get(i, '/status')) as unknown as Status).status.map((s) => s.state);

await forEachTarget('two instances on one PostgreSQL, one SIGKILLed mid-batch: read models equal a rebuild, both answer alike', async (t, kind) => {
  if (kind === 'sqlite') {
    t.pass('SQLite: one file per instance, nothing shared (runner.test.ts covers two runners on one file)');
    return;
  }
  const { store, dir } = await storeWithHistory(t, { subscriptions: 30, seed: 41 });
  const url = await freshDatabase(t, 'instances');
  const killFile = join(tempDir(t, 'kill'), 'now');
  const env = { EVENTS_PATH: join(dir, 'events.db'), READMODELS_URL: url, TEST_LOG_LEVEL: 'info' };

  const a = await startInstance(t, 'a', { ...env, KILL_FILE: killFile });
  await waitFor('a to claim and apply', async () => (await states(a)).every((s) => s === 'live'), 60_000);
  const b = await startInstance(t, 'b', env);
  await waitFor('b to stand by', async () => (await states(b)).every((s) => s === 'standby'), 60_000);
  t.same(await get(b, '/answers'), await get(a, '/answers'), 'the standby serves the same answers from the shared tables');

  // More history while both run; a dies inside the first batch it applies after the kill file appears.
  writeFileSync(killFile, '');
  await writeHistory(store, syntheticHistory({ subscriptions: 40, seed: 42, start: '2026-04-01T00:00:00.000Z' }));
  t.equal(await a.exited, 'SIGKILL', 'a was killed');
  t.ok(a.logs.some((l) => l.msg === 'killing myself mid-batch'), 'inside a batch, before its commit');
  await waitFor('b to take over', async () => (await states(b)).every((s) => s === 'live'), 60_000);
  t.ok(b.logs.some((l) => l.msg === 'projections claimed: this instance applies them now'), 'b says it took them over');
  await get(b, '/idle');

  const restarted = await startInstance(t, 'a2', env);
  await waitFor('the restarted instance to stand by', async () => (await states(restarted)).every((s) => s === 'standby'), 60_000);
  await get(restarted, '/idle');
  const answers = await get(b, '/answers');
  t.same(await get(restarted, '/answers'), answers, 'the survivor and the restarted instance give the same answers');
  t.equal(answers.total, 70, 'every subscription of both histories');

  // The shared tables equal a rebuild from scratch into a database of their own.
  const live = await openPostgresTarget({ url, schema: (await liveGeneration(url)).schema });
  t.teardown(() => live.close());
  const fresh = await openPostgresTarget({ url: await freshDatabase(t, 'rebuilt'), schema: 'rm_rebuilt' });
  t.teardown(() => fresh.close());
  await rebuildProjections({ store, target: fresh, logger });
  t.same(await dump(live, allProjections), await dump(fresh, allProjections), 'the live read models equal a rebuild (every event applied exactly once)');
});
