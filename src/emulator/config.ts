/**
 * Environment → emulator options, for `npm run emulator` and for `npm start`'s built-in sandbox.
 *
 *   EMULATOR_PORT                 port to listen on (default 3978)
 *   EMULATOR_HOST                 interface (default 127.0.0.1; 0.0.0.0 in a container)
 *   EMULATOR_WEBHOOK_URL          the publisher's webhook ("Connection webhook" in Partner Center)
 *   EMULATOR_LANDING_PAGE_URL     the publisher's landing page (default: the emulator's stand-in)
 *   EMULATOR_PUBLISHER_TENANT_ID  the publisher's Entra tenant (webhook token `tid`, issuer)
 *   EMULATOR_PUBLISHER_APP_ID     the publisher's app (client) ID (webhook token `aud`)
 *   EMULATOR_TOKEN_VERSION        v1 | v2 (default v2): the webhook token's form
 *   EMULATOR_CATALOGUE_FILE       a JSON catalogue ({ "offers": [...] }, see catalogue.ts)
 *   EMULATOR_ACK_WINDOW_MS        acknowledgement window (default 10000)
 *   EMULATOR_OPERATION_DELAY_MS   delay before a publisher PATCH/DELETE is processed (default 2000)
 *   EMULATOR_PAGE_SIZE            List subscriptions page size, 1–1000 (default 100, as Microsoft)
 */
import { readFileSync } from 'node:fs';
import { isGuid } from '../marketplace/schemas.js';
import { parseCatalogue } from './catalogue.js';
import type { EmulatorOptions } from './emulator.js';

export class EmulatorConfigError extends Error {
  override name = 'EmulatorConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid emulator configuration:\n  - ${problems.join('\n  - ')}`);
  }
}


export function emulatorOptionsFromEnv(env: Record<string, string | undefined>): EmulatorOptions {
  const problems: string[] = [];
  const options: EmulatorOptions = {};
  const value = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === '' ? undefined : v;
  };
  const integer = (name: string, min: number, max: number): number | undefined => {
    const v = value(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
      return undefined;
    }
    return n;
  };
  const url = (name: string): string | undefined => {
    const v = value(name);
    if (v === undefined) return undefined;
    if (!URL.canParse(v) || !/^https?:$/.test(new URL(v).protocol)) {
      problems.push(`${name} must be an http(s) URL (got ${JSON.stringify(v)})`);
      return undefined;
    }
    if (name === 'EMULATOR_LANDING_PAGE_URL' && v.includes('#')) {
      problems.push(`${name} must not contain '#': the marketplace appends ?token=… and buyers would never reach the page`);
    }
    return v;
  };
  const guid = (name: string): string | undefined => {
    const v = value(name);
    if (v !== undefined && !isGuid(v)) problems.push(`${name} must be a GUID (got ${JSON.stringify(v)})`);
    return v;
  };

  options.port = integer('EMULATOR_PORT', 0, 65535) ?? 3978;
  options.host = value('EMULATOR_HOST') ?? '127.0.0.1';
  const webhookUrl = url('EMULATOR_WEBHOOK_URL');
  if (webhookUrl !== undefined) options.webhookUrl = webhookUrl;
  const landingPageUrl = url('EMULATOR_LANDING_PAGE_URL');
  if (landingPageUrl !== undefined) options.landingPageUrl = landingPageUrl;
  const tenant = guid('EMULATOR_PUBLISHER_TENANT_ID');
  if (tenant !== undefined) options.publisherTenantId = tenant;
  const app = guid('EMULATOR_PUBLISHER_APP_ID');
  if (app !== undefined) options.publisherAppId = app;
  const version = value('EMULATOR_TOKEN_VERSION');
  if (version !== undefined) {
    if (version === 'v1' || version === 'v2') options.tokenVersion = version;
    else problems.push(`EMULATOR_TOKEN_VERSION must be v1 or v2 (got ${JSON.stringify(version)})`);
  }
  const catalogueFile = value('EMULATOR_CATALOGUE_FILE');
  if (catalogueFile !== undefined) {
    try {
      options.catalogue = parseCatalogue(JSON.parse(readFileSync(catalogueFile, 'utf8')) as unknown);
    } catch (err) {
      problems.push(`EMULATOR_CATALOGUE_FILE ${catalogueFile}: ${(err as Error).message}`);
    }
  }
  const ack = integer('EMULATOR_ACK_WINDOW_MS', 0, 3_600_000);
  if (ack !== undefined) options.ackWindowMs = ack;
  const delay = integer('EMULATOR_OPERATION_DELAY_MS', 0, 3_600_000);
  if (delay !== undefined) options.operationDelayMs = delay;
  const pageSize = integer('EMULATOR_PAGE_SIZE', 1, 1000);
  if (pageSize !== undefined) options.pageSize = pageSize;

  if (problems.length > 0) throw new EmulatorConfigError(problems);
  return options;
}
