/**
 * Configuration: environment → TypeBox schema → one typed `Config`, in sections (http, log, store,
 * marketplace, webhook, policy, operator, landing, emulator, runner, integration, projections, reconciliation).
 * Nothing else in the service reads the environment. A bad value stops start-up with one line that
 * names the variable (ConfigError), never a stack trace.
 *
 * Imports nothing of ours: every other module may import it.
 */
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import Type from 'typebox';
import type { Static, TObject } from 'typebox';
import Value from 'typebox/value';

const LogLevel = Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)));

/** Outbound integration events and provisioning requests to the ISV's product (docs/integration-events.md). */
const IntegrationEnvSchema = Type.Object({
  PROVISIONING_WEBHOOK_URL: Type.Optional(
    Type.String({ minLength: 1, description: "The ISV application's endpoint for integration events and provisioning requests (https)" }),
  ),
  PROVISIONING_WEBHOOK_SECRET: Type.Optional(
    Type.String({ minLength: 32, description: 'HMAC-SHA256 signing secret; several, comma-separated, while rotating (each signs)' }),
  ),
  PROVISIONING_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000, description: 'How long to wait for the ISV\'s 2xx' }),
  INTEGRATION_MAX_ATTEMPTS: Type.Integer({ minimum: 1, maximum: 1000, default: 40, description: 'Delivery attempts before an integration event is dead-lettered' }),
});

// ---- landing-page sign-in (issue 13): begin -------------------------------------------------------
/** The landing page's sign-in with Microsoft Entra ID (docs/landing-sign-in.md). */
const LandingSignInEnvSchema = Type.Object({
  LANDING_SIGN_IN: Type.Optional(
    Type.Union([Type.Literal('entra'), Type.Literal('local'), Type.Literal('off')], {
      description: 'entra (default when LANDING_ENTRA_CLIENT_ID is set), local (the sandbox OpenID provider; default in the sandbox), off',
    }),
  ),
  LANDING_ENTRA_CLIENT_ID: Type.Optional(Type.String({ minLength: 1, description: 'Application (client) id of the multi-tenant sign-in app registration' })),
  LANDING_ENTRA_CLIENT_SECRET: Type.Optional(Type.String({ minLength: 1, description: "The sign-in app's client secret" })),
  LANDING_ENTRA_CLIENT_CERTIFICATE_PATH: Type.Optional(Type.String({ minLength: 1, description: "PEM file with the sign-in app's certificate and private key (instead of a secret)" })),
  LANDING_ENTRA_AUTHORITY: Type.String({
    minLength: 1,
    default: 'common',
    description: 'common (work, school and personal accounts), organizations (work and school only), consumers, a tenant id, or a full https authority URL',
  }),
  LANDING_REDIRECT_URI: Type.Optional(Type.String({ minLength: 1, description: 'Redirect URI registered for the app; default <PUBLIC_URL>/landing/sign-in/callback' })),
  LANDING_SESSION_MINUTES: Type.Integer({ minimum: 1, maximum: 1440, default: 30, description: 'How long a landing-page sign-in session lasts' }),
  LANDING_SIGN_IN_MINUTES: Type.Integer({ minimum: 1, maximum: 120, default: 15, description: 'How long a started sign-in (and the purchase token it keeps) waits for the customer' }),
  LANDING_ALLOW_OTHER_USERS: Type.Union([Type.Literal('true'), Type.Literal('false')], {
    default: 'false',
    description: 'Whether someone who is neither the purchaser nor the beneficiary Microsoft reported may activate',
  }),
  LANDING_LOCAL_OIDC_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 0, description: 'Port of the local OpenID provider (LANDING_SIGN_IN=local), on 127.0.0.1; 0 = any free port (the log says which)' }),
});

/** The landing page's sign-in: undefined when LANDING_SIGN_IN=off (or nothing configured outside the sandbox). */
export type LandingSignInConfig =
  | {
      kind: 'entra';
      clientId: string;
      clientSecret?: string;
      clientCertificatePath?: string;
      /** The https authority URL, e.g. https://login.microsoftonline.com/common */
      authority: string;
      redirectUri?: string;
      sessionMs: number;
      signInMs: number;
      allowOtherUsers: boolean;
    }
  | { kind: 'local'; port: number; redirectUri?: string; sessionMs: number; signInMs: number; allowOtherUsers: boolean };

const ENTRA_AUTHORITY_HOST = 'https://login.microsoftonline.com';

