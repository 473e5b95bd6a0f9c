/**
 * `npm run emulator`: the marketplace emulator as its own process.
 *
 * Configuration is by environment variables (see config.ts for the list): EMULATOR_PORT (3978),
 * EMULATOR_HOST, EMULATOR_WEBHOOK_URL, EMULATOR_LANDING_PAGE_URL, EMULATOR_PUBLISHER_TENANT_ID,
 * EMULATOR_PUBLISHER_APP_ID, EMULATOR_TOKEN_VERSION, EMULATOR_CATALOGUE_FILE,
 * EMULATOR_ACK_WINDOW_MS, EMULATOR_OPERATION_DELAY_MS, EMULATOR_PAGE_SIZE; LOG_LEVEL (info).
 *
 * Try it:
 *   curl -s -XPOST localhost:3978/emulator/purchases -H 'content-type: application/json' -d '{"planId":"standard","quantity":5}'
 */
import { pino } from 'pino';
import { EmulatorConfigError, emulatorOptionsFromEnv } from './config.js';
import { startEmulator } from './emulator.js';

const log = pino({
  level: process.env.LOG_LEVEL ?? 'info',
  name: 'marketplace-emulator',
  redact: ['req.headers.authorization', 'headers.authorization', 'req.headers.cookie'],
});

async function main(): Promise<void> {
  let options;
  try {
    options = emulatorOptionsFromEnv(process.env);
  } catch (err) {
    if (err instanceof EmulatorConfigError) {
      log.fatal({ problems: err.problems }, err.message);
      process.exit(1);
    }
    throw err;
  }
  const emulator = await startEmulator({ ...options, logger: log });
  log.info(
    {
      url: emulator.url,
      apiBaseUrl: emulator.apiBaseUrl,
      webhookUrl: emulator.webhookUrl ?? null,
      landingPageUrl: emulator.landingPageUrl,
      publisherTenantId: emulator.publisherTenantId,
      publisherAppId: emulator.publisherAppId,
      openIdConfigurationUrl: emulator.openIdConfigurationUrl,
    },
    `marketplace emulator listening on ${emulator.url}; buy with POST ${emulator.url}/emulator/purchases`,
  );
  if (emulator.webhookUrl === undefined) {
    log.warn('EMULATOR_WEBHOOK_URL is not set: webhook deliveries will fail and be retried until it is (PUT /emulator/settings)');
  }

  let closing = false;
  const shutdown = (signal: string): void => {
    if (closing) return;
    closing = true;
    log.info({ signal }, 'marketplace emulator shutting down');
    emulator.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((err: unknown) => {
  log.fatal({ err }, 'marketplace emulator failed to start');
  process.exit(1);
});
