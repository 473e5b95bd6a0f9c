/**
 * Bearer tokens for the Marketplace Fulfillment API.
 *
 * - `MsalTokenProvider`: client credentials (secret or certificate) with `@azure/msal-node` against the
 *   tenant-specific authority and the scope `20e940b3-4c77-4b0b-9a53-9e16a1b010a7/.default`
 *   (docs/marketplace.md §2). One `ConfidentialClientApplication` per provider; MSAL caches the token in memory and
 *   renews it when it is within 5 minutes of expiry.
 * - `StaticTokenProvider`: a fixed bearer token (emulators, `MARKETPLACE_STATIC_TOKEN`).
 * - `NoTokenProvider`: no `authorization` header at all (emulators without auth).
 *
 * Tokens are never logged.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AuthError, ConfidentialClientApplication, LogLevel } from '@azure/msal-node';
import type { Configuration, INetworkModule } from '@azure/msal-node';
import type { Logger } from 'pino';
import type { CertificateInfo, CredentialHealth } from './credential-health.js';
import { MarketplaceAuthError } from './errors.js';

export interface TokenProvider {
  /** A bearer token, or `undefined` to send no `authorization` header. */
  getToken(): Promise<string | undefined>;
}

/** The Marketplace SaaS API's first-party application ID (same for every publisher). */
export const MARKETPLACE_RESOURCE_ID = '20e940b3-4c77-4b0b-9a53-9e16a1b010a7';
export const MARKETPLACE_SCOPE = `${MARKETPLACE_RESOURCE_ID}/.default`;
export const DEFAULT_AUTHORITY_HOST = 'https://login.microsoftonline.com';

/** Hosts MSAL knows itself (it has their metadata built in and can do instance discovery against them). */
const MICROSOFT_AUTHORITY_HOSTS = new Set([
  'login.microsoftonline.com',
  'login.microsoft.com',
  'login.windows.net',
  'sts.windows.net',
  'login.microsoftonline.us',
  'login.partner.microsoftonline.cn',
  'login.chinacloudapi.cn',
]);

const MULTI_TENANT_ALIASES = new Set(['common', 'organizations', 'consumers']);

export type ClientSecretCredential = { kind: 'secret'; clientSecret: string };
export type ClientCertificateCredential = {
  kind: 'certificate';
  /** Hex SHA-256 thumbprint of the certificate (colons allowed). */
  thumbprintSha256: string;
  /** PEM private key (`-----BEGIN PRIVATE KEY-----`). */
  privateKey: string;
  /** PEM certificate chain: sent as `x5c` (subject name + issuer authentication). Optional. */
  x5c?: string;
};
export type MsalCredential = ClientSecretCredential | ClientCertificateCredential;

export type MsalTokenProviderOptions = {
  tenantId: string;
  clientId: string;
  credential: MsalCredential;
  /** `MARKETPLACE_AUTHORITY_HOST`; default https://login.microsoftonline.com. */
  authorityHost?: string;
  /** Default `20e940b3-4c77-4b0b-9a53-9e16a1b010a7/.default`. */
  scope?: string;
  logger?: Logger;
  /** MSAL's HTTP client (tests, proxies). Default: MSAL's own fetch-based client. */
  networkClient?: INetworkModule;
  /** Default: the authority host itself when it is not a Microsoft cloud host (skips instance discovery). */
  knownAuthorities?: string[];
  /** JSON string, passed to MSAL to avoid the instance-discovery call. */
  cloudDiscoveryMetadata?: string;
  /** JSON string (OpenID configuration), passed to MSAL to avoid the metadata call. */
  authorityMetadata?: string;
  /** Told when Entra rejects the token request (credential-health.ts). */
  health?: CredentialHealth;
};

export class MsalTokenProvider implements TokenProvider {
  readonly tenantId: string;
  readonly clientId: string;
  readonly authority: string;
  readonly scope: string;
  private readonly app: ConfidentialClientApplication;
  private readonly log: Logger | undefined;
  private readonly health: CredentialHealth | undefined;
  private pending: Promise<string> | undefined;

