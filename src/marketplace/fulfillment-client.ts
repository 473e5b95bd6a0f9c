/**
 * Client for Microsoft's SaaS Fulfillment API v2 (api-version 2018-08-31), docs/marketplace.md §1–§3, §10.
 *
 * - Works against Microsoft (`https://marketplaceapi.microsoft.com/api`) or any implementation of the
 *   API by base URL (the emulator), with an MSAL, static or no token (`TokenProvider`).
 * - Every request carries a new `x-ms-requestid` and the call's `x-ms-correlationid` (the caller's, or a
 *   new one); both are logged with the outcome and carried on every error.
 * - Retries with exponential backoff and full jitter on 429 (honouring `Retry-After`), 5xx and network
 *   errors for idempotent calls, bounded by attempts and total time. Calls that change state
 *   (activate, PATCH/DELETE subscription) are retried only when the request certainly had no effect:
 *   429 (throttled) and connection refused. 400/403/404/409 are never retried; they become typed errors.
 * - Responses are checked with the tolerant TypeBox schemas of `schemas.ts` and returned normalised.
 * - `@nextLink` and `Operation-Location` are followed only on the base URL's origin (the bearer token is
 *   never sent elsewhere); a link to another origin is rebuilt on the base URL from its path/query.
 */
import { parseJson } from '../json.js';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import {
  MarketplaceBadRequestError,
  MarketplaceConflictError,
  MarketplaceError,
  MarketplaceForbiddenError,
  MarketplaceNotFoundError,
  MarketplaceUnavailableError,
  MarketplaceUnexpectedResponseError,
} from './errors.js';
import type { MarketplaceErrorDetails } from './errors.js';
import {
  PayloadShapeError,
  isGuid,
  parseOperation,
  parseOperationList,
  parseResolvedSubscription,
  parseSubscription,
  parseSubscriptionPlans,
  parseSubscriptionsResponse,
} from './schemas.js';
import type {
  NormalisedOperation,
  NormalisedPlan,
  NormalisedResolvedSubscription,
  NormalisedSubscription,
  SubscriberPlan,
  UpdateOperation,
  UpdateOperationStatus,
} from './schemas.js';
import { waitForOperation } from './operation-poller.js';
import type { OperationPollOptions, OperationPollResult } from './operation-poller.js';
import type { TokenProvider } from './token-provider.js';
import type { CredentialHealth } from './credential-health.js';
import { noMetrics, secondsSince } from '../metrics/metrics.js';
import type { Metrics } from '../metrics/metrics.js';
import { sleep } from './transport.js';
import type { AcceptedOperation, CallOptions } from './transport.js';

export type { AcceptedOperation, CallOptions } from './transport.js';

export const API_VERSION = '2018-08-31';
export const DEFAULT_MARKETPLACE_API_URL = 'https://marketplaceapi.microsoft.com/api';

export type RetryOptions = {
  /** Attempts in total, including the first. */
  maxAttempts: number;
  /** No retry starts (and no Retry-After is waited for) beyond this much time since the first attempt. */
  maxElapsedMs: number;
  /** Backoff before retry n is a random delay in [0, min(maxDelayMs, baseDelayMs · 2^(n-1))]. */
  baseDelayMs: number;
  /** Cap of one backoff delay; default 30 s. */
  maxDelayMs?: number;
};

export const DEFAULT_RETRY: Required<RetryOptions> = {
  maxAttempts: 5,
  maxElapsedMs: 60_000,
  baseDelayMs: 500,
  maxDelayMs: 30_000,
};

export type FulfillmentClientOptions = {
  /** MARKETPLACE_API_URL; default https://marketplaceapi.microsoft.com/api. */
  baseUrl?: string;
  tokenProvider: TokenProvider;
  logger: Logger;
  retry?: Partial<RetryOptions>;
  fetch?: typeof fetch;
  /** Timeout of one HTTP attempt; default 30 s. */
  requestTimeoutMs?: number;
  /** Told whether Microsoft accepted the credential on each answer (credential-health.ts). */
  credentialHealth?: CredentialHealth;
  /** Each HTTP attempt's operation, status and duration, and each retry (src/metrics/metrics.ts). */
  metrics?: Pick<Metrics, 'marketplaceCall' | 'marketplaceRetry'>;
  /** Test hooks. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
};

export type SubscriptionsPage = {
  subscriptions: NormalisedSubscription[];
  /** The link the next page is read from (absent on the last page). */
  nextLink?: string;
};