function landingSignInConfig(env: Static<typeof LandingSignInEnvSchema>, sandbox: boolean): LandingSignInConfig | undefined {
  const kind = env.LANDING_SIGN_IN ?? (env.LANDING_ENTRA_CLIENT_ID ? 'entra' : sandbox ? 'local' : 'off');
  if (kind === 'off') return undefined;
  const common = {
    ...(env.LANDING_REDIRECT_URI ? { redirectUri: httpsOrLoopback('LANDING_REDIRECT_URI', env.LANDING_REDIRECT_URI) } : {}),
    sessionMs: env.LANDING_SESSION_MINUTES * 60_000,
    signInMs: env.LANDING_SIGN_IN_MINUTES * 60_000,
    allowOtherUsers: env.LANDING_ALLOW_OTHER_USERS === 'true',
  };
  if (kind === 'local') return { kind, port: env.LANDING_LOCAL_OIDC_PORT, ...common };
  if (!env.LANDING_ENTRA_CLIENT_ID) throw new ConfigError('LANDING_ENTRA_CLIENT_ID', 'is required when LANDING_SIGN_IN=entra (the sign-in app registration\'s client id)');
  if (!env.LANDING_ENTRA_CLIENT_SECRET && !env.LANDING_ENTRA_CLIENT_CERTIFICATE_PATH) {
    throw new ConfigError('LANDING_ENTRA_CLIENT_SECRET', 'or LANDING_ENTRA_CLIENT_CERTIFICATE_PATH is required for Entra ID sign-in');
  }
  const a = env.LANDING_ENTRA_AUTHORITY;
  const authority = /^https:\/\//i.test(a) ? a.replace(/\/+$/, '') : /^[\w.-]+$/.test(a) ? `${ENTRA_AUTHORITY_HOST}/${a}` : undefined;
  if (!authority) throw new ConfigError('LANDING_ENTRA_AUTHORITY', `must be common, organizations, consumers, a tenant id or an https URL (got ${JSON.stringify(a)})`);
  return {
    kind,
    clientId: env.LANDING_ENTRA_CLIENT_ID,
    ...(env.LANDING_ENTRA_CLIENT_SECRET ? { clientSecret: env.LANDING_ENTRA_CLIENT_SECRET } : {}),
    ...(env.LANDING_ENTRA_CLIENT_CERTIFICATE_PATH ? { clientCertificatePath: env.LANDING_ENTRA_CLIENT_CERTIFICATE_PATH } : {}),
    authority,
    ...common,
  };
}

/** A redirect URI must be https, except on this machine (the sandbox). */
function httpsOrLoopback(variable: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(variable, `must be an absolute URL (got ${JSON.stringify(value)})`);
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK.has(url.hostname))) {
    throw new ConfigError(variable, `must be https (http only on localhost/127.0.0.1), got ${JSON.stringify(value)}`);
  }
  return url.toString();
}
// ---- landing-page sign-in (issue 13): end ---------------------------------------------------------

