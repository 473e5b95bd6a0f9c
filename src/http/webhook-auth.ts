/**
 * Authenticates Microsoft's webhook calls: a bearer JWT minted by the marketplace's first-party app
 * for the publisher's app, verified against the signing keys of the publisher's tenant
 * (docs/marketplace.md §8). Both token versions are accepted:
 *   v1: iss https://sts.windows.net/<tid>/,               caller in `appid`
 *   v2: iss https://login.microsoftonline.com/<tid>/v2.0, caller in `azp`
 * Keys come from the OpenID metadata's `jwks_uri`, cached; an unknown `kid` triggers a refetch
 * (jose's remote key set, with a cooldown so a flood of forged kids cannot hammer the issuer).
 *
 * Verified tokens are remembered (VerifiedTokens below): Microsoft reuses one access token across many webhook
 * calls until it nears expiry, and an RSA verification costs more than the rest of a delivery. A token that passed
 * every check above is accepted again, by its exact string, until the earlier of its `exp` (without the clock
 * tolerance) and `verifiedTokenMaxAgeMs` (10 min) after it was verified; at most `verifiedTokenMaxEntries` (256)
 * are kept, least recently used first out. A token that differs by one character is a new token and is verified in
 * full; failures are never remembered. The cost: a signing key withdrawn from the JWKS stops a token already seen
 * being accepted only when its entry ends (at most the max age). docs/marketplace.md §8.
 */
