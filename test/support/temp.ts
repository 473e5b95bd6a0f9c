import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';

/** A fresh directory under the OS temp dir, removed when the test ends. */
export function tempDir(t: Test, label = 'ledger'): string {
  const dir = mkdtempSync(join(tmpdir(), `${label}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