/** Every variable the service reads, with its default. The README's configuration table mirrors this. */
export const EnvSchema = Type.Object({
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000, description: 'HTTP port' }),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1', description: 'Interface to listen on (0.0.0.0 in containers)' }),
  LOG_LEVEL: Type.Unsafe<Static<typeof LogLevel>>({ ...LogLevel, default: 'info' }),
  EVENT_STORE: Type.Optional(
    Type.Union([Type.Literal('sqlite'), Type.Literal('eventstoredb')], {
      description: 'sqlite (embedded, default) or eventstoredb (default when EVENTSTORE_CONNECTION_STRING is set)',
    }),
  ),
  DATA_DIR: Type.String({ minLength: 1, default: './data', description: "Directory of the embedded store and the read models; in a sandbox also the emulator's state and the generated operator token" }),
  EVENTSTORE_CONNECTION_STRING: Type.Optional(Type.String({ minLength: 1 })),
  READMODELS_PATH: Type.Optional(Type.String({ minLength: 1, description: 'Read-model SQLite file; default <DATA_DIR>/readmodels.db' })),
  READMODELS_URL: Type.Optional(
    Type.String({
      pattern: '^postgres(ql)?://',
      description: 'postgres://user[:password]@host[:port]/database: the read models in PostgreSQL, shared by every instance (READMODELS_PATH is then unused)',
    }),
  ),
  PLAN_PRICES: Type.Optional(
    Type.String({
      pattern: '^\\s*[^=,\\s]+/[^=,\\s]+\\s*=\\s*[0-9]+(\\.[0-9]+)?\\s*(,\\s*[^=,\\s]+/[^=,\\s]+\\s*=\\s*[0-9]+(\\.[0-9]+)?\\s*)*$',
      description: 'Monthly price per seat (per subscription for plans without seats) for revenue views: offerId/planId=29.99,offerId/other=9',
    }),
  ),
  PLAN_PRICE_CURRENCY: Type.String({ pattern: '^[A-Z]{3}$', default: 'USD', description: 'The currency of PLAN_PRICES (ISO 4217)' }),
  SQLITE_POLL_INTERVAL_MS: Type.Integer({ minimum: 5, maximum: 60000, default: 250 }),
  SQLITE_BUSY_WAIT_MS: Type.Integer({
    minimum: 0,
    maximum: 60000,
    default: 2000,
    description: "How long a write waits (on timers, never blocking) for another process's lock before answering 503",
  }),
  SQLITE_WRITE_PROBE_INTERVAL_MS: Type.Integer({
    minimum: 100,
    maximum: 3600000,
    default: 5000,
    description: '/readyz: the least time between two small probe writes when nothing else was written',
  }),
  SQLITE_CHECKPOINT_INTERVAL_MS: Type.Integer({
    minimum: 0,
    maximum: 86400000,
    default: 60000,
    description: 'How often the WAL is checkpointed and truncated (0: only at start and after a write outage)',
  }),
  SHUTDOWN_GRACE_MS: Type.Integer({ minimum: 0, maximum: 600000, default: 10000 }),
  // Microsoft's SaaS Fulfillment API. Without any of URL, client id, secret, certificate or static token the
  // service runs as a sandbox against the built-in emulator.
  MARKETPLACE_API_URL: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_TENANT_ID: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_CLIENT_ID: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_CLIENT_SECRET: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_CLIENT_CERTIFICATE_PATH: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_CLIENT_CERTIFICATE_THUMBPRINT_SHA256: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_STATIC_TOKEN: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_AUTHORITY_HOST: Type.Optional(Type.String({ minLength: 1 })),
  // Microsoft's webhook: who may call it (docs/marketplace.md §8). Defaults follow the MARKETPLACE_* identity.
  WEBHOOK_TENANT_ID: Type.Optional(Type.String({ minLength: 1 })),
  WEBHOOK_AUDIENCE: Type.Optional(Type.String({ minLength: 1 })),
  WEBHOOK_OPENID_METADATA_URL: Type.Optional(Type.String({ minLength: 1 })),
  WEBHOOK_ALLOWED_CALLERS: Type.Optional(Type.String({ minLength: 1 })),
  // The ISV's policy for customer-side changes (refused with a 4xx inside Microsoft's 10 s window).
  POLICY_RETIRED_PLANS: Type.Optional(Type.String()),
  POLICY_MAX_SEATS: Type.Optional(Type.Integer({ minimum: 1 })),
  // Front doors.
  OPERATOR_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  // Named operators (docs/audit.md): name:token pairs, comma-separated; the name is recorded as the actor.
  OPERATOR_TOKENS: Type.Optional(Type.String({ minLength: 1, description: 'Named operators: name:token,name:token (tokens at least 16 characters)' })),
  // GET /metrics (docs/operations.md): a read-only token for the scraper; the operator token works too.
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16, description: 'Bearer token for GET /metrics (the operator token is accepted too)' })),
  LANDING_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  LANDING_MICROSOFT_TIMEOUT_MS: Type.Integer({
    minimum: 100,
    maximum: 60_000,
    default: 5000,
    description: 'How long the landing page waits for Microsoft (Resolve, Get subscription) before it shows a page that retries by itself',
  }),
  PRODUCT_NAME: Type.String({ minLength: 1, default: 'Fulfillment Ledger sandbox' }),
  PUBLIC_URL: Type.Optional(Type.String({ minLength: 1 })),
  // The built-in marketplace emulator (used when no Microsoft credentials are configured).
  EMULATOR_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3978 }),
  // Process managers with several instances (docs/several-instances.md).
  PROCESS_RUNNER: Type.Optional(Type.Union([Type.Literal('lease'), Type.Literal('persistent'), Type.Literal('catch-up')])),
  PROCESS_LEASE_TAKEOVER_MS: Type.Integer({ minimum: 100, maximum: 600000, default: 5000 }),
  PROCESS_LEASE_HEARTBEAT_MS: Type.Integer({ minimum: 100, maximum: 3600000, default: 30000 }),
  PROCESS_LEASE_POLL_MS: Type.Integer({ minimum: 10, maximum: 60000, default: 1000 }),
  // Deadlines that lose revenue (docs/deadlines.md): GET /api/deadlines and the warner's log lines.
  DEADLINES_CHECK_INTERVAL_MS: Type.Integer({ minimum: 0, maximum: 86_400_000, default: 300_000, description: 'How often the warner looks; 0 = never (the endpoint still answers)' }),
  DEADLINES_PURCHASE_LEAD_DAYS: Type.Integer({ minimum: 0, maximum: 30, default: 7, description: 'Warn this many days before a pending purchase reaches its 30 days' }),
  DEADLINES_ACTIVATION_GRACE_MS: Type.Integer({ minimum: 1000, maximum: 2_592_000_000, default: 900_000, description: 'Warn about an activation not confirmed after this long' }),
  DEADLINES_CREDENTIAL_REJECTIONS: Type.Integer({ minimum: 1, maximum: 1000, default: 3, description: 'Rejections (401/403) in a row that make the credential overdue' }),
  DEADLINES_CERTIFICATE_LEAD_DAYS: Type.Integer({ minimum: 0, maximum: 365, default: 30, description: "Warn this many days before the client certificate's notAfter" }),
  // The reconciler (docs/reconciliation.md).
  RECONCILE_INTERVAL_MINUTES: Type.Integer({ minimum: 0, maximum: 10080, default: 60, description: 'Minutes between scheduled reconciliation runs; 0 = no schedule (on demand only)' }),
  RECONCILE_MAX_CALLS_PER_SECOND: Type.Number({ exclusiveMinimum: 0, maximum: 1000, default: 10, description: 'Calls to Microsoft per second at most during a run' }),
  RECONCILE_TAKEOVER_MS: Type.Integer({ minimum: 1000, maximum: 3600000, default: 60000, description: "A run's claim not renewed for this long is taken over (the run resumed) by the next trigger" }),
  ...IntegrationEnvSchema.properties,
  ...LandingSignInEnvSchema.properties, // landing-page sign-in (issue 13)
});

type Env = Static<typeof EnvSchema>;

/** The environment as given: process.env, or a plain object of strings (tests, the CLI). */
export type Environment = Readonly<Record<string, string | undefined>>;

