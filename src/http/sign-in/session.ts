/**
 * The landing page's sign-in session: who signed in (name, email, oid, tid, issuer), the CSRF token of the
 * activation and sign-out forms, when it ends, and the reference of the purchase token the sign-in carried
 * (the token itself stays on the server). It travels in one cookie signed by @fastify/cookie (HMAC):
 * HttpOnly, SameSite=Lax, Secure over https, limited to /landing, for a bounded lifetime that the
 * server checks too (the cookie's own expiry is only a hint to the browser).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { Type } from 'typebox';
import type { Static } from 'typebox';
import Value from 'typebox/value';
import { parseJson } from '../../json.js';

export const SESSION_COOKIE = 'landing_session';
/** Ties a sign-in under way to this browser: the OIDC `state` it started. */
export const SIGN_IN_COOKIE = 'landing_sign_in';
export const COOKIE_PATH = '/landing';

const User = Type.Object({
  name: Type.Optional(Type.String({ maxLength: 500 })),
  email: Type.Optional(Type.String({ maxLength: 500 })),
  oid: Type.String({ minLength: 1, maxLength: 100 }),
  tid: Type.String({ maxLength: 100 }),
  issuer: Type.String({ maxLength: 500 }),
});

const Session = Type.Object({
  v: Type.Literal(1),
  user: User,
  csrf: Type.String({ minLength: 20, maxLength: 100 }),
  /** Unix ms when the session ends. */
  exp: Type.Number(),
  /** The reference of the purchase token this sign-in brought (ExpiringMap key). */
  purchase: Type.Optional(Type.String({ maxLength: 100 })),
});
export type LandingSession = Static<typeof Session>;

export type SessionCheck =
  | { kind: 'ok'; session: LandingSession }
  | { kind: 'none' }
  | { kind: 'expired' }
  | { kind: 'invalid' };

export const randomToken = (): string => randomBytes(24).toString('base64url');

export function encodeSession(session: LandingSession): string {
  return Buffer.from(JSON.stringify(session)).toString('base64url');
}

/** The session from a cookie value whose signature was already checked. */
export function decodeSession(value: string, nowMs: number): SessionCheck {
  let parsed: unknown;
  try {
    parsed = parseJson(Buffer.from(value, 'base64url').toString('utf8'));
  } catch {
    return { kind: 'invalid' };
  }
  if (!Value.Check(Session, parsed)) return { kind: 'invalid' };
  if (parsed.exp <= nowMs) return { kind: 'expired' };
  return { kind: 'ok', session: parsed };
}

export function sameToken(a: string | undefined, b: string): boolean {
  if (!a) return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
