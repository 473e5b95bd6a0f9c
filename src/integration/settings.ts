/**
 * The environment of the ISV integration (outbound integration events and provisioning calls).
 *
 * `IntegrationEnvSchema` (settings.schema.ts, which imports nothing of ours, so config.ts can use it
 * without an import cycle) is meant to be spread into the service's EnvSchema;
 * `integrationSettings(env)` reads either that typed env or raw `process.env` strings. Without
 * PROVISIONING_WEBHOOK_URL there is no integration: provisioning succeeds at once and no
 * integration event is recorded or sent (the local sandbox).
 */
import Type from 'typebox';
import type { Static } from 'typebox';
import Value from 'typebox/value';
import { ConfigError } from '../config.js';
import { IntegrationEnvSchema } from './settings.schema.js';

export { IntegrationEnvSchema };

const Schema = Type.Object(IntegrationEnvSchema);
export type IntegrationEnv = Static<typeof Schema>;

export type IntegrationSettings = {
  url: string;
  /** The first signs; all sign while rotating. */
  secrets: string[];
  timeoutMs: number;
  maxAttempts: number;
  /** True when the URL is plain http to a host that is not this machine. */
  insecure: boolean;
};

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** undefined when PROVISIONING_WEBHOOK_URL is not set; throws ConfigError naming the variable on bad values. */
export function integrationSettings(environment: Readonly<Record<string, unknown>>): IntegrationSettings | undefined {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(IntegrationEnvSchema)) {
    const value = environment[key];
    if (value !== undefined && value !== '') raw[key] = typeof value === 'string' ? value.trim() : value;
  }
  const env = Value.Convert(Schema, Value.Default(Schema, raw)) as IntegrationEnv;
  const first = Value.Errors(Schema, env)[0];
  if (first) {
    const variable = first.instancePath.replace(/^\//, '') || '(environment)';
    throw new ConfigError(variable, `${first.message} (got ${JSON.stringify(raw[variable])})`);
  }
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
    throw new ConfigError('PROVISIONING_WEBHOOK_SECRET', 'is required when PROVISIONING_WEBHOOK_URL is set (at least 32 characters; the receiver verifies the HMAC with it)');
  }
  const secrets = env.PROVISIONING_WEBHOOK_SECRET.split(',').map((s) => s.trim()).filter(Boolean);
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