export type HttpConfig = {
  /** PORT */
  port: number;
  /** HOST */
  host: string;
  /** PUBLIC_URL: the service's public base URL; default the URL it listens on. */
  publicUrl?: string;
  /** SHUTDOWN_GRACE_MS */
  shutdownGraceMs: number;
};

export type LogConfig = { level: Env['LOG_LEVEL'] };

export type StoreConfig =
  | {
      kind: 'sqlite';
      path: string;
      dataDir: string;
      pollIntervalMs: number;
      /** SQLITE_BUSY_WAIT_MS */
      busyWaitMs: number;
      /** SQLITE_WRITE_PROBE_INTERVAL_MS */
      writeProbeIntervalMs: number;
      /** SQLITE_CHECKPOINT_INTERVAL_MS */
      checkpointIntervalMs: number;
    }
  | { kind: 'eventstoredb'; connectionString: string };

/** How to reach Microsoft's SaaS Fulfillment API; each field is its MARKETPLACE_* variable. */
export type MarketplaceConfig = {
  /** True when nothing says how to reach Microsoft: the service runs as a sandbox against the built-in emulator. */
  sandbox: boolean;
  apiUrl?: string;
  tenantId?: string;
  clientId?: string;
  clientSecret?: string;
  clientCertificatePath?: string;
  clientCertificateThumbprintSha256?: string;
  staticToken?: string;
  authorityHost?: string;
};

/** Who may call the webhook, as configured; runtime.ts fills the gaps (the emulator's identity, then the MARKETPLACE_* one). */
export type WebhookAuthConfig = {
  /** WEBHOOK_TENANT_ID */
  tenantId?: string;
  /** WEBHOOK_AUDIENCE */
  audience?: string;
  /** WEBHOOK_OPENID_METADATA_URL */
  metadataUrl?: string;
  /** WEBHOOK_ALLOWED_CALLERS, split at commas; undefined = the marketplace's own app only. */
  allowedCallers?: string[];
};

/** The ISV's rules for customer-side changes. */
export type PolicyConfig = {
  /** POLICY_RETIRED_PLANS, split at commas. */
  retiredPlans: string[];
  /** POLICY_MAX_SEATS; undefined = no limit. */
  maxSeats?: number;
};

/** One named operator: who authenticates with `token`; recorded as actor `operator:<name>`. */
export type OperatorCredential = { name: string; token: string };

export type OperatorConfig = {
  /** OPERATOR_TOKEN; runtime.ts generates one for a sandbox run and requires it (or OPERATOR_TOKENS) otherwise. */
  token?: string;
  /** Everyone who may use the operator API: OPERATOR_TOKEN as `operator`, then OPERATOR_TOKENS. Empty when neither is set. */
  operators: OperatorCredential[];
  /** METRICS_TOKEN: GET /metrics accepts it besides the operator token. */
  metricsToken?: string;
};

export type LandingConfig = {
  /** LANDING_SECRET; default a random key per process. */
  secret?: string;
  /** PRODUCT_NAME */
  productName: string;
  /** LANDING_MICROSOFT_TIMEOUT_MS */
  microsoftTimeoutMs: number;
  /** The sign-in (LANDING_SIGN_IN and LANDING_ENTRA_*, issue 13); undefined: the page runs without sign-in. */
  signIn?: LandingSignInConfig;
};

export type EmulatorConfig = {
  /** EMULATOR_PORT */
  port: number;
  /** DATA_DIR: where a sandbox keeps the emulator's state and its generated operator token. */
  dataDir: string;
};

export type RunnerConfig = {
  /** PROCESS_RUNNER; undefined = the store's default (lease on SQLite, persistent on EventStoreDB). */
  mode?: 'lease' | 'persistent' | 'catch-up';
  /** PROCESS_LEASE_TAKEOVER_MS, PROCESS_LEASE_HEARTBEAT_MS, PROCESS_LEASE_POLL_MS */
  lease: { takeoverAfterMs: number; heartbeatMs: number; pollMs: number };
};

/** The ISV integration (outbound integration events and provisioning calls). */
export type IntegrationConfig = {
  url: string;
  /** The first signs; all sign while rotating. */
  secrets: string[];
  timeoutMs: number;
  maxAttempts: number;
  /** True when the URL is plain http to a host that is not this machine. */
  insecure: boolean;
};

/** Deadlines that lose revenue (src/projections/views/deadlines.ts, src/processes/deadlines.process.ts). */
export type DeadlinesConfig = {
  /** DEADLINES_CHECK_INTERVAL_MS; 0 = the warner does not run. */
  checkIntervalMs: number;
  /** DEADLINES_PURCHASE_LEAD_DAYS, in ms. */
  purchaseLeadMs: number;
  /** DEADLINES_ACTIVATION_GRACE_MS */
  activationGraceMs: number;
  /** DEADLINES_CREDENTIAL_REJECTIONS */
  credentialRejections: number;
  /** DEADLINES_CERTIFICATE_LEAD_DAYS, in ms. */
  certificateLeadMs: number;
};

