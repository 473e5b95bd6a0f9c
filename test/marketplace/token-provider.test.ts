/**
 * The MSAL token provider runs MSAL's real code (authority resolution, client-credential request,
 * in-memory token cache, renewal) against a fake Entra ID token endpoint: an https server on
 * 127.0.0.1 with a certificate made by openssl for this test. MSAL's network-client hook is used
 * only to trust that test certificate; nothing reaches the internet.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest, createServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { INetworkModule, NetworkRequestOptions, NetworkResponse } from '@azure/msal-node';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import t from 'tap';
import { CredentialHealth } from '../../src/marketplace/credential-health.js';
import { MarketplaceAuthError } from '../../src/marketplace/errors.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import {
  MARKETPLACE_SCOPE,
  MsalTokenProvider,
  NoTokenProvider,
  StaticTokenProvider,
  createTokenProvider,
  readCertificatePem,
} from '../../src/marketplace/token-provider.js';
import { captureLogger, startScriptedServer } from '../support/scripted-server.js';
import { CLIENT_ID, SUB_ID, TENANT_ID, subscription } from './fixtures.js';

const SECRET = 'correct-horse-battery-staple';

// ------------------------------------------------------------------------------------------------
// Test PKI: a server certificate for 127.0.0.1 and a client certificate for certificate credentials.

const dir = mkdtempSync(join(tmpdir(), 'msal-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: 'pipe' });
}
openssl([
  'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
  '-addext', 'subjectAltName=IP:127.0.0.1',
  '-keyout', join(dir, 'server.key'), '-out', join(dir, 'server.crt'),
]);
openssl([
  'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=fulfillment-ledger-test-app',
  '-keyout', join(dir, 'client.key'), '-out', join(dir, 'client.crt'),
]);
const serverCert = readFileSync(join(dir, 'server.crt'), 'utf8');
const serverKey = readFileSync(join(dir, 'server.key'), 'utf8');
const clientCert = readFileSync(join(dir, 'client.crt'), 'utf8');
const clientKey = readFileSync(join(dir, 'client.key'), 'utf8');
const clientPemPath = join(dir, 'client.pem');
writeFileSync(clientPemPath, `${clientCert}\n${clientKey}`);
const clientCertDer = new X509Certificate(clientCert).raw;

/** MSAL's INetworkModule over node:https, trusting only the test certificate. */
class TestCaNetworkClient implements INetworkModule {
  constructor(private readonly ca: string) {}
  sendGetRequestAsync<T>(url: string, options?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    return this.send<T>('GET', url, options);
  }
  sendPostRequestAsync<T>(url: string, options?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    return this.send<T>('POST', url, options);
  }
  private send<T>(method: string, url: string, options?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { method, headers: options?.headers, ca: this.ca }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers[k] = v;
          try {
            resolve({ headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as T, status: res.statusCode ?? 0 });
          } catch (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        });
      });
      req.on('error', reject);
      if (options?.body) req.write(options.body);
      req.end();
    });
  }
}

// ------------------------------------------------------------------------------------------------
// The fake Entra ID.

type TokenRequest = { at: number; form: URLSearchParams; path: string };

