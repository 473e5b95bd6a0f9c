/**
 * The sandbox's stand-in for Microsoft Entra ID sign-in: a real OpenID provider (the certified
 * `oidc-provider` library) on 127.0.0.1 with one confidential client, the landing page's, so the
 * landing page's sign-in code (msal-node, the ID token checks) runs end to end without Microsoft.
 *
 * Its sign-in page takes an email address and a name (no password: it is a sandbox) and issues ID tokens
 * shaped like Microsoft's: `oid` (derived from the email), `tid` (derived from the email's domain; the
 * personal-account tenant for outlook.com, hotmail.com and live.com), `name`, `email`, `preferred_username`.
 * "Cancel" answers the landing page with `error=access_denied`, as Microsoft does.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import { Provider } from 'oidc-provider';
import type { Account, Grant, GrantContext } from 'oidc-provider';
import type { Logger } from '../logger.js';

export const PERSONAL_ACCOUNTS_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad';
const PERSONAL_DOMAINS = new Set(['outlook.com', 'hotmail.com', 'live.com', 'msn.com']);

export type LocalOpenIdProviderOptions = {
  host?: string;
  port: number;
  clientId: string;
  clientSecret: string;
  redirectUri: string;
  logger?: Logger;
};

export type LocalOpenIdProvider = {
  issuer: string;
  /** The discovery document, as the landing page's client is given it. */
  metadata: { issuer: string; authorization_endpoint: string; token_endpoint: string; jwks_uri: string; end_session_endpoint?: string };
  close(): Promise<void>;
};

