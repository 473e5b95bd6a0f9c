/** A whole service as `npm start` runs it (runtime + built-in emulator + SQLite file), on 127.0.0.1 ports. */
import type { Test } from 'tap';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startRuntime } from '../../src/runtime.js';
import type { Runtime, RuntimeOverrides } from '../../src/runtime.js';
import { tempDir } from './temp.js';

export async function startSandbox(t: Test, env: Record<string, string> = {}, overrides: RuntimeOverrides = {}): Promise<Runtime & { emulator: NonNullable<Runtime['emulator']> }> {
  const config = loadConfig({
    DATA_DIR: tempDir(t, 'sandbox'),
    PORT: '0',
    EMULATOR_PORT: '0',
    SQLITE_POLL_INTERVAL_MS: '50',
    OPERATOR_TOKEN: 'test-operator-token-0123456789',
    ...env,
  });
  const runtime = await startRuntime(config, createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'), {
    ...overrides,
    emulator: { operationDelayMs: 50, redelivery: { initialDelayMs: 50, factor: 2, maxDelayMs: 500, maxAttempts: 20 }, ...overrides.emulator },
    runner: { retryBaseMs: 20, retryMaxMs: 200, retryLaterMaxMs: 500, ...overrides.runner },
  });
  t.teardown(() => runtime.close());
  if (!runtime.emulator) throw new Error('the sandbox runs against the built-in emulator');
  return runtime as Runtime & { emulator: NonNullable<Runtime['emulator']> };
}
