/**
 * What the landing page shows of the sign-in: who is signed in (name, email, object id, tenant) with
 * sign-out and "use another account", and the notice when that person is neither the purchaser nor the
 * beneficiary Microsoft reported.
 */
import type { KnownSubscription } from '../domain/subscription/index.js';
import type { LandingSession } from './sign-in/session.js';
import { html } from './landing.views.js';
import type { SafeHtml } from './landing.views.js';

export const SIGN_OUT_PATH = '/landing/sign-out';

export function signedInPanel(session: LandingSession): SafeHtml {
  const u = session.user;
  return html`<section class="signed-in" aria-label="Signed in" id="signed-in">
<p>Signed in as <strong id="signed-in-name">${u.name ?? u.email ?? 'you'}</strong>${u.email ? html` <span class="small">(<span id="signed-in-email">${u.email}</span>)</span>` : undefined}<br>
<span class="small">Object ID <code>${u.oid}</code> · Tenant <code>${u.tid || 'not given'}</code></span></p>
<form method="post" action="${SIGN_OUT_PATH}">
<input type="hidden" name="csrf" value="${session.csrf}">
${session.purchase ? html`<button class="secondary" type="submit" name="then" value="sign-in">Use another account</button>` : undefined}
<button class="secondary" type="submit" name="then" value="out">Sign out</button>
</form>
</section>`;
}

const who = (p: { emailId?: string }): string => p.emailId || 'someone Microsoft did not name';

/** The signed-in person is neither purchaser nor beneficiary: say so, and whether they may go on. */
export function otherUserNotice(session: LandingSession, s: KnownSubscription, allowed: boolean): SafeHtml {
  const you = session.user.email ?? session.user.name ?? 'this account';
  const bought = s.purchaser.emailId === s.beneficiary.emailId || !s.purchaser.emailId
    ? html`for <strong>${who(s.beneficiary)}</strong>`
    : html`by <strong>${who(s.purchaser)}</strong> for <strong>${who(s.beneficiary)}</strong>`;
  return html`<div class="notice" role="${allowed ? 'note' : 'alert'}" id="other-user">
<p>You are signed in as <strong>${you}</strong>, but Microsoft says this subscription was bought ${bought}.</p>
<p>${allowed
    ? 'You can still activate it; we will record that you did.'
    : 'Only the purchaser or the person it was bought for can activate it. Choose "Use another account" above and sign in as one of them.'}</p>
</div>`;
}
