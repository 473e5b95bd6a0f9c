import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import t from 'tap';
import { ConfigError, loadConfig } from '../src/config.js';
import { tempDir } from './support/temp.js';

t.test('defaults: embedded SQLite under ./data, port 3000, info logs', async (t) => {
  const dir = tempDir(t);
  const c = loadConfig({ DATA_DIR: dir });
  t.equal(c.http.port, 3000);
  t.equal(c.http.host, '127.0.0.1');
  t.equal(c.log.level, 'info');
  t.same(c.store, { kind: 'sqlite', dataDir: dir, path: join(dir, 'events.db'), pollIntervalMs: 250, busyWaitMs: 2000, writeProbeIntervalMs: 5000, checkpointIntervalMs: 60000 });
  t.same(c.http, { port: 3000, host: '127.0.0.1', shutdownGraceMs: 10000 }, 'no PUBLIC_URL: the listen URL is used');
  t.same(c.marketplace, { sandbox: true }, 'no Microsoft credentials: a sandbox against the built-in emulator');
  t.same(c.webhook, {});
  t.same(c.policy, { retiredPlans: [] });
  t.same(c.operator, { operators: [] });
  t.same(
    c.landing,
    {
      productName: 'Fulfillment Ledger sandbox',
      microsoftTimeoutMs: 5000,
      signIn: { kind: 'local', port: 0, sessionMs: 1_800_000, signInMs: 900_000, allowOtherUsers: false },
    },
    'the sandbox signs customers in at its local OpenID provider',
  );
  t.same(c.emulator, { port: 3978, dataDir: dir }, "the emulator's state and the sandbox token live in DATA_DIR");
  t.same(c.runner, { lease: { takeoverAfterMs: 5000, heartbeatMs: 30000, pollMs: 1000 } });
  t.equal(c.integration, undefined, 'no PROVISIONING_WEBHOOK_URL: no integration');
  t.same(c.projections, { path: join(dir, 'readmodels.db'), planPrices: [] }, 'read models beside the embedded store');
  t.same(
    c.deadlines,
    { checkIntervalMs: 300_000, purchaseLeadMs: 7 * 86_400_000, activationGraceMs: 900_000, credentialRejections: 3, certificateLeadMs: 30 * 86_400_000 },
    'deadlines: a check every 5 minutes, a week before the 30 days, 15 minutes for an activation, 3 refusals, 30 days before a certificate expires',
  );
  t.same(c.reconciliation, { intervalMs: 3_600_000, maxCallsPerSecond: 10, takeoverAfterMs: 60_000 }, 'reconciliation hourly, 10 calls/s');
});

t.test('the deadline settings from their variables', async (t) => {
  const c = loadConfig({
    DATA_DIR: tempDir(t),
    DEADLINES_CHECK_INTERVAL_MS: '0',
    DEADLINES_PURCHASE_LEAD_DAYS: '10',
    DEADLINES_ACTIVATION_GRACE_MS: '60000',
    DEADLINES_CREDENTIAL_REJECTIONS: '1',
    DEADLINES_CERTIFICATE_LEAD_DAYS: '14',
  });
  t.same(c.deadlines, { checkIntervalMs: 0, purchaseLeadMs: 10 * 86_400_000, activationGraceMs: 60_000, credentialRejections: 1, certificateLeadMs: 14 * 86_400_000 });
});

