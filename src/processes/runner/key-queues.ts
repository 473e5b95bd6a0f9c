/**
 * The catch-up runner's scheduler: one queue per ordering key (`ProcessHandler.keyOf`, default the stream id),
 * at most `concurrency` keys handled at once, and the watermark the checkpoint may be saved at.
 *
 * - A key handles its events one at a time, in the order they arrived. When its first event fails, the key waits
 *   (retrying after a backoff, or parked; held.ts `afterFailure` decides) and its later events queue behind it;
 *   every other key goes on.
 * - The watermark is the position of the last received event such that every event received up to it is either
 *   handled or HELD: an event of a failing key, or one that was held before and is not handled yet. Held events
 *   are listed (by reference) in the snapshot that is saved with the watermark, so a checkpoint never moves past
 *   an event that is neither handled nor recorded. Keys that complete out of order therefore never skip an
 *   event: an event handled past the watermark is simply handed over again after a crash (handlers are
 *   idempotent).
 * - A failing key's events are all in the snapshot, even those past the watermark (so a parked key is listed at
 *   once, whatever slower keys hold the watermark back). Restored at start, those past the checkpoint are
 *   delivered again by the subscription; they are recognised and not queued twice.
 */
import type { RecordedEvent } from '../../eventstore/eventstore.js';
import type { Logger } from '../../logger.js';
import { afterFailure, describeError, isTransient, refOf } from './held.js';
import type { FailurePolicy, HeldFailure, HeldKey } from './held.js';
import type { ProcessHandler } from './types.js';
import { subscriptionOf } from './log-ids.js';

export type KeyQueuesOptions = {
  handler: ProcessHandler;
  policy: FailurePolicy;
  concurrency: number;
  /** Unhandled, unheld events kept in memory before the subscription waits for room. */
  maxUnsettled: number;
  log: Logger;
  /** What the snapshot says changed; `urgent` when an operator should see it at once (parked, retry requested). */
  changed(urgent: boolean): void;
  /** The watermark moved. */
  advanced(): void;
};

/** A key restored from the checkpoint record, its events read back from the store. */
export type RestoredKey = { key: string; events: RecordedEvent[]; failure?: HeldFailure };

type KeyState = {
  key: string;
  /** Unhandled events of the key, oldest first; the first is the one being (or next to be) attempted. */
  events: RecordedEvent[];
  running: boolean;
  /** In the ready queue. */
  ready: boolean;
  failure: HeldFailure | undefined;
  timer: NodeJS.Timeout | undefined;
};

