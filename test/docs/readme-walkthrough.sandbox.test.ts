/**
 * The README's sandbox walkthrough, run as written: the `curl` lines between `<!-- walkthrough -->` and
 * `<!-- /walkthrough -->` are parsed (method, URL, headers, body) and sent to a started sandbox (the runtime
 * with its built-in emulator, no OPERATOR_TOKEN: the token is read from <DATA_DIR>/operator-token as the
 * README does), in order; each must answer the status its comment shows (`→ 201`, `→ 200`, `→ 202`). The
 * one step a browser does (Activate on the landing page) is done over HTTP with the page's own form.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startRuntime } from '../../src/runtime.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

type Step = { words: string[]; expected: number; line: string };

/** The walkthrough's curl lines, each with the status of the nearest comment above it. */
function walkthrough(readme: string): Step[] {
  const block = /<!-- walkthrough -->\s*```sh\n([\s\S]*?)```\s*<!-- \/walkthrough -->/.exec(readme)?.[1];
  if (!block) throw new Error('README.md has no walkthrough block');
  const steps: Step[] = [];
  let expected = 0;
  for (const line of block.split('\n')) {
    const status = /→ (\d{3})/.exec(line);
    if (line.startsWith('#') && status) expected = Number(status[1]);
    if (line.startsWith('curl ')) steps.push({ words: shellWords(line), expected, line });
  }
  return steps;
}

/** Splits a command line into words: single quotes literal, double quotes and bare words as they are. */
function shellWords(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
}

function request(words: string[], vars: Record<string, string>): { url: string; init: RequestInit } {
  const sub = (w: string) => w.replace(/\$(\w+)/g, (_, name: string) => vars[name] ?? `$${name}`);
  const headers: Record<string, string> = {};
  let method = 'GET';
  let url = '';
  let body: string | undefined;
  for (let i = 1; i < words.length; i++) {
    const w = words[i] as string;
    if (w === '-s') continue;
    if (w.startsWith('-X')) method = w.slice(2);
    else if (w === '-H') {
      const [name = '', ...value] = sub(words[++i] ?? '').split(':');
      headers[name.trim().toLowerCase()] = value.join(':').trim();
    } else if (w === '-d') body = sub(words[++i] ?? '');
    else url = sub(w).replace(/^localhost:3978/, vars.EMULATOR ?? '').replace(/^localhost:3000/, vars.SERVICE ?? '');
  }
  return { url, init: { method, headers, ...(body !== undefined ? { body } : {}) } };
}

t.test("the README's sandbox walkthrough answers as shown", async (t) => {
  const steps = walkthrough(readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8'));
  t.ok(steps.length >= 15, `${steps.length} commands`);
  const dataDir = tempDir(t, 'readme');
  // The landing page's Activate is pressed by a plain POST here, so the sandbox's sign-in is off in this test; the
  // sign-in step of the walkthrough runs in a real browser in test/http/landing.sign-in.browser.test.ts.
  const config = loadConfig({ DATA_DIR: dataDir, PORT: '0', EMULATOR_PORT: '0', SQLITE_POLL_INTERVAL_MS: '50', RECONCILE_INTERVAL_MINUTES: '0', LANDING_SIGN_IN: 'off' });
  const runtime = await startRuntime(config, createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'), {
    emulator: { operationDelayMs: 50, redelivery: { initialDelayMs: 50, factor: 2, maxDelayMs: 500, maxAttempts: 20 } },
    runner: { retryBaseMs: 20, retryMaxMs: 200, retryLaterMaxMs: 500 },
  });
  t.teardown(() => runtime.close());
  const emulator = runtime.emulator;
  if (!emulator) throw new Error('the sandbox runs the built-in emulator');
  const vars: Record<string, string> = { EMULATOR: emulator.url, SERVICE: runtime.url, TOKEN: readFileSync(join(dataDir, 'operator-token'), 'utf8').trim() };
  t.equal(vars.TOKEN, runtime.operatorToken, 'data/operator-token holds the operator token');

  const ledgerStatus = async (id: string) => (await runtime.ledger.load(id)).state.status;
  /** Both sides agree and Microsoft has nothing pending: the next change may go. */
  const settled = (id: string) =>
    waitFor(`${id} to settle`, async () => !emulator.state.isLocked(id) && (await ledgerStatus(id)) === emulator.state.subscription(id).status, 20_000);
  const activateOnLanding = async (landingPageUrl: string, id: string) => {
    const page = await (await fetch(landingPageUrl)).text();
    const field = (name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(page)?.[1] ?? '';
    const form = new URLSearchParams({ subscriptionId: field('subscriptionId'), sig: field('sig'), email: 'it@customer.example', name: 'IT' });
    const res = await fetch(`${runtime.url}/landing/activate`, { method: 'POST', body: form, redirect: 'manual' });
    t.ok(res.status < 400, `Activate on the landing page: ${res.status}`);
    await waitFor('the activation', async () => (await ledgerStatus(id)) === 'Subscribed', 20_000);
  };

  for (const step of steps) {
    if (vars.ID) await settled(vars.ID);
    if (step.line.includes('$ID2') && !vars.ID2) {
      // "a second activated purchase"
      const second = (await (await fetch(`${emulator.url}/emulator/purchases`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"planId":"standard","quantity":2}' })).json()) as { subscriptionId: string; landingPageUrl: string };
      vars.ID2 = second.subscriptionId;
      await activateOnLanding(second.landingPageUrl, second.subscriptionId);
    }
    const { url, init } = request(step.words, vars);
    const res = await fetch(url, init);
    const text = await res.text();
    t.equal(res.status, step.expected, `${step.line}: ${res.status} ${res.status === step.expected ? '' : text.slice(0, 300)}`);
    if (url.endsWith('/emulator/purchases')) {
      const bought = JSON.parse(text) as { subscriptionId: string; landingPageUrl: string };
      vars.ID = bought.subscriptionId;
      await activateOnLanding(bought.landingPageUrl, bought.subscriptionId);
    }
    if (url.endsWith('/openapi.json')) t.same((JSON.parse(text) as { servers?: unknown }).servers, [{ url: runtime.url }], 'servers: the listen URL');
  }
  await waitFor('the cancellations', async () => (await ledgerStatus(vars.ID ?? '')) === 'Unsubscribed' && (await ledgerStatus(vars.ID2 ?? '')) === 'Unsubscribed', 20_000);
});