  constructor(options: MsalTokenProviderOptions) {
    const tenantId = options.tenantId.trim();
    const clientId = options.clientId.trim();
    if (!tenantId) throw new Error('MARKETPLACE_TENANT_ID is required for Entra ID authentication');
    if (MULTI_TENANT_ALIASES.has(tenantId.toLowerCase())) {
      throw new Error(
        `MARKETPLACE_TENANT_ID must be the publisher app's own tenant ID, not "${tenantId}" (docs/marketplace.md §2.2)`,
      );
    }
    if (!clientId) throw new Error('MARKETPLACE_CLIENT_ID is required for Entra ID authentication');

    const host = new URL(options.authorityHost ?? DEFAULT_AUTHORITY_HOST);
    if (host.protocol !== 'https:') throw new Error(`MARKETPLACE_AUTHORITY_HOST must be https, got ${host.origin}`);
    this.tenantId = tenantId;
    this.clientId = clientId;
    this.authority = `${host.origin}/${encodeURIComponent(tenantId)}`;
    this.scope = options.scope ?? MARKETPLACE_SCOPE;
    this.log = options.logger?.child({ component: 'marketplace-token' });
    this.health = options.health;

    const auth: Configuration['auth'] = { clientId, authority: this.authority };
    if (options.credential.kind === 'secret') {
      if (!options.credential.clientSecret) throw new Error('MARKETPLACE_CLIENT_SECRET is empty');
      auth.clientSecret = options.credential.clientSecret;
    } else {
      const { thumbprintSha256, privateKey, x5c } = options.credential;
      const thumbprint = thumbprintSha256.replace(/:/g, '').trim().toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(thumbprint)) {
        throw new Error('MARKETPLACE_CLIENT_CERTIFICATE_THUMBPRINT_SHA256 must be 64 hex digits (a SHA-256 thumbprint)');
      }
      if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(privateKey)) {
        throw new Error('the client certificate needs a PEM private key (-----BEGIN PRIVATE KEY-----)');
      }
      auth.clientCertificate = { thumbprintSha256: thumbprint, privateKey, ...(x5c ? { x5c } : {}) };
    }
    const knownAuthorities =
      options.knownAuthorities ?? (MICROSOFT_AUTHORITY_HOSTS.has(host.hostname) ? undefined : [host.host]);
    if (knownAuthorities) auth.knownAuthorities = knownAuthorities;
    if (options.cloudDiscoveryMetadata) auth.cloudDiscoveryMetadata = options.cloudDiscoveryMetadata;
    if (options.authorityMetadata) auth.authorityMetadata = options.authorityMetadata;

    const log = this.log;
    this.app = new ConfidentialClientApplication({
      auth,
      system: {
        ...(options.networkClient ? { networkClient: options.networkClient } : {}),
        loggerOptions: {
          piiLoggingEnabled: false,
          logLevel: LogLevel.Warning,
          loggerCallback: (level, message) => {
            if (!log) return;
            if (level === LogLevel.Error) log.error({ msal: message }, 'msal');
            else log.warn({ msal: message }, 'msal');
          },
        },
      },
    });
  }

  /** A cached token while it is valid for more than 5 minutes, otherwise a new one. Concurrent callers share one request. */
  getToken(): Promise<string> {
    if (!this.pending) {
      this.pending = this.acquire().finally(() => {
        this.pending = undefined;
      });
    }
    return this.pending;
  }

  private async acquire(): Promise<string> {
    let result;
    try {
      result = await this.app.acquireTokenByClientCredential({ scopes: [this.scope] });
    } catch (err) {
      const error = toAuthError(err, this.tenantId, this.clientId);
      this.log?.error(
        { tenantId: this.tenantId, clientId: this.clientId, errorCode: error.errorCode, aadsts: error.aadsts },
        'marketplace token request failed',
      );
      if (isCredentialRejection(error)) this.health?.recordRejected({ call: 'token', message: error.message });
      else this.health?.recordTokenUnavailable(error.message);
      throw error;
    }
    if (!result?.accessToken) {
      throw new MarketplaceAuthError({
        tenantId: this.tenantId,
        clientId: this.clientId,
        detail: 'MSAL returned no access token',
      });
    }
    if (!result.fromCache) {
      this.log?.info(
        { tenantId: this.tenantId, clientId: this.clientId, expiresOn: result.expiresOn?.toISOString() },
        'marketplace token acquired',
      );
    }
    return result.accessToken;
  }
}

/**
 * Whether Entra answered and rejected the credential (an AADSTS code, or an OAuth error such as
 * `invalid_client`), as opposed to not being reachable.
 */
export function isCredentialRejection(error: MarketplaceAuthError): boolean {
  return error.aadsts !== undefined || (error.errorCode !== undefined && /^(invalid_|unauthorized_client)/.test(error.errorCode));
}

function toAuthError(err: unknown, tenantId: string, clientId: string): MarketplaceAuthError {
  if (err instanceof AuthError) {
    const text = `${err.errorMessage} ${err.subError}`;
    const errorNo = (err as AuthError & { errorNo?: string }).errorNo;
    const aadsts = /AADSTS(\d+)/.exec(text)?.[1] ?? (errorNo && /^\d+$/.test(errorNo) ? errorNo : undefined);
    // Entra's description without MSAL's "Error(s): … - Timestamp: … - Description:" wrapping and trace ids.
    const description = /AADSTS\d+:\s*([^\r\n]+?)(?:\s+-\s+(?:Correlation|Trace|Timestamp)|[\r\n]|$)/.exec(text)?.[1];
    const detail = (description ?? (err.errorMessage || err.message).split(/\r?\n/)[0]?.trim() ?? '').replace(/\.+$/, '') || err.errorCode;
    return new MarketplaceAuthError({
      tenantId,
      clientId,
      errorCode: err.errorCode || undefined,
      ...(aadsts ? { aadsts } : {}),
      detail,
      cause: err,
    });
  }
  return new MarketplaceAuthError({
    tenantId,
    clientId,
    detail: err instanceof Error ? err.message : String(err),
    cause: err,
  });
}

