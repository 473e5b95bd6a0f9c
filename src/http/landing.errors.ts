/**
 * What the landing page answers when something fails: an HTML page in plain words for the pages
 * (the details go to the log), problem+json for the JSON status endpoint the status page polls.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { DomainError } from '../domain/errors.js';
import { StoreUnavailableError } from '../eventstore/eventstore.js';
import {
  MarketplaceAuthError,
  MarketplaceBadRequestError,
  MarketplaceError,
  MarketplaceForbiddenError,
  MarketplaceNotFoundError,
  MarketplaceUnavailableError,
} from '../marketplace/errors.js';
import type { LandingPages } from './landing.pages.js';
import { LANDING_PATH } from './landing.pages.js';
import { tokenFromRawUrl } from './landing.token.js';
import { CONTINUE_PATH } from './landing.sign-in.js';
import { REOPEN_HINT } from './landing.views.js';
import { problem, problemContentType } from './problem.js';

type ErrorHandler = (error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) => FastifyReply;

/** Microsoft or the store unavailable: 503 with a page that says nothing is lost. */
function unavailablePage(pages: LandingPages, error: Error, request: FastifyRequest, reply: FastifyReply, marketplaceDown: boolean): FastifyReply {
  const log = request.log; // its component (landing) is the request's (src/http/log-context.ts)
  if (error instanceof MarketplaceForbiddenError || error instanceof MarketplaceAuthError) {
    log.error({ err: error }, 'marketplace rejected our credentials: check the app registration (docs/marketplace.md §14.3)');
  } else {
    log.error({ err: error, ...(error instanceof MarketplaceError ? { marketplace: error.toLog() } : {}) }, 'landing page dependency unavailable');
  }
  reply.header('retry-after', '30');
  return pages.sendError(reply, 503, {
    title: "We can't confirm your subscription right now",
    paragraphs: [
      marketplaceDown
        ? "We couldn't reach Microsoft to confirm your purchase. Nothing has been charged or lost."
        : 'Our service is busy starting up or briefly unavailable. Nothing has been charged or lost.',
      'Please reload this page in a minute. If the link has expired by then: ' + REOPEN_HINT,
    ],
    reference: request.id,
  });
}

/**
 * Microsoft did not answer GET /landing in time (or answered 5xx/429 until the time box ran out): a page that
 * says so and reloads the same URL, with the same token as it came (read from the raw query string), by itself.
 */
function microsoftNotAnswering(pages: LandingPages, error: MarketplaceUnavailableError, request: FastifyRequest, reply: FastifyReply, retryAfterSeconds: number): FastifyReply | undefined {
  if (request.method !== 'GET') return undefined;
  // After sign-in the token waits on the server (landing.sign-in.ts): the same page again finds it.
  const token = request.routeOptions.url === CONTINUE_PATH ? undefined : tokenFromRawUrl(request.raw.url);
  if (token && token.kind !== 'ok') return undefined;
  request.log.warn({ marketplace: error.toLog(), reason: error.message, retryAfterSeconds }, 'Microsoft is not answering the landing page; it will retry by itself');
  const retryUrl = token ? `${LANDING_PATH}?token=${token.raw}` : CONTINUE_PATH;
  return pages.microsoftWait(reply, { retryUrl, retryAfterSeconds, reference: request.id });
}

/** Every page error is an HTML page in plain words; the details go to the log. */
export function pageErrorHandler(pages: LandingPages, options: { retryAfterSeconds: number }): ErrorHandler {
  return (error, request, reply) => {
    const log = request.log; // its component (landing) is the request's (src/http/log-context.ts)
    if ((error as FastifyError).validation) return pages.invalidLink(reply);
    if (error instanceof MarketplaceUnavailableError) {
      const page = microsoftNotAnswering(pages, error, request, reply, options.retryAfterSeconds);
      if (page) return page;
    }
    if (error instanceof MarketplaceBadRequestError || error instanceof MarketplaceNotFoundError) {
      log.info({ marketplace: error.toLog() }, 'marketplace token did not resolve');
      return pages.invalidLink(reply);
    }
    if (error instanceof DomainError) {
      log.warn({ code: error.code, detail: error.message }, 'landing command refused');
      return pages.sendError(reply, error.status, {
        title: "We couldn't complete this step",
        paragraphs: ['Your subscription could not be updated from this page.', REOPEN_HINT],
        reference: request.id,
      });
    }
    const marketplaceDown =
      error instanceof MarketplaceError || error instanceof MarketplaceAuthError || error.name === 'PayloadShapeError';
    if (marketplaceDown || error instanceof StoreUnavailableError) return unavailablePage(pages, error, request, reply, marketplaceDown);
    // Fastify's own 4xx (unparseable body, wrong content type, too large): the request's fault.
    const status = (error as FastifyError).statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      log.info({ code: (error as FastifyError).code, status, detail: error.message }, 'landing request refused');
      return pages.sendError(reply, status, {
        title: "We couldn't read that request",
        paragraphs: ['Please go back and submit the form again.', REOPEN_HINT],
        reference: request.id,
      });
    }
    log.error({ err: error }, 'landing page failed');
    return pages.sendError(reply, 500, {
      title: 'Something went wrong',
      paragraphs: ['We could not show this page. Please try again in a few minutes.', REOPEN_HINT],
      reference: request.id,
    });
  };
}

/** The JSON status endpoint answers problem+json. */
export const statusErrorHandler: ErrorHandler = (error, request, reply) => {
  const send = (status: 400 | 500 | 503, title: string, detail: string) =>
    reply.code(status).header('cache-control', 'no-store').type(problemContentType).send(problem(status, title, detail));
  if ((error as FastifyError).validation) return send(400, 'invalid-request', error.message);
  if (error instanceof StoreUnavailableError) {
    reply.header('retry-after', '5');
    return send(503, 'store-unavailable', 'the event store is unavailable; retry later');
  }
  request.log.error({ err: error }, 'landing status failed');
  return send(500, 'internal-error', 'an unexpected error occurred');
};