async function startEntra(expiresIn: number): Promise<{
  host: string;
  tokenRequests: TokenRequest[];
  metadataRequests: string[];
  otherRequests: string[];
  close: () => Promise<void>;
}> {
  const tokenRequests: TokenRequest[] = [];
  const metadataRequests: string[] = [];
  const otherRequests: string[] = [];
  let origin = '';
  let issued = 0;
  const server = createServer({ cert: serverCert, key: serverKey }, (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const path = new URL(req.url ?? '/', origin).pathname;
        const json = (status: number, body: unknown): void => {
          res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
          res.end(JSON.stringify(body));
        };
        const tenantPath = `/${TENANT_ID}`;
        if (req.method === 'GET' && path.endsWith('/.well-known/openid-configuration')) {
          metadataRequests.push(path);
          json(200, {
            token_endpoint: `${origin}${tenantPath}/oauth2/v2.0/token`,
            authorization_endpoint: `${origin}${tenantPath}/oauth2/v2.0/authorize`,
            end_session_endpoint: `${origin}${tenantPath}/oauth2/v2.0/logout`,
            issuer: `${origin}${tenantPath}/v2.0`,
            jwks_uri: `${origin}${tenantPath}/discovery/v2.0/keys`,
          });
          return;
        }
        if (req.method === 'POST' && path === `${tenantPath}/oauth2/v2.0/token`) {
          const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
          tokenRequests.push({ at: Date.now(), form, path });
          const reject = (code: number, description: string): void =>
            json(401, {
              error: 'invalid_client',
              error_description: `AADSTS${code}: ${description}\r\nTrace ID: 0000\r\nCorrelation ID: ${form.get('client-request-id') ?? ''}\r\nTimestamp: 2026-01-01 00:00:00Z`,
              error_codes: [code],
              timestamp: '2026-01-01 00:00:00Z',
              trace_id: '00000000-0000-0000-0000-000000000000',
              correlation_id: '00000000-0000-0000-0000-000000000000',
            });
          if (form.get('grant_type') !== 'client_credentials' || form.get('client_id') !== CLIENT_ID) {
            json(400, { error: 'invalid_request', error_description: 'AADSTS900144: bad request' });
            return;
          }
          const assertion = form.get('client_assertion');
          if (assertion) {
            try {
              const header = decodeProtectedHeader(assertion);
              const expected = createHash('sha256').update(clientCertDer).digest('base64url');
              if (header['x5t#S256'] !== expected) throw new Error('x5t#S256 does not match the certificate');
              await jwtVerify(assertion, createPublicKey(clientCert), {
                audience: `${origin}${tenantPath}/oauth2/v2.0/token`,
                issuer: CLIENT_ID,
                subject: CLIENT_ID,
                clockTolerance: 5, // MSAL rounds nbf to the nearest second
              });
            } catch (err) {
              reject(700027, `Client assertion failed signature validation: ${String(err)}`);
              return;
            }
          } else if (form.get('client_secret') !== SECRET) {
            reject(
              7000215,
              `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${CLIENT_ID}'.`,
            );
            return;
          }
          issued++;
          json(200, {
            token_type: 'Bearer',
            expires_in: expiresIn,
            ext_expires_in: expiresIn,
            access_token: `access-token-${issued}`,
          });
          return;
        }
        otherRequests.push(`${req.method} ${path}`);
        json(404, { error: 'not_found' });
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  origin = `https://127.0.0.1:${port}`;
  return {
    host: origin,
    tokenRequests,
    metadataRequests,
    otherRequests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const networkClient = new TestCaNetworkClient(serverCert);

t.test('one token is fetched, reused until near expiry, then renewed', async (t) => {
  // MSAL renews an app token 5 minutes (300 s) before it expires: expires_in 302 s makes "near
  // expiry" come about 2 s after the token was issued.
  const entra = await startEntra(302);
  t.teardown(entra.close);
  const { logger, text } = captureLogger();
  const provider = new MsalTokenProvider({
    tenantId: TENANT_ID,
    clientId: CLIENT_ID,
    credential: { kind: 'secret', clientSecret: SECRET },
    authorityHost: entra.host,
    networkClient,
    logger,
  });
  t.equal(provider.authority, `${entra.host}/${TENANT_ID}`, 'tenant-specific authority');

  const first = await provider.getToken();
  t.equal(first, 'access-token-1');
  t.equal(entra.tokenRequests.length, 1, 'one token request');
  const form = entra.tokenRequests[0]?.form;
  t.equal(form?.get('grant_type'), 'client_credentials');
  t.equal(form?.get('scope'), MARKETPLACE_SCOPE, 'scope 20e940b3-…/.default');
  t.equal(form?.get('client_id'), CLIENT_ID);
  t.same(entra.otherRequests, [], 'no other endpoint was called (no instance discovery)');
  t.same(entra.metadataRequests, [`/${TENANT_ID}/v2.0/.well-known/openid-configuration`], 'tenant metadata read once');

  const again = await Promise.all([provider.getToken(), provider.getToken(), provider.getToken()]);
  t.same(again, ['access-token-1', 'access-token-1', 'access-token-1'], 'reused from the cache');
  t.equal(entra.tokenRequests.length, 1, 'still one token request');

  // Poll until MSAL decides the token is near expiry and fetches a new one.
  const issuedAt = entra.tokenRequests[0]?.at ?? Date.now();
  let token = first;
  const deadline = Date.now() + 6_000;
  while (token === first && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    token = await provider.getToken();
  }
  t.equal(token, 'access-token-2', 'renewed');
  t.equal(entra.tokenRequests.length, 2, 'exactly one more token request');
  const renewedAfter = (entra.tokenRequests[1]?.at ?? 0) - issuedAt;
  t.ok(renewedAfter >= 1_000 && renewedAfter <= 4_500, `renewed ${renewedAfter} ms after issue, i.e. ~300 s before expiry`);
  t.equal(await provider.getToken(), 'access-token-2', 'the renewed token is cached in turn');
  t.equal(entra.tokenRequests.length, 2);
  t.notMatch(text(), /access-token-|correct-horse/, 'neither token nor secret is logged');
});

t.test('concurrent first calls share one token request', async (t) => {
  const entra = await startEntra(3600);
  t.teardown(entra.close);
  const provider = new MsalTokenProvider({
    tenantId: TENANT_ID,
    clientId: CLIENT_ID,
    credential: { kind: 'secret', clientSecret: SECRET },
    authorityHost: entra.host,
    networkClient,
  });
  const tokens = await Promise.all(Array.from({ length: 5 }, () => provider.getToken()));
  t.same(new Set(tokens), new Set(['access-token-1']));
  t.equal(entra.tokenRequests.length, 1);
});

t.test('a rejected secret surfaces as a clear error', async (t) => {
  const entra = await startEntra(3600);
  t.teardown(entra.close);
  const { logger, text } = captureLogger();
  const provider = new MsalTokenProvider({
    tenantId: TENANT_ID,
    clientId: CLIENT_ID,
    credential: { kind: 'secret', clientSecret: 'an-expired-or-wrong-secret' },
    authorityHost: entra.host,
    networkClient,
    logger,
  });
  const err = await provider.getToken().then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, MarketplaceAuthError);
  const authError = err as MarketplaceAuthError;
  t.equal(authError.errorCode, 'invalid_client');
  t.equal(authError.aadsts, '7000215');
  t.match(authError.message, /AADSTS7000215/);
  t.match(authError.message, /Invalid client secret provided/);
  t.match(authError.message, /MARKETPLACE_CLIENT_SECRET/, 'says which setting to fix');
  t.match(authError.message, new RegExp(CLIENT_ID), 'names the app');
  t.match(authError.message, new RegExp(TENANT_ID), 'names the tenant');
  t.notMatch(authError.message, /an-expired-or-wrong-secret/, 'does not echo the secret');
  t.notMatch(text(), /an-expired-or-wrong-secret/, 'the secret is not logged');
  t.match(text(), /marketplace token request failed/);
  t.comment(authError.message);

  // Through the client, the call fails before any request reaches the API.
  const api = await startScriptedServer([{ status: 200, body: subscription() }]);
  t.teardown(() => api.close());
  const client = new FulfillmentClient({ baseUrl: api.apiUrl, tokenProvider: provider, logger });
  await t.rejects(client.getSubscription(SUB_ID), MarketplaceAuthError);
  t.equal(api.requests.length, 0, 'no API request without a token');
});

t.test('credential health: Entra rejecting the secret counts; a certificate PEM gives its notAfter', async (t) => {
  const entra = await startEntra(3600);
  t.teardown(entra.close);
  const health = new CredentialHealth();
  const provider = createTokenProvider(
    { tenantId: TENANT_ID, clientId: CLIENT_ID, clientSecret: 'an-expired-or-wrong-secret', authorityHost: entra.host },
    { networkClient, health, logger: captureLogger().logger },
  );
  await t.rejects(provider.getToken(), MarketplaceAuthError);
  t.match(health.snapshot(), { kind: 'secret', consecutiveRejections: 1, lastFailure: { call: 'token', message: /AADSTS7000215/ } });
  t.notMatch(JSON.stringify(health.snapshot()), /an-expired-or-wrong-secret/, 'the secret is not kept');
  await t.rejects(provider.getToken(), MarketplaceAuthError);
  t.equal(health.snapshot().consecutiveRejections, 2);

  const unreachable = new CredentialHealth();
  const offline = createTokenProvider(
    { tenantId: TENANT_ID, clientId: CLIENT_ID, clientSecret: SECRET, authorityHost: 'https://127.0.0.1:9' },
    { networkClient, health: unreachable, logger: captureLogger().logger },
  );
  await t.rejects(offline.getToken(), MarketplaceAuthError);
  t.match(unreachable.snapshot(), { consecutiveRejections: 0, lastFailure: { call: 'token' } }, 'Entra unreachable: remembered, not a rejection');

  const withCertificate = new CredentialHealth();
  createTokenProvider({ tenantId: TENANT_ID, clientId: CLIENT_ID, clientCertificatePath: clientPemPath, authorityHost: entra.host }, { networkClient, health: withCertificate });
  const x509 = new X509Certificate(clientCert);
  t.match(withCertificate.snapshot(), {
    kind: 'certificate',
    certificate: {
      notAfter: new Date(x509.validTo).toISOString(),
      notBefore: new Date(x509.validFrom).toISOString(),
      subject: /fulfillment-ledger-test-app/,
      thumbprintSha256: createHash('sha256').update(clientCertDer).digest('hex'),
    },
  });
  t.ok(Date.parse(withCertificate.snapshot().certificate?.notAfter ?? '') > Date.now(), 'the test certificate is valid for a day');
});

t.test('certificate credentials: a signed client assertion with the SHA-256 thumbprint', async (t) => {
  const entra = await startEntra(3600);
  t.teardown(entra.close);
  const provider = createTokenProvider(
    {
      tenantId: TENANT_ID,
      clientId: CLIENT_ID,
      clientCertificatePath: clientPemPath,
      authorityHost: entra.host,
    },
    { networkClient },
  );
  t.type(provider, MsalTokenProvider);
  t.equal(await provider.getToken(), 'access-token-1');
  const form = entra.tokenRequests[0]?.form;
  t.equal(form?.get('client_assertion_type'), 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
  t.notOk(form?.has('client_secret'));

  const pem = readCertificatePem(readFileSync(clientPemPath, 'utf8'));
  t.equal(pem.thumbprintSha256, createHash('sha256').update(clientCertDer).digest('hex'), 'thumbprint computed from the PEM');
});

t.test('a token from the MSAL provider is what the client sends', async (t) => {
  const entra = await startEntra(3600);
  t.teardown(entra.close);
  const api = await startScriptedServer([{ status: 200, body: subscription() }]);
  t.teardown(() => api.close());
  const provider = new MsalTokenProvider({
    tenantId: TENANT_ID,
    clientId: CLIENT_ID,
    credential: { kind: 'secret', clientSecret: SECRET },
    authorityHost: entra.host,
    networkClient,
  });
  const client = new FulfillmentClient({ baseUrl: api.apiUrl, tokenProvider: provider, logger: captureLogger().logger });
  await client.getSubscription(SUB_ID);
  await client.getSubscription(SUB_ID);
  t.same(
    api.requests.map((r) => r.headers.authorization),
    ['Bearer access-token-1', 'Bearer access-token-1'],
  );
  t.equal(entra.tokenRequests.length, 1);
});

t.test('configuration picks the provider', async (t) => {
  t.type(createTokenProvider({ staticToken: 'abc' }), StaticTokenProvider);
  t.equal(await createTokenProvider({ staticToken: ' abc ' }).getToken(), 'abc');
  t.type(createTokenProvider({}), NoTokenProvider);
  t.equal(await createTokenProvider({}).getToken(), undefined);
  t.type(
    createTokenProvider({ tenantId: TENANT_ID, clientId: CLIENT_ID, clientSecret: SECRET }),
    MsalTokenProvider,
  );
  t.throws(() => createTokenProvider({ tenantId: TENANT_ID, clientId: CLIENT_ID }), /MARKETPLACE_CLIENT_SECRET/);
  t.throws(() => createTokenProvider({ clientSecret: SECRET }), /MARKETPLACE_TENANT_ID/);
  t.throws(
    () => createTokenProvider({ tenantId: 'common', clientId: CLIENT_ID, clientSecret: SECRET }),
    /own tenant ID, not "common"/,
  );
  t.throws(
    () =>
      new MsalTokenProvider({
        tenantId: TENANT_ID,
        clientId: CLIENT_ID,
        credential: { kind: 'certificate', thumbprintSha256: 'abc', privateKey: clientKey },
      }),
    /64 hex digits/,
  );
  t.throws(
    () =>
      new MsalTokenProvider({
        tenantId: TENANT_ID,
        clientId: CLIENT_ID,
        credential: { kind: 'secret', clientSecret: SECRET },
        authorityHost: 'http://127.0.0.1:1',
      }),
    /must be https/,
  );
  const msal = new MsalTokenProvider({ tenantId: TENANT_ID, clientId: CLIENT_ID, credential: { kind: 'secret', clientSecret: SECRET } });
  t.equal(msal.authority, `https://login.microsoftonline.com/${TENANT_ID}`, 'default authority host');
});
