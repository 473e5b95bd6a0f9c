/** Another process holding SQLite's write lock on a file (test/eventstore/fixtures/lock-child.ts). */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Test } from 'tap';
import { childNodeArgs } from './child.js';

const child = join(import.meta.dirname, '..', 'eventstore', 'fixtures', 'lock-child.ts');

export type LockHolder = {
  /** Rolls the other process's transaction back and waits until it has exited. */
  release(): Promise<void>;
};

/** Resolves once the other process holds the lock (`BEGIN IMMEDIATE`); the test's teardown ends it if the test did not. */
export async function holdWriteLock(t: Test, dbPath: string): Promise<LockHolder> {
  const proc = spawn(process.execPath, childNodeArgs(child, dbPath), { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done || first.value !== 'locked') {
    throw new Error(`the lock holder did not take the lock (exit ${await exited}): ${stderr}`);
  }
  return {
    async release() {
      proc.stdin.write('release\n');
      const code = await exited;
      if (code !== 0) throw new Error(`the lock holder exited with ${code}: ${stderr}`);
    },
  };
}
