/**
 * The service as an operator runs it in production: `npm start` or `node dist/server.js` as a real child
 * process in its own process group, with a clean environment (none of tap's loaders or coverage hooks, which
 * would otherwise ride along in NODE_OPTIONS), so what runs is exactly the compiled build.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Test } from 'tap';

export const root = join(import.meta.dirname, '..', '..');

export type ProductionChild = {
  proc: ChildProcess;
  pid: number;
  url: string;
  /** Every JSON log line so far (npm's banner and other plain lines are skipped). */
  logs: Array<Record<string, unknown>>;
  /** Resolves with the exit code and signal once the top process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
};

/** This process's environment without tap's and npm's own variables. */
export function cleanEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const kept = Object.entries(process.env).filter(([k]) => !/^(NODE_OPTIONS|NODE_V8_COVERAGE|TAP.*|_TAPJS_.*|TS_NODE_.*|npm_.*)$/.test(k));
  return { ...Object.fromEntries(kept), PORT: '0', EMULATOR_PORT: '0', LOG_LEVEL: 'info', ...env };
}

/** Spawns `command args` in the project's root, in a process group of its own; resolves once the service logs `ready`. */
export async function startProduction(t: Test, command: string, args: string[], env: Record<string, string>): Promise<ProductionChild> {
  const proc = spawn(command, args, { cwd: root, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const pid = proc.pid;
  if (pid === undefined) throw new Error(`could not spawn ${command}`);
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  t.teardown(() => {
    if (groupAlive(pid)) process.kill(-pid, 'SIGKILL');
  });
  const logs: Array<Record<string, unknown>> = [];
  let url = '';
  const ready = new Promise<void>((resolve) => {
    createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      const entry = JSON.parse(line) as Record<string, unknown>;
      logs.push(entry);
      if (entry.msg === 'listening; opening the event store') url = String(entry.url);
      if (entry.msg === 'ready') resolve();
    });
  });
  const early = await Promise.race([ready.then(() => undefined), exited]);
  if (early) throw new Error(`${command} ${args.join(' ')} exited (${early.code ?? early.signal}) before it was ready: ${early.stderr}`);
  return { proc, pid, url, logs, exited };
}

/** Whether any process of the group `pgid` still exists. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pids of every process (of this user) whose environment holds `NAME=value` (Linux: /proc/<pid>/environ). */
export function processesWithEnv(name: string, value: string): number[] {
  const needle = `${name}=${value}`;
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${entry}/environ`, 'utf8');
    } catch {
      continue; // gone meanwhile, or another user's
    }
    if (environ.split('\0').includes(needle)) found.push(Number(entry));
  }
  return found;
}
