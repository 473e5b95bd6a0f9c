/**
 * Helpers for the emulator tests: an emulator on 127.0.0.1 with short timings, a webhook receiver
 * (node:http) that records deliveries and answers as told, raw `fetch` calls, and polling.
 */
import { createServer } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';
import { startEmulator } from '../../src/emulator/emulator.js';
import { generateSigningKeyPair } from '../../src/emulator/signing.js';
import type { EmulatorOptions, RunningEmulator } from '../../src/emulator/emulator.js';

export const API_VERSION = '2018-08-31';
export const TENANT_ID = '0b5c6d1e-2f3a-4b4c-8d5e-6f7a8b9c0d1e';
export const APP_ID = '9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b';
export const MARKETPLACE_APP_ID = '20e940b3-4c77-4b0b-9a53-9e16a1b010a7';

export type Delivery = {
  headers: IncomingHttpHeaders;
  body: Record<string, unknown> & { id: string; action: string; subscriptionId: string; status: string };
  receivedAt: number;
  answered: number;
};

/** What the receiver answers: a status, optionally after a delay. */
export type Answer = number | { status: number; delayMs?: number };

export type WebhookReceiver = {
  url: string;
  deliveries: Delivery[];
  /** Sets how the receiver answers (default 200). */
  respond(fn: (d: Delivery) => Answer): void;
  /** Waits until `predicate` holds over the deliveries so far. */
  waitFor(predicate: (ds: Delivery[]) => boolean, timeoutMs?: number): Promise<Delivery[]>;
  close(): Promise<void>;
};

export async function startWebhookReceiver(t: Test): Promise<WebhookReceiver> {
  const deliveries: Delivery[] = [];
  let responder: (d: Delivery) => Answer = () => 200;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const delivery: Delivery = {
        headers: req.headers,
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Delivery['body'],
        receivedAt: Date.now(),
        answered: 0,
      };
      deliveries.push(delivery);
      const answer = responder(delivery);
      const { status, delayMs } = typeof answer === 'number' ? { status: answer, delayMs: 0 } : answer;
      const reply = (): void => {
        delivery.answered = status;
        if (res.destroyed) return;
        res.statusCode = status;
        res.end();
      };
      if (delayMs) setTimeout(reply, delayMs);
      else reply();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const receiver: WebhookReceiver = {
    url: `http://127.0.0.1:${port}/webhook`,
    deliveries,
    respond(fn) {
      responder = fn;
    },
    waitFor: (predicate, timeoutMs = 3000) => waitFor(() => (predicate(deliveries) ? deliveries : undefined), timeoutMs),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  t.teardown(() => receiver.close());
  return receiver;
}

/** Polls `probe` until it returns something other than undefined/false. */
export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const FAST: EmulatorOptions = {
  ackWindowMs: 300,
  operationDelayMs: 20,
  webhookTimeoutMs: 1000,
  redelivery: { initialDelayMs: 20, factor: 2, maxDelayMs: 200, maxAttempts: 5 },
  publisherTenantId: TENANT_ID,
  publisherAppId: APP_ID,
};

export type Harness = { emulator: RunningEmulator; receiver: WebhookReceiver; http: Http };

/** One RSA key for all the emulators of a test file (generating one takes ~0.5 s here). */
const sharedKeyPair = generateSigningKeyPair();

/** An emulator on 127.0.0.1:0 sending webhooks to a fresh receiver, closed when the test ends. */
export async function startHarness(t: Test, options: EmulatorOptions = {}): Promise<Harness> {
  const receiver = await startWebhookReceiver(t);
  const emulator = await startEmulator({ ...FAST, signingKeyPair: await sharedKeyPair, webhookUrl: receiver.url, ...options });
  t.teardown(() => emulator.close());
  return { emulator, receiver, http: http(emulator.url) };
}

export type Response = {
  status: number;
  headers: Headers;
  text: string;
  /** Parsed JSON, or undefined for an empty body. */
  body: unknown;
};

export type Http = {
  /** A Fulfillment API call: adds api-version, a bearer token and JSON headers. */
  api(method: string, path: string, init?: { body?: unknown; headers?: Record<string, string>; query?: Record<string, string> }): Promise<Response>;
  /** A raw call to any path on the emulator. */
  raw(method: string, path: string, init?: { body?: unknown; headers?: Record<string, string>; rawBody?: string }): Promise<Response>;
  /** Buys a plan through the control API. */
  purchase(body: Record<string, unknown>): Promise<PurchaseResponse>;
  /** A customer action through the control API (suspend, reinstate, renew, unsubscribe, change-plan, change-quantity). */
  act(subscriptionId: string, action: string, body?: unknown): Promise<Response>;
};

export type PurchaseResponse = {
  subscriptionId: string;
  token: string;
  tokenExpiresAt: string;
  landingPageUrl: string;
  subscription: Record<string, unknown>;
  operation?: Record<string, unknown>;
};

async function toResponse(res: globalThis.Response): Promise<Response> {
  const text = await res.text();
  let body: unknown;
  if (text !== '') {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  return { status: res.status, headers: res.headers, text, body };
}

export function http(baseUrl: string): Http {
  const raw: Http['raw'] = async (method, path, init = {}) => {
    const headers: Record<string, string> = { ...init.headers };
    let body: string | undefined = init.rawBody;
    if (init.body !== undefined) {
      body = JSON.stringify(init.body);
      headers['content-type'] ??= 'application/json';
    }
    return toResponse(await fetch(new URL(path, baseUrl), { method, headers, body: body ?? null }));
  };
  const api: Http['api'] = async (method, path, init = {}) => {
    const url = new URL(`/api${path}`, baseUrl);
    url.searchParams.set('api-version', API_VERSION);
    for (const [k, v] of Object.entries(init.query ?? {})) url.searchParams.set(k, v);
    const headers: Record<string, string> = { authorization: 'Bearer test-token', ...init.headers };
    const req: { method: string; headers: Record<string, string>; body?: string } = { method, headers };
    if (init.body !== undefined) {
      headers['content-type'] = 'application/json';
      req.body = JSON.stringify(init.body);
    }
    return toResponse(await fetch(url, req));
  };
  return {
    raw,
    api,
    async purchase(body) {
      const res = await raw('POST', '/emulator/purchases', { body });
      if (res.status !== 201) throw new Error(`purchase failed: ${res.status} ${res.text}`);
      return res.body as PurchaseResponse;
    },
    act: (subscriptionId, action, body) => raw('POST', `/emulator/subscriptions/${subscriptionId}/${action}`, body === undefined ? {} : { body }),
  };
}

/** Buys and activates: a Subscribed subscription. */
export async function subscribed(h: Harness, purchase: Record<string, unknown> = { planId: 'standard', quantity: 5 }): Promise<string> {
  const bought = await h.http.purchase(purchase);
  const res = await h.http.api('POST', `/saas/subscriptions/${bought.subscriptionId}/activate`, { body: { planId: purchase.planId } });
  if (res.status !== 200) throw new Error(`activate failed: ${res.status} ${res.text}`);
  return bought.subscriptionId;
}

/** The operation id at the end of an Operation-Location URL. */
export function operationIdOf(location: string | null): string {
  const id = new URL(location ?? '').pathname.split('/').pop();
  if (!id) throw new Error(`no operation id in ${location}`);
  return id;
}
