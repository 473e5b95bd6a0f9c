/**
 * Typed errors of the Marketplace Fulfillment API client.
 *
 * Error bodies are opaque text (docs/marketplace.md §4.5): they are carried for logs and support tickets, and the
 * type of error is decided by the HTTP status only. Every error carries the `x-ms-requestid` and
 * `x-ms-correlationid` that Microsoft support asks for.
 */

/** Longest body text kept on an error (bodies are for humans; some proxies return whole HTML pages). */
export const MAX_ERROR_BODY_CHARS = 4000;

export type MarketplaceErrorDetails = {
  /** The call: the client method, e.g. `getSubscription`. */
  call: string;
  method: string;
  /** URL without credentials; the query carries only `api-version`/`continuationToken`/`planId`. */
  url: string;
  status?: number;
  requestId: string;
  correlationId: string;
  /** Response body text, truncated to MAX_ERROR_BODY_CHARS. */
  body?: string;
  attempts?: number;
  cause?: unknown;
};

export class MarketplaceError extends Error {
  override readonly name: string = 'MarketplaceError';
  readonly call: string;
  readonly method: string;
  readonly url: string;
  readonly status: number | undefined;
  readonly requestId: string;
  readonly correlationId: string;
  readonly body: string | undefined;
  readonly attempts: number | undefined;

  constructor(message: string, details: MarketplaceErrorDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.call = details.call;
    this.method = details.method;
    this.url = details.url;
    this.status = details.status;
    this.requestId = details.requestId;
    this.correlationId = details.correlationId;
    this.body = details.body === undefined ? undefined : truncate(details.body);
    this.attempts = details.attempts;
  }

  /** Fields for a structured log line (never includes the bearer token). */
  toLog(): Record<string, unknown> {
    return {
      err: this.name,
      call: this.call,
      method: this.method,
      status: this.status,
      requestId: this.requestId,
      correlationId: this.correlationId,
      attempts: this.attempts,
      body: this.body,
    };
  }
}

function truncate(text: string): string {
  return text.length > MAX_ERROR_BODY_CHARS ? `${text.slice(0, MAX_ERROR_BODY_CHARS)}…` : text;
}

function describe(d: MarketplaceErrorDetails): string {
  const body = d.body?.trim() ? `: ${truncate(d.body.trim()).slice(0, 500)}` : '';
  return `(${d.method} ${stripQuery(d.url)}, x-ms-requestid ${d.requestId}, x-ms-correlationid ${d.correlationId})${body}`;
}

function stripQuery(url: string): string {
  const q = url.indexOf('?');
  return q >= 0 ? url.slice(0, q) : url;
}

/** 400: Microsoft rejected the request as invalid (bad token, plan not available, same plan/quantity, not Subscribed, ...). */
export class MarketplaceBadRequestError extends MarketplaceError {
  override readonly name = 'MarketplaceBadRequestError';
  constructor(details: MarketplaceErrorDetails) {
    super(`Marketplace API rejected ${details.call} as a bad request (400) ${describe(details)}`, {
      ...details,
      status: 400,
    });
  }
}

/**
 * 403: authentication or authorisation failed (docs/marketplace.md §2, §14.3). Also used for an (undocumented) 401,
 * keeping the real status.
 */
export class MarketplaceForbiddenError extends MarketplaceError {
  override readonly name = 'MarketplaceForbiddenError';
  static readonly hint =
    'Check MARKETPLACE_TENANT_ID and MARKETPLACE_CLIENT_ID (they must be the tenant ID and app ID entered in ' +
    "Partner Center's Technical configuration of the offer) and whether the client secret or certificate has expired.";
  constructor(details: MarketplaceErrorDetails) {
    super(
      `Marketplace API refused ${details.call} (${details.status ?? 403} ${details.status === 401 ? 'Unauthorized' : 'Forbidden'}). ${MarketplaceForbiddenError.hint} ${describe(details)}`,
      { ...details, status: details.status ?? 403 },
    );
  }
}

/** 404: subscription or operation not found (or, for activate, the subscription is Unsubscribed). */
export class MarketplaceNotFoundError extends MarketplaceError {
  override readonly name = 'MarketplaceNotFoundError';
  constructor(details: MarketplaceErrorDetails) {
    super(`Marketplace API found nothing for ${details.call} (404) ${describe(details)}`, {
      ...details,
      status: 404,
    });
  }
}

/** 409: locked by a pending operation, or a newer update was already fulfilled. */
export class MarketplaceConflictError extends MarketplaceError {
  override readonly name = 'MarketplaceConflictError';
  constructor(details: MarketplaceErrorDetails) {
    super(`Marketplace API reported a conflict for ${details.call} (409) ${describe(details)}`, {
      ...details,
      status: 409,
    });
  }
}

