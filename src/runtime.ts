/**
 * The composition root: from a Config to a running service — HTTP front doors, the event store,
 * the Fulfillment API client, the process managers and, when no Microsoft credentials are
 * configured, the built-in marketplace emulator (a complete local sandbox).
 *
 * Order: listen first (so /healthz answers and /readyz says 503), then open the store, then start
 * the processes; shutdown runs the other way round.
 */
import type { OperatorCredential } from './config.js';
import type { OperatorTokens } from './http/operator-auth.js';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { allProjections, followGenerations, openReadModelTarget, pendingChangeSource, startProjections, writePlanPrices } from './projections/index.js';
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
// issue 14: metrics
import { createPrometheusMetrics } from './metrics/prometheus.js';
import type { PrometheusMetrics } from './metrics/prometheus.js';
import { timeAppends } from './eventstore/timed-appends.js';
import { countEventsAfter } from './eventstore/count-after.js';

/** In DATA_DIR: the sandbox's generated operator token, when OPERATOR_TOKEN is not set. */
export const OPERATOR_TOKEN_FILE = 'operator-token';
// Metered billing (docs/marketplace.md §11)
import { UsageLedger } from './application/usage-ledger.js';
import { MeterCatalogue } from './application/meter-catalogue.js';
import { UsageIntake } from './application/usage-intake.js';
import { MeteringClient } from './marketplace/metering-client.js';
import type { UsageRoutesOptions } from './http/usage.routes.js';
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
  /** This instance's metrics (GET /metrics). */
  metrics: PrometheusMetrics;
  close(): Promise<void>;
};

