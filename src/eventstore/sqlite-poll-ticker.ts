/**
 * One poll timer for all the caught-up subscriptions of an embedded store (sqlite.store.ts).
 *
 * A caught-up subscription waits for a local append to a stream it reads (the store wakes it at once) or for a poll
 * tick, at which it compares the store's change mark (another process may have appended). With a timer each, an idle
 * service with a dozen subscriptions woke its event loop ~50 times a second; with one shared timer it wakes once per
 * interval, and the timer runs only while some subscription waits.
 */
export class PollTicker {
  private readonly waiting = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly everyMs: number) {}

  /** Calls `wake` at the next tick; the returned function takes it back (a local append woke it first, or a close). */
  wait(wake: () => void): () => void {
    this.waiting.add(wake);
    this.timer ??= setTimeout(() => this.tick(), this.everyMs);
    return () => {
      this.waiting.delete(wake);
      if (this.waiting.size === 0) this.stop();
    };
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    this.timer = undefined;
    const woken = [...this.waiting];
    this.waiting.clear();
    for (const wake of woken) wake();
  }
}
