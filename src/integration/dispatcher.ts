/**
 * Delivers the outboxes (see outbox.ts): one queue per subscription, its head POSTed to the ISV
 * until a 2xx, every outcome recorded in the `outbox-<subscriptionId>` stream before the next step.
 *
 * - Per subscription, in order: a queue delivers its head only; a failing subscription waits on its
 *   own timer (exponential backoff with jitter, `Retry-After` honoured) and holds back nobody else.
 * - Bounded: after `maxAttempts` the head is DeadLettered and blocks its queue until an operator
 *   retries or skips it (`retry`, `skip`; the operator API exposes them).
 * - When a delivery succeeds after the receiver was failing, queues waiting on a long backoff are
 *   woken within a second, so a receiver that comes back is caught up quickly.
 * - Crash-safe: the queues are rebuilt from the outbox streams at start (`recover`). A delivery that
 *   was acknowledged but not yet recorded when the process died is sent again with the same
 *   idempotency key (at-least-once on the wire; exactly once per key for a receiver that dedupes).
 * - Several instances on one store: `active()` says whether this instance should deliver (the
 *   integration process's runner: on SQLite only the lease holder is active). Every instance follows
 *   the outbox streams live, so its queues (and the dead-letter list it shows operators) stay
 *   current, and an operator's retry made through any instance is picked up by the active one.
 *   Every write is appended at the revision it was decided on, so two instances never record two
 *   outcomes for one attempt; where several are active at once (EventStoreDB persistent
 *   subscriptions) they may both POST the same event, which the idempotency key makes harmless.
 */
import { categoryPrefix, entityIdOf } from '../eventstore/eventstore.js';
import { retryOnConflict } from '../eventstore/conflict-retry.js';
import type { EventStore, NewEvent, RecordedEvent, StoreSubscription } from '../eventstore/eventstore.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { deterministicId } from './ids.js';
import type { IntegrationEvent } from './outbound-event.js';
import { backoffDelay, decodeOutboxEvent, evolveOutbox, initialOutbox, nextStep, outboxCategory, outboxStream } from './outbox.js';
import type { OutboxEntry, OutboxEvent, OutboxState } from './outbox.js';
import type { SendResult, WebhookSender } from './webhook-sender.js';

export type DispatcherOptions = {
  store: EventStore;
  sender: WebhookSender;
  logger: Logger;
  maxAttempts: number;
  /** First retry after about this long (default 1 s), doubling up to `backoffMaxMs` (default 15 min). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Deliveries in flight at once across subscriptions (default 8). */
  concurrency?: number;
  now?: () => number;
  random?: () => number;
  /** Whether this instance delivers now (default: always). Checked before every step and every `activeCheckMs`. */
  active?: () => boolean;
  activeCheckMs?: number;
  /** Each delivery attempt's outcome (src/metrics/metrics.ts). */
  metrics?: Pick<Metrics, 'outboundDelivery'>;
};

export type DeadLetter = {
  eventId: string;
  subscriptionId: string;
  type: string;
  sequence: number;
  occurredAt: string;
  attempts: number;
  deadLetteredAt: string;
  lastError: string;
  lastStatus?: number;
  /** Later events of the same subscription waiting behind this one. */
  blockedEvents: number;
};

export type Resolution = { eventId: string; subscriptionId: string };

export type OutboxStatus = {
  /** Subscriptions with at least one undelivered event. */
  subscriptions: number;
  pending: number;
  /** Heads that failed at least once and wait for their next attempt. */
  retrying: number;
  deadLettered: number;
  inFlight: number;
};

/** What the operator API needs; also implemented by the disabled integration (no URL configured). */
export interface DeadLetterAdmin {
  readonly enabled: boolean;
  deadLetters(filter?: { subscriptionId?: string }): Promise<DeadLetter[]>;
  /** undefined when `eventId` is not a dead letter. */
  retry(eventId: string, actor: string): Promise<Resolution | undefined>;
  skip(eventId: string, actor: string, reason?: string): Promise<Resolution | undefined>;
  status(): Promise<OutboxStatus>;
}