/** Microsoft's answer to one logical call. */
export type MarketplaceOutcome = Outcome;

type Outcome = {
  /** The client method, e.g. `getSubscription`. */
  call: string;
  method: string;
  url: string;
  status: number;
  headers: Headers;
  /** Parsed JSON, or undefined for an empty body. */
  body: unknown;
  requestId: string;
  correlationId: string;
};

/** One logical call to Microsoft's API (the Fulfillment client's, and the Metering client's: metering-client.ts). */
export type MarketplaceCall = Call;

type Call = {
  /** The client method, e.g. `getSubscription` (a call to Microsoft's API, not an operation). */
  name: string;
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** Absolute URL (api-version is added if missing). */
  url: URL;
  body?: unknown;
  headers?: Record<string, string>;
  idempotent: boolean;
  expect: number[];
  options: CallOptions | undefined;
};

const MAX_PAGES = 10_000;

class NetworkFailure extends Error {
  override readonly name = 'NetworkFailure';
  constructor(
    override readonly cause: unknown,
    readonly certainlyNotSent: boolean,
    readonly timedOut: boolean,
  ) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

export class FulfillmentClient {
  readonly baseUrl: URL;
  private readonly tokenProvider: TokenProvider;
  private readonly log: Logger;
  private readonly retry: Required<RetryOptions>;
  private readonly fetchImpl: typeof fetch;
  private readonly requestTimeoutMs: number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly random: () => number;
  private readonly health: CredentialHealth | undefined;
  private readonly metrics: Pick<Metrics, 'marketplaceCall' | 'marketplaceRetry'>;

  constructor(options: FulfillmentClientOptions) {
    const base = new URL(options.baseUrl ?? DEFAULT_MARKETPLACE_API_URL);
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    base.search = '';
    base.hash = '';
    this.baseUrl = base;
    this.tokenProvider = options.tokenProvider;
    this.log = options.logger.child({ component: 'marketplace-client' });
    this.retry = { ...DEFAULT_RETRY, ...definedOnly(options.retry ?? {}) };
    if (this.retry.maxAttempts < 1) this.retry.maxAttempts = 1;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.sleep = options.sleep ?? sleep;
    this.random = options.random ?? Math.random;
    this.health = options.credentialHealth;
    this.metrics = options.metrics ?? noMetrics;
  }

  // ----------------------------------------------------------------------------------------------
  // Subscriptions

  /**
   * Resolve (docs/marketplace.md §3.1). `marketplaceToken` is the landing page's `token` query value, either as a
   * query parser returns it (decoded once) or still percent-encoded as it stands in the URL; it is
   * sent decoded exactly once (`decodeMarketplaceToken`).
   */
  async resolve(marketplaceToken: string, options?: CallOptions): Promise<NormalisedResolvedSubscription> {
    const token = decodeMarketplaceToken(marketplaceToken);
    if (!token) throw new TypeError('resolve needs the marketplace purchase token (the landing page ?token=)');
    const out = await this.send({
      name: 'resolve',
      method: 'POST',
      url: this.url('saas/subscriptions/resolve'),
      headers: { 'x-ms-marketplace-token': token },
      idempotent: true,
      expect: [200],
      options,
    });
    return this.parseResponse('resolve', out, parseResolvedSubscription);
  }

  /** All subscriptions of the publisher, following every page (docs/marketplace.md §3.3). */
  async listSubscriptions(options?: CallOptions): Promise<NormalisedSubscription[]> {
    const all: NormalisedSubscription[] = [];
    for await (const page of this.listSubscriptionPages(options)) all.push(...page.subscriptions);
    return all;
  }

