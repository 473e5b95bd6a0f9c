/**
 * The package's bin as a user runs it: `npx fulfillment-ledger` (bin/fulfillment-ledger.js, which runs the
 * TypeScript through tsx) as real child processes: help, the documented exit codes, --json on stdout with nothing
 * else there, no progress bar when stderr is not a terminal, and the npm script aliases of the moved commands.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { syntheticHistory, writeHistory } from '../support/synthetic-history.js';
import { tempDir } from '../support/temp.js';

const root = join(import.meta.dirname, '..', '..');

type Result = { code: number; stdout: string; stderr: string };

function run(command: string, args: string[], env: Record<string, string>): Promise<Result> {
  return new Promise((resolve) => {
    const { PATH, HOME } = process.env;
    execFile(command, args, { cwd: root, env: { PATH: PATH ?? '', HOME: HOME ?? '', LOG_LEVEL: 'silent', ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err && typeof err.code === 'number' ? err.code : err ? 1 : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const bin = (args: string[], env: Record<string, string>) => run(process.execPath, [join(root, 'bin', 'fulfillment-ledger.js'), ...args], env);

t.test('the bin: help, exit codes, --json, no bar off a terminal, the npm aliases', async (t) => {
  const dir = tempDir(t, 'cli-bin');
  const store = openSqliteStore({ path: join(dir, 'events.db') });
  await writeHistory(store, syntheticHistory({ subscriptions: 3, seed: 4 }));
  let id = '';
  for await (const e of store.readAll({ streamPrefixes: ['subscription-'], maxCount: 1 })) id = e.streamId.slice('subscription-'.length);
  await store.close();
  const env = { DATA_DIR: dir };

  const help = await run('npx', ['--no-install', 'fulfillment-ledger', '--help'], env);
  t.equal(help.code, 0, help.stderr);
  t.match(help.stdout, /history \[options\] <subscription-id>/);
  t.match(help.stdout, /Exit codes: 0 ok, 1 failure or differences found, 64 bad usage/);
  const stateHelp = await bin(['state', '--help'], env);
  t.equal(stateHelp.code, 0);
  t.match(stateHelp.stdout, /--at <time>/);

  const history = await bin(['history', id, '--json'], env);
  t.equal(history.code, 0, history.stderr);
  const parsed = JSON.parse(history.stdout) as { subscriptionId: string; events: unknown[] };
  t.equal(parsed.subscriptionId, id, 'stdout is one JSON document');
  t.ok(parsed.events.length > 0);

  t.equal((await bin(['history', 'no-such-subscription'], env)).code, 1, 'not found: 1');
  t.equal((await bin(['state', id, '--at', 'noon'], env)).code, 64, 'a bad time: 64');
  t.equal((await bin(['frobnicate'], env)).code, 64, 'an unknown command: 64');
  t.equal((await bin(['state', id], env)).code, 64, 'a missing option: 64');
  const config = await bin(['history', id], { ...env, EVENT_STORE: 'postgres' });
  t.equal(config.code, 78, 'bad configuration: 78');
  t.match(config.stderr, /configuration error: EVENT_STORE/);

  const replay = await bin(['replay'], env);
  t.equal(replay.code, 0, replay.stderr);
  t.notMatch(replay.stderr, /ETA/, 'no progress bar when stderr is not a terminal');
  // On a terminal (util-linux `script` gives the child a pseudo-terminal), the bar is drawn, with its rate and ETA.
  if (existsSync('/usr/bin/script')) {
    const launcher = join(root, 'bin', 'fulfillment-ledger.js');
    const onTty = await run('/usr/bin/script', ['-qec', `${JSON.stringify(process.execPath)} ${JSON.stringify(launcher)} replay`, '/dev/null'], env);
    t.equal(onTty.code, 0, onTty.stderr);
    t.match(onTty.stdout, /replay \[[^\]]*\] \d+% \| \d+\/\d+ events \| \d+ events\/s \| ETA/, 'a progress bar with rate and ETA on a terminal');
  } else t.comment('no /usr/bin/script here: the bar on a terminal was not checked');
  const exported = await bin(['export'], env);
  t.equal(exported.code, 0);
  t.ok(exported.stdout.trim().split('\n').every((l) => JSON.parse(l) !== undefined), 'export: JSON Lines on stdout');

  const rebuild = await run('npm', ['run', '--silent', 'projections:rebuild', '--', '--list'], env);
  t.equal(rebuild.code, 0, rebuild.stderr);
  t.match(rebuild.stdout, /subscriptions\s+v\d+\s+position \d+/, 'npm run projections:rebuild still works (on the replayed file)');
  const reconcile = await run('npm', ['run', '--silent', 'reconcile', '--', '--help'], env);
  t.equal(reconcile.code, 0);
  t.match(reconcile.stdout, /usage: npm run reconcile/);
  t.equal((await bin(['rebuild', '--bogus'], env)).code, 64, 'the moved commands keep their exit codes');
});