const actor = 'system:integration-events';
/** Outbox events that give a queue something new to do. */
const wakingTypes = new Set(['DeliveryScheduled', 'DeadLetterRetried', 'DeadLetterSkipped']);
/** Woken queues start again within this much time, spread so they do not all hit the receiver at once. */
const WAKE_SPREAD_MS = 1000;

type Queue = {
  subscriptionId: string;
  state: OutboxState;
  /** Revision of the last outbox event folded into `state`. */
  revision: bigint | undefined;
  lock: Promise<unknown>;
  pumping: boolean;
  again: boolean;
  timer?: NodeJS.Timeout;
  /** When the queue waits on its timer (unix ms). */
  waitingUntil?: number;
  /** An in-memory override of the head's recorded nextAttemptAt (early wake after a recovery). */
  notBefore?: number;
};

export class OutboxDispatcher implements DeadLetterAdmin {
  readonly enabled = true;
  private readonly queues = new Map<string, Queue>();
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly concurrency: number;
  private readonly abort = new AbortController();
  private readonly pumps = new Set<Promise<void>>();
  private readonly slotWaiters: Array<() => void> = [];
  private inFlight = 0;
  private stopped = false;
  private recovered: Promise<void> | undefined;
  private following: Promise<void> | undefined;
  private followSubscription: StoreSubscription | undefined;
  private activeWatch: NodeJS.Timeout | undefined;
  private wasActive = false;

  constructor(private readonly options: DispatcherOptions) {
    this.log = options.logger.child({ component: 'integration-events' });
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.baseMs = options.backoffBaseMs ?? 1000;
    this.maxMs = options.backoffMaxMs ?? 15 * 60_000;
    this.concurrency = Math.max(1, options.concurrency ?? 8);
  }

  /** Rebuild every queue from the outbox streams and resume the ones with work. Idempotent. */
  recover(): Promise<void> {
    this.recovered ??= (async () => {
      const found = new Map<string, { state: OutboxState; revision: bigint }>();
      let last: bigint | undefined;
      for await (const e of this.options.store.readAll({ streamPrefixes: [categoryPrefix(outboxCategory)] })) {
        last = e.position;
        const event = decodeOutboxEvent(e);
        if (!event) continue;
        const id = entityIdOf(e.streamId);
        const current = found.get(id) ?? { state: initialOutbox(id), revision: -1n };
        found.set(id, { state: evolveOutbox(current.state, event), revision: e.revision });
      }
      let resumed = 0;
      for (const [id, { state, revision }] of found) {
        if (!this.queues.has(id)) this.queues.set(id, this.newQueue(id, state, revision));
        if (state.pending.length > 0) {
          resumed++;
          this.wake(id);
        }
      }
      this.log.info({ outboxes: found.size, withPendingEvents: resumed }, 'integration outboxes recovered');
      this.following ??= this.follow(last);
    })();
    this.recovered.catch(() => {
      this.recovered = undefined; // the next caller tries again
    });
    return this.recovered;
  }

  /** Recover, follow the outbox streams, and (with `active`) watch for this instance becoming the active one. */
  start(): Promise<void> {
    if (this.options.active && !this.activeWatch) {
      this.wasActive = this.isActive();
      this.activeWatch = setInterval(() => {
        const now = this.isActive();
        if (now && !this.wasActive) {
          this.log.info({ queues: this.queues.size }, 'this instance delivers integration events now');
          for (const q of this.queues.values()) if (q.state.pending.length > 0) this.wake(q.subscriptionId);
        }
        this.wasActive = now;
      }, this.options.activeCheckMs ?? 1000);
      this.activeWatch.unref?.();
    }
    return this.recover();
  }

  /** Put an integration event in its subscription's queue (once: a replayed one is ignored) and deliver. */
  async schedule(event: IntegrationEvent): Promise<void> {
    const q = this.queue(event.subscriptionId);
    await this.write(q, (s) =>
      event.sequence <= s.lastScheduled || s.pending.some((p) => p.event.id === event.id)
        ? undefined
        : [{ type: 'DeliveryScheduled', data: { eventId: event.id, sequence: event.sequence, at: new Date(this.now()).toISOString(), event } }],
      deterministicId('outbox-scheduled', event.id),
    );
    this.wake(event.subscriptionId);
  }

