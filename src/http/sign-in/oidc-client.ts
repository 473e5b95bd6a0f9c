/**
 * The sign-in's OpenID Connect client: the authorization-code flow with PKCE through `@azure/msal-node`'s
 * ConfidentialClientApplication (getAuthCodeUrl, acquireTokenByCode), against Microsoft Entra ID
 * (`common`, `organizations`, a tenant) or the sandbox's local OpenID provider, and the ID token then
 * validated by `id-token.ts` against the provider's own metadata.
 *
 * For a provider that is not Microsoft's (the local one, tests), msal-node is given the provider's metadata
 * (`authorityMetadata`, `knownAuthorities`, OIDC protocol mode): it then never fetches discovery documents and
 * only calls the token endpoint the metadata names. msal-node insists that an authority be an https URL;
 * for a provider on http://127.0.0.1 the authority is the same host and port with https, which msal-node
 * uses only as a name (its cache key), never as an address.
 */
import { ConfidentialClientApplication, LogLevel, ProtocolMode } from '@azure/msal-node';
import type { Configuration } from '@azure/msal-node';
import { Type } from 'typebox';
import type { Static } from 'typebox';
import Value from 'typebox/value';
import { parseJson } from '../../json.js';
import { createIdTokenValidator } from './id-token.js';
import type { IdTokenCheck, TenantPolicy } from './id-token.js';

export const OidcMetadata = Type.Object({
  issuer: Type.String({ minLength: 1 }),
  authorization_endpoint: Type.String({ minLength: 1 }),
  token_endpoint: Type.String({ minLength: 1 }),
  jwks_uri: Type.String({ minLength: 1 }),
  end_session_endpoint: Type.Optional(Type.String()),
});
export type OidcMetadata = Static<typeof OidcMetadata>;

export type SignInClientSettings = {
  /** 'entra' (Microsoft) or 'local' (the sandbox's provider): said on the pages and in the log. */
  kind: 'entra' | 'local';
  /** Microsoft's authority URL (https://login.microsoftonline.com/common …), or the local provider's issuer. */
  authority: string;
  clientId: string;
  clientSecret?: string;
  clientCertificate?: { thumbprintSha256: string; privateKey: string; x5c?: string };
  redirectUri: string;
  /** Default `openid profile email`: nothing that needs an administrator's consent. */
  scopes?: string[];
  /** The provider's metadata, when known (the local provider, tests); else read from the authority's discovery document. */
  metadata?: OidcMetadata;
  fetch?: typeof fetch;
};

/** One sign-in's secrets: `state` keys it, `nonce` ties the ID token to it, the verifier proves PKCE. */
export type SignInFlow = { state: string; nonce: string; codeVerifier: string; codeChallenge: string };

export class SignInRedeemError extends Error {
  override name = 'SignInRedeemError';
  constructor(
    readonly problem: 'nonce' | 'refused' | 'unavailable',
    message: string,
  ) {
    super(message);
  }
}

export type SignInClient = {
  kind: 'entra' | 'local';
  redirectUri: string;
  authorizationUrl(flow: SignInFlow): Promise<string>;
  /** Redeems the code and validates the ID token it brings. */
  redeem(code: string, flow: SignInFlow): Promise<IdTokenCheck>;
};

export function tenantPolicyOf(authority: string): TenantPolicy {
  const first = new URL(authority).pathname.split('/').filter(Boolean)[0]?.toLowerCase();
  return first === 'organizations' ? 'organizations' : first === 'consumers' ? 'consumers' : 'any';
}

async function discover(authority: string, doFetch: typeof fetch): Promise<OidcMetadata> {
  const url = `${authority.replace(/\/+$/, '')}/v2.0/.well-known/openid-configuration`;
  const res = await doFetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new SignInRedeemError('unavailable', `OpenID metadata ${url}: HTTP ${res.status}`);
  const body = parseJson(await res.text());
  if (!Value.Check(OidcMetadata, body)) throw new SignInRedeemError('unavailable', `OpenID metadata ${url} lacks issuer, endpoints or jwks_uri`);
  return body;
}

function msalConfiguration(s: SignInClientSettings): Configuration {
  const credential = s.clientCertificate ? { clientCertificate: s.clientCertificate } : { clientSecret: s.clientSecret ?? '' };
  if (!s.metadata) return { auth: { clientId: s.clientId, authority: s.authority, ...credential }, system: { loggerOptions: { logLevel: LogLevel.Error, piiLoggingEnabled: false } } };
  const issuer = new URL(s.metadata.issuer);
  const authority = `https://${issuer.host}${issuer.pathname === '/' ? '/oidc' : issuer.pathname}`;
  return {
    auth: {
      clientId: s.clientId,
      authority,
      knownAuthorities: [issuer.host],
      authorityMetadata: JSON.stringify(s.metadata),
      ...credential,
    },
    system: { protocolMode: ProtocolMode.OIDC, loggerOptions: { logLevel: LogLevel.Error, piiLoggingEnabled: false } },
  };
}

function msalProblem(err: unknown): SignInRedeemError {
  const code = err instanceof Error && 'errorCode' in err && typeof err.errorCode === 'string' ? err.errorCode : '';
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'nonce_mismatch') return new SignInRedeemError('nonce', 'the ID token does not carry the nonce this sign-in sent');
  if (/network|timeout|fetch failed|ECONNREFUSED/i.test(`${code} ${message}`)) return new SignInRedeemError('unavailable', message);
  return new SignInRedeemError('refused', `${code || 'error'}: ${message}`);
}

export function createSignInClient(settings: SignInClientSettings): SignInClient {
  const scopes = settings.scopes ?? ['openid', 'profile', 'email'];
  const app = new ConfidentialClientApplication(msalConfiguration(settings));
  const doFetch = settings.fetch ?? fetch;
  let validator: Promise<(raw: string, nonce: string) => Promise<IdTokenCheck>> | undefined;
  const validate = async (raw: string, nonce: string): Promise<IdTokenCheck> => {
    validator ??= (settings.metadata ? Promise.resolve(settings.metadata) : discover(settings.authority, doFetch)).then((m) =>
      createIdTokenValidator({ issuer: m.issuer, jwksUri: m.jwks_uri, clientId: settings.clientId, tenants: tenantPolicyOf(settings.authority) }),
    );
    validator.catch(() => (validator = undefined));
    return (await validator)(raw, nonce);
  };
  return {
    kind: settings.kind,
    redirectUri: settings.redirectUri,
    authorizationUrl: (flow) =>
      app.getAuthCodeUrl({
        scopes,
        redirectUri: settings.redirectUri,
        state: flow.state,
        nonce: flow.nonce,
        codeChallenge: flow.codeChallenge,
        codeChallengeMethod: 'S256',
        responseMode: 'query',
        // Let the customer pick the account (they may have several; "Use another account" must not sign the same one in
        // again): Microsoft's account picker, the local provider's sign-in page.
        prompt: settings.kind === 'entra' ? 'select_account' : 'login',
      }),
    async redeem(code, flow) {
      let idToken: string;
      try {
        const result = await app.acquireTokenByCode(
          // msal-node compares the ID token's nonce with the request's, and the returned state with the request's.
          { code, scopes, redirectUri: settings.redirectUri, codeVerifier: flow.codeVerifier, state: flow.state, nonce: flow.nonce },
          { code, state: flow.state },
        );
        idToken = result.idToken;
      } catch (err) {
        throw msalProblem(err);
      }
      if (!idToken) throw new SignInRedeemError('refused', 'the provider answered without an ID token');
      return validate(idToken, flow.nonce);
    },
  };
}
