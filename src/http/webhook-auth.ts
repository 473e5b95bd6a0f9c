/**
 * Authenticates Microsoft's webhook calls: a bearer JWT minted by the marketplace's first-party app
 * for the publisher's app, verified against the signing keys of the publisher's tenant
 * (docs/marketplace.md §8). Both token versions are accepted:
 *   v1: iss https://sts.windows.net/<tid>/,               caller in `appid`
 *   v2: iss https://login.microsoftonline.com/<tid>/v2.0, caller in `azp`
 * Keys come from the OpenID metadata's `jwks_uri`, cached; an unknown `kid` triggers a refetch
 * (jose's remote key set, with a cooldown so a flood of forged kids cannot hammer the issuer).
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

export function createWebhookAuthenticator(options: WebhookAuthOptions): WebhookAuthenticator {
  const tenant = options.tenantId;
  const metadataUrl = options.metadataUrl ?? `https://login.microsoftonline.com/${tenant}/v2.0/.well-known/openid-configuration`;
  const doFetch = options.fetch ?? fetch;
  const audiences = [options.audience, `api://${options.audience}`];
  const allowedCallers = options.allowedCallers ?? [MARKETPLACE_APP_ID];
  let keys: Promise<{ jwks: JWTVerifyGetKey; issuers: string[] }> | undefined;

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
      return {
        tokenVersion: version,
        issuer: String(payload.iss),
        tenantId: tid,
        caller,
        audience: Array.isArray(payload.aud) ? payload.aud.join(',') : String(payload.aud),
        ...(payload.exp ? { expiresAt: new Date(payload.exp * 1000).toISOString() } : {}),
      };
    },
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