/** The reconciler: when it runs on its own, how fast it may call Microsoft, when a vanished run is taken over. */
export type ReconciliationConfig = {
  /** RECONCILE_INTERVAL_MINUTES in milliseconds; undefined when 0: no schedule, runs on demand only. */
  intervalMs?: number;
  /** RECONCILE_MAX_CALLS_PER_SECOND */
  maxCallsPerSecond: number;
  /** RECONCILE_TAKEOVER_MS */
  takeoverAfterMs: number;
};

export type PlanPrice = { offerId: string; planId: string; monthlyPrice: number; currency: string };

export type ProjectionsConfig = {
  /** The read-model SQLite file: READMODELS_PATH, else `readmodels.db` in DATA_DIR (beside the embedded store). */
  path: string;
  /** READMODELS_URL: the read models in PostgreSQL instead (postgres://…). */
  url?: string;
  /** PLAN_PRICES with PLAN_PRICE_CURRENCY: what the revenue views multiply seats by. */
  planPrices: PlanPrice[];
};

export type Config = {
  http: HttpConfig;
  log: LogConfig;
  store: StoreConfig;
  marketplace: MarketplaceConfig;
  webhook: WebhookAuthConfig;
  policy: PolicyConfig;
  operator: OperatorConfig;
  landing: LandingConfig;
  emulator: EmulatorConfig;
  runner: RunnerConfig;
  /** Undefined without PROVISIONING_WEBHOOK_URL: provisioning succeeds at once and no integration event is recorded or sent. */
  integration?: IntegrationConfig;
  projections: ProjectionsConfig;
  deadlines: DeadlinesConfig;
  reconciliation: ReconciliationConfig;
  /** Metered billing (the METERING_* and USAGE_TOKEN block at the end of this file). */
  metering: MeteringConfig;
};

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
  }
}

const DAY_MS = 86_400_000;

/** Parse and check the environment. Pure apart from checking DATA_DIR on disk (creating it when missing). */
export function loadConfig(environment: Environment = process.env): Config {
  const env = parseEnv(EnvSchema, environment);
  const store = storeConfig(env);
  const integration = integrationConfig(env);
  return {
    http: {
      port: env.PORT,
      host: env.HOST,
      ...(env.PUBLIC_URL ? { publicUrl: env.PUBLIC_URL } : {}),
      shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
    },
    log: { level: env.LOG_LEVEL },
    store,
    marketplace: marketplaceConfig(env),
    webhook: {
      ...(env.WEBHOOK_TENANT_ID ? { tenantId: env.WEBHOOK_TENANT_ID } : {}),
      ...(env.WEBHOOK_AUDIENCE ? { audience: env.WEBHOOK_AUDIENCE } : {}),
      ...(env.WEBHOOK_OPENID_METADATA_URL ? { metadataUrl: env.WEBHOOK_OPENID_METADATA_URL } : {}),
      ...(env.WEBHOOK_ALLOWED_CALLERS ? { allowedCallers: list(env.WEBHOOK_ALLOWED_CALLERS) } : {}),
    },
    policy: {
      retiredPlans: list(env.POLICY_RETIRED_PLANS ?? ''),
      ...(env.POLICY_MAX_SEATS !== undefined ? { maxSeats: env.POLICY_MAX_SEATS } : {}),
    },
    operator: {
      ...(env.OPERATOR_TOKEN ? { token: env.OPERATOR_TOKEN } : {}),
      operators: operatorCredentials(env.OPERATOR_TOKEN, env.OPERATOR_TOKENS),
      ...(env.METRICS_TOKEN ? { metricsToken: env.METRICS_TOKEN } : {}),
    },
    landing: {
      productName: env.PRODUCT_NAME,
      microsoftTimeoutMs: env.LANDING_MICROSOFT_TIMEOUT_MS,
      ...(env.LANDING_SECRET ? { secret: env.LANDING_SECRET } : {}),
      ...withSignIn(landingSignInConfig(env, marketplaceSandbox(env))), // issue 13
    },
    emulator: { port: env.EMULATOR_PORT, dataDir: resolve(env.DATA_DIR) },
    runner: {
      ...(env.PROCESS_RUNNER ? { mode: env.PROCESS_RUNNER } : {}),
      lease: { takeoverAfterMs: env.PROCESS_LEASE_TAKEOVER_MS, heartbeatMs: env.PROCESS_LEASE_HEARTBEAT_MS, pollMs: env.PROCESS_LEASE_POLL_MS },
    },
    ...(integration ? { integration } : {}),
    projections: {
      path: env.READMODELS_PATH ? resolve(env.READMODELS_PATH) : resolve(env.DATA_DIR, READ_MODEL_FILE),
      ...(env.READMODELS_URL ? { url: env.READMODELS_URL } : {}),
      planPrices: planPricesOf(env.PLAN_PRICES, env.PLAN_PRICE_CURRENCY),
    },
    deadlines: {
      checkIntervalMs: env.DEADLINES_CHECK_INTERVAL_MS,
      purchaseLeadMs: env.DEADLINES_PURCHASE_LEAD_DAYS * DAY_MS,
      activationGraceMs: env.DEADLINES_ACTIVATION_GRACE_MS,
      credentialRejections: env.DEADLINES_CREDENTIAL_REJECTIONS,
      certificateLeadMs: env.DEADLINES_CERTIFICATE_LEAD_DAYS * DAY_MS,
    },
    reconciliation: {
      ...(env.RECONCILE_INTERVAL_MINUTES > 0 ? { intervalMs: env.RECONCILE_INTERVAL_MINUTES * 60_000 } : {}),
      maxCallsPerSecond: env.RECONCILE_MAX_CALLS_PER_SECOND,
      takeoverAfterMs: env.RECONCILE_TAKEOVER_MS,
    },
    metering: loadMeteringConfig(environment),
  };
}

