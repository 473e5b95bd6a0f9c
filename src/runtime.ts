/**
 * The composition root: from a Config to a running service — HTTP front doors, the event store,
 * the Fulfillment API client, the process managers and, when no Microsoft credentials are
 * configured, the built-in marketplace emulator (a complete local sandbox).
 *
 * Order: listen first (so /healthz answers and /readyz says 503), then open the store, then start
 * the processes; shutdown runs the other way round.
 */
import { randomBytes } from 'node:crypto';
import { pendingChangeSource, startProjections } from './projections/index.js';
import type { RunningProjections } from './projections/runner.js';
import { buildApp } from './app.js';
import type { App } from './app.js';
import { ConfigError, redact } from './config.js';
import type { Config } from './config.js';
import { SubscriptionLedger } from './application/subscription-ledger.js';
import type { EventStore } from './eventstore/eventstore.js';
import { openStore } from './eventstore/open-store.js';
import { createWebhookAuthenticator, MARKETPLACE_APP_ID } from './http/webhook-auth.js';
import type { WebhookAuthenticator } from './http/webhook-auth.js';
import type { Logger } from './logger.js';
import { createFulfillmentClient, DEFAULT_MARKETPLACE_API_URL } from './marketplace/fulfillment-client.js';
import type { FulfillmentClient } from './marketplace/fulfillment-client.js';
import { createTokenProvider } from './marketplace/token-provider.js';
import { CredentialHealth } from './marketplace/credential-health.js';
import { liveDeadlines, startDeadlineWarner } from './processes/deadlines.process.js';
import type { DeadlineWarner } from './processes/deadlines.process.js';
import type { DeadlineRoutesOptions } from './http/deadlines.routes.js';
import type { Emulator, EmulatorOptions } from './emulator/emulator.js';
import { startProcesses } from './processes/index.js';
import { processAdmin } from './processes/parked.js';
import type { ProcessAdmin } from './processes/parked.js';
import { defaultRunnerMode } from './processes/runner/start.js';
import type { RunnerMode } from './processes/runner/start.js';
import type { ProcessesOptions, RunningProcesses } from './processes/index.js';
import type { Provisioner } from './application/provisioner.js';
import { PublisherChanges } from './application/publisher-changes.js';
import { INTEGRATION_PROCESS_NAME, startIntegrationEvents } from './processes/integration-events.process.js';
import type { RunningIntegrationEvents } from './processes/integration-events.process.js';
import { provisionerFor } from './integration/http-provisioner.js';
import { Reconciler } from './processes/reconciliation.process.js';
import type { ReconcilerOptions } from './processes/reconciliation.process.js';
import { scheduleReconciliation } from './processes/reconciliation.schedule.js';
// landing-page sign-in (issue 13)
import { servedOverHttps, startSignIn } from './http/sign-in/start.js';
import type { RunningSignIn } from './http/sign-in/start.js';
import type { LandingSignInOptions } from './http/landing.sign-in.js';

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
  /** The reconciler (docs/reconciliation.md), once the store is open. */
  reconciler: () => Reconciler | undefined;
  operatorToken: string;
  close(): Promise<void>;
};

/** The Fulfillment API client: the emulator's in a sandbox, else Microsoft's (or MARKETPLACE_API_URL's) with the configured credentials. */
function marketplaceClient(config: Config['marketplace'], emulator: Emulator | undefined, logger: Logger): { client: FulfillmentClient; health: CredentialHealth } {
  const { sandbox, apiUrl, ...credentials } = config;
  const health = new CredentialHealth(); // what the client and the token provider see of the credential (GET /api/deadlines)
  const tokenProvider = createTokenProvider({ ...credentials, ...(!credentials.staticToken && sandbox ? { staticToken: 'sandbox' } : {}) }, { logger, health });
  const client = createFulfillmentClient({
    baseUrl: emulator?.apiBaseUrl ?? apiUrl ?? DEFAULT_MARKETPLACE_API_URL,
    tokenProvider,
    logger: logger.child({ component: 'marketplace' }),
    credentialHealth: health,
  });
  return { client, health };
}

/** Who may call the webhook: the WEBHOOK_* settings, else the emulator's identity (sandbox), else the MARKETPLACE_* one. */
function webhookAuthenticator(config: Config, emulator: Emulator | undefined): WebhookAuthenticator {
  const { webhook, marketplace } = config;
  const tenantId = webhook.tenantId ?? emulator?.publisherTenantId ?? marketplace.tenantId;
  const audience = webhook.audience ?? emulator?.publisherAppId ?? marketplace.clientId;
  if (!tenantId) throw new ConfigError('WEBHOOK_TENANT_ID', 'or MARKETPLACE_TENANT_ID is required to verify Microsoft\'s webhook tokens');
  if (!audience) throw new ConfigError('WEBHOOK_AUDIENCE', 'or MARKETPLACE_CLIENT_ID is required to verify Microsoft\'s webhook tokens');
  const metadataUrl = webhook.metadataUrl ?? emulator?.openIdConfigurationUrl;
  return createWebhookAuthenticator({
    tenantId,
    audience,
    ...(metadataUrl ? { metadataUrl } : {}),
    ...(emulator ? { issuers: [emulator.issuer] } : {}),
    allowedCallers: webhook.allowedCallers ?? [MARKETPLACE_APP_ID],
  });
}

