/**
 * Time for the emulator: a clock (for timestamps, term dates and token expiry) and a timer set that
 * remembers what it scheduled so that `close()` can cancel everything. Tests inject a clock and use
 * short durations; nothing in the emulator reads `Date.now()` directly.
 */
export type Clock = () => Date;

export const systemClock: Clock = () => new Date();

/**
 * Microsoft's calendar: a base clock plus however far it has been moved on (`POST
 * /emulator/clock/advance`). It dates what Microsoft records (operations, terms, purchase-token
 * expiry, the 30-day limits); the webhook bearer tokens keep the base clock, so that a publisher's
 * verifier, on real time, still accepts them. The short timers (acknowledgement window, redelivery)
 * run on real time and do not move with it.
 */
export class CalendarClock {
  #offsetMs = 0;

  constructor(readonly base: Clock = systemClock) {}

  readonly now: Clock = () => new Date(this.base().getTime() + this.#offsetMs);

  get offsetMs(): number {
    return this.#offsetMs;
  }

  /** Moves the calendar on (never back); returns the new time. */
  advance(ms: number): Date {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`the calendar only moves forward (got ${ms} ms)`);
    this.#offsetMs += ms;
    return this.now();
  }
}

export class Timers {
  readonly #pending = new Set<NodeJS.Timeout>();
  readonly #sleepers = new Set<() => void>();
  #closed = false;

  /** Runs `fn` after `ms`; returns a cancel function. Does nothing once closed. */
  schedule(ms: number, fn: () => void): () => void {
    if (this.#closed) return () => {};
    const handle = setTimeout(() => {
      this.#pending.delete(handle);
      fn();
    }, Math.max(0, ms));
    this.#pending.add(handle);
    return () => {
      clearTimeout(handle);
      this.#pending.delete(handle);
    };
  }

  /** Resolves after `ms`, or at once when the timers are closed. */
  sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        this.#sleepers.delete(wake);
        cancel();
        resolve();
      };
      const cancel = this.schedule(ms, wake);
      this.#sleepers.add(wake);
    });
  }

  get size(): number {
    return this.#pending.size;
  }

  close(): void {
    this.#closed = true;
    for (const handle of this.#pending) clearTimeout(handle);
    this.#pending.clear();
    for (const wake of this.#sleepers) wake();
    this.#sleepers.clear();
  }
}

/** UTC midnight of `date`. */
export function startOfUtcDay(date: Date): Date {
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
}

export function addDays(date: Date, days: number): Date {
  return new Date(date.getTime() + days * 86_400_000);
}

/** Adds calendar months, clamping to the month's last day (Jan 31 + 1 month = Feb 28/29). */
export function addMonths(date: Date, months: number): Date {
  const y = date.getUTCFullYear();
  const m = date.getUTCMonth() + months;
  const lastDay = new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
  return new Date(
    Date.UTC(y, m, Math.min(date.getUTCDate(), lastDay), date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()),
  );
}

/** Months in a term unit (`P1M`, `P1Y` … `P5Y`); unknown units count as one month. */
export function termMonths(termUnit: string): number {
  const m = /^P(\d+)([MY])$/.exec(termUnit);
  if (!m) return 1;
  const n = Number(m[1]);
  return m[2] === 'Y' ? n * 12 : n;
}

/** A term starting at UTC midnight of `start`; it ends the day before the next term starts (docs/marketplace.md §4.1). */
export function termFrom(start: Date, termUnit: string): { startDate: Date; endDate: Date } {
  const startDate = startOfUtcDay(start);
  return { startDate, endDate: addDays(addMonths(startDate, termMonths(termUnit)), -1) };
}
