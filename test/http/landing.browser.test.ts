/**
 * The landing page in a real browser: Debian's chromium driven by playwright-core, the whole
 * service from the composition root (startRuntime: HTTP server on 127.0.0.1, a SQLite file in a
 * temp dir, the activation process, the built-in marketplace emulator on 127.0.0.1).
 *
 * Walks purchase → landing → form → Active (with scripts, progress by polling; without scripts,
 * by meta refresh) and "Manage account"; and Microsoft not answering the landing page (the page
 * that says so refreshes itself into the normal one). Saves screenshots under test-output/landing/.
 *
 * Chromium comes from scripts/install-browser.sh. Without it the test fails under CI and is
 * skipped (with the reason) elsewhere.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { loadConfig } from '../../src/config.js';
import type { KnownSubscription } from '../../src/domain/subscription/index.js';
import { createLogger } from '../../src/logger.js';
import type { Provisioner } from '../../src/application/provisioner.js';
import { startRuntime } from '../../src/runtime.js';
import type { Runtime } from '../../src/runtime.js';
import { tempDir } from '../support/temp.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const IN_CI = !!process.env.CI && !['0', 'false'].includes(process.env.CI.toLowerCase());
const OUT = fileURLToPath(new URL('../../test-output/landing', import.meta.url));

const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Provisioning that waits for the test where asked, so the page can be seen while activation is under way. */
function gatedProvisioner(): Provisioner & { hold(id: string): void; release(id: string): void; provisioned: string[] } {
  const gates = new Map<string, { promise: Promise<void>; open: () => void }>();
  const provisioned: string[] = [];
  return {
    provisioned,
    hold(id) {
      let open = () => {};
      const promise = new Promise<void>((resolve) => (open = resolve));
      gates.set(id, { promise, open });
    },
    release(id) {
      gates.get(id)?.open();
    },
    async provision(s: KnownSubscription) {
      await gates.get(s.subscriptionId)?.promise;
      provisioned.push(s.subscriptionId);
    },
  };
}

type Purchase = { subscriptionId: string; landingPageUrl: string; token: string };

async function purchase(runtime: Runtime, body: Record<string, unknown>): Promise<Purchase> {
  const emulatorUrl = runtime.emulator?.url;
  if (!emulatorUrl) throw new Error('the runtime did not start the emulator (are MARKETPLACE_* variables set in this environment?)');
  const res = await fetch(`${emulatorUrl}/emulator/purchases`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status !== 201) throw new Error(`purchase failed: ${res.status} ${await res.text()}`);
  return (await res.json()) as Purchase;
}

async function waitForBadge(page: Page, label: string, timeout = 20_000): Promise<void> {
  await page.waitForSelector(`#status-badge:text-is("${label}")`, { timeout });
}

async function events(runtime: Runtime, id: string): Promise<string[]> {
  return (await runtime.ledger.load(id)).events.map((e) => e.type);
}

const missing = existsSync(CHROMIUM) ? undefined : `chromium not found at ${CHROMIUM}; run scripts/install-browser.sh (or set CHROMIUM_PATH)`;
if (missing && IN_CI) t.fail(`${missing}. The page tests need a real browser in CI.`);

