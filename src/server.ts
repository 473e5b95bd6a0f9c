/**
 * Entry point: config → logger → runtime (src/runtime.ts: app → listen → store → processes) → ready.
 * The HTTP server listens before the store is open so that /healthz answers at once and /readyz
 * says 503 until the store is usable. SIGINT/SIGTERM: stop accepting, finish in-flight requests,
 * close the store, exit; a second signal or the grace period forces the exit.
 */
import { pathToFileURL } from 'node:url';
import { ConfigError, loadConfig } from './config.js';
import type { Config } from './config.js';
import { createLogger } from './logger.js';
import { startRuntime } from './runtime.js';
import type { Runtime } from './runtime.js';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`fulfillment-ledger: configuration error: ${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  const logger = createLogger(config.log.level);
  let service: Runtime;
  try {
    service = await startRuntime(config, logger);
  } catch (err) {
    const line =
      err instanceof Error && 'code' in err && err.code === 'EADDRINUSE'
        ? `PORT: ${config.http.port} is already in use on ${config.http.host}`
        : err instanceof ConfigError
          ? err.message
          : `could not start: ${err instanceof Error ? err.message : String(err)}`;
    logger.fatal({ err }, line);
    process.stderr.write(`fulfillment-ledger: ${line}\n`);
    process.exit(1);
  }

  let signals = 0;
  const shutdown = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    logger.info({ signal, graceMs: config.http.shutdownGraceMs }, 'shutting down');
    const force = setTimeout(() => {
      logger.error({ graceMs: config.http.shutdownGraceMs }, 'shutdown took longer than the grace period: exiting');
      process.exit(1);
    }, config.http.shutdownGraceMs);
    force.unref();
    service.close().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void main();
}
