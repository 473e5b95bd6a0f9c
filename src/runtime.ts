/**
 * The composition root: from a Config to a running service — HTTP front doors, the event store,
 * the Fulfillment API client, the process managers and, when no Microsoft credentials are
 * configured, the built-in marketplace emulator (a complete local sandbox).
 *
 * Order: listen first (so /healthz answers and /readyz says 503), then open the store, then start
 * the processes; shutdown runs the other way round.
 */
import { randomBytes } from 'node:crypto';
import { readModelFile, startProjections } from './projections/index.js';
import type { RunningProjections } from './projections/runner.js';
import { buildApp } from './app.js';
import type { App } from './app.js';
import { ConfigError, redact } from './config.js';
import type { Config } from './config.js';
import { SubscriptionLedger } from './application/subscription-ledger.js';
import type { EventStore } from './eventstore/eventstore.js';
import { openStore } from './eventstore/open-store.js';
import { createWebhookAuthenticator, MARKETPLACE_APP_ID } from './http/webhook-auth.js';
import type { Logger } from './logger.js';
import { createFulfillmentClient, DEFAULT_MARKETPLACE_API_URL } from './marketplace/fulfillment-client.js';
import type { FulfillmentClient } from './marketplace/fulfillment-client.js';
import { createTokenProvider } from './marketplace/token-provider.js';
import type { Emulator, EmulatorOptions } from './emulator/emulator.js';
import { startProcesses } from './processes/index.js';
import type { ProcessesOptions, RunningProcesses } from './processes/index.js';
import type { Provisioner } from './application/provisioner.js';
import { PublisherChanges } from './application/publisher-changes.js';
import { startIntegrationEvents } from './processes/integration-events.process.js';
import type { RunningIntegrationEvents } from './processes/integration-events.process.js';
import { integrationSettings } from './integration/settings.js';
import { provisionerFor } from './integration/http-provisioner.js';

export type RuntimeOverrides = {
  provisioner?: Provisioner;
  /** Extra emulator settings (tests: short windows, a fixed key, faults). */
  emulator?: Partial<EmulatorOptions>;
  activation?: ProcessesOptions['activation'];
  runner?: ProcessesOptions['runner'];
  /** Wrap the opened store (tests: simulate an outage). */
  wrapStore?: (store: EventStore) => EventStore;
};

export type Runtime = {
  url: string;
  app: App;
  config: Config;
  store: () => EventStore | undefined;
  ledger: SubscriptionLedger;
  marketplace: FulfillmentClient;
  /** The built-in emulator, when the service runs as a local sandbox. */
  emulator?: Emulator;
  processes: () => RunningProcesses | undefined;
  projections: () => RunningProjections | undefined;
  operatorToken: string;
  close(): Promise<void>;
};

/** True when nothing says how to reach Microsoft: run against the built-in emulator. */
export function usesEmulator(config: Config): boolean {
  const e = config.env;
  return !(e.MARKETPLACE_API_URL || e.MARKETPLACE_CLIENT_ID || e.MARKETPLACE_CLIENT_SECRET || e.MARKETPLACE_CLIENT_CERTIFICATE_PATH || e.MARKETPLACE_STATIC_TOKEN);
}