  /**
   * The subscription pages one by one. Follows `@nextLink` (or a body `continuationToken`) until a
   * page has none; an empty body means no subscriptions. Stops with an error on a link loop.
   */
  async *listSubscriptionPages(options?: CallOptions): AsyncGenerator<SubscriptionsPage> {
    const correlationId = this.correlationIdFor(options);
    const callOptions: CallOptions = { ...options, correlationId };
    let url: URL | undefined = this.url('saas/subscriptions/');
    const seen = new Set<string>();
    for (let pageNo = 1; url; pageNo++) {
      if (pageNo > MAX_PAGES || seen.has(url.href)) {
        throw new MarketplaceUnexpectedResponseError({
          ...this.details('listSubscriptions', 'GET', url, correlationId),
          reason: `paging does not end (page ${pageNo} links to ${url.href} again)`,
        });
      }
      seen.add(url.href);
      const result = await this.readSubscriptionsPage(url, callOptions);
      yield result;
      url = result.nextLink === undefined ? undefined : new URL(result.nextLink);
    }
  }

  /**
   * One page of List subscriptions: the first (no `link`), or the page a previous page's `nextLink` points at,
   * e.g. as recorded before a restart (a link to another origin is rebuilt on the base URL). For callers that
   * keep their place themselves (the reconciler records each page's `nextLink` to resume from it).
   */
  async listSubscriptionsPage(link?: string, options?: CallOptions): Promise<SubscriptionsPage> {
    const url = link === undefined ? this.url('saas/subscriptions/') : this.followLink(link, 'saas/subscriptions/');
    return this.readSubscriptionsPage(url, options);
  }

  private async readSubscriptionsPage(url: URL, options: CallOptions | undefined): Promise<SubscriptionsPage> {
    const out = await this.send({ name: 'listSubscriptions', method: 'GET', url, idempotent: true, expect: [200], options });
    const page = this.parseResponse('listSubscriptions', out, parseSubscriptionsResponse);
    let next: URL | undefined;
    if (page.nextLink) next = this.followLink(page.nextLink, 'saas/subscriptions/');
    else if (page.continuationToken) {
      next = this.url('saas/subscriptions/', { continuationToken: page.continuationToken });
    }
    const result: SubscriptionsPage = { subscriptions: page.subscriptions };
    if (next) result.nextLink = next.href;
    return result;
  }

  /** Get subscription (docs/marketplace.md §3.4). */
  async getSubscription(subscriptionId: string, options?: CallOptions): Promise<NormalisedSubscription> {
    const out = await this.send({
      name: 'getSubscription',
      method: 'GET',
      url: this.url(`saas/subscriptions/${id(subscriptionId)}`),
      idempotent: true,
      expect: [200],
      options,
    });
    return this.parseResponse('getSubscription', out, parseSubscription);
  }

  /**
   * Plans the subscription can move to, including the current one (docs/marketplace.md §3.5). With `planId` (the
   * purchased plan) the response also carries `sourceOffers`. An empty body means no plans.
   */
  async listAvailablePlans(
    subscriptionId: string,
    options?: CallOptions & { planId?: string },
  ): Promise<NormalisedPlan[]> {
    const query: Record<string, string> = {};
    if (options?.planId) query.planId = options.planId;
    const out = await this.send({
      name: 'listAvailablePlans',
      method: 'GET',
      url: this.url(`saas/subscriptions/${id(subscriptionId)}/listAvailablePlans`, query),
      idempotent: true,
      expect: [200],
      options,
    });
    return this.parseResponse('listAvailablePlans', out, parseSubscriptionPlans);
  }

  /**
   * Activate (docs/marketplace.md §3.2) with `{planId, quantity}` as resolved. 200 means the request was received:
   * verify with getSubscription later. Not retried on 5xx (re-read first, docs/marketplace.md §10).
   */
  async activateSubscription(
    subscriptionId: string,
    plan: { planId: string; quantity?: number | undefined },
    options?: CallOptions,
  ): Promise<void> {
    if (!plan.planId) throw new TypeError('activateSubscription needs the purchased planId');
    const body: SubscriberPlan = { planId: plan.planId };
    if (plan.quantity !== undefined) body.quantity = checkQuantity(plan.quantity);
    await this.send({
      name: 'activateSubscription',
      method: 'POST',
      url: this.url(`saas/subscriptions/${id(subscriptionId)}/activate`),
      body,
      idempotent: false,
      expect: [200, 202, 204],
      options,
    });
  }