  wake(subscriptionId: string): void {
    if (this.stopped) return;
    const q = this.queue(subscriptionId);
    q.again = true;
    if (q.pumping) return;
    const run = this.pump(q).finally(() => this.pumps.delete(run));
    this.pumps.add(run);
  }

  async deadLetters(filter: { subscriptionId?: string } = {}): Promise<DeadLetter[]> {
    await this.recover();
    const out: DeadLetter[] = [];
    for (const q of this.queues.values()) {
      if (filter.subscriptionId !== undefined && q.subscriptionId !== filter.subscriptionId) continue;
      if (!q.state.pending[0]?.deadLetteredAt) continue;
      await this.locked(q, () => this.refresh(q));
      const head = q.state.pending[0];
      if (head?.deadLetteredAt) out.push(deadLetterOf(q.state, head));
    }
    return out.sort((a, b) => a.deadLetteredAt.localeCompare(b.deadLetteredAt));
  }

  async retry(eventId: string, by: string): Promise<Resolution | undefined> {
    return this.resolve(eventId, (entry) => ({ type: 'DeadLetterRetried', data: { eventId: entry.event.id, at: new Date(this.now()).toISOString(), actor: by } }));
  }

  async skip(eventId: string, by: string, reason?: string): Promise<Resolution | undefined> {
    return this.resolve(eventId, (entry) => ({
      type: 'DeadLetterSkipped',
      data: { eventId: entry.event.id, at: new Date(this.now()).toISOString(), actor: by, ...(reason !== undefined ? { reason } : {}) },
    }));
  }

  async status(): Promise<OutboxStatus> {
    const status: OutboxStatus = { subscriptions: 0, pending: 0, retrying: 0, deadLettered: 0, inFlight: this.inFlight };
    for (const q of this.queues.values()) {
      const head = q.state.pending[0];
      if (!head) continue;
      status.subscriptions++;
      status.pending += q.state.pending.length;
      if (head.deadLetteredAt) status.deadLettered++;
      else if (head.attempts > 0) status.retrying++;
    }
    return status;
  }

  /** Stop delivering: timers cleared, requests in flight cancelled (they are sent again after a restart). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    if (this.activeWatch) clearInterval(this.activeWatch);
    for (const q of this.queues.values()) if (q.timer) clearTimeout(q.timer);
    for (const w of this.slotWaiters.splice(0)) w();
    await this.recovered?.catch(() => undefined);
    await this.followSubscription?.close();
    await this.following;
    await Promise.allSettled([...this.pumps]);
  }

  // ----------------------------------------------------------------------------------------------

  private isActive(): boolean {
    return this.options.active?.() ?? true;
  }

  /**
   * Every outbox event, live from `after`: keep the queue's state current (another instance or an
   * operator may have written it) and wake the queue when it has something new to do.
   */
  private async follow(after: bigint | undefined): Promise<void> {
    let from = after;
    while (!this.stopped) {
      try {
        this.followSubscription = this.options.store.subscribeToAll({ ...(from !== undefined ? { after: from } : {}), streamPrefixes: [categoryPrefix(outboxCategory)] });
        if (this.stopped) await this.followSubscription.close();
        for await (const e of this.followSubscription) {
          from = e.position;
          const q = this.queue(entityIdOf(e.streamId));
          await this.locked(q, () => this.refresh(q));
          if (wakingTypes.has(e.type)) this.wake(q.subscriptionId);
        }
        return;
      } catch (err) {
        if (this.stopped) return;
        this.log.error({ err }, 'following the outbox streams failed; resubscribing');
        await new Promise((r) => setTimeout(r, 1000).unref?.());
      }
    }
  }

  private newQueue(subscriptionId: string, state = initialOutbox(subscriptionId), revision?: bigint): Queue {
    return { subscriptionId, state, revision, lock: Promise.resolve(), pumping: false, again: false };
  }