export async function startRuntime(config: Config, logger: Logger, overrides: RuntimeOverrides = {}): Promise<Runtime> {
  const env = config.env;
  const integrationConfig = integrationSettings(env);
  const sandbox = usesEmulator(config);
  let emulator: Emulator | undefined;
  if (sandbox) {
    const { startEmulator } = await import('./emulator/emulator.js');
    emulator = await startEmulator({ port: env.EMULATOR_PORT, logger: logger.child({ component: 'emulator' }), ...overrides.emulator });
  }

  const operatorToken = env.OPERATOR_TOKEN ?? (sandbox ? randomBytes(24).toString('base64url') : undefined);
  if (!operatorToken) throw new ConfigError('OPERATOR_TOKEN', 'is required when connected to Microsoft (the operator API is behind it)');

  const tokenProvider = createTokenProvider({
    ...(env.MARKETPLACE_TENANT_ID ? { tenantId: env.MARKETPLACE_TENANT_ID } : {}),
    ...(env.MARKETPLACE_CLIENT_ID ? { clientId: env.MARKETPLACE_CLIENT_ID } : {}),
    ...(env.MARKETPLACE_CLIENT_SECRET ? { clientSecret: env.MARKETPLACE_CLIENT_SECRET } : {}),
    ...(env.MARKETPLACE_CLIENT_CERTIFICATE_PATH ? { clientCertificatePath: env.MARKETPLACE_CLIENT_CERTIFICATE_PATH } : {}),
    ...(env.MARKETPLACE_CLIENT_CERTIFICATE_THUMBPRINT_SHA256 ? { clientCertificateThumbprintSha256: env.MARKETPLACE_CLIENT_CERTIFICATE_THUMBPRINT_SHA256 } : {}),
    ...(env.MARKETPLACE_STATIC_TOKEN ? { staticToken: env.MARKETPLACE_STATIC_TOKEN } : sandbox ? { staticToken: 'sandbox' } : {}),
    ...(env.MARKETPLACE_AUTHORITY_HOST ? { authorityHost: env.MARKETPLACE_AUTHORITY_HOST } : {}),
  }, { logger });
  const marketplace = createFulfillmentClient({
    baseUrl: emulator?.apiBaseUrl ?? env.MARKETPLACE_API_URL ?? DEFAULT_MARKETPLACE_API_URL,
    tokenProvider,
    logger: logger.child({ component: 'marketplace' }),
  });

  const webhookTenant = env.WEBHOOK_TENANT_ID ?? emulator?.publisherTenantId ?? env.MARKETPLACE_TENANT_ID;
  const webhookAudience = env.WEBHOOK_AUDIENCE ?? emulator?.publisherAppId ?? env.MARKETPLACE_CLIENT_ID;
  if (!webhookTenant) throw new ConfigError('WEBHOOK_TENANT_ID', 'or MARKETPLACE_TENANT_ID is required to verify Microsoft\'s webhook tokens');
  if (!webhookAudience) throw new ConfigError('WEBHOOK_AUDIENCE', 'or MARKETPLACE_CLIENT_ID is required to verify Microsoft\'s webhook tokens');
  const authenticator = createWebhookAuthenticator({
    tenantId: webhookTenant,
    audience: webhookAudience,
    ...(env.WEBHOOK_OPENID_METADATA_URL || emulator ? { metadataUrl: env.WEBHOOK_OPENID_METADATA_URL ?? emulator?.openIdConfigurationUrl } : {}),
    ...(emulator ? { issuers: [emulator.issuer] } : {}),
    allowedCallers: env.WEBHOOK_ALLOWED_CALLERS ? env.WEBHOOK_ALLOWED_CALLERS.split(',').map((s) => s.trim()).filter(Boolean) : [MARKETPLACE_APP_ID],
  });

  let store: EventStore | undefined;
  let processes: RunningProcesses | undefined;
  let integration: RunningIntegrationEvents | undefined;
  let projections: RunningProjections | undefined;
  const storeRef = () => store;
  const ledger = new SubscriptionLedger(storeRef);
  const publisherChanges = new PublisherChanges({ ledger, client: marketplace, logger });

  const app = await buildApp({
    logger,
    store: storeRef,
    webhook: {
      store: storeRef,
      ledger,
      authenticator,
      policy: {
        retiredPlans: (env.POLICY_RETIRED_PLANS ?? '').split(',').map((s) => s.trim()).filter(Boolean),
        ...(env.POLICY_MAX_SEATS !== undefined ? { maxSeats: env.POLICY_MAX_SEATS } : {}),
      },
    },
    landing: {
      ledger,
      marketplace,
      productName: env.PRODUCT_NAME,
      ...(env.LANDING_SECRET ? { landingSecret: env.LANDING_SECRET } : {}),
    },
    operator: { ledger, publisherChanges, operatorToken, openapi: { ...(env.PUBLIC_URL ? { serverUrl: env.PUBLIC_URL } : {}) } },
    integration: { operatorToken, integration: () => integration?.admin },
    readModels: { operatorToken, readModels: () => projections },
  });

  let url: string;
  try {
    url = await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    await emulator?.close();
    throw err;
  }
  const publicUrl = (env.PUBLIC_URL ?? url).replace(/\/+$/, '');
  logger.info(
    { url, store: config.store.kind, ...(config.store.kind === 'sqlite' ? { path: config.store.path } : { connection: redact(config.store.connectionString) }) },
    'listening; opening the event store',
  );
  if (emulator) {
    emulator.setWebhookUrl(`${publicUrl}/webhook`);
    emulator.setLandingPageUrl(`${publicUrl}/landing`);
    logger.warn(
      { emulator: emulator.url, purchase: `curl -s -XPOST ${emulator.url}/emulator/purchases -H 'content-type: application/json' -d '{"planId":"standard","quantity":5}'` },
      'no Microsoft credentials configured: running as a local sandbox against the built-in marketplace emulator. ' +
        'To use Microsoft, set MARKETPLACE_TENANT_ID, MARKETPLACE_CLIENT_ID and MARKETPLACE_CLIENT_SECRET (or a certificate), and OPERATOR_TOKEN',
    );
    if (!env.OPERATOR_TOKEN) logger.warn({ operatorToken }, 'OPERATOR_TOKEN not set: generated one for this sandbox run');
  }

  try {
    const opened = await openStore(config.store, logger);
    store = overrides.wrapStore ? overrides.wrapStore(opened) : opened;
    processes = startProcesses({
      store,
      ledger,
      marketplace,
      provisioner: overrides.provisioner ?? provisionerFor(integrationConfig, logger),
      logger,
      ...(overrides.activation ? { activation: overrides.activation } : {}),
      runner: {
        ...(env.PROCESS_RUNNER ? { mode: env.PROCESS_RUNNER } : {}),
        lease: { takeoverAfterMs: env.PROCESS_LEASE_TAKEOVER_MS, heartbeatMs: env.PROCESS_LEASE_HEARTBEAT_MS, pollMs: env.PROCESS_LEASE_POLL_MS },
        ...overrides.runner,
      },
    });
    projections = startProjections({ store, path: readModelFile(config), logger: logger.child({ component: 'projections' }) });
    integration = startIntegrationEvents({ store, settings: integrationConfig, logger, runner: { ...overrides.runner, instanceId: processes.instanceId } });
  } catch (err) {
    await app.close();
    await emulator?.close();
    throw err;
  }
  // Publisher-side changes a restart interrupted: follow them again (never re-sent to Microsoft).
  void publisherChanges.resumeAll().catch((err: unknown) => logger.error({ err }, 'could not resume pending publisher-side changes'));
  logger.info({ url, instanceId: processes?.instanceId }, 'ready');

  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    config,
    store: storeRef,
    ledger,
    marketplace,
    ...(emulator ? { emulator } : {}),
    processes: () => processes,
    projections: () => projections,
    operatorToken,
    close: () =>
      (closing ??= (async () => {
        await app.close();
        await publisherChanges.close();
        await processes?.stop();
        await integration?.stop();
        await projections?.stop();
        await store?.close();
        await emulator?.close();
      })()),
  };
}