t.test('reconciliation: its interval (0 = no schedule), call rate and takeover; bad values name the variable', async (t) => {
  const dir = tempDir(t);
  const c = loadConfig({ DATA_DIR: dir, RECONCILE_INTERVAL_MINUTES: '15', RECONCILE_MAX_CALLS_PER_SECOND: '2.5', RECONCILE_TAKEOVER_MS: '5000' });
  t.same(c.reconciliation, { intervalMs: 900_000, maxCallsPerSecond: 2.5, takeoverAfterMs: 5000 });
  t.same(loadConfig({ DATA_DIR: dir, RECONCILE_INTERVAL_MINUTES: '0' }).reconciliation, { maxCallsPerSecond: 10, takeoverAfterMs: 60_000 }, '0: on demand only');
  t.throws(() => loadConfig({ DATA_DIR: dir, RECONCILE_INTERVAL_MINUTES: 'hourly' }), { name: 'ConfigError', message: /^RECONCILE_INTERVAL_MINUTES: must be a whole number of minutes/ });
  t.throws(() => loadConfig({ DATA_DIR: dir, RECONCILE_MAX_CALLS_PER_SECOND: '0' }), { name: 'ConfigError', message: /^RECONCILE_MAX_CALLS_PER_SECOND: must be a number above 0/ });
  t.throws(() => loadConfig({ DATA_DIR: dir, RECONCILE_TAKEOVER_MS: '10' }), { name: 'ConfigError', message: /^RECONCILE_TAKEOVER_MS: / });
});

t.test('every section from its variables', async (t) => {
  const dir = tempDir(t);
  const secret = 's'.repeat(32);
  const c = loadConfig({
    DATA_DIR: dir,
    PORT: '8080',
    HOST: ' 0.0.0.0 ',
    PUBLIC_URL: 'https://ledger.example',
    SHUTDOWN_GRACE_MS: '500',
    LOG_LEVEL: 'debug',
    READMODELS_PATH: join(dir, 'elsewhere.db'),
    SQLITE_BUSY_WAIT_MS: '750',
    SQLITE_WRITE_PROBE_INTERVAL_MS: '250',
    SQLITE_CHECKPOINT_INTERVAL_MS: '0',
    MARKETPLACE_TENANT_ID: 'tenant',
    MARKETPLACE_CLIENT_ID: 'client',
    MARKETPLACE_CLIENT_SECRET: 'secret',
    MARKETPLACE_AUTHORITY_HOST: 'https://login.example',
    WEBHOOK_TENANT_ID: 'webhook-tenant',
    WEBHOOK_AUDIENCE: 'webhook-app',
    WEBHOOK_OPENID_METADATA_URL: 'https://login.example/meta',
    WEBHOOK_ALLOWED_CALLERS: 'a, b,,c',
    POLICY_RETIRED_PLANS: 'old, older',
    POLICY_MAX_SEATS: '50',
    OPERATOR_TOKEN: 'operator-token-0123456789',
    LANDING_SECRET: 'l'.repeat(32),
    PRODUCT_NAME: 'Contoso',
    LANDING_MICROSOFT_TIMEOUT_MS: '2500',
    EMULATOR_PORT: '0',
    PROCESS_RUNNER: 'catch-up',
    PROCESS_LEASE_TAKEOVER_MS: '200',
    PROCESS_LEASE_HEARTBEAT_MS: '300',
    PROCESS_LEASE_POLL_MS: '20',
    PROVISIONING_WEBHOOK_URL: 'https://isv.example/ledger',
    PROVISIONING_WEBHOOK_SECRET: secret,
    PROVISIONING_TIMEOUT_MS: '2000',
    INTEGRATION_MAX_ATTEMPTS: '3',
  });
  t.same(c.http, { port: 8080, host: '0.0.0.0', publicUrl: 'https://ledger.example', shutdownGraceMs: 500 }, 'values are trimmed and converted');
  t.same(c.log, { level: 'debug' });
  t.match(c.store, { kind: 'sqlite', busyWaitMs: 750, writeProbeIntervalMs: 250, checkpointIntervalMs: 0 });
  t.same(c.marketplace, { sandbox: false, tenantId: 'tenant', clientId: 'client', clientSecret: 'secret', authorityHost: 'https://login.example' });
  t.same(c.webhook, { tenantId: 'webhook-tenant', audience: 'webhook-app', metadataUrl: 'https://login.example/meta', allowedCallers: ['a', 'b', 'c'] });
  t.same(c.policy, { retiredPlans: ['old', 'older'], maxSeats: 50 });
  t.same(c.operator, { token: 'operator-token-0123456789', operators: [{ name: 'operator', token: 'operator-token-0123456789' }] });
  t.same(c.landing, { secret: 'l'.repeat(32), productName: 'Contoso', microsoftTimeoutMs: 2500 });
  t.same(c.emulator, { port: 0, dataDir: dir });
  t.same(c.runner, { mode: 'catch-up', lease: { takeoverAfterMs: 200, heartbeatMs: 300, pollMs: 20 } });
  t.same(c.integration, { url: 'https://isv.example/ledger', secrets: [secret], timeoutMs: 2000, maxAttempts: 3, insecure: false });
  t.same(c.projections, { path: join(dir, 'elsewhere.db'), planPrices: [] });
});

