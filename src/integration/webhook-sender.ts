/**
 * One signed POST to the ISV's application. Only a 2xx within the timeout counts as acknowledged;
 * anything else (another status, a redirect, a refused connection, a timeout) is a failure that the
 * caller retries. The result never throws: it says what happened, for the outbox to record.
 */
import { ATTEMPT_HEADER, EVENT_TYPE_HEADER, IDEMPOTENCY_KEY_HEADER, SIGNATURE_HEADER, signatureHeader } from './signing.js';

export type SignedMessage = {
  idempotencyKey: string;
  type: string;
  /** The exact JSON text sent and signed. */
  body: string;
};

export type SendResult =
  | { ok: true; status: number; durationMs: number }
  | {
      ok: false;
      /** The HTTP status when the receiver answered. */
      status?: number;
      error: string;
      /** `Retry-After` of a 429/503, in ms. */
      retryAfterMs?: number;
      timedOut: boolean;
      durationMs: number;
    };

export type WebhookSenderOptions = {
  url: string;
  secrets: readonly string[];
  timeoutMs: number;
  userAgent?: string;
  fetch?: typeof fetch;
  /** Unix ms; the signature timestamp is taken from it. */
  now?: () => number;
};

export type WebhookSender = {
  readonly url: string;
  send(message: SignedMessage, attempt: number, signal?: AbortSignal): Promise<SendResult>;
};

const SNIPPET = 300;

export function parseRetryAfter(value: string | null, nowMs: number): number | undefined {
  if (!value) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

function describe(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return cause ? `${e.message ?? 'request failed'} (${cause})` : (e.message ?? String(err));
}

export function createWebhookSender(options: WebhookSenderOptions): WebhookSender {
  const doFetch = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  return {
    url: options.url,
    async send(message, attempt, signal) {
      const started = Date.now();
      const timeout = AbortSignal.timeout(options.timeoutMs);
      const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
      try {
        const response = await doFetch(options.url, {
          method: 'POST',
          redirect: 'manual',
          signal: combined,
          headers: {
            'content-type': 'application/json; charset=utf-8',
            'user-agent': options.userAgent ?? 'fulfillment-ledger',
            [IDEMPOTENCY_KEY_HEADER]: message.idempotencyKey,
            [EVENT_TYPE_HEADER]: message.type,
            [ATTEMPT_HEADER]: String(attempt),
            [SIGNATURE_HEADER]: signatureHeader(options.secrets, message.body, Math.floor(now() / 1000)),
          },
          body: message.body,
        });
        const text = await response.text().catch(() => '');
        const durationMs = Date.now() - started;
        if (response.status >= 200 && response.status < 300) return { ok: true, status: response.status, durationMs };
        const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), now());
        const snippet = text.trim().slice(0, SNIPPET);
        return {
          ok: false,
          status: response.status,
          error: `the receiver answered ${response.status}${snippet ? `: ${snippet}` : ''}`,
          ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
          timedOut: false,
          durationMs,
        };
      } catch (err) {
        const durationMs = Date.now() - started;
        if (timeout.aborted) return { ok: false, error: `no answer within ${options.timeoutMs} ms`, timedOut: true, durationMs };
        if (signal?.aborted) return { ok: false, error: 'cancelled (shutting down)', timedOut: false, durationMs };
        return { ok: false, error: describe(err), timedOut: false, durationMs };
      }
    },
  };
}
