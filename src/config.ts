/**
 * Configuration: environment → TypeBox schema → typed config.
 * A bad value stops start-up with one line that names the variable (ConfigError), never a stack trace.
 */
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import Type from 'typebox';
import type { Static } from 'typebox';
import Value from 'typebox/value';
import { IntegrationEnvSchema } from './integration/settings.schema.js';

const LogLevel = Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)));

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
  DATA_DIR: Type.String({ minLength: 1, default: './data', description: 'Directory of the embedded store' }),
  EVENTSTORE_CONNECTION_STRING: Type.Optional(Type.String({ minLength: 1 })),
  READMODELS_PATH: Type.Optional(Type.String({ minLength: 1, description: 'Read-model SQLite file; default <DATA_DIR>/readmodels.db' })),
  SQLITE_POLL_INTERVAL_MS: Type.Integer({ minimum: 5, maximum: 60000, default: 250 }),
  SHUTDOWN_GRACE_MS: Type.Integer({ minimum: 0, maximum: 600000, default: 10000 }),
  // Microsoft's SaaS Fulfillment API. Without credentials the service runs against the built-in emulator.
  MARKETPLACE_API_URL: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_TENANT_ID: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_CLIENT_ID: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_CLIENT_SECRET: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_CLIENT_CERTIFICATE_PATH: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_CLIENT_CERTIFICATE_THUMBPRINT_SHA256: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_STATIC_TOKEN: Type.Optional(Type.String({ minLength: 1 })),
  MARKETPLACE_AUTHORITY_HOST: Type.Optional(Type.String({ minLength: 1 })),
  // Microsoft's webhook: who may call it (API.md §8). Defaults follow the MARKETPLACE_* identity.
  WEBHOOK_TENANT_ID: Type.Optional(Type.String({ minLength: 1 })),
  WEBHOOK_AUDIENCE: Type.Optional(Type.String({ minLength: 1 })),
  WEBHOOK_OPENID_METADATA_URL: Type.Optional(Type.String({ minLength: 1 })),
  WEBHOOK_ALLOWED_CALLERS: Type.Optional(Type.String({ minLength: 1 })),
  // The ISV's policy for customer-side changes (refused with a 4xx inside Microsoft's 10 s window).
  POLICY_RETIRED_PLANS: Type.Optional(Type.String()),
  POLICY_MAX_SEATS: Type.Optional(Type.Integer({ minimum: 1 })),
  // Front doors.
  OPERATOR_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  LANDING_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  PRODUCT_NAME: Type.String({ minLength: 1, default: 'Fulfillment Ledger sandbox' }),
  PUBLIC_URL: Type.Optional(Type.String({ minLength: 1 })),
  // The built-in marketplace emulator (used when no Microsoft credentials are configured).
  EMULATOR_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3978 }),
  // Process managers with several instances (docs/several-instances.md).
  PROCESS_RUNNER: Type.Optional(Type.Union([Type.Literal('lease'), Type.Literal('persistent'), Type.Literal('catch-up')])),
  PROCESS_LEASE_TAKEOVER_MS: Type.Integer({ minimum: 100, maximum: 600000, default: 5000 }),
  PROCESS_LEASE_HEARTBEAT_MS: Type.Integer({ minimum: 100, maximum: 3600000, default: 30000 }),
  PROCESS_LEASE_POLL_MS: Type.Integer({ minimum: 10, maximum: 60000, default: 1000 }),
  // Outbound integration events and provisioning requests to the ISV's product (docs/integration-events.md).
  ...IntegrationEnvSchema,
});

export type Env = Static<typeof EnvSchema>;

export type StoreConfig =
  | { kind: 'sqlite'; path: string; dataDir: string; pollIntervalMs: number }
  | { kind: 'eventstoredb'; connectionString: string };

export type Config = {
  port: number;
  host: string;
  logLevel: Env['LOG_LEVEL'];
  shutdownGraceMs: number;
  store: StoreConfig;
  env: Env;
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

const ESDB_SCHEMES = /^(esdb|esdb\+discover):\/\/[^\s]+$/;

/** Parse and check the environment. Pure apart from checking DATA_DIR on disk (creating it when missing). */
export function loadConfig(environment: NodeJS.ProcessEnv = process.env): Config {
  const known = Object.keys(EnvSchema.properties);
  const raw: Record<string, unknown> = {};
  for (const key of known) {
    const value = environment[key];
    if (value !== undefined && value !== '') raw[key] = value.trim();
  }
  const env = Value.Convert(EnvSchema, Value.Default(EnvSchema, raw)) as Env;
  const first = Value.Errors(EnvSchema, env)[0];
  if (first) {
    const variable = first.instancePath.replace(/^\//, '') || '(environment)';
    const given = variable in raw ? ` (got ${JSON.stringify(raw[variable])})` : '';
    throw new ConfigError(variable, `${expectation[variable] ?? first.message}${given}`);
  }
  return { port: env.PORT, host: env.HOST, logLevel: env.LOG_LEVEL, shutdownGraceMs: env.SHUTDOWN_GRACE_MS, store: storeConfig(env), env };
}

/** Plainer words than the schema validator's for the variables people get wrong most. */
const expectation: Record<string, string> = {
  EVENT_STORE: "must be 'sqlite' (embedded, the default) or 'eventstoredb'",
  LOG_LEVEL: 'must be one of fatal, error, warn, info, debug, trace, silent',
  PORT: 'must be a whole number from 0 to 65535',
  PROCESS_RUNNER: "must be 'lease' (SQLite default), 'persistent' (EventStoreDB default) or 'catch-up' (one instance only)",
  EMULATOR_PORT: 'must be a whole number from 0 to 65535',
  OPERATOR_TOKEN: 'must be at least 16 characters (a long random string)',
  LANDING_SECRET: 'must be at least 32 characters (a long random string)',
  POLICY_MAX_SEATS: 'must be a whole number ≥ 1',
};

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
  return { kind, dataDir, path: resolve(dataDir, 'events.db'), pollIntervalMs: env.SQLITE_POLL_INTERVAL_MS };
}

function usableDirectory(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new ConfigError('DATA_DIR', `cannot create ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!statSync(dir).isDirectory()) throw new ConfigError('DATA_DIR', `${dir} is not a directory`);
  try {
    accessSync(dir, constants.R_OK | constants.W_OK);
  } catch {
    throw new ConfigError('DATA_DIR', `${dir} is not readable and writable by this process`);
  }
}

/** Hide credentials embedded in a connection string (user:password@). */
export function redact(connectionString: string): string {
  return connectionString.replace(/\/\/[^@/]*@/, '//***@');
}