const iso = (ms: number): string => new Date(ms).toISOString();
/** setTimeout's limit (about 24.8 days); a later retry is attempted then, and rescheduled if the handler says so. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class KeyQueues {
  /** The checkpoint may be saved here (with `snapshot()`); undefined before any event. */
  watermark: bigint | undefined;
  private readonly keys = new Map<string, KeyState>();
  private readonly readyQueue: KeyState[] = [];
  /** Received events past the watermark, ascending: true once handled or held. */
  private readonly pending = new Map<bigint, boolean>();
  private unsettled = 0;
  /** Restored events past the checkpoint: the subscription hands them over again. */
  private readonly ahead = new Set<bigint>();
  private runningCount = 0;
  private stopped = false;
  private readonly inFlight = new Set<Promise<void>>();
  private roomWaiters: Array<() => void> = [];

  constructor(
    start: bigint | undefined,
    private readonly o: KeyQueuesOptions,
  ) {
    this.watermark = start;
  }

  /** Keys held when the checkpoint was saved: retried when due, parked ones left for an operator. */
  restore(keys: readonly RestoredKey[], nowMs: number): void {
    for (const restored of keys) {
      if (restored.events.length === 0) continue;
      const state = this.stateOf(restored.key);
      state.events.push(...restored.events);
      for (const e of restored.events) if (this.watermark === undefined || e.position > this.watermark) this.ahead.add(e.position);
      state.failure = restored.failure;
      if (restored.failure?.status === 'retrying') {
        const due = Date.parse(restored.failure.nextAttemptAt ?? '');
        this.retryIn(state, Number.isNaN(due) ? 0 : Math.max(0, due - nowMs));
      } else this.schedule(state);
    }
  }

  /** A new event from the subscription. */
  add(event: RecordedEvent): void {
    if (this.ahead.delete(event.position)) return this.skip(event.position); // restored: already queued (or handled)
    const state = this.stateOf(this.keyOf(event));
    state.events.push(event);
    if (state.failure) {
      this.pending.set(event.position, true);
      this.advance();
      this.o.changed(state.failure.status === 'parked');
    } else {
      this.pending.set(event.position, false);
      this.unsettled++;
      this.schedule(state);
    }
  }

  /** An event with nothing for the handler (an operator's request, applied). */
  skip(position: bigint): void {
    if (!this.pending.has(position)) this.pending.set(position, true);
    else this.settle(position);
    this.advance();
  }

  /** An operator's retry: the key's events are attempted again now, its failure forgotten. False when it is not held. */
  retry(key: string, actor: string): boolean {
    const state = this.keys.get(key);
    if (!state?.failure) return false;
    clearTimeout(state.timer);
    state.timer = undefined;
    const was = state.failure;
    state.failure = undefined;
    this.o.log.info(
      { key, was: was.status, attempts: was.attempts, lastError: was.lastError, events: state.events.length, actor },
      'operator retry: handling the held events of this key again, in order',
    );
    this.o.changed(true);
    this.schedule(state);
    return true;
  }

  /** What the checkpoint saved at `watermark` must list: see the header. */
  snapshot(): HeldKey[] {
    const w = this.watermark;
    const out: HeldKey[] = [];
    for (const state of this.keys.values()) {
      const events = state.failure ? state.events : state.events.filter((e) => w !== undefined && e.position <= w);
      if (events.length === 0) continue;
      out.push({ key: state.key, events: events.map(refOf), ...(state.failure ? { failure: { ...state.failure } } : {}) });
    }
    return out;
  }

  /** Resolves when fewer than `maxUnsettled` received events are neither handled nor held (or when stopped). */
  async room(): Promise<void> {
    while (!this.stopped && this.unsettled >= this.o.maxUnsettled) {
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
  }

  /** No new attempts; resolves when the attempts under way are over. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const state of this.keys.values()) {
      clearTimeout(state.timer);
      state.timer = undefined;
    }
    this.wakeRoom();
    await Promise.all([...this.inFlight]);
  }

  private keyOf(event: RecordedEvent): string {
    if (!this.o.handler.keyOf) return event.streamId;
    try {
      return this.o.handler.keyOf(event);
    } catch (err) {
      this.o.log.warn({ err, streamId: event.streamId, position: event.position.toString() }, 'keyOf failed: ordering this event by its stream id');
      return event.streamId;
    }
  }

  private stateOf(key: string): KeyState {
    let state = this.keys.get(key);
    if (!state) {
      state = { key, events: [], running: false, ready: false, failure: undefined, timer: undefined };
      this.keys.set(key, state);
    }
    return state;
  }

  private schedule(state: KeyState): void {
    const waiting = state.running || state.ready || state.timer !== undefined || state.failure?.status === 'parked';
    if (!waiting && state.events.length > 0) {
      state.ready = true;
      this.readyQueue.push(state);
    }
    this.pump();
  }

  private pump(): void {
    while (!this.stopped && this.runningCount < this.o.concurrency) {
      const state = this.readyQueue.shift();
      if (!state) return;
      state.ready = false;
      if (state.running || state.timer !== undefined || state.failure?.status === 'parked' || state.events.length === 0) continue;
      state.running = true;
      this.runningCount++;
      const attempt = this.attempt(state);
      this.inFlight.add(attempt);
      void attempt.finally(() => this.inFlight.delete(attempt));
    }
  }

  private async attempt(state: KeyState): Promise<void> {
    const event = state.events[0] as RecordedEvent;
    let failure: { err: unknown } | undefined;
    try {
      await this.o.handler.handle(event);
    } catch (err) {
      failure = { err };
    } finally {
      state.running = false;
      this.runningCount--;
    }
    if (!failure) this.handled(state, event);
    else if (!this.stopped) this.failed(state, event, failure.err);
    // Stopped: the record keeps the event as it was; the next runner attempts it again.
    if (!this.stopped) this.schedule(state);
  }

  private handled(state: KeyState, event: RecordedEvent): void {
    state.events.shift();
    const wasHeld = this.pending.get(event.position) !== false;
    const recovered = state.failure;
    state.failure = undefined;
    if (recovered) {
      this.o.log.info(
        { key: state.key, eventType: event.type, streamId: event.streamId, ...subscriptionOf(event), position: event.position.toString(), attempts: recovered.attempts + 1 },
        'handled after failing: the events of this key behind it go on',
      );
    }
    if (state.events.length === 0 && state.timer === undefined) this.keys.delete(state.key);
    if (this.pending.get(event.position) === false) this.settle(event.position);
    if (wasHeld || recovered) this.o.changed(false);
    this.advance();
  }

  private failed(state: KeyState, event: RecordedEvent, err: unknown): void {
    const nowMs = Date.now();
    const previous = state.failure;
    const attempts = (previous?.attempts ?? 0) + 1;
    const errors = (previous?.errors ?? 0) + (isTransient(err) ? 0 : 1);
    const decision = afterFailure(err, { attempts, errors }, this.o.policy, nowMs);
    const failure: HeldFailure = {
      status: decision.kind === 'park' ? 'parked' : 'retrying',
      attempts,
      errors,
      firstFailureAt: previous?.firstFailureAt ?? iso(nowMs),
      lastFailureAt: iso(nowMs),
      lastError: describeError(err),
      transient: decision.transient,
      ...(decision.kind === 'retry' ? { nextAttemptAt: iso(nowMs + decision.inMs) } : {}),
      ...(decision.until !== undefined ? { until: decision.until } : {}),
    };
    state.failure = failure;
    for (const e of state.events) if (this.pending.get(e.position) === false) this.settle(e.position);
    const where = {
      err,
      key: state.key,
      eventType: event.type,
      streamId: event.streamId,
      ...subscriptionOf(event),
      position: event.position.toString(),
      attempt: attempts,
      firstFailureAt: failure.firstFailureAt,
      heldEvents: state.events.length,
      ...(failure.until !== undefined ? { until: failure.until } : {}),
    };
    if (decision.kind === 'retry') {
      this.retryIn(state, decision.inMs);
      this.o.log.warn(
        { ...where, retryInMs: decision.inMs, nextAttemptAt: failure.nextAttemptAt, transient: decision.transient },
        decision.transient
          ? 'handler cannot handle the event now (RetryLater); retrying it later, the other keys go on'
          : 'handler failed; retrying the event later, the other keys go on',
      );
      this.o.changed(false);
    } else {
      this.o.log.error(
        { ...where, why: decision.why, retry: `POST /api/processes/${this.o.handler.name}/parked/${encodeURIComponent(state.key)}/retry` },
        'event parked: its key waits for an operator (GET /api/processes/parked), the other keys go on',
      );
      this.o.changed(true);
    }
    this.advance();
  }

  private retryIn(state: KeyState, ms: number): void {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => {
      state.timer = undefined;
      this.schedule(state);
    }, Math.min(ms, MAX_TIMER_MS));
    state.timer.unref();
  }

  private settle(position: bigint): void {
    if (this.pending.get(position) !== false) return;
    this.pending.set(position, true);
    this.unsettled--;
    if (this.unsettled < this.o.maxUnsettled) this.wakeRoom();
  }

  /** Moves the watermark over the settled events at the front. */
  private advance(): void {
    let moved = false;
    for (const [position, settled] of this.pending) {
      if (!settled) break;
      this.pending.delete(position);
      this.watermark = position;
      moved = true;
    }
    if (moved) this.o.advanced();
  }

  private wakeRoom(): void {
    for (const wake of this.roomWaiters.splice(0)) wake();
  }
}
