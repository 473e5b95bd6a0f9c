/**
 * The landing page's HTML, rendered on the server: no front-end build, no external assets, no
 * innerHTML. Everything that comes from Microsoft or the customer goes through `html```, which
 * escapes every interpolated value unless it is already `SafeHtml` built by this module.
 *
 * Pages: the purchase (details + contact form), the status/account page (progress that updates
 * itself by polling a small JSON endpoint, with a meta refresh when scripts are off), and error
 * pages in Microsoft's suggested wording.
 */
import type { Contact, Party, Term } from '../domain/subscription/index.js';
import type { KnownSubscription } from '../domain/subscription/index.js';

// ------------------------------------------------------------------------------------------------
// Escaping template

/** HTML that this module built: interpolated as is. Anything else is escaped. */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

export type Interpolation = SafeHtml | string | number | boolean | null | undefined | readonly Interpolation[];

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"'`]/g, (c) => ESCAPES[c] ?? c);
}

function interpolate(value: Interpolation): string {
  if (value instanceof SafeHtml) return value.value;
  if (value === null || value === undefined || value === false) return '';
  if (Array.isArray(value)) return value.map((v: Interpolation) => interpolate(v)).join('');
  return escapeHtml(String(value));
}

/** Tagged template: `html\`<p>${untrusted}</p>\`` escapes `untrusted`; nested `html` stays as built. */
export function html(strings: TemplateStringsArray, ...values: Interpolation[]): SafeHtml {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += interpolate(values[i]) + (strings[i + 1] ?? '');
  return new SafeHtml(out);
}

// ------------------------------------------------------------------------------------------------
// Wording

/** Microsoft's suggested wording for a token that expired or does not resolve (docs/marketplace.md §3.1, §9). */
export const EXPIRED_LINK_MESSAGE =
  'This link has expired or is not valid. Open your subscription again from the Azure portal or the Microsoft 365 admin center and select Configure account / Manage account.';

export const REOPEN_HINT =
  'Open your subscription again from the Azure portal or the Microsoft 365 admin center and select Configure account / Manage account.';

// ------------------------------------------------------------------------------------------------
// Where a subscription stands, as the customer sees it (shared by the pages and the JSON endpoint)

export type LandingPhase = 'awaiting-confirmation' | 'activating' | 'retrying' | 'failed' | 'active' | 'suspended' | 'cancelled';

export type LandingProgress = {
  phase: LandingPhase;
  /** Short status, e.g. "Active". */
  label: string;
  /** The page heading. */
  title: string;
  message: string;
  /** Nothing will change without someone doing something: stop polling. */
  final: boolean;
};

