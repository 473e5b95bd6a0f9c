/**
 * The emulator's identity provider: an RSA key generated at start, bearer JWTs for webhook calls
 * with the claims Microsoft's marketplace puts in them (docs/marketplace.md §8.2), and the OpenID metadata and
 * JWKS that a webhook verifier fetches (docs/marketplace.md §8.3), so that verification is tested for real.
 *
 * Webhook token: `aud` = the publisher's app ID, `tid` = the publisher's tenant, `appid` (v1) or
 * `azp` (v2) = the marketplace's first-party app `20e940b3-…`, `iss` per token version, `exp`/`nbf`/`iat`.
 *
 * Paths, relative to the emulator's URL (as login.microsoftonline.com lays them out):
 *   /<tenant>/v2.0/.well-known/openid-configuration → jwks_uri /<tenant>/discovery/v2.0/keys (v2)
 *   /<tenant>/.well-known/openid-configuration      → jwks_uri /<tenant>/discovery/keys      (v1)
 *   /.well-known/openid-configuration               → the configured version's document
 * Default issuers: v2 `<url>/<tenant>/v2.0` (Microsoft: `https://login.microsoftonline.com/<tenant>/v2.0`),
 * v1 `<url>/<tenant>/` (Microsoft: `https://sts.windows.net/<tenant>/`). Both can be overridden.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import type { Clock } from './clock.js';
import type { TokenFault } from './faults.js';

/** The marketplace's first-party application: `appid`/`azp` of the webhook token (docs/marketplace.md §2.2, §8.2). */
export const MARKETPLACE_APP_ID = '20e940b3-4c77-4b0b-9a53-9e16a1b010a7';

export type TokenVersion = 'v1' | 'v2';

export type SignerOptions = {
  /** The publisher's Entra tenant: `tid` and part of the issuer. */
  tenantId: string;
  /** The publisher's app (client) ID: the webhook token's `aud`. */
  appId: string;
  /** Token form, as the publisher app's `accessTokenAcceptedVersion` decides in Entra (default v2). */
  version: TokenVersion;
  issuerV1?: string;
  issuerV2?: string;
  /** Webhook token lifetime (default 3600 s). */
  lifetimeSeconds?: number;
  /** An RS256 key pair to sign with (default: generated at start). Lets tests share one key. */
  keyPair?: CryptoKeyPair;
  now: Clock;
  /** The emulator's URL, known once it listens. */
  baseUrl: () => string;
};

export type OpenIdConfiguration = {
  issuer: string;
  jwks_uri: string;
  token_endpoint: string;
  authorization_endpoint: string;
  response_types_supported: string[];
  subject_types_supported: string[];
  id_token_signing_alg_values_supported: string[];
  token_endpoint_auth_methods_supported: string[];
  tenant_region_scope: string;
};

type Key = { privateKey: CryptoKey; publicJwk: JWK; kid: string };

export type CryptoKeyPair = { privateKey: CryptoKey; publicKey: CryptoKey };

/** An RS256 key pair (2048-bit; generating one takes a noticeable fraction of a second). */
export function generateSigningKeyPair(): Promise<CryptoKeyPair> {
  return generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
}

async function toKey({ privateKey, publicKey }: CryptoKeyPair): Promise<Key> {
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { privateKey, publicJwk: { ...jwk, kid, x5t: kid, use: 'sig', alg: 'RS256' }, kid };
}

export class TokenSigner {
  /** The marketplace service principal's object ID in the publisher tenant (`oid`, `sub`). */
  readonly servicePrincipalObjectId = randomUUID();

  /** A second key, never published: `bad-signature` tokens are signed with it under the real `kid`. */
  #impostor: Promise<Key> | undefined;

  private constructor(
    readonly options: SignerOptions,
    readonly key: Key,
  ) {}

  static async create(options: SignerOptions): Promise<TokenSigner> {
    return new TokenSigner(options, await toKey(options.keyPair ?? (await generateSigningKeyPair())));
  }

  get version(): TokenVersion {
    return this.options.version;
  }

  issuer(version: TokenVersion = this.options.version): string {
    const base = this.options.baseUrl();
    const tenant = this.options.tenantId;
    return version === 'v2' ? (this.options.issuerV2 ?? `${base}/${tenant}/v2.0`) : (this.options.issuerV1 ?? `${base}/${tenant}/`);
  }

  metadataUrl(version: TokenVersion = this.options.version): string {
    const base = `${this.options.baseUrl()}/${this.options.tenantId}`;
    return version === 'v2' ? `${base}/v2.0/.well-known/openid-configuration` : `${base}/.well-known/openid-configuration`;
  }

