/**
 * How the landing page answers in HTML: the security headers, the page senders (each response with
 * its own CSP nonce), the error pages in plain words, the purchase form, and the signed links between pages.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import type { KnownSubscription } from '../domain/subscription/index.js';
import type { LandingSigner } from './landing.signing.js';
import { EXPIRED_LINK_MESSAGE, REOPEN_HINT, errorPage, microsoftWaitPage, purchasePage } from './landing.views.js';
import type { ContactForm, ErrorPageModel, MicrosoftWaitModel, PageContext, PurchasePageModel } from './landing.views.js';

export const LANDING_PATH = '/landing';

/** The pages' security headers: nothing external, inline style/script only with this response's nonce. */
function pageHeaders(reply: FastifyReply, nonce: string): FastifyReply {
  return reply
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('referrer-policy', 'no-referrer')
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header(
      'content-security-policy',
      `default-src 'none'; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; ` +
        `form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
    );
}

export function microsoftEmail(s: KnownSubscription): string | undefined {
  return s.beneficiary.emailId || s.purchaser.emailId || undefined;
}

export const formFromState = (s: KnownSubscription): ContactForm => ({
  email: s.contact?.email ?? microsoftEmail(s) ?? '',
  name: s.contact?.name ?? '',
  company: s.contact?.company ?? '',
  phone: s.contact?.phone ?? '',
});

/** A new purchase (or a failed activation to retry) shows the form; anything else the status page. */
export const needsForm = (s: KnownSubscription): boolean =>
  s.status === 'PendingFulfillmentStart' && (!s.activation.requestedAt || s.activation.gaveUp);

export type LandingPages = {
  statusPath: (id: string) => string;
  /** The status page's address with a fresh signature for `id`. */
  statusPageUrl: (id: string) => string;
  sendPage: (reply: FastifyReply, status: number, render: (ctx: PageContext) => string) => FastifyReply;
  sendError: (reply: FastifyReply, status: number, model: ErrorPageModel) => FastifyReply;
  invalidLink: (reply: FastifyReply) => FastifyReply;
  expiredPage: (reply: FastifyReply) => FastifyReply;
  notFoundPage: (reply: FastifyReply) => FastifyReply;
  renderForm: (reply: FastifyReply, status: number, s: KnownSubscription, form: ContactForm, errors: { email?: string }, signedIn?: PurchasePageModel['signedIn']) => FastifyReply;
  /** 503 + Retry-After: Microsoft did not answer in time; the page reloads itself. */
  microsoftWait: (reply: FastifyReply, model: MicrosoftWaitModel) => FastifyReply;
};

export function createLandingPages(productName: string, signer: LandingSigner): LandingPages {
  const statusPath = (id: string): string => `${LANDING_PATH}/subscriptions/${encodeURIComponent(id)}`;
  const statusPageUrl = (id: string): string => `${statusPath(id)}?sig=${encodeURIComponent(signer.sign('status', id))}`;

  const sendPage = (reply: FastifyReply, status: number, render: (ctx: PageContext) => string): FastifyReply => {
    const nonce = randomBytes(16).toString('base64');
    return pageHeaders(reply, nonce).code(status).send(render({ productName, nonce }));
  };
  const sendError = (reply: FastifyReply, status: number, model: ErrorPageModel): FastifyReply =>
    sendPage(reply, status, (ctx) => errorPage(ctx, model));

  const invalidLink = (reply: FastifyReply): FastifyReply =>
    sendError(reply, 400, {
      title: "We couldn't open your subscription",
      paragraphs: [EXPIRED_LINK_MESSAGE, "Links from Microsoft to this page are valid for 24 hours."],
    });
  const expiredPage = (reply: FastifyReply): FastifyReply =>
    sendError(reply, 403, {
      title: 'This page has expired',
      paragraphs: ['For your security, this page is valid only for a short time after you open it from Microsoft.', REOPEN_HINT],
    });
  const notFoundPage = (reply: FastifyReply): FastifyReply =>
    sendError(reply, 404, { title: "We couldn't find this subscription", paragraphs: [REOPEN_HINT] });

  const renderForm = (
    reply: FastifyReply,
    status: number,
    s: KnownSubscription,
    form: ContactForm,
    errors: { email?: string },
    signedIn?: PurchasePageModel['signedIn'],
  ): FastifyReply =>
    sendPage(reply, status, (ctx) =>
      purchasePage(ctx, {
        subscription: s,
        microsoftEmail: microsoftEmail(s),
        form,
        errors,
        action: `${LANDING_PATH}/activate`,
        signature: signer.sign('activate', s.subscriptionId),
        ...(s.activation.gaveUp ? { previousFailure: s.activation.lastError ?? 'unknown reason' } : {}),
        ...(signedIn ? { signedIn } : {}),
      }),
    );

  const microsoftWait = (reply: FastifyReply, model: MicrosoftWaitModel): FastifyReply =>
    sendPage(reply.header('retry-after', String(Math.max(1, Math.round(model.retryAfterSeconds)))), 503, (ctx) => microsoftWaitPage(ctx, model));

  return { statusPath, statusPageUrl, sendPage, sendError, invalidLink, expiredPage, notFoundPage, renderForm, microsoftWait };
}