/**
 * The integration section alone, from the PROVISIONING_* and INTEGRATION_* variables (tests and tools
 * that run the integration without the rest of the service). undefined without PROVISIONING_WEBHOOK_URL.
 */
export function loadIntegrationConfig(environment: Environment): IntegrationConfig | undefined {
  return integrationConfig(parseEnv(IntegrationEnvSchema, environment));
}

/** Plainer words than the schema validator's for the variables people get wrong most. */
const expectation: Record<string, string> = {
  EVENT_STORE: "must be 'sqlite' (embedded, the default) or 'eventstoredb'",
  LOG_LEVEL: 'must be one of fatal, error, warn, info, debug, trace, silent',
  PORT: 'must be a whole number from 0 to 65535',
  PROCESS_RUNNER: "must be 'lease' (SQLite default), 'persistent' (EventStoreDB default) or 'catch-up' (one instance only)",
  EMULATOR_PORT: 'must be a whole number from 0 to 65535',
  OPERATOR_TOKEN: 'must be at least 16 characters (a long random string)',
  METRICS_TOKEN: 'must be at least 16 characters (a long random string)',
  LANDING_SECRET: 'must be at least 32 characters (a long random string)',
  POLICY_MAX_SEATS: 'must be a whole number ≥ 1',
  DEADLINES_CHECK_INTERVAL_MS: 'must be a whole number of milliseconds from 0 (off) to 86400000',
  DEADLINES_PURCHASE_LEAD_DAYS: 'must be a whole number of days from 0 to 30',
  DEADLINES_CERTIFICATE_LEAD_DAYS: 'must be a whole number of days from 0 to 365',
  RECONCILE_INTERVAL_MINUTES: 'must be a whole number of minutes from 0 (no schedule) to 10080 (a week)',
  RECONCILE_MAX_CALLS_PER_SECOND: 'must be a number above 0 and at most 1000',
  RECONCILE_TAKEOVER_MS: 'must be a whole number of milliseconds from 1000 to 3600000',
  LANDING_SIGN_IN: "must be 'entra', 'local' (the sandbox's own OpenID provider) or 'off'",
  LANDING_ALLOW_OTHER_USERS: "must be 'true' or 'false'",
  LANDING_SESSION_MINUTES: 'must be a whole number of minutes from 1 to 1440',
  LANDING_SIGN_IN_MINUTES: 'must be a whole number of minutes from 1 to 120',
};

/**
 * The one environment parser: the schema's variables only, trimmed, empty meaning unset; then the
 * schema's defaults, strings converted to numbers, and the check. The first bad variable is a ConfigError.
 */
function parseEnv<S extends TObject>(schema: S, environment: Environment): Static<S> {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(schema.properties)) {
    const value = environment[key];
    if (value !== undefined && value !== '') raw[key] = value.trim();
  }
  const env = Value.Convert(schema, Value.Default(schema, raw));
  if (Value.Check(schema, env)) return env;
  const first = Value.Errors(schema, env)[0];
  const variable = first?.instancePath.replace(/^\//, '') || '(environment)';
  // A connection string may carry a password: said without it.
  const shown = variable === 'READMODELS_URL' ? String(raw[variable]).replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@') : raw[variable];
  const given = variable in raw ? ` (got ${JSON.stringify(shown)})` : '';
  throw new ConfigError(variable, `${expectation[variable] ?? first?.message ?? 'is not valid'}${given}`);
}

/** A comma-separated list, without blanks. */
/** What an operator's name and token must be (the name goes into the audit trail as `operator:<name>`). */
const OperatorCredentialSchema = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$' }),
  token: Type.String({ minLength: 16, pattern: '^[\\x21-\\x7E]+$' }),
});

/**
 * OPERATOR_TOKEN (as the operator named `operator`) and OPERATOR_TOKENS (`name:token,…`; a token may contain ':',
 * the name ends at the first one). Errors name the entry and the operator, never a token.
 */
export function operatorCredentials(single: string | undefined, named: string | undefined): OperatorCredential[] {
  const out: OperatorCredential[] = single ? [{ name: 'operator', token: single }] : [];
  const entries = (named ?? '').split(',').map((s) => s.trim());
  if (named === undefined || named.trim() === '') return out;
  entries.forEach((entry, i) => {
    const where = `entry ${i + 1}`;
    const colon = entry.indexOf(':');
    if (entry === '') throw new ConfigError('OPERATOR_TOKENS', `${where} is empty (expected name:token,name:token)`);
    if (colon <= 0 || colon === entry.length - 1) throw new ConfigError('OPERATOR_TOKENS', `${where} is not name:token (expected name:token,name:token)`);
    const name = entry.slice(0, colon).trim();
    const credential: unknown = { name, token: entry.slice(colon + 1).trim() };
    if (!Value.Check(OperatorCredentialSchema, credential)) {
      const path = Value.Errors(OperatorCredentialSchema, credential)[0]?.instancePath;
      throw new ConfigError(
        'OPERATOR_TOKENS',
        path === '/name'
          ? `${where}: the name must be 1 to 100 letters, digits or . _ @ + - (starting with a letter or digit)`
          : `${where} (${name}): the token must be at least 16 characters, printable, without spaces or commas`,
      );
    }
    if (out.some((o) => o.name === credential.name)) {
      throw new ConfigError('OPERATOR_TOKENS', `the name ${credential.name} is given twice${credential.name === 'operator' && single ? ' (OPERATOR_TOKEN is the operator named operator)' : ''}`);
    }
    const twin = out.find((o) => o.token === credential.token);
    if (twin) throw new ConfigError('OPERATOR_TOKENS', `${credential.name} has the same token as ${twin.name}: every operator needs their own`);
    out.push(credential);
  });
  return out;
}