  private queue(subscriptionId: string): Queue {
    let q = this.queues.get(subscriptionId);
    if (!q) {
      q = this.newQueue(subscriptionId);
      this.queues.set(subscriptionId, q);
    }
    return q;
  }

  private locked<T>(q: Queue, work: () => Promise<T>): Promise<T> {
    const run = q.lock.then(work, work);
    q.lock = run.catch(() => undefined);
    return run;
  }

  private async refresh(q: Queue): Promise<void> {
    const from = q.revision === undefined ? 0n : q.revision + 1n;
    const events: RecordedEvent[] = await this.options.store.readStream(outboxStream(q.subscriptionId), { fromRevision: from });
    for (const e of events) {
      const event = decodeOutboxEvent(e);
      if (event) q.state = evolveOutbox(q.state, event);
      q.revision = e.revision;
    }
  }

  /**
   * Decide on the freshest state and append at the revision decided on; on a conflict (another
   * instance wrote), read again and decide again. Returns false when there was nothing to write.
   */
  private write(q: Queue, decide: (state: OutboxState) => OutboxEvent[] | undefined, firstEventId?: string): Promise<boolean> {
    return this.locked(q, () =>
      retryOnConflict({ maxAttempts: 10 }, async () => {
        await this.refresh(q);
        const events = decide(q.state);
        if (!events || events.length === 0) return false;
        const batch: NewEvent[] = events.map((e, i) => ({
          ...(i === 0 && firstEventId ? { id: firstEventId } : {}),
          type: e.type,
          data: e.data,
          // The delivery of one ledger event is one unit of work: its schedule, attempts and dead letter share its id.
          metadata: { actor, correlationId: e.data.eventId, causationId: e.data.eventId },
        }));
        await this.options.store.appendToStream(outboxStream(q.subscriptionId), batch, { expectedRevision: q.revision ?? 'no_stream' });
        await this.refresh(q);
        return true;
      }),
    );
  }

  private async resolve(eventId: string, record: (entry: OutboxEntry) => OutboxEvent): Promise<Resolution | undefined> {
    await this.recover();
    for (const q of this.queues.values()) {
      if (!q.state.pending.some((p) => p.event.id === eventId)) continue;
      const written = await this.write(q, (s) => {
        const head = s.pending[0];
        return head?.event.id === eventId && head.deadLetteredAt ? [record(head)] : undefined;
      });
      if (!written) return undefined;
      q.notBefore = undefined;
      this.wake(q.subscriptionId);
      return { eventId, subscriptionId: q.subscriptionId };
    }
    return undefined;
  }

  private async acquire(): Promise<boolean> {
    while (this.inFlight >= this.concurrency) {
      if (this.stopped) return false;
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    }
    if (this.stopped) return false;
    this.inFlight++;
    return true;
  }

  private release(): void {
    this.inFlight--;
    this.slotWaiters.shift()?.();
  }

  private async pump(q: Queue): Promise<void> {
    q.pumping = true;
    try {
      while (!this.stopped && this.isActive()) {
        q.again = false;
        await this.locked(q, () => this.refresh(q));
        const step = nextStep(q.state, this.now(), q.notBefore);
        if (step.kind === 'idle' || step.kind === 'blocked') {
          if (q.again) continue;
          return;
        }
        if (step.kind === 'wait') {
          this.waitUntil(q, step.untilMs);
          return;
        }
        if (q.timer) clearTimeout(q.timer);
        q.waitingUntil = undefined;
        if (!(await this.acquire())) return;
        let result: SendResult;
        try {
          result = await this.options.sender.send(
            { idempotencyKey: step.entry.event.id, type: step.entry.event.type, body: JSON.stringify(step.entry.event) },
            step.attempt,
            this.abort.signal,
          );
        } finally {
          this.release();
        }
        // Shutting down: an acknowledgement is still recorded (the store closes after this), a
        // cancelled attempt is not (it is sent again after the restart, with the same key).
        if (this.stopped && !result.ok) return;
        await this.record(q, step.entry, step.attempt, result);
      }
    } catch (err) {
      // The store failed: try again later rather than spinning.
      this.log.error({ err, subscriptionId: q.subscriptionId }, 'outbox step failed; retrying');
      if (!this.stopped) this.waitUntil(q, this.now() + backoffDelay(3, { baseMs: this.baseMs, maxMs: this.maxMs, random: this.random }));
    } finally {
      q.pumping = false;
    }
  }

