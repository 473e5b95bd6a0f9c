/**
 * A bounded call rate: `take()` resolves when the next call may start, calls spaced at least 1/rate apart (no
 * bursts). Shared by every call a reconciliation run makes to Microsoft; the client's own retries (429 with
 * Retry-After, 5xx) come on top and wait as the client decides.
 */
import { sleep } from '../marketplace/transport.js';

export class RateLimiter {
  private nextAt = 0;
  private readonly intervalMs: number;

  constructor(
    perSecond: number,
    private readonly now: () => number = Date.now,
    private readonly wait: (ms: number, signal?: AbortSignal) => Promise<void> = sleep,
  ) {
    if (!(perSecond > 0)) throw new RangeError(`the call rate must be above 0 per second, got ${perSecond}`);
    this.intervalMs = 1000 / perSecond;
  }

  async take(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const now = this.now();
    const at = Math.max(now, this.nextAt);
    this.nextAt = at + this.intervalMs;
    if (at > now) await this.wait(at - now, signal);
  }
}
