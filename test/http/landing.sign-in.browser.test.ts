/**
 * The landing page's sign-in in a real browser: Debian's chromium through playwright-core, the whole service
 * from the composition root (startRuntime on 127.0.0.1, a SQLite file, the built-in marketplace emulator) with
 * no Entra configuration, so the customer signs in at the local OpenID provider (oidc-provider on 127.0.0.1)
 * through the same msal-node code path as with Microsoft.
 *
 * Walks: Microsoft's redirect (a token with +, / and =) → the provider's sign-in page → back, signed in, on the
 * purchase page with the token intact → activate → the account page; and "Cancel" at the provider → the
 * cancelled page (nothing recorded) → "Sign in again" as someone who is neither purchaser nor beneficiary → the
 * wrong-account page (nothing recorded). Screenshots under test-output/landing-sign-in/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startRuntime } from '../../src/runtime.js';
import { tempDir } from '../support/temp.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const IN_CI = !!process.env.CI && !['0', 'false'].includes(process.env.CI.toLowerCase());
const OUT = fileURLToPath(new URL('../../test-output/landing-sign-in/', import.meta.url));
const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const missing = existsSync(CHROMIUM) ? undefined : `chromium not found at ${CHROMIUM}; run scripts/install-browser.sh (or set CHROMIUM_PATH)`;
if (missing && IN_CI) t.fail(`${missing}. The page tests need a real browser in CI.`);

async function signInAt(page: Page, email: string, name: string): Promise<void> {
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Name').fill(name);
  await Promise.all([page.waitForURL(/\/landing\//), page.getByRole('button', { name: 'Sign in' }).click()]);
}

t.test('sign-in through the local OpenID provider in chromium', { skip: missing ?? false }, async (t) => {
  mkdirSync(OUT, { recursive: true });
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: tempDir(t, 'landing-sign-in-browser'),
    LOG_LEVEL: 'silent',
    EMULATOR_PORT: '0',
    LANDING_SECRET: 'browser-test-landing-secret-0123456789abcdef',
    PRODUCT_NAME: 'Contoso Notes',
  });
  t.equal(config.landing.signIn?.kind, 'local', 'no Entra configuration: the local provider');
  const runtime = await startRuntime(config, createLogger('silent'), { activation: { backoffMs: 100, confirmTimeoutMs: 15_000 } });
  t.teardown(() => runtime.close());
  const emulator = runtime.emulator;
  if (!emulator) throw new Error('no emulator');
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.teardown(() => browser.close());

  await t.test('Microsoft → sign in → purchase page with the token intact → activate → account page', async (t) => {
    const bought = emulator.marketplace.purchase({
      planId: 'standard',
      quantity: 5,
      subscriptionName: 'Fabrikam writers',
      beneficiary: { emailId: 'ada@fabrikam.example' },
      purchaser: { emailId: 'it-buyer@fabrikam.example' },
    });
    const id = bought.subscription.id;
    t.match(bought.token, /\+/, 'the token has +');
    t.match(bought.token, /\//, 'the token has /');
    t.match(bought.token, /=/, 'the token has =');
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    t.teardown(() => context.close());
    const page = await context.newPage();
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));

    await page.goto(bought.landingPageUrl);
    const op = new URL(page.url());
    t.not(op.origin, runtime.url, 'sent to the OpenID provider');
    t.match(op.hostname, '127.0.0.1', 'on 127.0.0.1');
    t.equal(await page.locator('h1').textContent(), 'Sign in');
    t.same(await runtime.ledger.load(id).then((a) => a.events.length), 0, 'nothing recorded before the sign-in');
    await page.screenshot({ path: `${OUT}1-sign-in.png`, fullPage: true });

    await signInAt(page, 'ada@fabrikam.example', 'Ada Lovelace');
    t.match(page.url(), `${runtime.url}/landing/continue`, 'back on the landing page');
    t.equal(await page.locator('h1').textContent(), 'Set up your subscription');
    t.equal(await page.locator('#signed-in-name').textContent(), 'Ada Lovelace', 'the signed-in name is shown');
    t.equal(await page.locator('#signed-in-email').textContent(), 'ada@fabrikam.example');
    t.equal(await page.locator('#other-user').count(), 0, 'the beneficiary: no other-user notice');
    const purchased = await runtime.ledger.load(id);
    t.same(purchased.events.map((e) => e.type), ['Purchased'], 'the token resolved after the round trip: intact');
    t.match(purchased.events[0]?.metadata, { actor: 'customer:ada@fabrikam.example', signedInUser: { email: 'ada@fabrikam.example', name: 'Ada Lovelace' } });
    const encoded = encodeURIComponent(bought.token);
    t.same(requested.filter((u) => u.includes(encoded) || u.includes(bought.token)), [bought.landingPageUrl], 'the token was in no URL but Microsoft\'s redirect');
    const cookies = await context.cookies(`${runtime.url}/landing/`);
    const session = cookies.find((c) => c.name === 'landing_session');
    t.match(session, { httpOnly: true, sameSite: 'Lax', path: '/landing', secure: false }, 'the session cookie: HttpOnly, SameSite=Lax, /landing (plain http here: no Secure)');
    t.ok((session?.expires ?? 0) > 0, 'with a bounded lifetime');
    await page.screenshot({ path: `${OUT}2-purchase-signed-in.png`, fullPage: true });

    await Promise.all([page.waitForURL(/\/landing\/subscriptions\/[^/?]+\?sig=/), page.getByRole('button', { name: 'Activate subscription' }).click()]);
    await page.waitForSelector('#status-badge:text-is("Active")', { timeout: 30_000 });
    t.equal(await page.locator('h1').textContent(), 'Your subscription is active');
    t.equal(await page.locator('#signed-in-name').textContent(), 'Ada Lovelace', 'the account page says who is signed in');
    await page.screenshot({ path: `${OUT}3-account-active.png`, fullPage: true });
    const recorded = await runtime.ledger.load(id);
    t.same(recorded.events.map((e) => e.type), ['Purchased', 'ActivationRequested', 'Activated']);
    const requestedBy = recorded.events[1]?.metadata;
    t.match(requestedBy, { actor: 'customer:ada@fabrikam.example', signedInUser: { name: 'Ada Lovelace', email: 'ada@fabrikam.example', oid: /^[0-9a-f-]{36}$/, tid: /^[0-9a-f-]{36}$/ } }, 'the signed-in user is the actor of ActivationRequested');

    await Promise.all([page.waitForURL(/sign-out/), page.getByRole('button', { name: 'Sign out' }).click()]);
    t.equal(await page.locator('h1').textContent(), 'You have signed out');
    t.notOk((await context.cookies(`${runtime.url}/landing/`)).some((c) => c.name === 'landing_session'), 'the session cookie is gone');
    t.same(pageErrors, [], 'no script errors');
  });

  await t.test('cancel at the provider, then sign in as someone else: clear pages, nothing recorded', async (t) => {
    const bought = emulator.marketplace.purchase({ planId: 'standard', quantity: 2, beneficiary: { emailId: 'grace@contoso.example' } });
    const id = bought.subscription.id;
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
    t.teardown(() => context.close());
    const page = await context.newPage();
    await page.goto(bought.landingPageUrl);
    const [cancelled] = await Promise.all([page.waitForResponse((r) => r.url().includes('/landing/sign-in/callback')), page.getByRole('button', { name: 'Cancel' }).click()]);
    t.equal(cancelled.status(), 401);
    await page.waitForSelector('h1:text-is("You cancelled the sign-in")');
    await page.screenshot({ path: `${OUT}4-cancelled.png`, fullPage: true });
    t.equal((await runtime.ledger.load(id)).events.length, 0, 'nothing recorded');

    await page.getByRole('link', { name: 'Sign in again' }).click();
    await page.waitForSelector('h1:text-is("Sign in")');
    const [wrong] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/landing/continue')), signInAt(page, 'mallory@northwind.example', 'Mallory')]);
    t.equal(wrong.status(), 403);
    t.equal(await page.locator('h1').textContent(), 'This subscription was bought for someone else');
    t.match((await page.locator('main').textContent()) ?? '', /grace@contoso\.example/);
    await page.screenshot({ path: `${OUT}5-wrong-account.png`, fullPage: true });
    t.equal((await runtime.ledger.load(id)).events.length, 0, 'nothing recorded for the wrong account');

    // "Use another account": the same purchase token, a new sign-in, as the beneficiary.
    await page.getByRole('button', { name: 'Use another account' }).click();
    await page.waitForSelector('h1:text-is("Sign in")');
    await signInAt(page, 'grace@contoso.example', 'Grace Hopper');
    t.equal(await page.locator('h1').textContent(), 'Set up your subscription');
    t.same((await runtime.ledger.load(id)).events.map((e) => e.type), ['Purchased'], 'the same token still resolves');
  });
});