  private waitUntil(q: Queue, untilMs: number): void {
    if (q.timer) clearTimeout(q.timer);
    q.waitingUntil = untilMs;
    q.timer = setTimeout(() => {
      q.timer = undefined;
      q.waitingUntil = undefined;
      this.wake(q.subscriptionId);
    }, Math.max(0, untilMs - this.now()));
    q.timer.unref?.();
  }

  private async record(q: Queue, entry: OutboxEntry, attempt: number, result: SendResult): Promise<void> {
    const event = entry.event;
    const at = new Date(this.now()).toISOString();
    const fields = { subscriptionId: q.subscriptionId, eventId: event.id, type: event.type, sequence: event.sequence, attempt, durationMs: result.durationMs };
    const isHead = (s: OutboxState) => s.pending[0]?.event.id === event.id && s.pending[0].attempts === attempt - 1 && !s.pending[0].deadLetteredAt;
    q.notBefore = undefined;
    this.options.metrics?.outboundDelivery(result.ok ? 'delivered' : attempt >= this.options.maxAttempts ? 'dead-lettered' : 'failed');
    if (result.ok) {
      await this.write(q, (s) => (isHead(s) ? [{ type: 'Delivered', data: { eventId: event.id, attempt, at, status: result.status, durationMs: result.durationMs } }] : undefined));
      if (attempt > 1) {
        this.log.info({ ...fields, status: result.status }, 'integration event delivered after retries');
        this.wakeWaiting(q);
      } else {
        this.log.debug({ ...fields, status: result.status }, 'integration event delivered');
      }
      return;
    }
    const status = result.status !== undefined ? { status: result.status } : {};
    if (attempt >= this.options.maxAttempts) {
      await this.write(q, (s) => (isHead(s) ? [{ type: 'DeadLettered', data: { eventId: event.id, attempts: attempt, at, error: result.error, ...status } }] : undefined));
      this.log.error(
        { ...fields, ...status, error: result.error, blockedEvents: q.state.pending.length - 1 },
        'integration event dead-lettered: later events of this subscription wait until an operator retries or skips it',
      );
      return;
    }
    const delay = backoffDelay(attempt, {
      baseMs: this.baseMs,
      maxMs: this.maxMs,
      random: this.random,
      ...(result.retryAfterMs !== undefined ? { retryAfterMs: result.retryAfterMs } : {}),
    });
    const nextAttemptAt = new Date(this.now() + delay).toISOString();
    await this.write(q, (s) =>
      isHead(s) ? [{ type: 'DeliveryFailed', data: { eventId: event.id, attempt, at, error: result.error, nextAttemptAt, ...status } }] : undefined,
    );
    this.log.warn({ ...fields, ...status, error: result.error, retryInMs: delay }, 'integration event not acknowledged; will retry');
  }

  /** The receiver answers again: queues sleeping on a long backoff try again soon (spread over a second). */
  private wakeWaiting(except: Queue): void {
    const soon = this.now() + WAKE_SPREAD_MS;
    for (const q of this.queues.values()) {
      if (q === except || q.waitingUntil === undefined || q.waitingUntil <= soon) continue;
      q.notBefore = this.now() + Math.round(this.random() * WAKE_SPREAD_MS);
      this.waitUntil(q, q.notBefore);
    }
  }
}

function deadLetterOf(state: OutboxState, head: OutboxEntry): DeadLetter {
  return {
    eventId: head.event.id,
    subscriptionId: state.subscriptionId,
    type: head.event.type,
    sequence: head.event.sequence,
    occurredAt: head.event.occurredAt,
    attempts: head.attempts,
    deadLetteredAt: head.deadLetteredAt ?? '',
    lastError: head.lastError ?? '',
    ...(head.lastStatus !== undefined ? { lastStatus: head.lastStatus } : {}),
    blockedEvents: state.pending.length - 1,
  };
}
