/**
 * What the Fulfillment client and the operation poller share: per-call options, the shape of an
 * accepted (202) operation, and an abortable sleep. Neither of them imports the other for these.
 */

export type CallOptions = {
  /** A GUID tying this call to a wider operation; a new one is generated when absent. */
  correlationId?: string;
  signal?: AbortSignal;
  /**
   * The most this call may take, retries and the token included (ms). Past it the call stops with a
   * MarketplaceUnavailableError ("no answer within …"), whatever the client's own retry budget: for a caller a
   * person is waiting on (the landing page), which would rather say "try again shortly" than hang.
   */
  budgetMs?: number;
};

/** What a 202 from PATCH/DELETE subscription gives: where to follow the operation. */
export type AcceptedOperation = {
  subscriptionId: string;
  /** The `Operation-Location` URL as returned. */
  operationLocation: string;
  /** The operation ID from the `Operation-Location` path, when it has the documented shape. */
  operationId?: string;
  requestId: string;
  correlationId: string;
};

/** Wait `ms`, or reject with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