import { createRemoteJWKSet, errors as joseErrors, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';

/** The marketplace's first-party application id: the caller of every genuine webhook. */
export const MARKETPLACE_APP_ID = '20e940b3-4c77-4b0b-9a53-9e16a1b010a7';

export type WebhookAuthOptions = {
  /** The publisher's Entra tenant (Partner Center → Technical configuration). */
  tenantId: string;
  /** The publisher's app (client) id: the token's audience. `api://<id>` is accepted too. */
  audience: string;
  /** OpenID metadata document; default Microsoft's v2.0 metadata for the tenant. */
  metadataUrl?: string;
  /** Accepted issuers; default the v1 and v2 issuers of the tenant (plus the metadata's own issuer). */
  issuers?: string[];
  /** Accepted callers (`appid`/`azp`); default the marketplace app only. */
  allowedCallers?: string[];
  /** Seconds of clock skew tolerated on exp/nbf. Default 120. */
  clockToleranceSec?: number;
  /** Least time between key refetches triggered by unknown `kid`s. Default 30 s. */
  keyRefreshCooldownMs?: number;
  /** How long a verified token is accepted again without a new verification (never past its exp). Default 10 min; 0 = verify every call. */
  verifiedTokenMaxAgeMs?: number;
  /** How many verified tokens are remembered. Default 256. */
  verifiedTokenMaxEntries?: number;
  /** The clock for exp/nbf and for the verified tokens; default the system clock. */
  now?: () => Date;
  fetch?: typeof fetch;
};

export type WebhookCaller = {
  tokenVersion: '1.0' | '2.0' | 'unknown';
  issuer: string;
  tenantId: string;
  caller: string;
  audience: string;
  expiresAt?: string;
};

export type WebhookAuthFailure =
  | 'missing-token'
  | 'malformed-token'
  | 'bad-signature'
  | 'unknown-key'
  | 'expired'
  | 'not-yet-valid'
  | 'wrong-audience'
  | 'wrong-issuer'
  | 'wrong-tenant'
  | 'wrong-caller'
  | 'keys-unavailable';

export class WebhookAuthError extends Error {
  override name = 'WebhookAuthError';
  constructor(
    readonly reason: WebhookAuthFailure,
    message: string,
  ) {
    super(message);
  }
}

type OpenIdMetadata = { issuer?: string; jwks_uri?: string };

export type WebhookAuthenticator = {
  authenticate(authorization: string | undefined): Promise<WebhookCaller>;
};

/** Calls authenticated so far: `verified` in full (signature and claims), `remembered` from an earlier verification. */
export type WebhookAuthStats = { verified: number; remembered: number };

/**
 * Tokens that passed every check, by their exact string, each until `until` (ms since the epoch): a bounded LRU
 * (a Map keeps insertion order; a hit moves its entry to the end, the first entry is the least recently used).
 */
export class VerifiedTokens {
  private readonly entries = new Map<string, { caller: WebhookCaller; until: number }>();

  constructor(
    private readonly maxEntries: number,
    private readonly maxAgeMs: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(token: string, now: number): WebhookCaller | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    this.entries.delete(token);
    if (now >= entry.until) return undefined;
    this.entries.set(token, entry);
    return entry.caller;
  }

  /** `expiresAt`: the token's exp in ms; remembered until then or `maxAgeMs` from now, whichever is first. */
  remember(token: string, caller: WebhookCaller, expiresAt: number, now: number): void {
    if (this.maxAgeMs <= 0 || this.maxEntries <= 0) return;
    const until = Math.min(expiresAt, now + this.maxAgeMs);
    if (until <= now) return;
    this.entries.delete(token);
    this.entries.set(token, { caller, until });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }
}

export function createWebhookAuthenticator(options: WebhookAuthOptions): WebhookAuthenticator & { stats(): WebhookAuthStats } {
  const tenant = options.tenantId;
  const metadataUrl = options.metadataUrl ?? `https://login.microsoftonline.com/${tenant}/v2.0/.well-known/openid-configuration`;
  const doFetch = options.fetch ?? fetch;
  const audiences = [options.audience, `api://${options.audience}`];
  const allowedCallers = options.allowedCallers ?? [MARKETPLACE_APP_ID];
  let keys: Promise<{ jwks: JWTVerifyGetKey; issuers: string[] }> | undefined;
  const verified = new VerifiedTokens(options.verifiedTokenMaxEntries ?? 256, options.verifiedTokenMaxAgeMs ?? 10 * 60 * 1000);
  const now = options.now ?? (() => new Date());
  const counts: WebhookAuthStats = { verified: 0, remembered: 0 };

  const loadKeys = async () => {
    let metadata: OpenIdMetadata;
    try {
      const res = await doFetch(metadataUrl, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      metadata = (await res.json()) as OpenIdMetadata;
    } catch (err) {
      throw new WebhookAuthError('keys-unavailable', `cannot read OpenID metadata ${metadataUrl}: ${(err as Error).message}`);
    }
    if (!metadata.jwks_uri) throw new WebhookAuthError('keys-unavailable', `OpenID metadata ${metadataUrl} has no jwks_uri`);
    const issuers = options.issuers ?? [
      `https://sts.windows.net/${tenant}/`,
      `https://login.microsoftonline.com/${tenant}/v2.0`,
      ...(metadata.issuer ? [metadata.issuer.replace('{tenantid}', tenant)] : []),
    ];
    const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri), {
      cacheMaxAge: 24 * 60 * 60 * 1000, // keys rotate: refetch at least daily
      cooldownDuration: options.keyRefreshCooldownMs ?? 30_000, // refetch on unknown kids, but not more often than this
      timeoutDuration: 10_000,
    });
    return { jwks, issuers };
  };

  return {
    async authenticate(authorization) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
      if (!authorization) throw new WebhookAuthError('missing-token', 'no Authorization header (check proxies and gateways forward it)');
      if (!match) throw new WebhookAuthError('malformed-token', 'Authorization is not a Bearer token');
      const token = match[1] as string;
      const at = now();
      const seen = verified.get(token, at.getTime());
      if (seen) {
        counts.remembered += 1;
        return seen;
      }
      keys ??= loadKeys().catch((err: unknown) => {
        keys = undefined; // try the metadata again on the next call
        throw err;
      });
      const { jwks, issuers } = await keys;
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, jwks, {
          algorithms: ['RS256'],
          audience: audiences,
          issuer: issuers,
          clockTolerance: options.clockToleranceSec ?? 120,
          requiredClaims: ['exp', 'iss', 'aud'],
          currentDate: at,
        }));
      } catch (err) {
        throw translate(err);
      }
      const tid = typeof payload.tid === 'string' ? payload.tid : '';
      if (tid !== tenant) throw new WebhookAuthError('wrong-tenant', `token tenant ${tid || '(none)'} is not ${tenant}`);
      const version = payload.ver === '1.0' || payload.ver === '2.0' ? payload.ver : 'unknown';
      const caller = String((version === '2.0' ? payload.azp : payload.appid) ?? payload.azp ?? payload.appid ?? '');
      if (!allowedCallers.includes(caller)) {
        throw new WebhookAuthError('wrong-caller', `token caller ${caller || '(none)'} is not the marketplace (${allowedCallers.join(', ')})`);
      }
      const result: WebhookCaller = {
        tokenVersion: version,
        issuer: String(payload.iss),
        tenantId: tid,
        caller,
        audience: Array.isArray(payload.aud) ? payload.aud.join(',') : String(payload.aud),
        ...(payload.exp ? { expiresAt: new Date(payload.exp * 1000).toISOString() } : {}),
      };
      counts.verified += 1;
      if (typeof payload.exp === 'number') verified.remember(token, result, payload.exp * 1000, at.getTime());
      return result;
    },
    stats: () => ({ ...counts }),
  };
}

function translate(err: unknown): WebhookAuthError {
  if (err instanceof WebhookAuthError) return err;
  if (err instanceof joseErrors.JWTExpired) return new WebhookAuthError('expired', `token expired: ${err.message}`);
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    const claim = err.claim;
    if (claim === 'aud') return new WebhookAuthError('wrong-audience', `token audience is not this app: ${err.message}`);
    if (claim === 'iss') return new WebhookAuthError('wrong-issuer', `token issuer is not the tenant's: ${err.message}`);
    if (claim === 'nbf') return new WebhookAuthError('not-yet-valid', `token not yet valid: ${err.message}`);
    return new WebhookAuthError('malformed-token', `claim ${claim}: ${err.message}`);
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey) return new WebhookAuthError('unknown-key', 'no signing key of the tenant matches the token');
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return new WebhookAuthError('bad-signature', 'signature verification failed');
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return new WebhookAuthError('bad-signature', `algorithm not allowed: ${err.message}`);
  if (err instanceof joseErrors.JWKSTimeout) return new WebhookAuthError('keys-unavailable', 'timed out fetching the signing keys');
  if (err instanceof joseErrors.JOSEError) return new WebhookAuthError('malformed-token', `${err.code}: ${err.message}`);
  return new WebhookAuthError('keys-unavailable', (err as Error).message);
}
