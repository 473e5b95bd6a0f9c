/**
 * The landing page's sign-in client from the configuration (LANDING_SIGN_IN, LANDING_ENTRA_*): Microsoft
 * Entra ID with the configured app registration, or, in the sandbox, the local OpenID provider started
 * here on 127.0.0.1 (src/emulator/openid-provider.ts) with a client made up for this run. Started once the
 * service listens, since the redirect URI defaults to the address it listens on.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { LandingSignInConfig } from '../../config.js';
import { ConfigError } from '../../config.js';
import type { Logger } from '../../logger.js';
import { readCertificatePem } from '../../marketplace/token-provider.js';
import { createSignInClient } from './oidc-client.js';
import type { SignInClient } from './oidc-client.js';

export const CALLBACK_SUFFIX = '/landing/sign-in/callback';

export type RunningSignIn = { client: SignInClient; close(): Promise<void> };

function certificate(path: string): { thumbprintSha256: string; privateKey: string; x5c?: string } {
  let pem: ReturnType<typeof readCertificatePem>;
  try {
    pem = readCertificatePem(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError('LANDING_ENTRA_CLIENT_CERTIFICATE_PATH', `cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!pem.thumbprintSha256 || !pem.certificate) throw new ConfigError('LANDING_ENTRA_CLIENT_CERTIFICATE_PATH', `${path} must hold the certificate as well as its private key`);
  return { thumbprintSha256: pem.thumbprintSha256, privateKey: pem.privateKey, x5c: pem.certificate };
}

/** Whether the session cookies get `Secure`: the page is reached over https. */
export function servedOverHttps(config: LandingSignInConfig, publicUrl: string | undefined): boolean {
  return (config.redirectUri ?? publicUrl ?? '').startsWith('https:');
}

export async function startSignIn(config: LandingSignInConfig, publicUrl: string, logger: Logger): Promise<RunningSignIn> {
  const redirectUri = config.redirectUri ?? `${publicUrl}${CALLBACK_SUFFIX}`;
  if (config.kind === 'entra') {
    const client = createSignInClient({
      kind: 'entra',
      authority: config.authority,
      clientId: config.clientId,
      redirectUri,
      ...(config.clientCertificatePath ? { clientCertificate: certificate(config.clientCertificatePath) } : { clientSecret: config.clientSecret ?? '' }),
    });
    logger.info({ component: 'landing', authority: config.authority, redirectUri }, 'landing page: customers sign in with Microsoft Entra ID');
    return { client, close: async () => {} };
  }
  const { startLocalOpenIdProvider } = await import('../../emulator/openid-provider.js');
  const clientId = 'fulfillment-ledger-landing';
  const clientSecret = randomBytes(32).toString('base64url');
  const provider = await startLocalOpenIdProvider({ port: config.port, clientId, clientSecret, redirectUri, logger: logger.child({ component: 'openid-provider' }) });
  const client = createSignInClient({ kind: 'local', authority: provider.issuer, clientId, clientSecret, redirectUri, metadata: provider.metadata });
  logger.warn(
    { component: 'landing', issuer: provider.issuer, redirectUri },
    'landing page: no Entra ID sign-in configured: customers sign in with the local sandbox OpenID provider (any email, no password). ' +
      'For Microsoft, set LANDING_ENTRA_CLIENT_ID and LANDING_ENTRA_CLIENT_SECRET (docs/landing-sign-in.md)',
  );
  return { client, close: () => provider.close() };
}