function list(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}

const ESDB_SCHEMES = /^(esdb|esdb\+discover):\/\/[^\s]+$/;
const EVENTS_FILE = 'events.db';
const READ_MODEL_FILE = 'readmodels.db';

/** PLAN_PRICES (its shape checked by the schema): `offer/plan=price` pairs; a plan named twice is an error. */
function planPricesOf(value: string | undefined, currency: string): PlanPrice[] {
  if (!value) return [];
  const prices = new Map<string, PlanPrice>();
  for (const pair of value.split(',')) {
    const [key = '', price = ''] = pair.split('=').map((x) => x.trim());
    const slash = key.indexOf('/');
    if (prices.has(key)) throw new ConfigError('PLAN_PRICES', `${key} is priced twice`);
    prices.set(key, { offerId: key.slice(0, slash), planId: key.slice(slash + 1), monthlyPrice: Number(price), currency });
  }
  return [...prices.values()];
}

function storeConfig(env: Env): StoreConfig {
  const kind = env.EVENT_STORE ?? (env.EVENTSTORE_CONNECTION_STRING ? 'eventstoredb' : 'sqlite');
  if (kind === 'eventstoredb') {
    const cs = env.EVENTSTORE_CONNECTION_STRING;
    if (!cs) throw new ConfigError('EVENTSTORE_CONNECTION_STRING', 'is required when EVENT_STORE=eventstoredb (e.g. esdb://localhost:2113?tls=false)');
    if (!ESDB_SCHEMES.test(cs)) {
      throw new ConfigError('EVENTSTORE_CONNECTION_STRING', `is not an EventStoreDB connection string (esdb://host:2113?tls=false or esdb+discover://…), got ${JSON.stringify(redact(cs))}`);
    }
    return { kind, connectionString: cs };
  }
  const dataDir = resolve(env.DATA_DIR);
  usableDirectory(dataDir);
  return {
    kind,
    dataDir,
    path: resolve(dataDir, EVENTS_FILE),
    pollIntervalMs: env.SQLITE_POLL_INTERVAL_MS,
    busyWaitMs: env.SQLITE_BUSY_WAIT_MS,
    writeProbeIntervalMs: env.SQLITE_WRITE_PROBE_INTERVAL_MS,
    checkpointIntervalMs: env.SQLITE_CHECKPOINT_INTERVAL_MS,
  };
}

function usableDirectory(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new ConfigError('DATA_DIR', `cannot create ${dir}: ${errorCode(err)}`);
  }
  if (!statSync(dir).isDirectory()) throw new ConfigError('DATA_DIR', `${dir} is not a directory`);
  try {
    accessSync(dir, constants.R_OK | constants.W_OK);
  } catch {
    throw new ConfigError('DATA_DIR', `${dir} is not readable and writable by this process`);
  }
}

function errorCode(err: unknown): string {
  if (err instanceof Error) return 'code' in err && typeof err.code === 'string' ? err.code : err.message;
  return String(err);
}

const withSignIn = (signIn: LandingSignInConfig | undefined): { signIn?: LandingSignInConfig } => (signIn ? { signIn } : {});

function marketplaceSandbox(env: Env): boolean {
  return !(
    env.MARKETPLACE_API_URL ||
    env.MARKETPLACE_CLIENT_ID ||
    env.MARKETPLACE_CLIENT_SECRET ||
    env.MARKETPLACE_CLIENT_CERTIFICATE_PATH ||
    env.MARKETPLACE_STATIC_TOKEN
  );
}

