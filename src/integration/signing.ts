/**
 * Signatures of the requests the ledger sends to the ISV's application.
 *
 *   X-Ledger-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 *
 * The timestamp is inside the signed text, so a receiver that checks it against its clock rejects a
 * captured request replayed later; within the tolerance window it dedupes on the `Idempotency-Key`.
 * While a secret is being rotated the ledger signs with each configured secret (one `v1=` each), and
 * a receiver accepts the request when any of them verifies with a secret it knows.
 *
 * `verifySignature` is what receivers use (docs/integration-events.md has a standalone copy).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-ledger-signature';
export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';
export const EVENT_TYPE_HEADER = 'x-ledger-event-type';
export const ATTEMPT_HEADER = 'x-ledger-delivery-attempt';
/** Five minutes, as most webhook senders use. */
export const DEFAULT_TOLERANCE_SEC = 300;

const HEX_SHA256 = /^[0-9a-f]{64}$/;

function hmac(secret: string, timestamp: number, body: string | Buffer): Buffer {
  return createHmac('sha256', secret).update(`${timestamp}.`, 'utf8').update(body).digest();
}

/** The header value for `body`, signed at `timestamp` (unix seconds) with every secret given. */
export function signatureHeader(secrets: string | readonly string[], body: string | Buffer, timestamp = Math.floor(Date.now() / 1000)): string {
  const list = typeof secrets === 'string' ? [secrets] : secrets;
  if (list.length === 0) throw new Error('at least one signing secret is needed');
  return [`t=${timestamp}`, ...list.map((s) => `v1=${hmac(s, timestamp, body).toString('hex')}`)].join(',');
}

export type SignatureCheck =
  | { ok: true; timestamp: number }
  | { ok: false; reason: 'missing' | 'malformed' | 'stale' | 'mismatch'; detail: string };

export function parseSignatureHeader(header: string): { timestamp?: number; signatures: string[] } {
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't' && /^[0-9]{1,12}$/.test(value)) timestamp = Number(value);
    else if (key === 'v1' && HEX_SHA256.test(value)) signatures.push(value);
  }
  return { ...(timestamp !== undefined ? { timestamp } : {}), signatures };
}

/**
 * Checks a request from the ledger: `body` must be the raw bytes received (not re-serialised JSON).
 * Rejects a timestamp more than `toleranceSec` away from `nowMs`, and compares signatures in
 * constant time. `secret` may list several secrets (during a rotation).
 */
export function verifySignature(
  secret: string | readonly string[],
  header: string | undefined,
  body: string | Buffer,
  toleranceSec = DEFAULT_TOLERANCE_SEC,
  nowMs = Date.now(),
): SignatureCheck {
  if (!header) return { ok: false, reason: 'missing', detail: `no ${SIGNATURE_HEADER} header` };
  const { timestamp, signatures } = parseSignatureHeader(header);
  if (timestamp === undefined || signatures.length === 0) {
    return { ok: false, reason: 'malformed', detail: 'expected t=<unix seconds>,v1=<64 hex digits>' };
  }
  const skew = Math.abs(Math.floor(nowMs / 1000) - timestamp);
  if (skew > toleranceSec) return { ok: false, reason: 'stale', detail: `timestamp is ${skew} s away from now (tolerance ${toleranceSec} s)` };
  const secrets = typeof secret === 'string' ? [secret] : secret;
  let match = false;
  for (const s of secrets) {
    const expected = hmac(s, timestamp, body);
    for (const candidate of signatures) {
      // Every pair is compared (no early exit), each in constant time over 32 bytes.
      if (timingSafeEqual(expected, Buffer.from(candidate, 'hex'))) match = true;
    }
  }
  return match ? { ok: true, timestamp } : { ok: false, reason: 'mismatch', detail: 'no signature matches the body with the known secret(s)' };
}
