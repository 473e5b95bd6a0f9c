/**
 * Follows an `Operation-Location` (202 from PATCH/DELETE subscription) to a final status:
 * `Succeeded`, `Failed` or `Conflict` (docs/marketplace.md §3.6, §6). Polls every few seconds with a gentle
 * backoff, bounded by a total wait; unknown statuses (a new value Microsoft adds) keep it polling.
 *
 * Each poll is an ordinary client call (so it is retried on 429/5xx within the client's budget).
 */
import type { Logger } from 'pino';
import { MarketplaceOperationTimeoutError } from './errors.js';
import type { AcceptedOperation, CallOptions } from './transport.js';
import { isFinalOperationStatus } from './schemas.js';
import type { FinalOperationStatus, NormalisedOperation } from './schemas.js';
import { sleep } from './transport.js';

export type OperationPollOptions = {
  /** First wait before polling; default 2 s. */
  initialDelayMs?: number;
  /** Wait between polls; grows by `backoffFactor` up to `maxIntervalMs`. Default 2 s. */
  intervalMs?: number;
  /** Default 1.5. */
  backoffFactor?: number;
  /** Default 15 s. */
  maxIntervalMs?: number;
  /** Total time before giving up; default 5 min ("it can take minutes"). */
  maxWaitMs?: number;
  correlationId?: string;
  signal?: AbortSignal;
  logger?: Logger;
  /** Test hook. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
};

/** What the poller needs from the client. */
export type OperationSource = {
  getOperationAt(location: string, options?: CallOptions): Promise<NormalisedOperation>;
};

export type FinalOperation = NormalisedOperation & { status: FinalOperationStatus };

export type OperationPollResult = {
  operation: FinalOperation;
  polls: number;
  elapsedMs: number;
};

/**
 * Polls `accepted.operationLocation` until the operation is final. Throws
 * `MarketplaceOperationTimeoutError` when `maxWaitMs` passes first, and the client's typed errors
 * (e.g. 404) as they come.
 */
export async function waitForOperation(
  client: OperationSource,
  accepted: Pick<AcceptedOperation, 'operationLocation'> & Partial<AcceptedOperation>,
  options: OperationPollOptions = {},
): Promise<OperationPollResult> {
  const initialDelayMs = options.initialDelayMs ?? 2_000;
  const backoffFactor = options.backoffFactor ?? 1.5;
  const maxIntervalMs = options.maxIntervalMs ?? 15_000;
  const maxWaitMs = options.maxWaitMs ?? 300_000;
  const doSleep = options.sleep ?? sleep;
  const correlationId = options.correlationId ?? accepted.correlationId;
  const callOptions: CallOptions = {
    ...(correlationId ? { correlationId } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const log = options.logger?.child({ component: 'marketplace-operation-poller' });
  const started = Date.now();
  let interval = options.intervalMs ?? 2_000;
  let polls = 0;
  let last: NormalisedOperation | undefined;

  if (initialDelayMs > 0) await doSleep(Math.min(initialDelayMs, maxWaitMs), options.signal);
  for (;;) {
    options.signal?.throwIfAborted();
    last = await client.getOperationAt(accepted.operationLocation, callOptions);
    polls++;
    const elapsedMs = Date.now() - started;
    const status = last.status;
    if (isFinalOperationStatus(status)) {
      log?.info(
        {
          subscriptionId: accepted.subscriptionId ?? last.subscriptionId,
          operationId: last.id,
          status,
          polls,
          elapsedMs,
          correlationId,
        },
        'marketplace operation finished',
      );
      return { operation: { ...last, status }, polls, elapsedMs };
    }
    const remaining = maxWaitMs - elapsedMs;
    if (remaining <= 0) {
      const error = new MarketplaceOperationTimeoutError(
        accepted.subscriptionId ?? last.subscriptionId ?? undefined,
        accepted.operationId ?? last.id,
        status,
        polls,
        elapsedMs,
      );
      log?.warn({ operationId: error.operationId, lastStatus: status, polls, elapsedMs, correlationId }, 'marketplace operation still pending');
      throw error;
    }
    log?.debug({ operationId: last.id, status, polls, nextPollMs: interval }, 'marketplace operation pending');
    await doSleep(Math.min(interval, remaining), options.signal);
    interval = Math.min(maxIntervalMs, Math.round(interval * backoffFactor));
  }
}

