/**
 * The ID token from the sign-in, validated here whatever the library that redeemed the code checked:
 * the signature with the issuer's published keys (JWKS), the audience (our client id), the issuer for
 * the token's own tenant (Microsoft's multi-tenant metadata says `https://login.microsoftonline.com/{tenantid}/v2.0`;
 * personal Microsoft accounts sign in from the tenant 9188040d-6c67-4c5b-b112-36a304b66dad), the nonce
 * this sign-in sent, and the expiry. Every failure has its own reason, for the page and the log.
 */
import { createRemoteJWKSet, errors, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import { timingSafeEqual } from 'node:crypto';

/** The tenant of personal Microsoft accounts (outlook.com, hotmail.com, live.com …). */
export const PERSONAL_ACCOUNTS_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad';

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Who may sign in, from the authority: anyone (common), work/school only (organizations), personal only (consumers), or as the issuer says. */
export type TenantPolicy = 'any' | 'organizations' | 'consumers';

export type SignedInUser = {
  name?: string;
  /** `email`, else `preferred_username` (what Microsoft gives for work accounts without a mailbox). */
  email?: string;
  /** The object id (`oid`), else `sub`. */
  oid: string;
  tid: string;
  issuer: string;
};

export type IdTokenProblem = 'malformed' | 'signature' | 'audience' | 'issuer' | 'tenant' | 'nonce' | 'expired';

export type IdTokenCheck = { ok: true; user: SignedInUser } | { ok: false; problem: IdTokenProblem; detail: string };

export type IdTokenValidator = (raw: string, expectedNonce: string) => Promise<IdTokenCheck>;

export type IdTokenValidatorOptions = {
  /** The issuer of the provider's metadata; may hold `{tenantid}`. */
  issuer: string;
  jwksUri: string;
  clientId: string;
  tenants: TenantPolicy;
  /** Clock skew allowed on exp/nbf/iat, seconds; default 120. */
  clockToleranceSeconds?: number;
  /** For tests: the key set instead of jwksUri. */
  keys?: JWTVerifyGetKey;
  now?: () => Date;
};

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() !== '' ? v : undefined);

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The issuer this token must carry (the template filled with its own tenant), or why it cannot. */
function expectedIssuer(template: string, tid: string | undefined, tenants: TenantPolicy): { issuer: string } | { problem: IdTokenProblem; detail: string } {
  if (!template.includes('{tenantid}')) return { issuer: template };
  if (!tid || !GUID.test(tid)) return { problem: 'issuer', detail: 'the token has no tenant id (tid)' };
  if (tenants === 'organizations' && tid.toLowerCase() === PERSONAL_ACCOUNTS_TENANT) {
    return { problem: 'tenant', detail: 'a personal Microsoft account; this sign-in takes work or school accounts only' };
  }
  if (tenants === 'consumers' && tid.toLowerCase() !== PERSONAL_ACCOUNTS_TENANT) {
    return { problem: 'tenant', detail: 'a work or school account; this sign-in takes personal Microsoft accounts only' };
  }
  return { issuer: template.replace('{tenantid}', tid) };
}

function joseProblem(err: unknown): { problem: IdTokenProblem; detail: string } {
  if (err instanceof errors.JWTExpired) return { problem: 'expired', detail: 'the ID token has expired' };
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return { problem: 'audience', detail: 'the ID token was issued for another application' };
    return { problem: 'malformed', detail: `claim ${err.claim}: ${err.reason}` };
  }
  if (err instanceof errors.JWSSignatureVerificationFailed || err instanceof errors.JWKSNoMatchingKey) {
    return { problem: 'signature', detail: 'the ID token signature does not verify with the issuer\'s keys' };
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return { problem: 'signature', detail: 'the ID token is not signed with an allowed algorithm' };
  return { problem: 'malformed', detail: err instanceof Error ? err.message : String(err) };
}

export function createIdTokenValidator(options: IdTokenValidatorOptions): IdTokenValidator {
  const keys = options.keys ?? createRemoteJWKSet(new URL(options.jwksUri));
  const now = options.now ?? (() => new Date());
  return async (raw, expectedNonce) => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(raw, keys, {
        audience: options.clientId,
        algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'ES256'],
        clockTolerance: options.clockToleranceSeconds ?? 120,
        requiredClaims: ['iss', 'aud', 'exp', 'iat'],
        currentDate: now(),
      }));
    } catch (err) {
      return { ok: false, ...joseProblem(err) };
    }
    const tid = str(payload['tid']);
    const want = expectedIssuer(options.issuer, tid, options.tenants);
    if ('problem' in want) return { ok: false, ...want };
    if (payload.iss !== want.issuer) return { ok: false, problem: 'issuer', detail: `issuer ${JSON.stringify(payload.iss)} is not ${JSON.stringify(want.issuer)}` };
    const nonce = str(payload['nonce']);
    if (!nonce || !sameText(nonce, expectedNonce)) return { ok: false, problem: 'nonce', detail: 'the ID token does not carry the nonce this sign-in sent' };
    const oid = str(payload['oid']) ?? str(payload.sub);
    if (!oid) return { ok: false, problem: 'malformed', detail: 'the ID token names no user (oid, sub)' };
    const name = str(payload['name']);
    const email = str(payload['email']) ?? str(payload['preferred_username']);
    return {
      ok: true,
      user: { ...(name ? { name } : {}), ...(email ? { email } : {}), oid, tid: tid ?? '', issuer: payload.iss },
    };
  };
}