  /** Change plan (docs/marketplace.md §3.6): 202 + Operation-Location; follow it with `waitForOperation`. */
  async changePlan(subscriptionId: string, planId: string, options?: CallOptions): Promise<AcceptedOperation> {
    if (!planId) throw new TypeError('changePlan needs a planId');
    return this.patchSubscription('changePlan', subscriptionId, { planId }, options);
  }

  /** Change quantity (docs/marketplace.md §3.7): one of plan or quantity per call. */
  async changeQuantity(subscriptionId: string, quantity: number, options?: CallOptions): Promise<AcceptedOperation> {
    return this.patchSubscription('changeQuantity', subscriptionId, { quantity: checkQuantity(quantity) }, options);
  }

  /** Cancel (docs/marketplace.md §3.8): 202 + Operation-Location. 409 while another operation is pending. */
  async deleteSubscription(subscriptionId: string, options?: CallOptions): Promise<AcceptedOperation> {
    const out = await this.send({
      name: 'deleteSubscription',
      method: 'DELETE',
      url: this.url(`saas/subscriptions/${id(subscriptionId)}`),
      idempotent: false,
      expect: [202],
      options,
    });
    return this.accepted('deleteSubscription', subscriptionId, out);
  }

  private async patchSubscription(
    callName: string,
    subscriptionId: string,
    body: SubscriberPlan,
    options: CallOptions | undefined,
  ): Promise<AcceptedOperation> {
    const out = await this.send({
      name: callName,
      method: 'PATCH',
      url: this.url(`saas/subscriptions/${id(subscriptionId)}`),
      body,
      idempotent: false,
      expect: [202],
      options,
    });
    return this.accepted(callName, subscriptionId, out);
  }

  // ----------------------------------------------------------------------------------------------
  // Operations

  /** Outstanding operations of a subscription (docs/marketplace.md §3.9); an empty body means none. */
  async listOperations(subscriptionId: string, options?: CallOptions): Promise<NormalisedOperation[]> {
    const out = await this.send({
      name: 'listOperations',
      method: 'GET',
      url: this.url(`saas/subscriptions/${id(subscriptionId)}/operations`),
      idempotent: true,
      expect: [200],
      options,
    });
    return this.parseResponse('listOperations', out, parseOperationList);
  }

  /** Get operation status (docs/marketplace.md §3.10); also the validation step for webhooks. */
  async getOperation(subscriptionId: string, operationId: string, options?: CallOptions): Promise<NormalisedOperation> {
    return this.getOperationAt(this.url(`saas/subscriptions/${id(subscriptionId)}/operations/${id(operationId)}`), options);
  }

  /** Get the operation an `Operation-Location` points at (on the base URL's origin). */
  async getOperationAt(location: string | URL, options?: CallOptions): Promise<NormalisedOperation> {
    const url = typeof location === 'string' ? this.followLink(location, undefined) : location;
    const out = await this.send({
      name: 'getOperation',
      method: 'GET',
      url,
      idempotent: true,
      expect: [200],
      options,
    });
    return this.parseResponse('getOperation', out, parseOperation);
  }

  /** Polls the `Operation-Location` of a 202 until Succeeded, Failed or Conflict (see operation-poller.ts). */
  async followOperation(accepted: AcceptedOperation, options: OperationPollOptions = {}): Promise<OperationPollResult> {
    return waitForOperation(this, accepted, { logger: this.log, ...options });
  }

  /**
   * Acknowledge an operation (docs/marketplace.md §3.11) with `Success` or `Failure` (not Succeeded/Failed).
   * Retried: setting the same status again is harmless; a 409 means a newer update already won.
   */
  async updateOperationStatus(
    subscriptionId: string,
    operationId: string,
    status: UpdateOperationStatus,
    options?: CallOptions,
  ): Promise<void> {
    if (status !== 'Success' && status !== 'Failure') {
      throw new TypeError(`updateOperationStatus takes 'Success' or 'Failure', not ${JSON.stringify(status)}`);
    }
    const body: UpdateOperation = { status };
    await this.send({
      name: 'updateOperationStatus',
      method: 'PATCH',
      url: this.url(`saas/subscriptions/${id(subscriptionId)}/operations/${id(operationId)}`),
      body,
      idempotent: true,
      expect: [200, 202, 204],
      options,
    });
  }

