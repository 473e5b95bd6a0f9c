/**
 * Can the store write? What /readyz needs to know beyond "it answers".
 *
 * A store that reads fine but cannot write (disk full, I/O errors, a lock another process does not let
 * go of) must not say ready: every webhook would get 503. `WriteHealth` remembers the outcome of the
 * last write that said something about the store — an append that committed, or one that failed with a
 * store-level error — and, when nothing was written for a while, lets the store probe with a small
 * write of its own (rate-limited), so readiness turns back by itself once writes work again.
 */
import { StoreUnavailableError } from './eventstore.js';

/** The store answers, but cannot take writes right now: /readyz says not-ready with the reason. */
export class StoreNotWritableError extends StoreUnavailableError {
  override name = 'StoreNotWritableError';
  constructor(
    /** Why, in words: `cannot write: disk full`. */
    readonly reason: string,
    /** When writes started failing (ISO-8601). */
    readonly since: string,
  ) {
    super(reason);
  }
}

export type WriteHealthOptions = {
  /** The least time between two probes; a real write in between counts as one. */
  probeIntervalMs: number;
  /** A write's failure turned the store unwritable (logged once per outage). */
  onFailing?: (failure: { code: string; reason: string }) => void;
  /** A write succeeded after failures. */
  onRecovered?: (outage: { code: string; reason: string; since: string }) => void;
  /** Wall clock for `since`; default the system clock. */
  now?: () => Date;
};

type Failing = { code: string; reason: string; since: string };

export class WriteHealth {
  private failing: Failing | undefined;
  private lastOutcome = Number.NEGATIVE_INFINITY;
  private probing: Promise<void> | undefined;

  constructor(private readonly options: WriteHealthOptions) {}

  /** A write committed. */
  succeeded(): void {
    this.lastOutcome = performance.now();
    const was = this.failing;
    this.failing = undefined;
    if (was) this.options.onRecovered?.(was);
  }

  /** A write failed for a reason that is the store's (not the request's). */
  failed(failure: { code: string; reason: string }): void {
    this.lastOutcome = performance.now();
    if (this.failing?.code === failure.code) return;
    this.failing = { ...failure, since: this.failing?.since ?? (this.options.now?.() ?? new Date()).toISOString() };
    this.options.onFailing?.(failure);
  }

  /** The current outage, if any. */
  get failure(): Readonly<Failing> | undefined {
    return this.failing;
  }

  /**
   * Throws StoreNotWritableError while writes fail. Runs `probe` (a small write that reports its own outcome
   * through succeeded()/failed()) first when no write said anything for `probeIntervalMs`; concurrent
   * checks share one probe.
   */
  async check(probe: () => Promise<unknown>): Promise<void> {
    if (performance.now() - this.lastOutcome >= this.options.probeIntervalMs) {
      this.probing ??= probe()
        .then(
          () => undefined,
          () => undefined, // the probe recorded what went wrong
        )
        .finally(() => (this.probing = undefined));
      await this.probing;
    }
    const f = this.failing;
    if (f) throw new StoreNotWritableError(`cannot write: ${f.reason}`, f.since);
  }
}