/**
 * The call did not succeed within the retry budget (429, 5xx, network errors), or it failed with a
 * retryable status on a call that is not retried (non-idempotent). `status` is the last status seen,
 * undefined after a network error; `cause` is the last network error.
 */
export class MarketplaceUnavailableError extends MarketplaceError {
  override readonly name = 'MarketplaceUnavailableError';
  constructor(details: MarketplaceErrorDetails & { reason: string }) {
    const last = details.status !== undefined ? `last status ${details.status}` : 'network error';
    super(
      `Marketplace API unavailable for ${details.call} after ${details.attempts ?? 1} attempt(s) (${last}; ${details.reason}) ${describe(details)}`,
      details,
    );
  }
}

/** Any other status (405, 413, ...) or a response that cannot be read (bad JSON, wrong shape, missing Operation-Location). */
export class MarketplaceUnexpectedResponseError extends MarketplaceError {
  override readonly name = 'MarketplaceUnexpectedResponseError';
  constructor(details: MarketplaceErrorDetails & { reason: string }) {
    super(`Unexpected Marketplace API response to ${details.call}: ${details.reason} ${describe(details)}`, details);
  }
}

/**
 * A token for the Marketplace API could not be obtained from Microsoft Entra ID (bad or expired
 * secret, unknown app, wrong tenant, ...). Carries Entra's error code (`invalid_client`) and the
 * AADSTS number when there is one.
 */
export class MarketplaceAuthError extends Error {
  override readonly name = 'MarketplaceAuthError';
  readonly errorCode: string | undefined;
  readonly aadsts: string | undefined;
  readonly tenantId: string;
  readonly clientId: string;

  constructor(args: {
    tenantId: string;
    clientId: string;
    errorCode?: string;
    aadsts?: string;
    detail: string;
    cause?: unknown;
  }) {
    const hint = aadstsHint(args.aadsts, args.errorCode);
    super(
      `Could not get a Marketplace API token from Microsoft Entra ID for app ${args.clientId} in tenant ${args.tenantId}` +
        `${args.errorCode ? ` (${args.errorCode}${args.aadsts ? `, AADSTS${args.aadsts}` : ''})` : ''}: ${args.detail.replace(/\.+$/, '')}. ${hint}`,
      args.cause === undefined ? undefined : { cause: args.cause },
    );
    this.errorCode = args.errorCode;
    this.aadsts = args.aadsts;
    this.tenantId = args.tenantId;
    this.clientId = args.clientId;
  }
}

/** Advice for the Entra errors that come from configuration mistakes. */
export function aadstsHint(aadsts: string | undefined, errorCode: string | undefined): string {
  switch (aadsts) {
    case '7000215':
      return 'The client secret is wrong: set MARKETPLACE_CLIENT_SECRET to the secret *value* (not its ID) of a current secret of the app registration.';
    case '7000222':
      return 'The client secret has expired: create a new secret for the app registration and update MARKETPLACE_CLIENT_SECRET.';
    case '700016':
      return 'The application was not found in the tenant: check MARKETPLACE_CLIENT_ID and MARKETPLACE_TENANT_ID.';
    case '90002':
    case '900023':
      return 'The tenant was not found: check MARKETPLACE_TENANT_ID.';
    case '700027':
    case '700023':
      return 'The certificate was rejected: check that it is uploaded to the app registration, not expired, and that MARKETPLACE_CLIENT_CERTIFICATE_THUMBPRINT_SHA256 matches it.';
    default:
      break;
  }
  if (errorCode === 'invalid_client' || errorCode === 'unauthorized_client') {
    return 'Check MARKETPLACE_TENANT_ID, MARKETPLACE_CLIENT_ID and the client secret or certificate (and whether it has expired).';
  }
  return 'Check MARKETPLACE_TENANT_ID, MARKETPLACE_CLIENT_ID, the credential, and MARKETPLACE_AUTHORITY_HOST.';
}

/** Polling an operation did not reach Succeeded, Failed or Conflict within the allowed time. */
export class MarketplaceOperationTimeoutError extends Error {
  override readonly name = 'MarketplaceOperationTimeoutError';
  constructor(
    readonly subscriptionId: string | undefined,
    readonly operationId: string | undefined,
    readonly lastStatus: string | undefined,
    readonly polls: number,
    readonly elapsedMs: number,
  ) {
    super(
      `Marketplace operation ${operationId ?? '(unknown)'} of subscription ${subscriptionId ?? '(unknown)'} did not reach a final status ` +
        `after ${polls} poll(s) in ${elapsedMs} ms (last status ${lastStatus ?? 'unknown'})`,
    );
  }
}
