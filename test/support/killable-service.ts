/**
 * The real service (src/server.ts) as a child process that a crash test kills (test/support/killing-proxy.ts kills
 * it from the outside): the process, a promise of its URL once it logged `ready`, how it exited (the signal or the
 * code), and every JSON log line so far. Shared by activation.crash and metering.crash.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Test } from 'tap';
import { childNodeArgs } from './child.js';

const entry = join(import.meta.dirname, '..', '..', 'src', 'server.ts');

export type KillableService = ReturnType<typeof startKillableService>;

export function startKillableService(t: Test, operatorToken: string, env: Record<string, string>) {
  const proc = spawn(process.execPath, childNodeArgs(entry), {
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', OPERATOR_TOKEN: operatorToken, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => proc.kill('SIGKILL'));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => proc.on('exit', (code, signal) => resolve(signal ?? code)));
  const logs: Array<Record<string, unknown>> = [];
  const ready = new Promise<string>((resolve, reject) => {
    let url = '';
    createInterface({ input: proc.stdout }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === 'listening; opening the event store') url = entry.url as string;
        if (entry.msg === 'ready') resolve(url);
      } catch {
        // not a log line
      }
    });
    proc.on('exit', () => reject(new Error('service exited before it was ready')));
  });
  return { proc, ready, exited, logs };
}