/** The operator's view of the running process managers (src/processes/parked.ts); undefined until they run. */
function processesAdmin(
  store: EventStore | undefined,
  processes: RunningProcesses | undefined,
  integration: RunningIntegrationEvents | undefined,
  mode: RunnerMode | undefined,
): ProcessAdmin | undefined {
  if (!store || !processes) return undefined;
  const running = [
    ...processes.all.map((p) => ({ name: p.name, mode: p.mode })),
    // The integration process runs with the store's default mode unless the runner's mode is overridden (see below).
    ...(integration?.enabled ? [{ name: INTEGRATION_PROCESS_NAME, mode: mode ?? defaultRunnerMode(store) }] : []),
  ];
  return processAdmin({ store, processes: () => running });
}

/**
 * GET /api/deadlines and the warner read the same deadlines: the read models and the credential's health.
 * The warner starts at once; its checks are skipped until the projections are live.
 */
function deadlinesOf(config: Config, health: CredentialHealth, projections: () => RunningProjections | undefined, logger: Logger): { routes: DeadlineRoutesOptions; warner: DeadlineWarner } {
  const credential = () => health.snapshot();
  const read = liveDeadlines(projections, credential, config.deadlines);
  return {
    routes: { readModels: projections, credential, settings: config.deadlines },
    warner: startDeadlineWarner({ read, logger, intervalMs: config.deadlines.checkIntervalMs }),
  };
}

/** Points the built-in emulator at this service and says so (with the generated operator token, if one was). */
function connectSandbox(emulator: Emulator, publicUrl: string, generatedToken: string | undefined, logger: Logger): void {
  emulator.setWebhookUrl(`${publicUrl}/webhook`);
  emulator.setLandingPageUrl(`${publicUrl}/landing`);
  logger.warn(
    { emulator: emulator.url, purchase: `curl -s -XPOST ${emulator.url}/emulator/purchases -H 'content-type: application/json' -d '{"planId":"standard","quantity":5}'` },
    'no Microsoft credentials configured: running as a local sandbox against the built-in marketplace emulator. ' +
      'To use Microsoft, set MARKETPLACE_TENANT_ID, MARKETPLACE_CLIENT_ID and MARKETPLACE_CLIENT_SECRET (or a certificate), and OPERATOR_TOKEN',
  );
  if (generatedToken) logger.warn({ operatorToken: generatedToken }, 'OPERATOR_TOKEN not set: generated one for this sandbox run');
}

// ---- landing-page sign-in (issue 13): begin -------------------------------------------------------
type LandingSignInRuntime = {
  /** The landing page's sign-in options (none without sign-in). */
  options: { signIn?: LandingSignInOptions };
  /** Entra ID, or the local OpenID provider in the sandbox, once the service listens (the redirect URI defaults to its address). */
  start(publicUrl: string, logger: Logger): Promise<void>;
  close(): Promise<void>;
};

function landingSignIn(config: Config): LandingSignInRuntime {
  const s = config.landing.signIn;
  let running: RunningSignIn | undefined;
  return {
    options: s
      ? {
          signIn: {
            client: () => running?.client,
            sessionMs: s.sessionMs,
            signInMs: s.signInMs,
            allowOtherUsers: s.allowOtherUsers,
            secureCookies: servedOverHttps(s, config.http.publicUrl),
          },
        }
      : {},
    async start(publicUrl, logger) {
      if (s) running = await startSignIn(s, publicUrl, logger);
      else logger.warn({ component: 'landing' }, 'landing page without sign-in (LANDING_SIGN_IN=off, or no LANDING_ENTRA_CLIENT_ID outside the sandbox): Microsoft certification requires Entra ID sign-in');
    },
    close: async () => running?.close(),
  };
}
// ---- landing-page sign-in (issue 13): end ---------------------------------------------------------

type RunningReconciliation = { reconciler: Reconciler; close(): Promise<void> };

