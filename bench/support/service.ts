/**
 * The real service as a child process (its own event loop, as in production), for the benchmarks that drive it
 * over HTTP. The entry is the compiled `dist/server.js` when BENCH_SERVER=dist (or when it exists and
 * BENCH_SERVER is unset), else the sources through tsx.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { RunningEmulator } from '../../src/emulator/emulator.js';

const root = join(import.meta.dirname, '..', '..');

export type Service = {
  url: string;
  proc: ChildProcess;
  /** Milliseconds from spawn to the 'listening' log line and to the 'ready' log line. */
  listeningMs: number;
  readyMs: number;
  stop: () => Promise<void>;
};

export function serverArgs(): string[] {
  const compiled = join(root, 'dist', 'server.js');
  const choice = process.env.BENCH_SERVER ?? (existsSync(compiled) ? 'dist' : 'tsx');
  return choice === 'dist' ? [compiled] : ['--import', 'tsx', join(root, 'src', 'server.ts')];
}

/** Settings that point the service at a started emulator (its API, its webhook signer). */
export function emulatorEnv(emulator: RunningEmulator): Record<string, string> {
  return {
    MARKETPLACE_API_URL: `${emulator.url}/api`,
    MARKETPLACE_STATIC_TOKEN: 'emulator-accepts-any-token',
    WEBHOOK_TENANT_ID: emulator.publisherTenantId,
    WEBHOOK_AUDIENCE: emulator.publisherAppId,
    WEBHOOK_OPENID_METADATA_URL: emulator.openIdConfigurationUrl,
    OPERATOR_TOKEN: 'bench-operator-token-0123456789',
  };
}

/**
 * Spawns the service with `env` on top of this process's environment and resolves once it logs 'ready'.
 * `nodeArgs` go before the entry (e.g. `--cpu-prof`, which NODE_OPTIONS does not allow). Past `readyTimeoutMs` the
 * child is killed and the promise rejects.
 */
export async function startService(env: Record<string, string>, options: { nodeArgs?: string[]; readyTimeoutMs?: number } = {}): Promise<Service> {
  const nodeArgs = options.nodeArgs ?? [];
  const readyTimeoutMs = options.readyTimeoutMs ?? Number.POSITIVE_INFINITY;
  const started = performance.now();
  const proc = spawn(process.execPath, [...nodeArgs, ...serverArgs()], {
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  let listeningMs = 0;
  const lines = createInterface({ input: proc.stdout });
  const url = await new Promise<string>((resolve, reject) => {
    let listening = '';
    lines.on('line', (line) => {
      try {
        const log = JSON.parse(line) as { msg?: string; url?: string };
        if (log.msg === 'listening; opening the event store' && log.url) {
          listening = log.url;
          listeningMs = performance.now() - started;
        }
        if (log.msg === 'ready') resolve(listening);
      } catch {
        // not a log line
      }
    });
    proc.on('exit', () => reject(new Error('the service exited before it was ready')));
    if (Number.isFinite(readyTimeoutMs)) {
      setTimeout(() => {
        proc.kill('SIGKILL');
        reject(new Error(`the service was not ready within ${readyTimeoutMs} ms`));
      }, readyTimeoutMs).unref();
    }
  });
  const readyMs = performance.now() - started;
  // From here on the log is drained unread: parsing thousands of lines a second would load the benchmark's own process.
  lines.close();
  proc.stdout.resume();
  return {
    url,
    proc,
    listeningMs,
    readyMs,
    stop: async () => {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}