export function progressOf(s: KnownSubscription): LandingProgress {
  switch (s.status) {
    case 'Subscribed':
      return {
        phase: 'active',
        label: 'Active',
        title: 'Your subscription is active',
        message: 'Your subscription is active and your account is ready to use.',
        final: true,
      };
    case 'Suspended':
      return {
        phase: 'suspended',
        label: 'Suspended',
        title: 'Your subscription is suspended',
        message:
          'Microsoft has suspended this subscription, usually because a payment could not be collected. Your data is kept. ' +
          'Update the payment method in the Azure portal or the Microsoft 365 admin center to reinstate it.',
        final: true,
      };
    case 'Unsubscribed':
      return {
        phase: 'cancelled',
        label: 'Cancelled',
        title: 'This subscription has been cancelled',
        message: 'This subscription has been cancelled and can no longer be used. You can buy a new one from the Microsoft commercial marketplace.',
        final: true,
      };
    case 'PendingFulfillmentStart': {
      const a = s.activation;
      if (!a.requestedAt) {
        return {
          phase: 'awaiting-confirmation',
          label: 'Waiting for your confirmation',
          title: 'Set up your subscription',
          message: 'Check the details and confirm to activate your subscription.',
          final: false,
        };
      }
      if (a.gaveUp) {
        return {
          phase: 'failed',
          label: 'Activation failed',
          title: 'We could not activate your subscription',
          message:
            `We could not finish setting up your account, and you have not been charged. Our team has been told and will contact you` +
            `${s.contact?.email ? ` at ${s.contact.email}` : ''}. You can also try again: ${REOPEN_HINT}`,
          final: true,
        };
      }
      if (a.attempts > 0) {
        return {
          phase: 'retrying',
          label: 'Setting up (retrying)',
          title: 'Setting up your account',
          message: `Setting up your account is taking longer than usual; we keep trying (attempt ${a.attempts + 1} is next). You don't need to do anything, and you can close this page.`,
          final: false,
        };
      }
      return {
        phase: 'activating',
        label: 'Setting up',
        title: 'Setting up your account',
        message: 'We are setting up your account and activating your subscription with Microsoft. This usually takes less than a minute; this page updates by itself.',
        final: false,
      };
    }
    default: {
      const _exhaustive: never = s;
      throw new Error(`unknown status ${(s as { status: string }).status}`);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Layout

export type PageContext = {
  productName: string;
  /** Per-response CSP nonce for the inline style and script. */
  nonce: string;
};

const CSS = `
:root{color-scheme:light dark;--fg:#1b1b1b;--muted:#555;--bg:#fff;--panel:#f4f6f8;--line:#d0d7de;--accent:#0b5cad;--accent-fg:#fff;--ok:#176f2c;--warn:#8a5300;--bad:#b42318;--focus:#ffbf47}
@media (prefers-color-scheme:dark){:root{--fg:#f2f2f2;--muted:#b8b8b8;--bg:#16181b;--panel:#22262b;--line:#3b424a;--accent:#5aa2ef;--accent-fg:#0b0d10;--ok:#5cc27a;--warn:#f0b45a;--bad:#ff8a80}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:1rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:var(--bg);padding:.5rem;z-index:1}
header.site,footer.site,main{max-width:44rem;margin:0 auto;padding:1rem}
header.site{border-bottom:1px solid var(--line)}
.brand{margin:0;font-weight:700;font-size:1.1rem}
footer.site{color:var(--muted);font-size:.875rem;border-top:1px solid var(--line);margin-top:2rem}
h1{font-size:1.6rem;line-height:1.25;margin:.5rem 0 1rem}
h2{font-size:1.2rem;margin:1.5rem 0 .5rem}
p{margin:.5rem 0 1rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em;overflow-wrap:anywhere}
dl.details{display:grid;grid-template-columns:minmax(8rem,max-content) 1fr;gap:.4rem 1rem;margin:0;padding:1rem;background:var(--panel);border-radius:.5rem}
dl.details dt{font-weight:600}
dl.details dd{margin:0;overflow-wrap:anywhere}
@media (max-width:30rem){dl.details{grid-template-columns:1fr}dl.details dd{margin-bottom:.5rem}}
.small{font-size:.875rem;color:var(--muted)}
form{margin-top:1rem}
.field{margin:0 0 1rem}
label{display:block;font-weight:600;margin-bottom:.25rem}
.hint{display:block;color:var(--muted);font-size:.9rem;margin-bottom:.35rem}
input[type=email],input[type=text],input[type=tel]{width:100%;max-width:30rem;font:inherit;padding:.55rem .6rem;border:2px solid var(--line);border-radius:.35rem;background:var(--bg);color:var(--fg)}
input[aria-invalid=true]{border-color:var(--bad)}
.field-error{display:block;color:var(--bad);font-weight:600;margin-bottom:.35rem}
button{font:inherit;font-weight:600;padding:.7rem 1.4rem;border:0;border-radius:.4rem;background:var(--accent);color:var(--accent-fg);cursor:pointer;min-height:2.75rem}
button:hover{filter:brightness(1.1)}
a{color:var(--accent)}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.error-summary{border:3px solid var(--bad);padding:.75rem 1rem;border-radius:.4rem;margin-bottom:1rem}
.error-summary h2{margin-top:0;color:var(--bad)}
.notice{border-left:4px solid var(--warn);padding:.5rem 1rem;background:var(--panel)}
.signed-in{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;justify-content:space-between;border:1px solid var(--line);border-radius:.4rem;padding:.6rem 1rem;margin:0 0 1.25rem}
.signed-in p{margin:0}.signed-in form{display:flex;gap:.5rem;margin:0}
button.secondary{background:transparent;color:var(--accent);border:1px solid var(--accent);padding:.4rem .9rem;min-height:2.25rem;font-weight:500}
a.button{display:inline-block;font-weight:600;padding:.7rem 1.4rem;border-radius:.4rem;background:var(--accent);color:var(--accent-fg);text-decoration:none}
.status{padding:1rem;border-radius:.5rem;background:var(--panel);margin-bottom:1rem}
.badge{display:inline-block;padding:.1rem .6rem;border-radius:1rem;font-weight:700;border:2px solid currentColor}
.badge[data-phase=active]{color:var(--ok)}
.badge[data-phase=suspended],.badge[data-phase=retrying],.badge[data-phase=activating],.badge[data-phase=awaiting-confirmation]{color:var(--warn)}
.badge[data-phase=failed],.badge[data-phase=cancelled]{color:var(--bad)}
.spinner{display:inline-block;width:1em;height:1em;border:.18em solid var(--line);border-top-color:var(--accent);border-radius:50%;animation:spin 1s linear infinite;vertical-align:-.15em;margin-right:.4rem}
.status[data-final=true] .spinner{display:none}
@keyframes spin{to{transform:rotate(360deg)}}
@media (prefers-reduced-motion:reduce){.spinner{animation:none}}
.visually-hidden{position:absolute!important;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
`;

function layout(ctx: PageContext, page: { title: string; body: SafeHtml; head?: SafeHtml; script?: string }): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex, nofollow">
<link rel="icon" href="data:,">
<title>${page.title} – ${ctx.productName}</title>
<style nonce="${ctx.nonce}">${new SafeHtml(CSS)}</style>
${page.head}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="site"><p class="brand">${ctx.productName}</p></header>
<main id="main">
${page.body}
</main>
<footer class="site"><p>${ctx.productName} is sold through the Microsoft commercial marketplace. Billing, payment methods and cancellation are managed in the Azure portal or the Microsoft 365 admin center.</p></footer>
${page.script === undefined ? undefined : html`<script nonce="${ctx.nonce}">${new SafeHtml(page.script)}</script>`}
</body>
</html>
`.value;
}

// ------------------------------------------------------------------------------------------------
// Pieces

const TERM_UNITS: Record<string, string> = {
  P1M: 'Monthly (1 month)',
  P1Y: 'Yearly (1 year)',
  P2Y: '2 years',
  P3Y: '3 years',
  P4Y: '4 years',
  P5Y: '5 years',
};

function termUnitLabel(unit: string | undefined): string {
  if (!unit) return 'Not stated';
  return TERM_UNITS[unit] ?? unit;
}

function day(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? value : new Date(t).toISOString().slice(0, 10);
}

function termText(term: Term, s: KnownSubscription): string {
  const parts = [termUnitLabel(term.termUnit)];
  if (s.isFreeTrial) parts.push('free trial');
  parts.push(s.autoRenew ? 'renews automatically' : 'does not renew');
  return parts.join(', ');
}

function party(p: Party): SafeHtml {
  const who = p.emailId ? html`${p.emailId}` : html`<span class="small">No email address given by Microsoft</span>`;
  return html`${who}${p.tenantId ? html`<br><span class="small">Tenant <code>${p.tenantId}</code></span>` : undefined}`;
}

export function detailsList(s: KnownSubscription, productName: string): SafeHtml {
  const start = day(s.term.startDate);
  const end = day(s.term.endDate);
  // CSP purchases are read-only for the customer (docs/marketplace.md §4.1, §14.16): the partner bought it for them.
  const csp = s.allowedCustomerOperations.length > 0 && s.allowedCustomerOperations.every((op) => op === 'Read');
  return html`<dl class="details">
<dt>Subscription</dt><dd>${s.name || 'Unnamed subscription'}</dd>
<dt>Offer</dt><dd>${productName} <span class="small">(<code>${s.offerId}</code>)</span></dd>
<dt>Plan</dt><dd><code>${s.planId}</code></dd>
<dt>Seats</dt><dd>${s.quantity === undefined ? 'Not sold per seat' : String(s.quantity)}</dd>
<dt>Billing term</dt><dd>${termText(s.term, s)}${start ? html`<br><span class="small">${start}${end ? ` to ${end}` : ''}</span>` : undefined}</dd>
<dt>Purchased by</dt><dd>${party(s.purchaser)}${csp ? html`<br><span class="small">Bought on your behalf by a Microsoft partner</span>` : undefined}</dd>
<dt>For</dt><dd>${party(s.beneficiary)}</dd>
<dt>Subscription ID</dt><dd><code>${s.subscriptionId}</code></dd>
</dl>
${s.isTest ? html`<p class="small">This is a test purchase.</p>` : undefined}`;
}

// ------------------------------------------------------------------------------------------------
// The purchase page: details and the contact form

export type ContactForm = { email: string; name: string; company: string; phone: string };

export type PurchasePageModel = {
  subscription: KnownSubscription;
  /** The email Microsoft gave us (beneficiary's, else purchaser's), if any. */
  microsoftEmail: string | undefined;
  form: ContactForm;
  errors: { email?: string };
  action: string;
  signature: string;
  /** A previous activation gave up: say so above the form. */
  previousFailure?: string;
  /** Who signed in (landing.sign-in.views.ts): the panel, the form's CSRF token, a notice; blocked = no activation from this account. */
  signedIn?: { panel: SafeHtml; csrf: string; notice?: SafeHtml; blocked: boolean };
};

export function purchasePage(ctx: PageContext, m: PurchasePageModel): string {
  const s = m.subscription;
  const emailError = m.errors.email;
  const emailHint = m.microsoftEmail
    ? 'We filled in the address Microsoft gave us. Change it if someone else should hear from us about this subscription.'
    : "Microsoft didn't give us an email address for you. We need one to contact you about your account.";
  const describedBy = emailError ? 'email-error email-hint' : 'email-hint';
  const body = html`
${emailError
  ? html`<div class="error-summary" role="alert" aria-labelledby="error-summary-title" tabindex="-1" id="error-summary">
<h2 id="error-summary-title">There is a problem</h2>
<ul><li><a href="#email">${emailError}</a></li></ul>
</div>`
  : undefined}
${m.signedIn?.panel}
<h1>Set up your subscription</h1>
${m.signedIn?.notice}
<p>Thank you for buying ${ctx.productName}. Check the details below, tell us how to reach you, and activate your subscription.</p>
${m.previousFailure
  ? html`<p class="notice">The last attempt to activate this subscription did not succeed (${m.previousFailure}). You have not been charged; you can try again below.</p>`
  : undefined}
<section aria-labelledby="details-title">
<h2 id="details-title">Your purchase</h2>
${detailsList(s, ctx.productName)}
</section>
${m.signedIn?.blocked ? undefined : html`<section aria-labelledby="contact-title">
<h2 id="contact-title">Your contact details</h2>
<form method="post" action="${m.action}">
<input type="hidden" name="subscriptionId" value="${s.subscriptionId}">
<input type="hidden" name="sig" value="${m.signature}">
${m.signedIn ? html`<input type="hidden" name="csrf" value="${m.signedIn.csrf}">` : undefined}
<div class="field">
<label for="email">Email address${m.microsoftEmail ? undefined : html` <span class="small">(required)</span>`}</label>
<span class="hint" id="email-hint">${emailHint}</span>
${emailError ? html`<span class="field-error" id="email-error"><span class="visually-hidden">Error:</span> ${emailError}</span>` : undefined}
<input type="email" id="email" name="email" autocomplete="email" required maxlength="254" value="${m.form.email}" aria-describedby="${describedBy}"${emailError ? html` aria-invalid="true"` : undefined}>
</div>
<div class="field">
<label for="name">Your name <span class="small">(optional)</span></label>
<input type="text" id="name" name="name" autocomplete="name" maxlength="200" value="${m.form.name}">
</div>
<div class="field">
<label for="company">Company <span class="small">(optional)</span></label>
<input type="text" id="company" name="company" autocomplete="organization" maxlength="200" value="${m.form.company}">
</div>
<div class="field">
<label for="phone">Phone <span class="small">(optional)</span></label>
<input type="tel" id="phone" name="phone" autocomplete="tel" maxlength="50" value="${m.form.phone}">
</div>
<p class="small">Billing starts when your subscription is activated. Microsoft bills you; you can cancel from the Azure portal or the Microsoft 365 admin center.</p>
<button type="submit">Activate subscription</button>
</form>
</section>`}`;
  return layout(ctx, { title: emailError ? 'Error: Set up your subscription' : 'Set up your subscription', body });
}

// ------------------------------------------------------------------------------------------------
// The status / account page

export type StatusPageModel = {
  subscription: KnownSubscription;
  progress: LandingProgress;
  /** The signed JSON endpoint the page polls. */
  statusUrl: string;
  pollIntervalMs: number;
  /** Where the customer uses the product, if configured. */
  accountUrl?: string;
  contact?: Contact;
  /** Who signed in, with sign-out (landing.sign-in.views.ts). */
  signedInPanel?: SafeHtml;
};

/** Polls the status endpoint and updates the page with textContent and `hidden` only. */
const STATUS_SCRIPT = `
(function () {
  var region = document.getElementById('progress-message');
  if (!region || !window.fetch) return;
  var box = document.getElementById('progress');
  var badge = document.getElementById('status-badge');
  var heading = document.getElementById('page-title');
  var url = region.getAttribute('data-status-url');
  var every = Number(region.getAttribute('data-poll-ms')) || 2000;
  var delay = every;
  function show(phase) {
    var panels = document.querySelectorAll('[data-phase-panel]');
    for (var i = 0; i < panels.length; i++) panels[i].hidden = panels[i].getAttribute('data-phase-panel') !== phase;
  }
  function set(el, text) { if (el && el.textContent !== text) el.textContent = text; }
  function poll() {
    fetch(url, { headers: { accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin' })
      .then(function (res) {
        if (res.status === 403 || res.status === 404) {
          set(region, 'This page has expired. ' + ${JSON.stringify(REOPEN_HINT)});
          box.setAttribute('data-final', 'true');
          return null;
        }
        if (!res.ok) throw new Error('status ' + res.status);
        return res.json();
      })
      .then(function (s) {
        if (!s) return;
        set(region, s.message);
        set(badge, s.label);
        badge.setAttribute('data-phase', s.phase);
        set(heading, s.title);
        document.title = s.title + ' – ' + document.title.split(' – ').slice(-1)[0];
        show(s.phase);
        box.setAttribute('data-phase', s.phase);
        if (s.final) { box.setAttribute('data-final', 'true'); return; }
        delay = every;
        setTimeout(poll, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 15000);
        setTimeout(poll, delay);
      });
  }
  if (box.getAttribute('data-final') !== 'true') setTimeout(poll, every);
})();
`;

export function statusPage(ctx: PageContext, m: StatusPageModel): string {
  const p = m.progress;
  const panel = (phase: LandingPhase, content: SafeHtml): SafeHtml =>
    html`<div data-phase-panel="${phase}"${p.phase === phase ? undefined : html` hidden`}>${content}</div>`;
  const body = html`
${m.signedInPanel}
<h1 id="page-title">${p.title}</h1>
<section class="status" id="progress" aria-labelledby="status-title" data-phase="${p.phase}" data-final="${p.final ? 'true' : 'false'}">
<h2 id="status-title" class="visually-hidden">Status</h2>
<p>Status: <strong class="badge" id="status-badge" data-phase="${p.phase}">${p.label}</strong></p>
<p><span class="spinner" aria-hidden="true"></span><span id="progress-message" role="status" aria-live="polite" aria-atomic="true" data-status-url="${m.statusUrl}" data-poll-ms="${m.pollIntervalMs}">${p.message}</span></p>
${p.final ? undefined : html`<noscript><p class="small">This page reloads itself every few seconds.</p></noscript>`}
</section>
${panel(
  'active',
  html`<p>${m.accountUrl ? html`<a href="${m.accountUrl}">Go to ${ctx.productName}</a>` : html`You can start using ${ctx.productName} now.`}${m.contact?.email ? html` We will send account information to ${m.contact.email}.` : undefined}</p>
<p class="small">To change your plan or seats, or to cancel, use the Azure portal or the Microsoft 365 admin center.</p>`,
)}
${panel('failed', html`<p class="small">Reference: subscription <code>${m.subscription.subscriptionId}</code>.</p>`)}
${panel('suspended', html`<p class="small">Suspended subscriptions are cancelled by Microsoft after 30 days if the payment is not fixed.</p>`)}
<section aria-labelledby="details-title">
<h2 id="details-title">Your subscription</h2>
${detailsList(m.subscription, ctx.productName)}
</section>`;
  const head = p.final ? undefined : html`<noscript><meta http-equiv="refresh" content="${String(Math.max(2, Math.round(m.pollIntervalMs / 1000) + 2))}"></noscript>`;
  return layout(ctx, { title: p.title, body, ...(head ? { head } : {}), script: STATUS_SCRIPT });
}

// ------------------------------------------------------------------------------------------------
// Error pages

export type ErrorPageModel = {
  title: string;
  /** Paragraphs of plain text. */
  paragraphs: string[];
  /** Shown small, for support (e.g. the request id). */
  reference?: string;
  /** What to do next, as a link (e.g. "Sign in again"). */
  action?: { label: string; href: string };
  /** Above the heading (e.g. who is signed in, with "Use another account"). */
  top?: SafeHtml;
  /** Go on to this address at once (a meta refresh: a plain navigation, which the form-action CSP does not cover). */
  refreshTo?: string;
};

export function errorPage(ctx: PageContext, m: ErrorPageModel): string {
  const body = html`
${m.top}
<h1>${m.title}</h1>
${m.paragraphs.map((text) => html`<p>${text}</p>`)}
${m.action ? html`<p><a class="button" id="next-step" href="${m.action.href}">${m.action.label}</a></p>` : undefined}
${m.reference ? html`<p class="small">Reference: <code>${m.reference}</code></p>` : undefined}`;
  const head = m.refreshTo ? html`<meta http-equiv="refresh" content="0;url=${m.refreshTo}">` : undefined;
  return layout(ctx, { title: m.title, body, ...(head ? { head } : {}) });
}

// ------------------------------------------------------------------------------------------------
// Microsoft not answering: a page that reloads itself

export type MicrosoftWaitModel = {
  /** The same landing URL (the same token), for the "Try again now" link. */
  retryUrl: string;
  /** When the page reloads itself. */
  retryAfterSeconds: number;
  reference?: string;
};

export const MICROSOFT_NOT_ANSWERING = 'Microsoft is not answering right now';

/** Counts down the seconds shown; the reload itself is the meta refresh (so it works without scripts too). */
const COUNTDOWN_SCRIPT = `
(function () {
  var el = document.getElementById('retry-seconds');
  if (!el) return;
  var left = Number(el.textContent) || 0;
  var timer = setInterval(function () {
    left = Math.max(0, left - 1);
    el.textContent = String(left);
    if (left === 0) clearInterval(timer);
  }, 1000);
})();
`;

/** The page shown when Microsoft did not answer in time: nothing is lost, and it tries again by itself. */
export function microsoftWaitPage(ctx: PageContext, m: MicrosoftWaitModel): string {
  const seconds = Math.max(1, Math.round(m.retryAfterSeconds));
  const body = html`
<h1>${MICROSOFT_NOT_ANSWERING}</h1>
<section class="status" id="progress" data-phase="waiting-for-microsoft" aria-labelledby="wait-title">
<h2 id="wait-title" class="visually-hidden">Status</h2>
<p><span class="spinner" aria-hidden="true"></span><span role="status">We need Microsoft to confirm your purchase, and Microsoft is not answering right now. This page will retry by itself in <span id="retry-seconds">${String(seconds)}</span> seconds.</span></p>
</section>
<p>Nothing has been charged or lost. You can keep this page open, or <a href="${m.retryUrl}" id="retry-now">try again now</a>.</p>
<p class="small">If Microsoft is still not answering after a while, come back later: ${REOPEN_HINT}</p>
${m.reference ? html`<p class="small">Reference: <code>${m.reference}</code></p>` : undefined}`;
  const head = html`<meta http-equiv="refresh" content="${String(seconds)}">`;
  return layout(ctx, { title: MICROSOFT_NOT_ANSWERING, body, head, script: COUNTDOWN_SCRIPT });
}
