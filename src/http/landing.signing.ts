/**
 * Short-lived proof that a visitor of the landing page resolved a marketplace token for a given
 * subscription. The landing page hands it out (in the activation form, in the status page URL) and
 * checks it on the way back in, so a bare subscription id from a form or a URL is never trusted.
 *
 *   value = <expiry, unix seconds> "." <base64url HMAC-SHA256(secret, "landing:v1:<purpose>:<subscriptionId>:<expiry>")>
 *
 * The purpose keeps a status-page link (which travels in URLs and browser history) from being
 * usable as an activation form's proof, and the other way round.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type LandingPurpose = 'activate' | 'status';

export type SignatureCheck = 'ok' | 'expired' | 'invalid';

export type LandingSigner = {
  sign(purpose: LandingPurpose, subscriptionId: string): string;
  verify(purpose: LandingPurpose, subscriptionId: string, value: string | undefined): SignatureCheck;
};

export const MIN_LANDING_SECRET_BYTES = 32;

const SHAPE = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/;

/** A random secret for a single process (links stop working on restart and across instances). */
export function randomLandingSecret(): Buffer {
  return randomBytes(MIN_LANDING_SECRET_BYTES);
}

export function createLandingSigner(options: { secret: string | Uint8Array; ttlMs: number; now: () => Date }): LandingSigner {
  const key = typeof options.secret === 'string' ? Buffer.from(options.secret, 'utf8') : Buffer.from(options.secret);
  if (key.length < MIN_LANDING_SECRET_BYTES) {
    throw new RangeError(`landingSecret must be at least ${MIN_LANDING_SECRET_BYTES} bytes (got ${key.length}); use e.g. \`openssl rand -base64 48\``);
  }
  if (!(options.ttlMs > 0)) throw new RangeError(`the landing signature lifetime must be positive (got ${options.ttlMs})`);

  const mac = (purpose: LandingPurpose, subscriptionId: string, expiry: string): Buffer =>
    createHmac('sha256', key).update(`landing:v1:${purpose}:${subscriptionId}:${expiry}`).digest();

  return {
    sign(purpose, subscriptionId) {
      const expiry = String(Math.ceil((options.now().getTime() + options.ttlMs) / 1000));
      return `${expiry}.${mac(purpose, subscriptionId, expiry).toString('base64url')}`;
    },
    verify(purpose, subscriptionId, value) {
      if (!value || !subscriptionId) return 'invalid';
      const m = SHAPE.exec(value);
      if (!m) return 'invalid';
      const [, expiry = '', given = ''] = m;
      const expected = mac(purpose, subscriptionId, expiry);
      const actual = Buffer.from(given, 'base64url');
      if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) return 'invalid';
      return Number(expiry) * 1000 > options.now().getTime() ? 'ok' : 'expired';
    },
  };
}