/** The Fulfillment API client: the emulator's in a sandbox, else Microsoft's (or MARKETPLACE_API_URL's) with the configured credentials. */
function marketplaceClient(config: Config['marketplace'], emulator: Emulator | undefined, logger: Logger, metrics: PrometheusMetrics): { client: FulfillmentClient; health: CredentialHealth } {
  const { sandbox, apiUrl, ...credentials } = config;
  const health = new CredentialHealth(); // what the client and the token provider see of the credential (GET /api/deadlines)
  const tokenProvider = createTokenProvider({ ...credentials, ...(!credentials.staticToken && sandbox ? { staticToken: 'sandbox' } : {}) }, { logger, health });
  const client = createFulfillmentClient({
    baseUrl: emulator?.apiBaseUrl ?? apiUrl ?? DEFAULT_MARKETPLACE_API_URL,
    tokenProvider,
    logger, // the client names its component itself
    credentialHealth: health,
    metrics,
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

/** The sandbox's own side: the built-in emulator with its state kept in DATA_DIR, and the sandbox's operator token. */
type SandboxSide = {
  emulator: Emulator;
  stateFile: string;
  restored: boolean;
  /** Undefined when OPERATOR_TOKEN is set. */
  operatorToken?: SandboxToken;
  close(): Promise<void>;
};

type SandboxToken = { token: string; file: string; created: boolean };

/**
 * The operator token of a sandbox without OPERATOR_TOKEN: generated once into `<DATA_DIR>/operator-token`
 * (mode 0600, created exclusively so two instances on one DATA_DIR agree) and read back on every start.
 */
export function sandboxOperatorToken(dataDir: string): SandboxToken {
  const file = join(dataDir, OPERATOR_TOKEN_FILE);
  mkdirSync(dataDir, { recursive: true });
  try {
    writeFileSync(file, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
    return { token: readFileSync(file, 'utf8').trim(), file, created: true };
  } catch (err) {
    if (!(err instanceof Error && 'code' in err && err.code === 'EEXIST')) throw err;
  }
  const token = readFileSync(file, 'utf8').trim();
  if (token.length < 16) throw new ConfigError('OPERATOR_TOKEN', `not set, and ${file} does not hold a token of at least 16 characters (delete it to have one generated)`);
  return { token, file, created: false };
}

async function startSandboxSide(config: Config, logger: Logger, options: Partial<EmulatorOptions> | undefined): Promise<SandboxSide> {
  const { startEmulator } = await import('./emulator/emulator.js');
  const { EMULATOR_STATE_FILE, persistEmulator } = await import('./emulator/persistence.js');
  const log = logger.child({ component: 'emulator' });
  const operatorToken = config.operator.operators.length > 0 ? undefined : sandboxOperatorToken(config.emulator.dataDir);
  const emulator = await startEmulator({ port: config.emulator.port, logger: log, ...options });
  const stateFile = join(config.emulator.dataDir, EMULATOR_STATE_FILE);
  let persisted: ReturnType<typeof persistEmulator>;
  try {
    persisted = persistEmulator(emulator, stateFile, log);
  } catch (err) {
    await emulator.close();
    throw err;
  }
  return {
    emulator,
    stateFile,
    restored: persisted.restored,
    ...(operatorToken ? { operatorToken } : {}),
    async close() {
      await emulator.close();
      persisted.close();
    },
  };
}

/** Points the built-in emulator at this service and says so: where its state and the operator token are kept. */
function connectSandbox(local: SandboxSide, publicUrl: string, logger: Logger): void {
  const { emulator, operatorToken } = local;
  emulator.setWebhookUrl(`${publicUrl}/webhook`);
  emulator.setLandingPageUrl(`${publicUrl}/landing`);
  logger.warn(
    {
      emulator: emulator.url,
      emulatorState: local.stateFile,
      subscriptions: emulator.state.subscriptions().length,
      ...(operatorToken ? { operatorTokenFile: operatorToken.file } : {}),
      purchase: `curl -s -XPOST ${emulator.url}/emulator/purchases -H 'content-type: application/json' -d '{"planId":"standard","quantity":5}'`,
    },
    'no Microsoft credentials configured: running as a local sandbox against the built-in marketplace emulator ' +
      `(its state ${local.restored ? 'restored from' : 'kept in'} ${local.stateFile}` +
      `${operatorToken ? `; the operator token is in ${operatorToken.file}` : ''}). ` +
      'To use Microsoft, set MARKETPLACE_TENANT_ID, MARKETPLACE_CLIENT_ID and MARKETPLACE_CLIENT_SECRET (or a certificate), and OPERATOR_TOKEN',
  );
}

/**
 * app.close(): stop accepting, let the requests in flight finish, then close every connection. Node closes the
 * keep-alive connections that are idle when the server closes, but one busy then stays open after its response
 * until the keep-alive timeout (72 s in Fastify), longer than SHUTDOWN_GRACE_MS: so idle connections are closed
 * again as the requests in flight finish.
 */
async function closeFinishingInFlight(app: App): Promise<void> {
  const sweep = setInterval(() => app.server.closeIdleConnections(), 50);
  try {
    await app.close();
  } finally {
    clearInterval(sweep);
  }
}

/** What the "behind" gauges of GET /metrics read when scraped (src/metrics/prometheus.ts). */
/** The projections over the configured read models (SQLite, or PostgreSQL with READMODELS_URL). */
async function readModelsOf(config: Config, store: EventStore, logger: Logger): Promise<RunningProjections> {
  const log = logger.child({ component: 'projections' });
  if (!config.projections.url) {
    // SQLite: the file the replay pointer names, followed when `fulfillment-ledger replay` switches it.
    const prices = config.projections.planPrices;
    const following = followGenerations({ store, basePath: config.projections.path, projections: allProjections, logger: log, prepare: (target) => writePlanPrices(target, prices) });
    await following.ready();
    return following;
  }
  const target = await openReadModelTarget(config.projections, log);
  return startProjections({ store, target, ownsTarget: true, logger: log });
}

function metricSources(store: EventStore, processes: RunningProcesses, integration: RunningIntegrationEvents, projections: RunningProjections, health: CredentialHealth) {
  return {
    processBacklog: async () => new Map([...(await processes.backlog()), ...(await integration.backlog())]),
    projectionLag: async () => {
      const byName = new Map(projections.projections.map((p) => [p.name, p.streamPrefixes]));
      const lag = new Map<string, number>();
      for (const s of projections.status()) lag.set(s.name, await countEventsAfter(store, s.position === undefined ? undefined : BigInt(s.position), byName.get(s.name) ?? []));
      return lag;
    },
    deadLetters: async () => (await integration.admin.status()).deadLettered,
    credentialRejections: () => health.snapshot().consecutiveRejections,
  };
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
  deps: Pick<ReconcilerOptions, 'store' | 'ledger' | 'marketplace' | 'logger' | 'instanceId' | 'metrics'>,
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

// ---------------------------------------------------------------------------------------------------------------
// Metered billing: the usage ledger is stateless over the store, so the routes and the process each take one.

type MeteringDeps = { config: Config; ledger: SubscriptionLedger; marketplace: FulfillmentClient; store: () => EventStore | undefined };

/** POST /api/usage and finance's read routes. */
function usageRoutesOf(deps: MeteringDeps, operatorToken: OperatorTokens, projections: () => RunningProjections | undefined): UsageRoutesOptions {
  const { config, ledger, marketplace, store } = deps;
  const meters = new MeterCatalogue({ marketplace, ttlMs: config.metering.planCacheMs });
  return {
    intake: new UsageIntake({ subscriptions: ledger, usage: new UsageLedger(store), meters }),
    operatorToken,
    ...(config.metering.usageToken ? { usageToken: config.metering.usageToken } : {}),
    read: { readModels: projections, expiryWarningMs: config.metering.expiryWarningMs },
  };
}

/** The metering process's options (METERING_*). */
function meteringOf(deps: MeteringDeps): NonNullable<ProcessesOptions['metering']> {
  const { config, ledger, marketplace, store } = deps;
  const { included, submitDelayMs, expiryWarningMs } = config.metering;
  return { usage: new UsageLedger(store), subscriptions: ledger, metering: new MeteringClient(marketplace), included, submitDelayMs, expiryWarningMs };
}

/**
 * Who may use the operator API: OPERATOR_TOKEN / OPERATOR_TOKENS, else the sandbox's generated token as `operator`.
 * `operatorToken` is the token of the operator named `operator` (or of the first): what tests and the banner use.
 */
function operatorsOf(config: Config, generated: string | undefined): { operators: OperatorCredential[]; operatorToken: string } {
  const operators = config.operator.operators.length > 0 ? config.operator.operators : generated ? [{ name: 'operator', token: generated }] : [];
  const operatorToken = (operators.find((o) => o.name === 'operator') ?? operators[0])?.token;
  if (!operatorToken) {
    throw new ConfigError('OPERATOR_TOKEN', 'is required when connected to Microsoft (the operator API is behind it): set OPERATOR_TOKEN, or OPERATOR_TOKENS=name:token,… for named operators');
  }
  return { operators, operatorToken };
}

export async function startRuntime(config: Config, logger: Logger, overrides: RuntimeOverrides = {}): Promise<Runtime> {
  const local = config.marketplace.sandbox ? await startSandboxSide(config, logger, overrides.emulator) : undefined;
  const emulator = local?.emulator;
  const { operators, operatorToken } = operatorsOf(config, local?.operatorToken?.token);

  const metrics = createPrometheusMetrics();
  const { client: marketplace, health: credentialHealth } = marketplaceClient(config.marketplace, emulator, logger, metrics);
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

  let publicUrl: string | undefined; // PUBLIC_URL, else the listen URL: known once the service listens
  const app = await buildApp({
    logger,
    store: storeRef,
    webhook: { store: storeRef, ledger, authenticator, policy: config.policy, metrics },
    metrics: { tokens: [config.operator.metricsToken ?? '', ...operators.map((o) => o.token)], render: () => metrics.render(), contentType: metrics.contentType },
    usage: usageRoutesOf({ config, ledger, marketplace, store: storeRef }, operators, () => projections),
    landing: {
      ledger,
      marketplace,
      productName: config.landing.productName,
      microsoftTimeoutMs: config.landing.microsoftTimeoutMs,
      ...(config.landing.secret ? { landingSecret: config.landing.secret } : {}),
      ...signIn.options, // issue 13
    },
    api: {
      operatorToken: operators,
      openapi: { serverUrl: () => publicUrl },
      subscriptions: { ledger, publisherChanges },
      integration: { integration: () => integration?.admin },
      readModels: { readModels: () => projections },
      processes: { processes: () => processesAdmin(store, processes, integration, overrides.runner?.mode) },
      deadlines: deadlines.routes,
      reconciliation: { reconciler: () => reconciliation?.reconciler },
      audit: { store: storeRef },
    },
  });

  let url: string;
  try {
    url = await app.listen({ port: config.http.port, host: config.http.host });
  } catch (err) {
    await local?.close();
    throw err;
  }
  publicUrl = (config.http.publicUrl ?? url).replace(/\/+$/, '');
  logger.info(
    { url, store: config.store.kind, ...(config.store.kind === 'sqlite' ? { path: config.store.path } : { connection: redact(config.store.connectionString) }) },
    'listening; opening the event store',
  );
  if (local) connectSandbox(local, publicUrl, logger);

  try {
    await signIn.start(publicUrl, logger); // issue 13
    const opened = await openStore(config.store, logger);
    const timed = timeAppends(opened, metrics);
    store = overrides.wrapStore ? overrides.wrapStore(timed) : timed;
    processes = startProcesses({
      store,
      ledger,
      marketplace,
      provisioner: overrides.provisioner ?? provisionerFor(config.integration, logger),
      logger,
      ...(overrides.activation ? { activation: overrides.activation } : {}),
      runner: { ...config.runner, ...overrides.runner, metrics },
      metrics,
      metering: meteringOf({ config, ledger, marketplace, store: storeRef }),
    });
    projections = await readModelsOf(config, store, logger);
    integration = startIntegrationEvents({ store, settings: config.integration, logger, metrics, runner: { ...overrides.runner, instanceId: processes.instanceId, metrics } });
    reconciliation = startReconciliation(config.reconciliation, { store, ledger, marketplace, logger, instanceId: processes.instanceId, metrics });
    metrics.setSources(metricSources(store, processes, integration, projections, credentialHealth));
  } catch (err) {
    deadlines.warner.stop();
    await app.close();
    await Promise.all([signIn.close(), local?.close()]); // issue 13: the local OpenID provider
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
    metrics,
    close: () =>
      (closing ??= (async () => {
        deadlines.warner.stop();
        await closeFinishingInFlight(app);
        await publisherChanges.close();
        await reconciliation?.close();
        await processes?.stop();
        await integration?.stop();
        await projections?.stop();
        await store?.close();
        await Promise.all([signIn.close(), local?.close()]); // issue 13: the local OpenID provider
      })()),
  };
}