  // ----------------------------------------------------------------------------------------------
  // Plumbing

  /** An absolute URL under the base URL with `api-version` and the given query. */
  url(path: string, query: Record<string, string> = {}): URL {
    const url = new URL(path.replace(/^\/+/, ''), this.baseUrl);
    url.searchParams.set('api-version', API_VERSION);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    return url;
  }

  /**
   * A link from a response (`@nextLink`, `Operation-Location`) as a URL to call. Same origin as the
   * base URL: used as is (api-version added if missing). Another origin, or unparsable (the docs'
   * `"https:// https://..."`): rebuilt on the base URL from its `/saas/...` path and query, so the
   * bearer token only ever goes to the configured API.
   */
  followLink(link: string, fallbackPath: string | undefined): URL {
    const trimmed = link.trim();
    let parsed: URL | undefined;
    try {
      parsed = new URL(trimmed.replace(/^https?:\/\/\s+(?=https?:\/\/)/i, ''), this.baseUrl);
    } catch {
      parsed = undefined;
    }
    if (parsed && parsed.origin === this.baseUrl.origin && parsed.pathname.startsWith(this.baseUrl.pathname)) {
      if (!parsed.searchParams.has('api-version')) parsed.searchParams.set('api-version', API_VERSION);
      return parsed;
    }
    const text = parsed ? parsed.pathname + parsed.search : trimmed;
    const saasAt = text.indexOf('saas/');
    if (saasAt >= 0) {
      const rebuilt = new URL(text.slice(saasAt), this.baseUrl);
      if (!rebuilt.searchParams.has('api-version')) rebuilt.searchParams.set('api-version', API_VERSION);
      this.log.warn({ link: redactLink(link), used: rebuilt.pathname }, 'marketplace link rebuilt on the base URL');
      return rebuilt;
    }
    const token = /[?&]continuationToken=([^&\s]+)/.exec(text)?.[1];
    if (token && fallbackPath) return this.url(fallbackPath, { continuationToken: decodeURIComponent(token) });
    throw new TypeError(`cannot follow the link ${redactLink(link)} returned by the Marketplace API`);
  }

  private correlationIdFor(options: CallOptions | undefined): string {
    const given = options?.correlationId?.trim();
    if (given === undefined || given === '') return randomUUID();
    if (!isGuid(given)) throw new TypeError(`correlationId must be a GUID, got ${JSON.stringify(given)}`);
    return given;
  }

  private details(
    call: string,
    method: string,
    url: URL,
    correlationId: string,
    extra: Partial<MarketplaceErrorDetails> = {},
  ): MarketplaceErrorDetails {
    return { call, method, url: url.href, requestId: extra.requestId ?? '', correlationId, ...extra };
  }

