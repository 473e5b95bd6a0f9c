/**
 * The real service (src/server.ts) in a child process, connected to an emulator that runs in the test process
 * (a local Microsoft: its Fulfillment API, and the key that signs webhook tokens), so the test can post signed
 * webhooks to the child while something else (another process, a full disk) gets in the store's way.
 */
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Test } from 'tap';
import type { Emulator } from '../../src/emulator/emulator.js';
import { childNodeArgs } from './child.js';

const entry = join(import.meta.dirname, '..', '..', 'src', 'server.ts');

export type ServiceChild = {
  url: string;
  /** Every JSON log line so far. */
  logs: Array<Record<string, unknown>>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
};

/** Starts the service on DATA_DIR `dataDir` with extra `env`; resolves once it has logged `ready`. */
export async function startServiceChild(t: Test, emulator: Emulator, dataDir: string, env: Record<string, string> = {}): Promise<ServiceChild> {
  const proc = spawn(process.execPath, childNodeArgs(entry), {
    env: {
      ...process.env,
      DATA_DIR: dataDir,
      PORT: '0',
      LOG_LEVEL: 'info',
      OPERATOR_TOKEN: 'test-operator-token-0123456789',
      MARKETPLACE_API_URL: emulator.apiBaseUrl,
      MARKETPLACE_STATIC_TOKEN: 'emulator',
      WEBHOOK_TENANT_ID: emulator.publisherTenantId,
      WEBHOOK_AUDIENCE: emulator.publisherAppId,
      WEBHOOK_OPENID_METADATA_URL: emulator.openIdConfigurationUrl,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    return exited.then(() => undefined);
  });
  const logs: Array<Record<string, unknown>> = [];
  let url = '';
  let resolveReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (resolveReady = resolve));
  createInterface({ input: proc.stdout }).on('line', (line) => {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    logs.push(entry);
    if (entry.msg === 'listening; opening the event store') url = String(entry.url);
    if (entry.msg === 'ready') resolveReady();
  });
  const early = await Promise.race([ready.then(() => undefined), exited.then((code) => ({ code }))]);
  if (early) throw new Error(`the service exited (${early.code}) before it was ready: ${stderr}`);
  return {
    url,
    logs,
    async stop() {
      proc.kill('SIGTERM');
      return exited;
    },
  };
}

/** A notification for Microsoft's webhook (docs/marketplace.md §7.3), new ids unless given. */
export function notificationBody(overrides: { id?: string; subscriptionId?: string } = {}): string {
  return JSON.stringify({
    id: overrides.id ?? randomUUID(),
    activityId: randomUUID(),
    subscriptionId: overrides.subscriptionId ?? randomUUID(),
    action: 'Suspend',
    status: 'Succeeded',
    timeStamp: new Date().toISOString(),
  });
}

/** POSTs `body` to the service's /webhook with a freshly signed token, as Microsoft would. */
export async function postWebhook(emulator: Emulator, service: ServiceChild, body: string): Promise<{ status: number; json: Record<string, unknown>; retryAfter: string | null }> {
  const token = await emulator.signer.webhookToken();
  const res = await fetch(`${service.url}/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body });
  return { status: res.status, json: (await res.json()) as Record<string, unknown>, retryAfter: res.headers.get('retry-after') };
}

export async function getJson(url: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}