t.test('any of URL, client id, secret, certificate or static token connects to Microsoft instead of the emulator', async (t) => {
  const dir = tempDir(t);
  for (const variable of ['MARKETPLACE_API_URL', 'MARKETPLACE_CLIENT_ID', 'MARKETPLACE_CLIENT_SECRET', 'MARKETPLACE_CLIENT_CERTIFICATE_PATH', 'MARKETPLACE_STATIC_TOKEN']) {
    t.equal(loadConfig({ DATA_DIR: dir, [variable]: 'x' }).marketplace.sandbox, false, variable);
  }
  t.equal(loadConfig({ DATA_DIR: dir, MARKETPLACE_TENANT_ID: 'x' }).marketplace.sandbox, true, 'a tenant alone says nothing about how to reach Microsoft');
  t.equal(loadConfig({ DATA_DIR: dir, MARKETPLACE_API_URL: '' }).marketplace.sandbox, true, 'an empty variable is unset');
});

t.test('named operators: OPERATOR_TOKENS as name:token pairs, beside OPERATOR_TOKEN as the operator named operator', async (t) => {
  const c = loadConfig({ DATA_DIR: tempDir(t), OPERATOR_TOKEN: 'operator-token-0123456789', OPERATOR_TOKENS: ' alice@isv.example:alice-token:with:colons , bob:bob-token-0123456789 ' });
  t.same(c.operator.operators, [
    { name: 'operator', token: 'operator-token-0123456789' },
    { name: 'alice@isv.example', token: 'alice-token:with:colons' },
    { name: 'bob', token: 'bob-token-0123456789' },
  ], 'trimmed; a token may hold colons (the name ends at the first)');
  t.same(loadConfig({ DATA_DIR: tempDir(t) }).operator.operators, [], 'none without either variable');
  const err = (() => {
    try {
      loadConfig({ DATA_DIR: tempDir(t), OPERATOR_TOKENS: 'alice:secret-token-0123456789,bob:secret-token-0123456789' });
    } catch (e) {
      return e as Error;
    }
    return undefined;
  })();
  t.notMatch(err?.message ?? '', /secret-token/, 'an error never echoes a token');
});

t.test('on EventStoreDB the read models are still in DATA_DIR', async (t) => {
  const dir = tempDir(t);
  t.same(loadConfig({ EVENTSTORE_CONNECTION_STRING: 'esdb://localhost:2113?tls=false', DATA_DIR: dir }).projections, { path: join(dir, 'readmodels.db'), planPrices: [] });
});

t.test('EVENTSTORE_CONNECTION_STRING selects EventStoreDB', async (t) => {
  const c = loadConfig({ EVENTSTORE_CONNECTION_STRING: 'esdb://localhost:2113?tls=false' });
  t.same(c.store, { kind: 'eventstoredb', connectionString: 'esdb://localhost:2113?tls=false' });
  t.equal(loadConfig({ EVENTSTORE_CONNECTION_STRING: 'esdb://x:2113', EVENT_STORE: 'sqlite', DATA_DIR: tempDir(t) }).store.kind, 'sqlite', 'EVENT_STORE wins');
});