t.test('landing page in chromium: purchase → landing → form → Active', { skip: missing ?? false }, async (t) => {
  mkdirSync(OUT, { recursive: true });

  const dataDir = tempDir(t, 'landing-browser');
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
    EMULATOR_PORT: '0',
    LANDING_SECRET: 'browser-test-landing-secret-0123456789abcdef',
    PRODUCT_NAME: 'Contoso Notes',
    LANDING_MICROSOFT_TIMEOUT_MS: '2000',
    // The page itself; the sign-in in front of it is landing.sign-in.browser.test.ts.
    LANDING_SIGN_IN: 'off',
  });
  t.equal(config.store.kind, 'sqlite');
  const provisioner = gatedProvisioner();
  const runtime = await startRuntime(config, createLogger('silent'), {
    provisioner,
    activation: { backoffMs: 100, confirmTimeoutMs: 15_000 },
  });
  t.teardown(() => runtime.close());
  t.match(runtime.url, /^http:\/\/127\.0\.0\.1:\d+$/, 'a real HTTP server on 127.0.0.1');
  t.match(runtime.emulator?.url, /^http:\/\/127\.0\.0\.1:\d+$/, 'the emulator on 127.0.0.1');
  t.ok(existsSync(`${dataDir}/events.db`), 'a real SQLite file');

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.teardown(() => browser.close());

  await t.test('with scripts: progress updates in place until Active', async (t) => {
    const bought = await purchase(runtime, {
      planId: 'standard',
      quantity: 5,
      subscriptionName: 'Fabrikam writers',
      beneficiary: { emailId: 'ada@fabrikam.example' },
      purchaser: { emailId: 'it-buyer@fabrikam.example' },
    });
    t.ok(bought.landingPageUrl.startsWith(`${runtime.url}/landing?token=`), 'Microsoft (the emulator) sends the buyer to our landing page');
    t.match(bought.token, /[+/]/, 'with a token that has + or /');
    provisioner.hold(bought.subscriptionId);

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    t.teardown(() => context.close());
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text());
    });
    page.on('response', (res) => {
      if (res.status() >= 400) pageErrors.push(`${res.status()} ${res.url()}`);
    });
    const navigations: string[] = [];
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations.push(frame.url());
    });

    const landing = await page.goto(bought.landingPageUrl);
    t.equal(landing?.status(), 200);
    t.equal(await page.locator('h1').textContent(), 'Set up your subscription');
    const details = (await page.locator('dl.details').textContent()) ?? '';
    for (const shown of ['Fabrikam writers', 'ledger-saas', 'standard', '5', 'Monthly (1 month)', 'it-buyer@fabrikam.example', 'ada@fabrikam.example', bought.subscriptionId]) {
      t.ok(details.includes(shown), `the page shows ${shown}`);
    }
    const email = page.getByLabel('Email address');
    t.equal(await email.inputValue(), 'ada@fabrikam.example', 'pre-filled from Microsoft');
    t.equal(await email.getAttribute('required'), '', 'required');
    t.same(await events(runtime, bought.subscriptionId), ['Purchased']);
    await page.screenshot({ path: `${OUT}1-form.png`, fullPage: true });

    await email.fill('ada.lovelace@fabrikam.example');
    await page.getByLabel('Your name').fill('Ada Lovelace');
    await page.getByLabel('Company').fill('Fabrikam <Writers> & Co');
    await Promise.all([page.waitForURL(/\/landing\/subscriptions\/[^/?]+\?sig=/), page.getByRole('button', { name: 'Activate subscription' }).click()]);
    const statusUrl = page.url();
    t.equal(new URL(statusUrl).searchParams.get('token'), null, 'the token is not in the status page URL');

    await waitForBadge(page, 'Setting up');
    const region = page.getByRole('status');
    t.equal(await region.getAttribute('aria-live'), 'polite');
    t.match((await region.textContent()) ?? '', /setting up your account/i);
    await page.screenshot({ path: `${OUT}2-activating.png`, fullPage: true });
    const navigationsBefore = navigations.length;

    provisioner.release(bought.subscriptionId);
    await waitForBadge(page, 'Active');
    t.equal(navigations.length, navigationsBefore, 'no reload: the page updated itself by polling');
    t.equal(page.url(), statusUrl);
    t.equal(await page.locator('h1').textContent(), 'Your subscription is active');
    t.match((await region.textContent()) ?? '', /active and your account is ready/);
    t.ok(await page.locator('[data-phase-panel="active"]').isVisible(), 'the active panel is shown');
    t.match((await page.locator('[data-phase-panel="active"]').textContent()) ?? '', /ada\.lovelace@fabrikam\.example/);
    await page.screenshot({ path: `${OUT}3-active.png`, fullPage: true });

    const recorded = await runtime.ledger.load(bought.subscriptionId);
    t.same(recorded.events.map((e) => e.type), ['Purchased', 'ActivationRequested', 'Activated']);
    t.same((recorded.events[1]?.data as { contact: unknown }).contact, {
      email: 'ada.lovelace@fabrikam.example',
      name: 'Ada Lovelace',
      company: 'Fabrikam <Writers> & Co',
    });
    const atMicrosoft = await runtime.marketplace.getSubscription(bought.subscriptionId);
    t.equal(atMicrosoft.saasSubscriptionStatus, 'Subscribed', 'activated at Microsoft');
    t.same(provisioner.provisioned, [bought.subscriptionId], 'provisioned once');

    // "Manage account": a fresh token from Microsoft goes straight to the account page.
    const fresh = await fetch(`${runtime.emulator?.url}/emulator/subscriptions/${bought.subscriptionId}/landing-token`, { method: 'POST' });
    const { landingPageUrl } = (await fresh.json()) as { landingPageUrl: string };
    await page.goto(landingPageUrl);
    t.match(page.url(), /\/landing\/subscriptions\//);
    await waitForBadge(page, 'Active', 5_000);
    t.equal(await page.locator('form').count(), 0, 'no form on a second visit');
    t.same(await events(runtime, bought.subscriptionId), ['Purchased', 'ActivationRequested', 'Activated'], 'nothing new recorded');

    // On a phone-sized screen the account page fits without sideways scrolling.
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    t.teardown(() => phone.close());
    const small = await phone.newPage();
    await small.goto(statusUrl);
    await waitForBadge(small, 'Active', 5_000);
    const overflow = Number(await small.evaluate('document.documentElement.scrollWidth - window.innerWidth'));
    t.ok(overflow <= 0, `no horizontal scrolling on a phone (overflow ${overflow}px)`);
    await small.screenshot({ path: `${OUT}4-active-phone.png`, fullPage: true });

    t.same(pageErrors, [], 'no script errors and no CSP violations in the console');
  });

  await t.test('without scripts: the form posts and the status page refreshes itself until Active', async (t) => {
    const emulator = runtime.emulator;
    if (!emulator) throw new Error('no emulator');
    // Microsoft gave no email (docs/marketplace.md §14.17): the customer must type one.
    const bought = emulator.marketplace.purchase({ planId: 'premium', quantity: 5, subscriptionName: 'Contoso legal', beneficiary: { emailId: '' } });
    const id = bought.subscription.id;
    provisioner.hold(id);

    const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 390, height: 844 }, isMobile: true });
    t.teardown(() => context.close());
    const page = await context.newPage();
    await page.goto(bought.landingPageUrl);
    const email = page.getByLabel(/Email address/);
    t.equal(await email.inputValue(), '', 'nothing to pre-fill');
    t.match((await page.locator('#email-hint').textContent()) ?? '', /didn't give us an email address/);
    await page.screenshot({ path: `${OUT}5-form-phone-no-email.png`, fullPage: true });

    await email.fill('grace@contoso.example');
    await Promise.all([page.waitForURL(/\/landing\/subscriptions\//), page.getByRole('button', { name: 'Activate subscription' }).click()]);
    await waitForBadge(page, 'Setting up');
    t.equal(await page.locator('noscript').count() > 0, true);
    provisioner.release(id);
    await waitForBadge(page, 'Active', 30_000);
    t.match((await page.getByRole('status').textContent()) ?? '', /active/);
    await page.screenshot({ path: `${OUT}6-active-no-script.png`, fullPage: true });
    t.same(await events(runtime, id), ['Purchased', 'ActivationRequested', 'Activated']);
  });
  await t.test('Microsoft not answering: the page says so, then refreshes itself into the normal page', async (t) => {
    const emulator = runtime.emulator;
    if (!emulator) throw new Error('no emulator');
    const bought = emulator.marketplace.purchase({ planId: 'standard', quantity: 2, subscriptionName: 'Northwind ops' });
    // Microsoft does not answer the first Resolve (for a minute), then answers again.
    emulator.faults.set({ api: { delay: { ms: 60_000, times: 1, operations: ['resolve'] } } });

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    t.teardown(() => context.close());
    const page = await context.newPage();
    const consoleErrors: string[] = [];
    page.on('pageerror', (err) => consoleErrors.push(err.message));
    page.on('console', (msg) => {
      // The 503 itself is logged by Chromium as a failed resource; anything else (a CSP violation, a script error) is not expected.
      if (msg.type() === 'error' && !/status of 503/.test(msg.text())) consoleErrors.push(msg.text());
    });
    const started = Date.now();
    const first = await page.goto(bought.landingPageUrl);
    t.equal(first?.status(), 503);
    t.ok(Date.now() - started < 30_000, 'answered within the time box, not after Microsoft\'s minute');
    t.equal(await page.locator('h1').textContent(), 'Microsoft is not answering right now');
    t.match((await page.getByRole('status').textContent()) ?? '', /This page will retry by itself/);
    await page.screenshot({ path: `${OUT}7-microsoft-not-answering.png`, fullPage: true });

    await page.waitForSelector('h1:text-is("Set up your subscription")', { timeout: 45_000 });
    t.equal(page.url(), bought.landingPageUrl, 'the same URL: the same token, as Microsoft sent it');
    t.equal(await page.getByLabel('Email address').count(), 1, 'the normal page, with its form');
    t.same(await events(runtime, bought.subscription.id), ['Purchased']);
    t.same(consoleErrors, [], 'no script errors and no CSP violations');
  });
});