export class StaticTokenProvider implements TokenProvider {
  readonly #token: string;
  constructor(token: string) {
    if (!token.trim()) throw new Error('MARKETPLACE_STATIC_TOKEN is empty');
    this.#token = token.trim();
  }
  getToken(): Promise<string> {
    return Promise.resolve(this.#token);
  }
}

export class NoTokenProvider implements TokenProvider {
  getToken(): Promise<undefined> {
    return Promise.resolve(undefined);
  }
}

/** Validity and identity of a PEM certificate, for the credential's expiry (credential-health.ts). */
export function certificateInfo(certificatePem: string): CertificateInfo {
  const cert = new X509Certificate(certificatePem);
  return {
    notAfter: new Date(cert.validTo).toISOString(),
    notBefore: new Date(cert.validFrom).toISOString(),
    subject: cert.subject,
    thumbprintSha256: cert.fingerprint256.replace(/:/g, '').toLowerCase(),
  };
}

/** Splits a PEM file that holds a certificate and its private key. */
export function readCertificatePem(pem: string): { privateKey: string; certificate?: string; thumbprintSha256?: string } {
  const key = /-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]+?-----END \1PRIVATE KEY-----/.exec(pem)?.[0];
  if (!key) throw new Error('the client certificate file has no PEM private key');
  const certificate = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem)?.[0];
  if (!certificate) return { privateKey: key };
  const thumbprintSha256 = new X509Certificate(certificate).fingerprint256.replace(/:/g, '').toLowerCase();
  return { privateKey: key, certificate, thumbprintSha256 };
}

/** The configuration names of API access (see the config module). */
export type MarketplaceAuthConfig = {
  /** MARKETPLACE_TENANT_ID */
  tenantId?: string;
  /** MARKETPLACE_CLIENT_ID */
  clientId?: string;
  /** MARKETPLACE_CLIENT_SECRET */
  clientSecret?: string;
  /** MARKETPLACE_CLIENT_CERTIFICATE_PATH: PEM with the private key (and the certificate) */
  clientCertificatePath?: string;
  /** MARKETPLACE_CLIENT_CERTIFICATE_THUMBPRINT_SHA256: computed from the certificate in the PEM when absent */
  clientCertificateThumbprintSha256?: string;
  /** MARKETPLACE_STATIC_TOKEN */
  staticToken?: string;
  /** MARKETPLACE_AUTHORITY_HOST */
  authorityHost?: string;
};

/**
 * Picks the provider from configuration: a static token if one is set; else MSAL with a certificate
 * (if a certificate path is set) or a secret; else none (an emulator without auth).
 */
export function createTokenProvider(
  config: MarketplaceAuthConfig,
  extra: Pick<MsalTokenProviderOptions, 'logger' | 'networkClient' | 'knownAuthorities' | 'authorityMetadata' | 'cloudDiscoveryMetadata' | 'health'> = {},
): TokenProvider {
  if (config.staticToken) {
    extra.health?.setKind('static-token');
    return new StaticTokenProvider(config.staticToken);
  }
  const hasCredential = Boolean(config.clientSecret || config.clientCertificatePath);
  if (!hasCredential) {
    if (config.tenantId || config.clientId) {
      throw new Error(
        'MARKETPLACE_TENANT_ID/MARKETPLACE_CLIENT_ID are set but neither MARKETPLACE_CLIENT_SECRET nor MARKETPLACE_CLIENT_CERTIFICATE_PATH is',
      );
    }
    return new NoTokenProvider();
  }
  if (!config.tenantId || !config.clientId) {
    throw new Error('MARKETPLACE_TENANT_ID and MARKETPLACE_CLIENT_ID are required with a client secret or certificate');
  }
  let credential: MsalCredential;
  if (config.clientCertificatePath) {
    const pem = readCertificatePem(readFileSync(config.clientCertificatePath, 'utf8'));
    const thumbprintSha256 = config.clientCertificateThumbprintSha256 ?? pem.thumbprintSha256;
    if (!thumbprintSha256) {
      throw new Error(
        'MARKETPLACE_CLIENT_CERTIFICATE_THUMBPRINT_SHA256 is required when the PEM file holds no certificate',
      );
    }
    if (pem.certificate) extra.health?.setCertificate(certificateInfo(pem.certificate));
    extra.health?.setKind('certificate');
    credential = {
      kind: 'certificate',
      thumbprintSha256,
      privateKey: pem.privateKey,
      ...(pem.certificate ? { x5c: pem.certificate } : {}),
    };
  } else {
    extra.health?.setKind('secret');
    credential = { kind: 'secret', clientSecret: config.clientSecret ?? '' };
  }
  return new MsalTokenProvider({
    tenantId: config.tenantId,
    clientId: config.clientId,
    credential,
    ...(config.authorityHost ? { authorityHost: config.authorityHost } : {}),
    ...extra,
  });
}
