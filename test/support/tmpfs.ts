/**
 * A small volume of its own for disk-full tests: a tmpfs mounted on a fresh directory (needs root, as on
 * the CI box), unmounted when the test ends. `fillUp` writes a filler file until the volume is full.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, rmdirSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';

function run(command: string, args: string[]): string | undefined {
  try {
    execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    return undefined;
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    return stderr || (err as Error).message;
  }
}

function mount(sizeMiB: number): { dir: string } | { failed: string } {
  const dir = mkdtempSync(join(tmpdir(), 'small-volume-'));
  const failed = run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0700`, 'tmpfs', dir]);
  if (failed === undefined) return { dir };
  rmdirSync(dir);
  return { failed };
}

/** Why this machine cannot mount a tmpfs (for `t.test(…, { skip })`); undefined when it can. */
export function tmpfsUnavailable(): string | undefined {
  const probe = mount(1);
  if ('failed' in probe) return `cannot mount a tmpfs (these tests need root: mount -t tmpfs): ${probe.failed}`;
  run('umount', [probe.dir]);
  rmdirSync(probe.dir);
  return undefined;
}

/** Mounts a tmpfs of `sizeMiB` MiB on a fresh directory, unmounted when the test ends; returns the directory. */
export function mountTmpfs(t: Test, sizeMiB: number): string {
  const mounted = mount(sizeMiB);
  if ('failed' in mounted) throw new Error(`cannot mount a ${sizeMiB} MiB tmpfs: ${mounted.failed}`);
  const { dir } = mounted;
  t.teardown(() => {
    // Lazily when something still has a file open there (a child being killed): the mount goes once it closes.
    if (run('umount', [dir]) !== undefined) run('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Writes `path` until the volume says ENOSPC (big chunks, then small ones to the last page); returns the bytes written. */
export function fillUp(path: string): number {
  const fd = openSync(path, 'w');
  let written = 0;
  try {
    for (const size of [1024 * 1024, 4096]) {
      const chunk = Buffer.alloc(size, 0x5a);
      for (;;) {
        try {
          const n = writeSync(fd, chunk);
          written += n;
          if (n < size) break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return written;
}