const bad: Array<[string, NodeJS.ProcessEnv, RegExp]> = [
  ['unknown store kind', { EVENT_STORE: 'postgres' }, /^EVENT_STORE: must be 'sqlite' .* \(got "postgres"\)$/],
  ['eventstoredb without a connection string', { EVENT_STORE: 'eventstoredb' }, /^EVENTSTORE_CONNECTION_STRING: is required/],
  ['malformed connection string', { EVENTSTORE_CONNECTION_STRING: 'localhost:2113' }, /^EVENTSTORE_CONNECTION_STRING: is not an EventStoreDB connection string/],
  ['port not a number', { PORT: 'eighty' }, /^PORT: must be a whole number/],
  ['port out of range', { PORT: '70000' }, /^PORT: must be a whole number/],
  ['log level', { LOG_LEVEL: 'loud' }, /^LOG_LEVEL: must be one of/],
  ['short operator token', { OPERATOR_TOKEN: 'short' }, /^OPERATOR_TOKEN: must be at least 16 characters .* \(got "short"\)$/],
  ['named operator without a token', { OPERATOR_TOKENS: 'alice' }, /^OPERATOR_TOKENS: entry 1 is not name:token/],
  ['named operator with an empty name', { OPERATOR_TOKENS: ':alice-token-0123456789' }, /^OPERATOR_TOKENS: entry 1 is not name:token/],
  ['an empty entry', { OPERATOR_TOKENS: 'alice:alice-token-0123456789,,bob:bob-token-0123456789' }, /^OPERATOR_TOKENS: entry 2 is empty/],
  ['a short named token', { OPERATOR_TOKENS: 'alice:alice-token-0123456789,bob:short' }, /^OPERATOR_TOKENS: entry 2 \(bob\): the token must be at least 16 characters/],
  ['a name with spaces', { OPERATOR_TOKENS: 'alice smith:alice-token-0123456789' }, /^OPERATOR_TOKENS: entry 1: the name must be/],
  ['a name given twice', { OPERATOR_TOKENS: 'alice:alice-token-0123456789,alice:other-token-0123456789' }, /^OPERATOR_TOKENS: the name alice is given twice$/],
  ['a token shared', { OPERATOR_TOKENS: 'alice:shared-token-0123456789,bob:shared-token-0123456789' }, /^OPERATOR_TOKENS: bob has the same token as alice/],
  ['operator named twice', { OPERATOR_TOKEN: 'operator-token-0123456789', OPERATOR_TOKENS: 'operator:other-token-0123456789' }, /^OPERATOR_TOKENS: the name operator is given twice \(OPERATOR_TOKEN is the operator named operator\)$/],
  ['integration URL without a secret', { PROVISIONING_WEBHOOK_URL: 'https://isv.example/x' }, /^PROVISIONING_WEBHOOK_SECRET: is required when PROVISIONING_WEBHOOK_URL is set/],
  ['integration URL not http(s)', { PROVISIONING_WEBHOOK_URL: 'ftp://isv.example/x', PROVISIONING_WEBHOOK_SECRET: 's'.repeat(32) }, /^PROVISIONING_WEBHOOK_URL: must be an https URL/],
  ['integration timeout not a number', { PROVISIONING_TIMEOUT_MS: 'soon' }, /^PROVISIONING_TIMEOUT_MS: .* \(got "soon"\)$/],
  ['purchase lead beyond the 30 days', { DEADLINES_PURCHASE_LEAD_DAYS: '31' }, /^DEADLINES_PURCHASE_LEAD_DAYS: must be a whole number of days from 0 to 30 \(got "?31"?\)$/],
  ['check interval not a number', { DEADLINES_CHECK_INTERVAL_MS: 'often' }, /^DEADLINES_CHECK_INTERVAL_MS: must be a whole number of milliseconds/],
];
for (const [name, env, message] of bad) {
  t.test(`bad configuration stops with one line naming the variable: ${name}`, async (t) => {
    const err = (() => {
      try {
        loadConfig({ DATA_DIR: tempDir(t), ...env });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    t.type(err, ConfigError);
    t.match((err as Error).message, message);
    t.notMatch((err as Error).message, /\n/, 'one line');
  });
}

t.test('an unusable DATA_DIR names DATA_DIR', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'a-file');
  writeFileSync(file, 'x');
  t.throws(() => loadConfig({ DATA_DIR: file }), { name: 'ConfigError', message: /^DATA_DIR: .* is not a directory|^DATA_DIR: cannot create/ });
  t.throws(() => loadConfig({ DATA_DIR: join(file, 'below') }), { name: 'ConfigError', message: /^DATA_DIR: cannot create .*ENOTDIR/ });
});

t.test('connection strings with credentials are redacted in errors', async (t) => {
  t.throws(() => loadConfig({ EVENTSTORE_CONNECTION_STRING: 'http://admin:changeit@host:2113' }), { message: /\/\/\*\*\*@host/ });
});

t.test('landing sign-in settings (issue 13)', async (t) => {
  const dir = tempDir(t);
  const entra = loadConfig({ DATA_DIR: dir, LANDING_ENTRA_CLIENT_ID: 'app', LANDING_ENTRA_CLIENT_SECRET: 's', LANDING_ENTRA_AUTHORITY: 'organizations', LANDING_ALLOW_OTHER_USERS: 'true', LANDING_REDIRECT_URI: 'https://ledger.example/landing/sign-in/callback' });
  t.same(entra.landing.signIn, {
    kind: 'entra',
    clientId: 'app',
    clientSecret: 's',
    authority: 'https://login.microsoftonline.com/organizations',
    redirectUri: 'https://ledger.example/landing/sign-in/callback',
    sessionMs: 1_800_000,
    signInMs: 900_000,
    allowOtherUsers: true,
  });
  t.equal(loadConfig({ DATA_DIR: dir, MARKETPLACE_STATIC_TOKEN: 'x' }).landing.signIn, undefined, 'outside the sandbox without Entra settings: none (a warning at start)');
  t.equal(loadConfig({ DATA_DIR: dir, LANDING_SIGN_IN: 'off' }).landing.signIn, undefined);
  t.throws(() => loadConfig({ DATA_DIR: dir, LANDING_SIGN_IN: 'entra' }), /LANDING_ENTRA_CLIENT_ID: is required/);
  t.throws(() => loadConfig({ DATA_DIR: dir, LANDING_ENTRA_CLIENT_ID: 'app' }), /LANDING_ENTRA_CLIENT_SECRET: or LANDING_ENTRA_CLIENT_CERTIFICATE_PATH/);
  t.throws(() => loadConfig({ DATA_DIR: dir, LANDING_REDIRECT_URI: 'http://ledger.example/cb' }), /LANDING_REDIRECT_URI: must be https/);
  t.throws(() => loadConfig({ DATA_DIR: dir, LANDING_ALLOW_OTHER_USERS: 'yes' }), /LANDING_ALLOW_OTHER_USERS: must be 'true' or 'false'/);
});

t.test('READMODELS_URL selects PostgreSQL; PLAN_PRICES are checked and parsed', async (t) => {
  const dir = tempDir(t, 'cfg');
  const c = loadConfig({ DATA_DIR: dir, READMODELS_URL: 'postgres://ledger@db.internal:5432/ledger', PLAN_PRICES: 'o1/gold=30, o1/silver=9.5', PLAN_PRICE_CURRENCY: 'EUR' });
  t.same(c.projections, {
    path: join(dir, 'readmodels.db'),
    url: 'postgres://ledger@db.internal:5432/ledger',
    planPrices: [
      { offerId: 'o1', planId: 'gold', monthlyPrice: 30, currency: 'EUR' },
      { offerId: 'o1', planId: 'silver', monthlyPrice: 9.5, currency: 'EUR' },
    ],
  });
  t.throws(() => loadConfig({ DATA_DIR: dir, READMODELS_URL: 'mysql://db/ledger' }), /READMODELS_URL/);
  t.throws(() => loadConfig({ DATA_DIR: dir, READMODELS_URL: 'postgre://ledger:s3cret@db/ledger' }), { message: /ledger:\*\*\*@db(?!.*s3cret)/ }, 'the password is not repeated');
  t.throws(() => loadConfig({ DATA_DIR: dir, PLAN_PRICES: 'gold=30' }), /PLAN_PRICES/);
  t.throws(() => loadConfig({ DATA_DIR: dir, PLAN_PRICES: 'o/p=1,o/p=2' }), /priced twice/);
});