function marketplaceConfig(env: Env): MarketplaceConfig {
  const sandbox = marketplaceSandbox(env);
  return {
    sandbox,
    ...(env.MARKETPLACE_API_URL ? { apiUrl: env.MARKETPLACE_API_URL } : {}),
    ...(env.MARKETPLACE_TENANT_ID ? { tenantId: env.MARKETPLACE_TENANT_ID } : {}),
    ...(env.MARKETPLACE_CLIENT_ID ? { clientId: env.MARKETPLACE_CLIENT_ID } : {}),
    ...(env.MARKETPLACE_CLIENT_SECRET ? { clientSecret: env.MARKETPLACE_CLIENT_SECRET } : {}),
    ...(env.MARKETPLACE_CLIENT_CERTIFICATE_PATH ? { clientCertificatePath: env.MARKETPLACE_CLIENT_CERTIFICATE_PATH } : {}),
    ...(env.MARKETPLACE_CLIENT_CERTIFICATE_THUMBPRINT_SHA256
      ? { clientCertificateThumbprintSha256: env.MARKETPLACE_CLIENT_CERTIFICATE_THUMBPRINT_SHA256 }
      : {}),
    ...(env.MARKETPLACE_STATIC_TOKEN ? { staticToken: env.MARKETPLACE_STATIC_TOKEN } : {}),
    ...(env.MARKETPLACE_AUTHORITY_HOST ? { authorityHost: env.MARKETPLACE_AUTHORITY_HOST } : {}),
  };
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** undefined when PROVISIONING_WEBHOOK_URL is not set; a ConfigError naming the variable on bad values. */
function integrationConfig(env: Static<typeof IntegrationEnvSchema>): IntegrationConfig | undefined {
  if (!env.PROVISIONING_WEBHOOK_URL) return undefined;
  let url: URL;
  try {
    url = new URL(env.PROVISIONING_WEBHOOK_URL);
  } catch {
    throw new ConfigError('PROVISIONING_WEBHOOK_URL', `must be an absolute http(s) URL (got ${JSON.stringify(env.PROVISIONING_WEBHOOK_URL)})`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError('PROVISIONING_WEBHOOK_URL', `must be an https URL (got ${url.protocol})`);
  }
  if (url.username || url.password) {
    throw new ConfigError('PROVISIONING_WEBHOOK_URL', 'must not carry credentials: requests are authenticated by their HMAC signature');
  }
  if (!env.PROVISIONING_WEBHOOK_SECRET) {
    throw new ConfigError(
      'PROVISIONING_WEBHOOK_SECRET',
      'is required when PROVISIONING_WEBHOOK_URL is set (at least 32 characters; the receiver verifies the HMAC with it)',
    );
  }
  const secrets = list(env.PROVISIONING_WEBHOOK_SECRET);
  if (secrets.length === 0 || secrets.some((s) => s.length < 32)) {
    throw new ConfigError('PROVISIONING_WEBHOOK_SECRET', 'each secret must be at least 32 characters');
  }
  return {
    url: url.toString(),
    secrets,
    timeoutMs: env.PROVISIONING_TIMEOUT_MS,
    maxAttempts: env.INTEGRATION_MAX_ATTEMPTS,
    insecure: url.protocol === 'http:' && !LOOPBACK.has(url.hostname),
  };
}

/** Hide credentials embedded in a connection string (user:password@). */
export function redact(connectionString: string): string {
  return connectionString.replace(/\/\/[^@/]*@/, '//***@');
}

// ---------------------------------------------------------------------------------------------------------------
// Metered billing (docs/marketplace.md §11): usage intake, the hourly submission, included quantities.

export const MeteringEnvSchema = Type.Object({
  USAGE_TOKEN: Type.Optional(Type.String({ minLength: 16, description: 'A bearer token for POST /api/usage only (the operator token works too)' })),
  METERING_INCLUDED: Type.Optional(
    Type.String({ minLength: 1, description: 'Included quantity per dimension per month, subtracted before submission: `dimension=quantity,…`' }),
  ),
  METERING_SUBMIT_DELAY_MS: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 300_000, description: 'How long after an hour ends its usage is closed and submitted' }),
  METERING_EXPIRY_WARNING_MS: Type.Integer({ minimum: 0, maximum: 86_400_000, default: 14_400_000, description: 'Unsettled usage this close to Microsoft\'s 24-hour limit is surfaced' }),
  METERING_PLAN_CACHE_MS: Type.Integer({ minimum: 0, maximum: 86_400_000, default: 3_600_000, description: 'How long a plan\'s meter dimensions (listAvailablePlans) are cached' }),
});

export type MeteringConfig = {
  /** USAGE_TOKEN */
  usageToken?: string;
  /** METERING_INCLUDED: dimension → included quantity per UTC month. */
  included: ReadonlyMap<string, number>;
  /** METERING_SUBMIT_DELAY_MS */
  submitDelayMs: number;
  /** METERING_EXPIRY_WARNING_MS */
  expiryWarningMs: number;
  /** METERING_PLAN_CACHE_MS */
  planCacheMs: number;
};

export function loadMeteringConfig(environment: Environment): MeteringConfig {
  const env = parseEnv(MeteringEnvSchema, environment);
  return {
    ...(env.USAGE_TOKEN ? { usageToken: env.USAGE_TOKEN } : {}),
    included: includedQuantities(env.METERING_INCLUDED ?? ''),
    submitDelayMs: env.METERING_SUBMIT_DELAY_MS,
    expiryWarningMs: env.METERING_EXPIRY_WARNING_MS,
    planCacheMs: env.METERING_PLAN_CACHE_MS,
  };
}

/** `api-calls=1000,gb=5.5` → a map; a bad entry is a ConfigError naming it. */
function includedQuantities(value: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const entry of list(value)) {
    const m = /^([^=\s]+)\s*=\s*(\d+(?:\.\d+)?)$/.exec(entry);
    if (!m?.[1] || m[2] === undefined) throw new ConfigError('METERING_INCLUDED', `expected dimension=quantity, got ${JSON.stringify(entry)}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}