/** The reconciler, and its schedule unless RECONCILE_INTERVAL_MINUTES is 0. */
function startReconciliation(
  config: Config['reconciliation'],
  deps: Pick<ReconcilerOptions, 'store' | 'ledger' | 'marketplace' | 'logger' | 'instanceId'>,
): RunningReconciliation {
  const reconciler = new Reconciler({ ...deps, maxCallsPerSecond: config.maxCallsPerSecond, takeoverAfterMs: config.takeoverAfterMs });
  const schedule = config.intervalMs !== undefined ? scheduleReconciliation({ reconciler, intervalMs: config.intervalMs, logger: deps.logger }) : undefined;
  return {
    reconciler,
    async close() {
      schedule?.stop();
      await reconciler.close();
    },
  };
}

export async function startRuntime(config: Config, logger: Logger, overrides: RuntimeOverrides = {}): Promise<Runtime> {
  const sandbox = config.marketplace.sandbox;
  let emulator: Emulator | undefined;
  if (sandbox) {
    const { startEmulator } = await import('./emulator/emulator.js');
    emulator = await startEmulator({ port: config.emulator.port, logger: logger.child({ component: 'emulator' }), ...overrides.emulator });
  }

  const operatorToken = config.operator.token ?? (sandbox ? randomBytes(24).toString('base64url') : undefined);
  if (!operatorToken) throw new ConfigError('OPERATOR_TOKEN', 'is required when connected to Microsoft (the operator API is behind it)');
  const { client: marketplace, health: credentialHealth } = marketplaceClient(config.marketplace, emulator, logger);
  const authenticator = webhookAuthenticator(config, emulator);
  const signIn = landingSignIn(config); // issue 13

  let store: EventStore | undefined;
  let processes: RunningProcesses | undefined;
  let integration: RunningIntegrationEvents | undefined;
  let projections: RunningProjections | undefined;
  let reconciliation: RunningReconciliation | undefined;
  const deadlines = deadlinesOf(config, credentialHealth, () => projections, logger);
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
      policy: config.policy,
    },
    landing: {
      ledger,
      marketplace,
      productName: config.landing.productName,
      microsoftTimeoutMs: config.landing.microsoftTimeoutMs,
      ...(config.landing.secret ? { landingSecret: config.landing.secret } : {}),
      ...signIn.options, // issue 13
    },
    api: {
      operatorToken,
      openapi: { ...(config.http.publicUrl ? { serverUrl: config.http.publicUrl } : {}) },
      subscriptions: { ledger, publisherChanges },
      integration: { integration: () => integration?.admin },
      readModels: { readModels: () => projections },
      processes: { processes: () => processesAdmin(store, processes, integration, overrides.runner?.mode) },
      deadlines: deadlines.routes,
      reconciliation: { reconciler: () => reconciliation?.reconciler },
    },
  });

  let url: string;
  try {
    url = await app.listen({ port: config.http.port, host: config.http.host });
  } catch (err) {
    await emulator?.close();
    throw err;
  }
  const publicUrl = (config.http.publicUrl ?? url).replace(/\/+$/, '');
  logger.info(
    { url, store: config.store.kind, ...(config.store.kind === 'sqlite' ? { path: config.store.path } : { connection: redact(config.store.connectionString) }) },
    'listening; opening the event store',
  );
  if (emulator) connectSandbox(emulator, publicUrl, config.operator.token ? undefined : operatorToken, logger);

  try {
    await signIn.start(publicUrl, logger); // issue 13
    const opened = await openStore(config.store, logger);
    store = overrides.wrapStore ? overrides.wrapStore(opened) : opened;
    processes = startProcesses({
      store,
      ledger,
      marketplace,
      provisioner: overrides.provisioner ?? provisionerFor(config.integration, logger),
      logger,
      ...(overrides.activation ? { activation: overrides.activation } : {}),
      runner: { ...config.runner, ...overrides.runner },
    });
    projections = startProjections({ store, path: config.projections.path, logger: logger.child({ component: 'projections' }) });
    integration = startIntegrationEvents({ store, settings: config.integration, logger, runner: { ...overrides.runner, instanceId: processes.instanceId } });
    reconciliation = startReconciliation(config.reconciliation, { store, ledger, marketplace, logger, instanceId: processes.instanceId });
  } catch (err) {
    deadlines.warner.stop();
    await app.close();
    await Promise.all([signIn.close(), emulator?.close()]);
    throw err;
  }
  // Publisher-side changes a restart interrupted: follow them again (never re-sent to Microsoft).
  void publisherChanges.resumeAll(pendingChangeSource(projections)).catch((err: unknown) => logger.error({ err }, 'could not resume pending publisher-side changes'));
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
    reconciler: () => reconciliation?.reconciler,
    operatorToken,
    close: () =>
      (closing ??= (async () => {
        deadlines.warner.stop();
        await app.close();
        await publisherChanges.close();
        await reconciliation?.close();
        await processes?.stop();
        await integration?.stop();
        await projections?.stop();
        await store?.close();
        await Promise.all([signIn.close(), emulator?.close()]); // issue 13: the local OpenID provider
      })()),
  };
}
