/** The webhook authenticator against a real token issuer on 127.0.0.1 (OpenID metadata + JWKS). */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import type { Test } from 'tap';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import type { JWK, CryptoKey } from 'jose';
import { MARKETPLACE_APP_ID, VerifiedTokens, WebhookAuthError, createWebhookAuthenticator } from '../../src/http/webhook-auth.js';

const tenant = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const app = 'a8c4f9b3-0000-4000-8000-00000000a11e';

async function issuer(t: Test) {
  const published: JWK[] = [];
  let metadataHits = 0;
  let jwksHits = 0;
  const server = createServer((req, res) => {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    res.setHeader('content-type', 'application/json');
    if (req.url?.endsWith('/.well-known/openid-configuration')) {
      metadataHits++;
      res.end(JSON.stringify({ issuer: `https://login.microsoftonline.com/${tenant}/v2.0`, jwks_uri: `${base}/keys` }));
    } else if (req.url === '/keys') {
      jwksHits++;
      res.end(JSON.stringify({ keys: published }));
    } else {
      res.statusCode = 404;
      res.end('{}');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${tenant}/v2.0/.well-known/openid-configuration`;
  const addKey = async (kid: string) => {
    const pair = await generateKeyPair('RS256');
    published.push({ ...(await exportJWK(pair.publicKey)), kid, alg: 'RS256', use: 'sig' });
    return pair.privateKey;
  };
  return { url, addKey, hits: () => ({ metadataHits, jwksHits }) };
}

type Claims = Record<string, unknown>;
const v1 = (over: Claims = {}): Claims => ({ ver: '1.0', iss: `https://sts.windows.net/${tenant}/`, aud: app, tid: tenant, appid: MARKETPLACE_APP_ID, ...over });
const v2 = (over: Claims = {}): Claims => ({ ver: '2.0', iss: `https://login.microsoftonline.com/${tenant}/v2.0`, aud: app, tid: tenant, azp: MARKETPLACE_APP_ID, ...over });

async function sign(key: CryptoKey, kid: string, claims: Claims, expiresIn: string | number = '5m') {
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).setIssuedAt().setExpirationTime(expiresIn).sign(key);
}

t.test('accepts genuine v1 and v2 tokens; rejects every kind of bad one with a reason', async (t) => {
  const iss = await issuer(t);
  const key = await iss.addKey('k1');
  const auth = createWebhookAuthenticator({ tenantId: tenant, audience: app, metadataUrl: iss.url, keyRefreshCooldownMs: 0 });

  const one = await auth.authenticate(`Bearer ${await sign(key, 'k1', v1())}`);
  t.match(one, { tokenVersion: '1.0', tenantId: tenant, caller: MARKETPLACE_APP_ID, audience: app });
  const two = await auth.authenticate(`bearer ${await sign(key, 'k1', v2({ aud: `api://${app}` }))}`);
  t.match(two, { tokenVersion: '2.0', caller: MARKETPLACE_APP_ID });

  const forger = await generateKeyPair('RS256');
  const cases: Array<[string, string | undefined, string]> = [
    ['no header', undefined, 'missing-token'],
    ['not bearer', 'Basic abc', 'malformed-token'],
    ['garbage', 'Bearer not.a.jwt', 'malformed-token'],
    ['forged signature (same kid, other key)', `Bearer ${await sign(forger.privateKey, 'k1', v2())}`, 'bad-signature'],
    ['expired', `Bearer ${await sign(key, 'k1', v2(), Math.floor(Date.now() / 1000) - 3600)}`, 'expired'],
    ['not yet valid', `Bearer ${await sign(key, 'k1', v2({ nbf: Math.floor(Date.now() / 1000) + 3600 }))}`, 'not-yet-valid'],
    ['wrong audience', `Bearer ${await sign(key, 'k1', v2({ aud: 'someone-else' }))}`, 'wrong-audience'],
    ['wrong issuer', `Bearer ${await sign(key, 'k1', v2({ iss: 'https://evil.example/' }))}`, 'wrong-issuer'],
    ['wrong tenant', `Bearer ${await sign(key, 'k1', v2({ tid: '00000000-0000-0000-0000-000000000000' }))}`, 'wrong-tenant'],
    ['wrong caller', `Bearer ${await sign(key, 'k1', v2({ azp: 'not-the-marketplace' }))}`, 'wrong-caller'],
    ['v1 caller in the wrong claim', `Bearer ${await sign(key, 'k1', v1({ appid: 'nope' }))}`, 'wrong-caller'],
    ['unsigned (alg none)', `Bearer ${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(v2({ exp: 9999999999 }))).toString('base64url')}.`, 'bad-signature'],
  ];
  for (const [name, header, reason] of cases) {
    const err = await auth.authenticate(header).catch((e: unknown) => e);
    t.type(err, WebhookAuthError, name);
    t.equal((err as WebhookAuthError).reason, reason, `${name}: ${(err as Error).message}`);
  }
});

t.test('keys are cached, and refetched when an unknown kid appears (rotation)', async (t) => {
  const iss = await issuer(t);
  const k1 = await iss.addKey('k1');
  const auth = createWebhookAuthenticator({ tenantId: tenant, audience: app, metadataUrl: iss.url, keyRefreshCooldownMs: 0 });
  for (let i = 0; i < 5; i++) await auth.authenticate(`Bearer ${await sign(k1, 'k1', v2())}`);
  t.same(iss.hits(), { metadataHits: 1, jwksHits: 1 }, 'one metadata and one key fetch for five calls');
  const k2 = await iss.addKey('k2');
  await auth.authenticate(`Bearer ${await sign(k2, 'k2', v2())}`);
  t.equal(iss.hits().jwksHits, 2, 'the unknown kid caused one refetch');
  const err = await auth.authenticate(`Bearer ${await sign(k2, 'k3', v2())}`).catch((e: unknown) => e);
  t.equal((err as WebhookAuthError).reason, 'unknown-key');
});

t.test('the emulator or a test issuer can be allowed as caller; unreachable metadata is keys-unavailable', async (t) => {
  const iss = await issuer(t);
  const key = await iss.addKey('k1');
  const auth = createWebhookAuthenticator({ tenantId: tenant, audience: app, metadataUrl: iss.url, allowedCallers: [MARKETPLACE_APP_ID, 'emulator'] });
  t.ok(await auth.authenticate(`Bearer ${await sign(key, 'k1', v2({ azp: 'emulator' }))}`));
  const down = createWebhookAuthenticator({ tenantId: tenant, audience: app, metadataUrl: 'http://127.0.0.1:9/nothing' });
  const err = await down.authenticate(`Bearer ${await sign(key, 'k1', v2())}`).catch((e: unknown) => e);
  t.equal((err as WebhookAuthError).reason, 'keys-unavailable');
});

t.test('a verified token is accepted again by its exact string; a changed one is verified in full; entries end at exp or the max age', async (t) => {
  const iss = await issuer(t);
  const key = await iss.addKey('k1');
  let clock = Date.now();
  const auth = createWebhookAuthenticator({ tenantId: tenant, audience: app, metadataUrl: iss.url, now: () => new Date(clock), verifiedTokenMaxAgeMs: 10 * 60_000 });
  const exp = Math.floor(clock / 1000) + 300; // 5 minutes
  const token = await sign(key, 'k1', v2({ exp }), exp);
  t.match(await auth.authenticate(`Bearer ${token}`), { tokenVersion: '2.0', caller: MARKETPLACE_APP_ID });
  for (let i = 0; i < 4; i++) await auth.authenticate(`Bearer ${token}`);
  t.same(auth.stats(), { verified: 1, remembered: 4 }, 'verified once, then remembered');

  const [head, body, signature] = token.split('.') as [string, string, string];
  const flipped = `${signature.slice(0, -2)}${signature.endsWith('AA') ? 'BB' : 'AA'}`;
  const otherTenant = Buffer.from(JSON.stringify({ ...v2({ exp }), tid: '00000000-0000-0000-0000-000000000000' })).toString('base64url');
  for (const [name, changed] of [['another signature', `${head}.${body}.${flipped}`], ['another payload, the same signature', `${head}.${otherTenant}.${signature}`]] as const) {
    const err = await auth.authenticate(`Bearer ${changed}`).catch((e: unknown) => e);
    t.equal((err as WebhookAuthError).reason, 'bad-signature', `${name}: verified in full and refused`);
  }
  const again = await auth.authenticate(`Bearer ${head}.${body}.${flipped}`).catch((e: unknown) => e);
  t.type(again, WebhookAuthError, 'a refused token is refused again: failures are not remembered');
  t.equal(auth.stats().verified, 1, 'refusals do not count as verified');

  clock = exp * 1000 + 1000; // past exp, within jose's clock tolerance: a full verification, which still accepts it
  await auth.authenticate(`Bearer ${token}`);
  t.equal(auth.stats().verified, 2, 'the entry ended at exp: verified again');
  clock = exp * 1000 + 10 * 60_000; // past exp and the tolerance
  t.equal(((await auth.authenticate(`Bearer ${token}`).catch((e: unknown) => e)) as WebhookAuthError).reason, 'expired', 'and refused once it is expired');

  clock = Date.now();
  const longExp = Math.floor(clock / 1000) + 3600;
  const long = await sign(key, 'k1', v2({ exp: longExp }), longExp);
  await auth.authenticate(`Bearer ${long}`);
  await auth.authenticate(`Bearer ${long}`);
  const before = auth.stats().verified;
  clock += 10 * 60_000 + 1;
  await auth.authenticate(`Bearer ${long}`);
  t.equal(auth.stats().verified, before + 1, 'a token valid for an hour is verified again after the 10-minute max age');
});

t.test('the verified tokens are a bounded LRU', async (t) => {
  const tokens = new VerifiedTokens(2, 60_000);
  const caller = { tokenVersion: '2.0' as const, issuer: 'i', tenantId: tenant, caller: MARKETPLACE_APP_ID, audience: app };
  tokens.remember('a', caller, 1e15, 0);
  tokens.remember('b', caller, 1e15, 0);
  t.ok(tokens.get('a', 1), 'a is used: b is now the least recently used');
  tokens.remember('c', caller, 1e15, 2);
  t.equal(tokens.size, 2, 'never more than the bound');
  t.equal(tokens.get('b', 3), undefined, 'b went');
  t.ok(tokens.get('a', 3) && tokens.get('c', 3), 'a and c stay');
  t.equal(tokens.get('a', 60_001), undefined, 'past the max age: gone');
  tokens.remember('d', caller, 500, 0);
  t.equal(tokens.get('d', 500), undefined, 'at its exp: gone');
  const off = new VerifiedTokens(2, 0);
  off.remember('a', caller, 1e15, 0);
  t.equal(off.get('a', 1), undefined, 'max age 0: nothing remembered');
});
