/** The real entry point as a newcomer runs it: a child process, a real port on 127.0.0.1, a real SQLite file. */
import { spawn } from 'node:child_process';
import { childNodeArgs } from './support/child.js';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';
import { tempDir } from './support/temp.js';

const entry = join(import.meta.dirname, '..', 'src', 'server.ts');

function start(env: NodeJS.ProcessEnv) {
  const proc = spawn(process.execPath, childNodeArgs(entry), {
    env: { ...process.env, PORT: '0', EMULATOR_PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => proc.on('exit', (code) => resolve({ code, stderr })));
  return { proc, exited, lines: createInterface({ input: proc.stdout }) };
}

t.test('starts on the embedded store, answers /healthz and /readyz, shuts down cleanly on SIGTERM', async (t) => {
  const dir = tempDir(t);
  const s = start({ DATA_DIR: dir });
  t.teardown(() => s.proc.kill('SIGKILL'));
  let url = '';
  const logs: Array<Record<string, unknown>> = [];
  for await (const line of s.lines) {
    const entry = JSON.parse(line) as Record<string, unknown>;
    logs.push(entry);
    if (entry.msg === 'listening; opening the event store') url = entry.url as string;
    if (entry.msg === 'ready') break;
  }
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.equal((await fetch(`${url}/healthz`)).status, 200);
  const ready = await fetch(`${url}/readyz`);
  t.equal(ready.status, 200);
  t.same(await ready.json(), { status: 'ready', store: 'sqlite' });
  t.ok(logs.some((l) => l.path === join(dir, 'events.db')), 'the log says where the data lives');
  s.proc.kill('SIGTERM');
  const exit = await s.exited;
  t.equal(exit.code, 0, 'exit 0 after a graceful shutdown');
});

t.test('bad configuration: one clear line naming the variable, no stack trace, exit 78', async (t) => {
  for (const env of [{ EVENT_STORE: 'mongo' }, { EVENTSTORE_CONNECTION_STRING: 'not a url' }, { DATA_DIR: '/proc/version/data' }]) {
    const s = start(env);
    const exit = await s.exited;
    const variable = Object.keys(env)[0] as string;
    t.equal(exit.code, 78, `${variable}: exit code 78 (EX_CONFIG)`);
    const lines = exit.stderr.trim().split('\n');
    t.equal(lines.length, 1, `${variable}: one line: ${exit.stderr.trim()}`);
    t.match(lines[0], new RegExp(`configuration error: ${variable}: `), `${variable}: names the variable`);
    t.notMatch(exit.stderr, /\bat .*\(.*:\d+:\d+\)/, `${variable}: no stack trace`);
  }
});

t.test('the integration settings are checked with the rest of the configuration: exit 78, one line', async (t) => {
  const s = start({ DATA_DIR: tempDir(t), PROVISIONING_WEBHOOK_URL: 'https://isv.example/ledger' });
  const exit = await s.exited;
  t.equal(exit.code, 78);
  const lines = exit.stderr.trim().split('\n');
  t.equal(lines.length, 1, exit.stderr.trim());
  t.match(lines[0], /configuration error: PROVISIONING_WEBHOOK_SECRET: is required when PROVISIONING_WEBHOOK_URL is set/);
});