  private accepted(call: string, subscriptionId: string, out: Outcome): AcceptedOperation {
    const location = out.headers.get('operation-location')?.trim();
    if (!location) {
      throw new MarketplaceUnexpectedResponseError({
        call,
        method: out.method,
        url: out.url,
        status: out.status,
        requestId: out.requestId,
        correlationId: out.correlationId,
        reason: `${out.status} without an Operation-Location header`,
      });
    }
    const accepted: AcceptedOperation = {
      subscriptionId,
      operationLocation: location,
      requestId: out.requestId,
      correlationId: out.correlationId,
    };
    const operationId = /\/operations\/([^/?#\s]+)/.exec(location)?.[1];
    if (operationId) accepted.operationId = decodeURIComponent(operationId);
    return accepted;
  }

  /**
   * A response's body through `parser` (a TypeBox check); a body of the wrong shape is logged and thrown as
   * MarketplaceUnexpectedResponseError with the call's request and correlation ids. The metering client reads its
   * answers through here too.
   */
  parseResponse<T>(call: string, out: Outcome, parser: (raw: unknown) => T): T {
    try {
      return parser(out.body);
    } catch (err) {
      if (!(err instanceof PayloadShapeError)) throw err;
      this.log.error(
        { call, requestId: out.requestId, correlationId: out.correlationId, problems: err.problems },
        'marketplace response does not match the expected shape',
      );
      throw new MarketplaceUnexpectedResponseError({
        call,
        method: out.method,
        url: out.url,
        status: out.status,
        requestId: out.requestId,
        correlationId: out.correlationId,
        body: JSON.stringify(out.body),
        reason: err.message,
        cause: err,
      });
    }
  }

  /**
   * One logical call within its time budget (`budgetMs`), if it has one: the budget aborts whatever is under way
   * (the token, a request, a pause before a retry), no retry starts that could not end inside it, and running out
   * of it is a MarketplaceUnavailableError like any other "Microsoft is not answering".
   * Public for the Metering client (metering-client.ts), which shares the base URL, token, headers and retries.
   */
  async send(call: Call): Promise<Outcome> {
    const correlationId = this.correlationIdFor(call.options);
    const budgetMs = call.options?.budgetMs;
    const caller = call.options?.signal;
    const progress = { requestId: '', attempts: 0 };
    if (!call.url.searchParams.has('api-version')) call.url.searchParams.set('api-version', API_VERSION);
    if (budgetMs === undefined) return this.sendAttempts(call, correlationId, caller, this.retry.maxElapsedMs, progress);
    const budget = AbortSignal.timeout(budgetMs);
    try {
      return await this.sendAttempts(call, correlationId, caller ? AbortSignal.any([caller, budget]) : budget, Math.min(this.retry.maxElapsedMs, budgetMs), progress);
    } catch (err) {
      if (!budget.aborted || caller?.aborted || err instanceof MarketplaceError) throw err;
      const error = new MarketplaceUnavailableError({
        call: call.name,
        method: call.method,
        url: call.url.href,
        requestId: progress.requestId,
        correlationId,
        attempts: progress.attempts,
        reason: `no answer within the call's time budget of ${budgetMs} ms`,
        cause: err,
      });
      this.log.warn({ ...error.toLog(), ...idsInPath(call.url) }, 'marketplace call gave up: out of time');
      throw error;
    }
  }

  /** The attempts of one logical call: backoff, status mapping, logging. */
  private async sendAttempts(
    call: Call,
    correlationId: string,
    signal: AbortSignal | undefined,
    maxElapsedMs: number,
    progress: { requestId: string; attempts: number },
  ): Promise<Outcome> {
    const started = Date.now();
    const { maxAttempts, baseDelayMs, maxDelayMs } = this.retry;
    const about = idsInPath(call.url); // subscriptionId, operationId: on every log line of this call

    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      const requestId = randomUUID();
      Object.assign(progress, { requestId, attempts: attempt });
      const base = { call: call.name, method: call.method, url: call.url.href, requestId, correlationId, attempt, ...about };
      const attemptStarted = Date.now();
      const timer = performance.now();
      let retryReason: string;
      let status: number | undefined;
      let bodyText: string | undefined;
      let retryAfterMs: number | undefined;
      let cause: unknown;
      let retryable: boolean;

      try {
        const res = await this.attempt(call, requestId, correlationId, signal);
        status = res.status;
        bodyText = res.text;
        this.metrics.marketplaceCall(call.name, String(status), secondsSince(timer));
        this.noteCredential(call.name, status, bodyText);
        const durationMs = Date.now() - attemptStarted;
        const echoed = {
          responseRequestId: res.headers.get('x-ms-requestid') ?? undefined,
          responseCorrelationId: res.headers.get('x-ms-correlationid') ?? undefined,
        };
        if (call.expect.includes(status)) {
          this.log.info(
            { call: call.name, method: call.method, status, requestId, correlationId, attempt, durationMs, ...about, ...diffIds(echoed, requestId, correlationId) },
            'marketplace call',
          );
          return {
            call: call.name,
            method: call.method,
            url: call.url.href,
            status,
            headers: res.headers,
            body: parseBody(call, res.text, base, status),
            requestId,
            correlationId,
          };
        }
        const logFields = { call: call.name, method: call.method, status, requestId, correlationId, attempt, durationMs, ...about };
        const details: MarketplaceErrorDetails = { ...base, status, body: bodyText, attempts: attempt };
        this.throwIfFinal(status, logFields, details);
        if (status === 429 || status >= 500) {
          retryReason = `status ${status}`;
          retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
          retryable = status === 429 || call.idempotent;
          this.log.warn({ ...logFields, retryAfterMs }, 'marketplace call failed');
        } else {
          this.log.error(logFields, 'marketplace call returned an unexpected status');
          throw new MarketplaceUnexpectedResponseError({
            ...details,
            reason: `status ${status}, expected ${call.expect.join('/')}`,
          });
        }
      } catch (err) {
        if (!(err instanceof NetworkFailure)) throw err;
        if (signal?.aborted) throw signal.reason ?? err;
        cause = err.cause;
        this.metrics.marketplaceCall(call.name, err.timedOut ? 'timeout' : 'network-error', secondsSince(timer));
        retryReason = err.timedOut ? `timed out after ${this.requestTimeoutMs} ms` : `network error: ${err.message}`;
        retryable = call.idempotent || err.certainlyNotSent;
        this.log.warn(
          { call: call.name, method: call.method, requestId, correlationId, attempt, durationMs: Date.now() - attemptStarted, error: err.message, ...about },
          'marketplace call failed',
        );
      }

      const elapsed = Date.now() - started;
      const backoff = this.random() * Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
      const delay = Math.max(backoff, retryAfterMs ?? 0);
      const stop = !retryable
        ? 'not retried: the call changes state and may have been applied'
        : attempt >= maxAttempts
          ? `${maxAttempts} attempts made`
          : elapsed + delay > maxElapsedMs
            ? `retry budget of ${maxElapsedMs} ms exhausted`
            : undefined;
      if (stop) {
        const error = new MarketplaceUnavailableError({
          ...base,
          ...(status !== undefined ? { status } : {}),
          ...(bodyText !== undefined ? { body: bodyText } : {}),
          attempts: attempt,
          reason: `${retryReason}; ${stop}`,
          ...(cause !== undefined ? { cause } : {}),
        });
        this.log.error({ ...error.toLog(), ...about }, 'marketplace call gave up');
        throw error;
      }
      this.log.info(
        { call: call.name, requestId, correlationId, attempt, delayMs: Math.round(delay), reason: retryReason, ...about },
        'marketplace call will be retried',
      );
      this.metrics.marketplaceRetry(call.name, status !== undefined ? String(status) : 'network-error');
      await this.sleep(delay, signal);
    }
  }

  /** 400, 401/403, 404 and 409 are Microsoft's final answers: the error that names each. */
  private throwIfFinal(status: number, logFields: Record<string, unknown>, details: MarketplaceErrorDetails): void {
    switch (status) {
      case 400:
        this.log.warn(logFields, 'marketplace call rejected');
        throw new MarketplaceBadRequestError(details);
      case 401:
      case 403:
        this.log.error(logFields, 'marketplace call forbidden: check tenant id, app id and secret expiry');
        throw new MarketplaceForbiddenError(details);
      case 404:
        this.log.warn(logFields, 'marketplace call found nothing');
        throw new MarketplaceNotFoundError(details);
      case 409:
        this.log.warn(logFields, 'marketplace call conflict');
        throw new MarketplaceConflictError(details);
      default:
        break;
    }
  }

  /** 401/403: the credential was rejected; 429 and 5xx say nothing about it; any other answer: it got through. */
  private noteCredential(call: string, status: number, body: string): void {
    if (!this.health) return;
    if (status === 401 || status === 403) {
      const text = body.replace(/\s+/g, ' ').trim().slice(0, 200);
      this.health.recordRejected({ call, status, message: `${status} ${status === 401 ? 'Unauthorized' : 'Forbidden'}${text ? `: ${text}` : ''}` });
    } else if (status !== 429 && status < 500) this.health.recordAccepted();
  }

  private async attempt(
    call: Call,
    requestId: string,
    correlationId: string,
    signal: AbortSignal | undefined,
  ): Promise<{ status: number; headers: Headers; text: string }> {
    const headers: Record<string, string> = {
      accept: 'application/json',
      'x-ms-requestid': requestId,
      'x-ms-correlationid': correlationId,
      ...call.headers,
    };
    let body: string | undefined;
    if (call.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(call.body);
    }
    // Token errors (MarketplaceAuthError) are not network failures: they propagate as they are.
    const token = await untilAborted(this.tokenProvider.getToken(), signal);
    if (token) headers.authorization = `Bearer ${token}`;

    const timeout = AbortSignal.timeout(this.requestTimeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      const res = await this.fetchImpl(call.url, {
        method: call.method,
        headers,
        ...(body !== undefined ? { body } : {}),
        signal: combined,
        redirect: 'manual',
      });
      const text = await res.text();
      return { status: res.status, headers: res.headers, text };
    } catch (err) {
      const code = errorCode(err);
      throw new NetworkFailure(err, code === 'ECONNREFUSED', timeout.aborted && !signal?.aborted);
    }
  }
}

export function createFulfillmentClient(options: FulfillmentClientOptions): FulfillmentClient {
  return new FulfillmentClient(options);
}

/**
 * The purchase token to send in `x-ms-marketplace-token`, decoded exactly once (docs/marketplace.md §3.1, §14.1).
 * Accepts the value as it stands in the landing URL (percent-encoded: `ab%2Bcd%2Fef`) or as a query
 * parser returns it (already decoded: `ab+cd/ef`). Tokens are base64-like and never contain `%` or
 * spaces, so a `%XX` means "still encoded" (decode once, keeping `+`), and a space is a `+` that a
 * form decoder (URLSearchParams, qs) turned into a space.
 */
export function decodeMarketplaceToken(token: string): string {
  let value = token.trim();
  if (/%[0-9a-f]{2}/i.test(value)) {
    try {
      value = decodeURIComponent(value);
    } catch {
      // not valid percent-encoding: send as received
    }
  }
  return value.replace(/ /g, '+');
}

/** The subscription and operation a Fulfillment API URL is about, for the logs (absent parts left out). */
function idsInPath(url: URL): { subscriptionId?: string; operationId?: string } {
  const m = /\/subscriptions\/([^/]+)(?:\/operations\/([^/]+))?/.exec(url.pathname);
  const decoded = (v: string | undefined) => {
    if (!v || v === 'resolve') return undefined;
    try {
      return decodeURIComponent(v);
    } catch {
      return v;
    }
  };
  const subscriptionId = decoded(m?.[1]);
  const operationId = decoded(m?.[2]);
  return { ...(subscriptionId ? { subscriptionId } : {}), ...(operationId ? { operationId } : {}) };
}

function id(value: string): string {
  const v = value.trim();
  if (!v) throw new TypeError('subscription and operation ids must not be empty');
  return encodeURIComponent(v);
}

function checkQuantity(quantity: number): number {
  if (!Number.isSafeInteger(quantity) || quantity < 0) {
    throw new TypeError(`quantity must be a non-negative integer, got ${quantity}`);
  }
  return quantity;
}

function parseBody(call: Call, text: string, base: MarketplaceErrorDetails, status: number): unknown {
  if (text.trim() === '') return undefined;
  try {
    return parseJson(text);
  } catch (err) {
    // Bodies of calls whose result we do not read (activate, PATCH, DELETE) may be anything.
    if (call.method !== 'GET' && call.name !== 'resolve') return undefined;
    throw new MarketplaceUnexpectedResponseError({ ...base, status, body: text, reason: 'the body is not JSON', cause: err });
  }
}

/** `promise`, or the signal's reason as soon as it aborts (the promise itself goes on, unobserved). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** `Retry-After` as seconds or an HTTP date → milliseconds (undefined if absent or unreadable). */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const date = Date.parse(v);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

function diffIds(
  echoed: { responseRequestId: string | undefined; responseCorrelationId: string | undefined },
  requestId: string,
  correlationId: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (echoed.responseRequestId && echoed.responseRequestId !== requestId) out.responseRequestId = echoed.responseRequestId;
  if (echoed.responseCorrelationId && echoed.responseCorrelationId !== correlationId) {
    out.responseCorrelationId = echoed.responseCorrelationId;
  }
  return out;
}

function errorCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e && typeof e === 'object'; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function redactLink(link: string): string {
  return link.replace(/(continuationToken=)[^&\s]+/g, '$1…').slice(0, 300);
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