/** A GUID from a hash (version-4 shape), stable for the same input. */
function guidOf(text: string): string {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export type SandboxUser = { email: string; name: string };

/** A sandbox user's claims, shaped like Microsoft's: the ids derived from the email (same email, same ids). */
export function sandboxClaims(user: SandboxUser): Record<string, string> {
  const domain = user.email.split('@')[1]?.toLowerCase() ?? '';
  const tid = PERSONAL_DOMAINS.has(domain) ? PERSONAL_ACCOUNTS_TENANT : guidOf(`tenant:${domain}`);
  const oid = guidOf(`user:${user.email.toLowerCase()}`);
  return { sub: oid, oid, tid, name: user.name || (user.email.split('@')[0] ?? user.email), email: user.email, preferred_username: user.email };
}

/** The accounts signed in so far, by account id (the oid); bounded. */
function accountBook(): { add(user: SandboxUser): string; find(id: string): Account | undefined } {
  const users = new Map<string, SandboxUser>();
  return {
    add(user) {
      const id = sandboxClaims(user).oid ?? '';
      users.delete(id);
      users.set(id, user);
      if (users.size > 1000) users.delete(users.keys().next().value ?? '');
      return id;
    },
    find(id) {
      const user = users.get(id);
      return user ? { accountId: id, claims: async () => sandboxClaims(user) } : undefined;
    },
  };
}

async function autoGrant(ctx: GrantContext): Promise<Grant | undefined> {
  const { client, session, result, provider } = ctx.oidc;
  if (!client || !session?.accountId) return undefined;
  const grantId = result?.consent?.grantId ?? session.grantIdFor(client.clientId);
  const existing = grantId ? await provider.Grant.find(grantId) : undefined;
  if (existing) return existing;
  const grant = new provider.Grant({ clientId: client.clientId, accountId: session.accountId });
  grant.addOIDCScope('openid profile email');
  await grant.save();
  return grant;
}

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function signInPage(uid: string, hint: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in – sandbox</title><style>
body{font:16px/1.5 system-ui,sans-serif;background:#f3f2f1;margin:0;color:#1b1b1b}main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:6px;box-shadow:0 2px 8px #0002}
h1{font-size:1.4rem;margin:0 0 .5rem}label{display:block;margin-top:1rem;font-weight:600}input{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;border:1px solid #8a8886;border-radius:3px}
.row{display:flex;gap:.75rem;margin-top:1.5rem}button{font:inherit;padding:.5rem 1.25rem;border-radius:3px;border:1px solid #0f6cbd;cursor:pointer}
.primary{background:#0f6cbd;color:#fff}.secondary{background:#fff;color:#0f6cbd}.small{font-size:.85rem;color:#605e5c}</style></head>
<body><main><h1>Sign in</h1><p class="small">Local sandbox OpenID provider, standing in for Microsoft Entra ID. No password: type who you are.</p>
<form method="post" action="/interaction/${esc(uid)}"><label for="email">Email address</label>
<input id="email" name="email" type="email" required autocomplete="username" value="${esc(hint)}">
<label for="name">Name</label><input id="name" name="name" type="text" autocomplete="name">
<div class="row"><button class="primary" type="submit" name="action" value="sign-in">Sign in</button>
<button class="secondary" type="submit" name="action" value="cancel" formnovalidate>Cancel</button></div></form></main></body></html>`;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > 8192) break;
  }
  return new URLSearchParams(body);
}

/** GET shows the sign-in page; POST finishes the interaction (signed in, or access_denied). */
async function interaction(provider: Provider, accounts: ReturnType<typeof accountBook>, uid: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET') {
    const hint = typeof details.params['login_hint'] === 'string' ? details.params['login_hint'] : '';
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(signInPage(uid, hint));
    return;
  }
  const form = await readForm(req);
  const email = (form.get('email') ?? '').trim();
  if (form.get('action') === 'cancel' || !email) {
    await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user cancelled the sign-in' }, { mergeWithLastSubmission: false });
    return;
  }
  const accountId = accounts.add({ email, name: (form.get('name') ?? '').trim().slice(0, 200) });
  await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
}

/** The provider's own discovery document (the endpoints as it serves them). */
async function discovery(issuer: string): Promise<LocalOpenIdProvider['metadata']> {
  const res = await fetch(`${issuer}/.well-known/openid-configuration`);
  const doc: unknown = await res.json();
  const field = (name: string): string => {
    const v = typeof doc === 'object' && doc !== null && name in doc ? (doc as Record<string, unknown>)[name] : undefined;
    if (typeof v !== 'string') throw new Error(`local OpenID provider: discovery has no ${name}`);
    return v;
  };
  return {
    issuer: field('issuer'),
    authorization_endpoint: field('authorization_endpoint'),
    token_endpoint: field('token_endpoint'),
    jwks_uri: field('jwks_uri'),
    end_session_endpoint: field('end_session_endpoint'),
  };
}

export async function startLocalOpenIdProvider(options: LocalOpenIdProviderOptions): Promise<LocalOpenIdProvider> {
  const host = options.host ?? '127.0.0.1';
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
  let provider: Provider | undefined;
  const accounts = accountBook();
  const server = createServer((req, res) => {
    const m = /^\/interaction\/([\w-]+)(?:\?.*)?$/.exec(req.url ?? '');
    if (!provider) return void res.writeHead(503).end();
    if (!m?.[1]) return provider.callback()(req, res);
    interaction(provider, accounts, m[1], req, res).catch((err: unknown) => {
      options.logger?.warn({ err }, 'local OpenID provider: sign-in page failed');
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain' }).end('This sign-in has expired. Go back to the landing page and start again.');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://${host}:${port}`;
  provider = new Provider(issuer, {
    clients: [
      {
        client_id: options.clientId,
        client_secret: options.clientSecret,
        redirect_uris: [options.redirectUri],
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    conformIdTokenClaims: false,
    claims: { openid: ['sub', 'oid', 'tid'], profile: ['name', 'preferred_username'], email: ['email'] },
    scopes: ['openid', 'profile', 'email', 'offline_access'],
    findAccount: async (_ctx: unknown, id: string) => accounts.find(id),
    loadExistingGrant: autoGrant,
    interactions: { url: (_ctx: unknown, i: { uid: string }) => `/interaction/${i.uid}` },
    features: { devInteractions: { enabled: false } },
    ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 900, Session: 3600, Grant: 3600 },
  });
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  let metadata: LocalOpenIdProvider['metadata'];
  try {
    metadata = await discovery(issuer);
  } catch (err) {
    await close();
    throw err;
  }
  return { issuer, metadata, close };
}