  jwksUrl(version: TokenVersion = this.options.version): string {
    const base = `${this.options.baseUrl()}/${this.options.tenantId}`;
    return version === 'v2' ? `${base}/discovery/v2.0/keys` : `${base}/discovery/keys`;
  }

  jwks(): { keys: JWK[] } {
    return { keys: [{ ...this.key.publicJwk }] };
  }

  openIdConfiguration(version: TokenVersion = this.options.version): OpenIdConfiguration {
    const base = `${this.options.baseUrl()}/${this.options.tenantId}`;
    const oauth = version === 'v2' ? `${base}/oauth2/v2.0` : `${base}/oauth2`;
    return {
      issuer: this.issuer(version),
      jwks_uri: this.jwksUrl(version),
      token_endpoint: `${oauth}/token`,
      authorization_endpoint: `${oauth}/authorize`,
      response_types_supported: ['code', 'id_token', 'code id_token', 'token id_token', 'token'],
      subject_types_supported: ['pairwise'],
      id_token_signing_alg_values_supported: ['RS256'],
      token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
      tenant_region_scope: 'EU',
    };
  }

  /**
   * The bearer token for one webhook call; `undefined` when the `missing` fault asks for no header.
   * Signed afresh for every attempt, as each call gets its own token.
   */
  async webhookToken(fault?: TokenFault): Promise<string | undefined> {
    if (fault === 'missing') return undefined;
    const now = Math.floor(this.options.now().getTime() / 1000);
    const lifetime = this.options.lifetimeSeconds ?? 3600;
    let iat = now;
    let nbf = now;
    let exp = now + lifetime;
    if (fault === 'expired') {
      iat = now - 2 * lifetime;
      nbf = iat;
      exp = now - lifetime;
    } else if (fault === 'not-yet-valid') {
      nbf = now + lifetime;
      exp = now + 2 * lifetime;
    }
    const version = this.options.version;
    const appClaim = version === 'v2' ? { azp: MARKETPLACE_APP_ID, azpacr: '2' } : { appid: MARKETPLACE_APP_ID, appidacr: '2' };
    if (fault === 'wrong-appid') {
      if (version === 'v2') appClaim.azp = randomUUID();
      else appClaim.appid = randomUUID();
    }
    const tenantId = fault === 'wrong-tenant' ? randomUUID() : this.options.tenantId;
    const claims: Record<string, unknown> = {
      ...appClaim,
      tid: tenantId,
      oid: this.servicePrincipalObjectId,
      idtyp: 'app',
      uti: randomUUID().replaceAll('-', '').slice(0, 22),
      ver: version === 'v2' ? '2.0' : '1.0',
    };
    if (version === 'v1') claims.idp = this.issuer('v1');
    const key = fault === 'bad-signature' ? await (this.#impostor ??= generateSigningKeyPair().then(toKey)) : this.key;
    const header = version === 'v1' ? { alg: 'RS256', typ: 'JWT', kid: this.key.kid, x5t: this.key.kid } : { alg: 'RS256', typ: 'JWT', kid: this.key.kid };
    return new SignJWT(claims)
      .setProtectedHeader(header)
      .setIssuer(fault === 'wrong-issuer' ? `https://sts.windows.net/${randomUUID()}/` : this.issuer(version))
      .setAudience(fault === 'wrong-audience' ? randomUUID() : this.options.appId)
      .setSubject(this.servicePrincipalObjectId)
      .setIssuedAt(iat)
      .setNotBefore(nbf)
      .setExpirationTime(exp)
      .sign(key.privateKey);
  }

  /**
   * An app-only access token for the Fulfillment API, as Entra would issue to the publisher's app
   * (`aud` = the marketplace app, `appid`/`azp` = the caller). Used by the emulator's token endpoint.
   */
  async accessToken(clientId: string, tenantId: string, version: TokenVersion): Promise<{ token: string; expiresIn: number }> {
    const now = Math.floor(this.options.now().getTime() / 1000);
    const expiresIn = 3600;
    const base = this.options.baseUrl();
    const issuer = version === 'v2' ? `${base}/${tenantId}/v2.0` : `${base}/${tenantId}/`;
    const token = await new SignJWT({
      ...(version === 'v2' ? { azp: clientId, azpacr: '1' } : { appid: clientId, appidacr: '1' }),
      tid: tenantId,
      oid: clientId,
      idtyp: 'app',
      ver: version === 'v2' ? '2.0' : '1.0',
    })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: this.key.kid })
      .setIssuer(issuer)
      .setAudience(MARKETPLACE_APP_ID)
      .setSubject(clientId)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + expiresIn)
      .sign(this.key.privateKey);
    return { token, expiresIn };
  }
}
