/** The emulator as its own process (`npm run emulator` = tsx main.ts), and its environment variables. */
import { spawn } from 'node:child_process';
import { childNodeArgs } from '../support/child.js';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { EmulatorConfigError, emulatorOptionsFromEnv } from '../../src/emulator/config.js';
import { TENANT_ID, startWebhookReceiver } from './emulator.helpers.js';

const MAIN = fileURLToPath(new URL('../../src/emulator/main.ts', import.meta.url));

t.test('environment → options, with every problem listed at once', async (t) => {
  t.same(emulatorOptionsFromEnv({}), { port: 3978, host: '127.0.0.1' }, 'defaults');
  const dir = t.testdir({
    'catalogue.json': JSON.stringify({ offers: [{ offerId: 'o', plans: [{ planId: 'p', displayName: 'P' }] }] }),
    'broken.json': JSON.stringify({ offers: [{ offerId: 'o', plans: [{ planId: 'p' }] }] }),
  });
  const options = emulatorOptionsFromEnv({
    EMULATOR_PORT: '4000',
    EMULATOR_HOST: '0.0.0.0',
    EMULATOR_WEBHOOK_URL: 'http://localhost:3000/webhook',
    EMULATOR_LANDING_PAGE_URL: 'http://localhost:3000/landing',
    EMULATOR_PUBLISHER_TENANT_ID: TENANT_ID,
    EMULATOR_PUBLISHER_APP_ID: '9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b',
    EMULATOR_TOKEN_VERSION: 'v1',
    EMULATOR_CATALOGUE_FILE: `${dir}/catalogue.json`,
    EMULATOR_ACK_WINDOW_MS: '500',
    EMULATOR_OPERATION_DELAY_MS: '0',
    EMULATOR_PAGE_SIZE: '100',
  });
  t.match(options, {
    port: 4000,
    host: '0.0.0.0',
    webhookUrl: 'http://localhost:3000/webhook',
    tokenVersion: 'v1',
    ackWindowMs: 500,
    operationDelayMs: 0,
    pageSize: 100,
    catalogue: { offers: [{ offerId: 'o' }] },
  });
  try {
    emulatorOptionsFromEnv({
      EMULATOR_PORT: 'eighty',
      EMULATOR_WEBHOOK_URL: 'ftp://x',
      EMULATOR_LANDING_PAGE_URL: 'https://isv.example/#/signup',
      EMULATOR_PUBLISHER_TENANT_ID: 'contoso.onmicrosoft.com',
      EMULATOR_TOKEN_VERSION: '2',
      EMULATOR_CATALOGUE_FILE: `${dir}/broken.json`,
      EMULATOR_ACK_WINDOW_MS: '-1',
      EMULATOR_PAGE_SIZE: '0',
    });
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof EmulatorConfigError);
    const problems = (err as EmulatorConfigError).problems.join('\n');
    for (const name of ['EMULATOR_PORT', 'EMULATOR_WEBHOOK_URL', "must not contain '#'", 'EMULATOR_PUBLISHER_TENANT_ID', 'EMULATOR_TOKEN_VERSION', 'displayName', 'EMULATOR_ACK_WINDOW_MS', 'EMULATOR_PAGE_SIZE']) {
      t.match(problems, name, `reports ${name}`);
    }
  }
});

t.test('npm run emulator: a standalone process that logs where it listens and stops on SIGTERM', async (t) => {
  const receiver = await startWebhookReceiver(t);
  const child = spawn(process.execPath, childNodeArgs(MAIN), {
    env: { ...process.env, EMULATOR_PORT: '0', EMULATOR_WEBHOOK_URL: receiver.url, EMULATOR_PUBLISHER_TENANT_ID: TENANT_ID, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within 20 s; stderr: ${err}`)), 20_000);
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n').find((l) => l.includes('marketplace emulator listening'));
      if (line) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { url: string }).url);
      }
    });
  });
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const bought = await fetch(`${url}/emulator/purchases`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ planId: 'instant' }),
  });
  t.equal(bought.status, 201);
  await receiver.waitFor((ds) => ds.some((d) => d.body.action === 'Subscribe'), 5000);
  t.pass('the Subscribe webhook reached the configured URL');
  const info = (await (await fetch(`${url}/emulator`)).json()) as { publisherTenantId: string };
  t.equal(info.publisherTenantId, TENANT_ID);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'clean exit on SIGTERM');
  t.match(out, /shutting down/);
});

t.test('a bad configuration stops the process with the list of problems', async (t) => {
  const child = spawn(process.execPath, childNodeArgs(MAIN), {
    env: { ...process.env, EMULATOR_PORT: 'abc', EMULATOR_TOKEN_VERSION: 'v9' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.equal(code, 1);
  t.match(out, /EMULATOR_PORT must be an integer/);
  t.match(out, /EMULATOR_TOKEN_VERSION must be v1 or v2/);
});
