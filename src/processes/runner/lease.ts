/**
 * A lease that lets ONE instance at a time run a process manager, kept as events in a `lease-<name>` stream
 * through the EventStore port, so it works on any store (two `npm start` on one SQLite file, or EventStoreDB in
 * `lease` mode). Every write is an append with the expected revision of what the writer last read: of two
 * instances acting on the same state, exactly one succeeds, the other re-reads.
 *
 *   LeaseAcquired  {instanceId, at, until, previous?}  taken: the stream was empty, released, or the holder left a
 *                                                       request unanswered past its deadline
 *   LeaseRequested {instanceId, at, takeoverAt}        a waiting instance asks "are you still there?"
 *   LeaseRenewed   {instanceId, at, until}             the holder answers; nobody asks again before `until`
 *   LeaseReleased  {instanceId, at}                    the holder stopped cleanly; anyone may take it at once
 *
 * Why "on request" and not a plain heartbeat: the holder only writes when another instance is waiting. A single
 * instance (the usual deployment) appends one event when it starts and one when it stops, instead of a renewal
 * every few seconds forever: a plain heartbeat would grow the event log by thousands of events a day per process
 * manager, and the port's only way to trim a stream (`keepLast`) would not do here, since a LeaseRequested only
 * means something after the LeaseAcquired or LeaseRenewed before it. With a waiting instance the cost is two small events per
 * `heartbeatMs`.
 *
 * Timing (all instances should use the same settings; `at`/`takeoverAt` are compared with the local clock, so
 * instances on different hosts need clocks in sync to well under `takeoverAfterMs`):
 * - Every instance reads the stream every `pollMs` (a cheap read from the last revision it saw).
 * - A waiting instance asks at once, and again each time the holder's `until` has passed.
 * - The holder answers any pending request at its next read. A request left unanswered until its `takeoverAt`
 *   (`takeoverAfterMs` after it) lets any waiting instance take the lease.
 * - So a holder that dies is replaced within `heartbeatMs + takeoverAfterMs + 2 × pollMs` when another instance was
 *   already waiting, and within `takeoverAfterMs + pollMs` of a restart after a crash.
 * - The holder fences itself: when it has not managed to read the stream for so long that a request it has not
 *   seen could be about to expire, it gives the lease up locally (its runner stops) until a read shows it still
 *   holds it. It cannot stop an outside call already under way: handlers stay idempotent and re-check state.
 */
import { ownInitiative } from '../../eventstore/provenance.js';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConcurrencyError, streamName } from '../../eventstore/eventstore.js';
import type { EventStore, ExpectedRevision, RecordedEvent } from '../../eventstore/eventstore.js';
import type { Logger } from '../../logger.js';

export type LeaseOptions = {
  /** How often each instance reads the lease stream. Default 1000 ms. */
  pollMs?: number;
  /** While another instance waits, the holder proves it is alive this often (two events each time). Default 30 s. */
  heartbeatMs?: number;
  /** How long a request may stay unanswered before a waiting instance takes over. Default 5 s. */
  takeoverAfterMs?: number;
  /** The clock (tests). */
  now?: () => number;
};

export type LeaseEventType = 'LeaseAcquired' | 'LeaseRequested' | 'LeaseRenewed' | 'LeaseReleased';

export type LeaseState = {
  /** Revision of the last event read; -1n when the stream does not exist. */
  revision: bigint;
  holder: string | undefined;
  /** Until when the holder has vouched for itself (ms since the epoch); waiting instances ask again after it. */
  until: number;
  /** A request the holder has not answered yet. */
  request: { instanceId: string; takeoverAt: number } | undefined;
};

export type LeaseCallbacks = {
  /** This instance now holds the lease: start working. */
  acquired(): void;
  /** This instance no longer holds it (taken over, released, or it could not confirm it in time): stop working. */
  lost(reason: string): void;
};

export const leaseStream = (name: string): string => streamName('lease', name);

/** `<host>:<pid>:<random>`: unique per start, and says where to look in the logs. */
export function newInstanceId(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

export const initialLeaseState = (): LeaseState => ({ revision: -1n, holder: undefined, until: 0, request: undefined });

export function evolveLease(state: LeaseState, event: Pick<RecordedEvent, 'type' | 'data' | 'revision'>): LeaseState {
  const data = (event.data ?? {}) as { instanceId?: string; until?: string; takeoverAt?: string };
  const revision = event.revision;
  switch (event.type as LeaseEventType) {
    case 'LeaseAcquired':
    case 'LeaseRenewed':
      return { revision, holder: data.instanceId, until: Date.parse(data.until ?? '') || 0, request: undefined };
    case 'LeaseReleased':
      return { revision, holder: undefined, until: 0, request: undefined };
    case 'LeaseRequested':
      return {
        ...state,
        revision,
        // The first unanswered request sets the deadline; later ones do not extend it.
        request: state.holder
          ? (state.request ?? { instanceId: data.instanceId ?? '?', takeoverAt: Date.parse(data.takeoverAt ?? '') || 0 })
          : undefined,
      };
    default:
      return { ...state, revision };
  }
}

export class ProcessLease {
  readonly stream: string;
  private state: LeaseState = initialLeaseState();
  private holding = false;
  private closing = false;
  private closed = false;
  /** The holder this instance has already asked once: it asks a new holder at once, then only after `until`. */
  private askedHolder: string | undefined;
  private fenceTimer: NodeJS.Timeout | undefined;
  private lastReadOk = 0;
  /** When the tick under way started; undefined between ticks. */
  private tickStartedAt: number | undefined;
  private lastTickFailed = false;
  private readonly pollMs: number;
  private readonly heartbeatMs: number;
  private readonly takeoverAfterMs: number;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly wake = new AbortController();
  private loop: Promise<void> | undefined;
  private firstTick: Promise<void>;
  private resolveFirstTick: () => void = () => undefined;
  /** This instance's part in the lease: the correlation (and cause) of the lease events it writes. */
  private readonly runId = randomUUID();

  constructor(
    private readonly store: EventStore,
    readonly name: string,
    readonly instanceId: string,
    logger: Logger,
    private readonly callbacks: LeaseCallbacks,
    options: LeaseOptions = {},
  ) {
    this.stream = leaseStream(name);
    this.pollMs = options.pollMs ?? 1000;
    this.heartbeatMs = options.heartbeatMs ?? 30_000;
    this.takeoverAfterMs = options.takeoverAfterMs ?? 5_000;
    if (this.takeoverAfterMs <= 2 * this.pollMs) {
      throw new Error(`lease ${name}: takeoverAfterMs (${this.takeoverAfterMs}) must be more than twice pollMs (${this.pollMs})`);
    }
    this.now = options.now ?? Date.now;
    this.log = logger.child({ lease: this.stream, instanceId });
    this.firstTick = new Promise((resolve) => (this.resolveFirstTick = resolve));
  }

  /** Starts reading and competing for the lease. */
  start(): void {
    if (this.loop) return;
    this.loop = this.run();
    // Independent of the read loop, which may itself be stuck on the store.
    this.fenceTimer = setInterval(() => this.fenceIfStale(), this.pollMs);
    this.fenceTimer.unref();
  }

  /** Resolves after the first attempt to read (and possibly take) the lease. */
  settled(): Promise<void> {
    return this.firstTick;
  }

  isHeld(): boolean {
    return this.holding;
  }

  /** What the stream said at the last read (for tests and diagnostics). */
  snapshot(): LeaseState {
    return { ...this.state };
  }

  /**
   * Stop competing, but keep answering requests while the caller finishes its work; then `close()`.
   * A closing instance never takes the lease again.
   */
  beginClose(): void {
    this.closing = true;
  }

  /** Stops reading and releases the lease if this instance holds it. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.fenceTimer);
    this.wake.abort();
    await this.loop;
    this.resolveFirstTick();
    if (this.state.holder !== this.instanceId) return;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.append('LeaseReleased', { instanceId: this.instanceId, at: iso(this.now()) });
        this.log.info({}, 'lease released');
        break;
      } catch (err) {
        if (!(err instanceof ConcurrencyError)) {
          this.log.warn({ err }, 'could not release the lease; another instance will take it when it goes unanswered');
          break;
        }
        await this.readNew().catch(() => undefined);
        if (this.state.holder !== this.instanceId) break;
      }
    }
    this.setHolding(false, 'released');
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      this.tickStartedAt = this.now();
      try {
        await this.tick();
        this.lastTickFailed = false;
      } catch (err) {
        this.lastTickFailed = true;
        this.log.warn({ err }, 'could not read or write the lease');
        this.fenceIfStale();
      } finally {
        this.tickStartedAt = undefined;
      }
      this.resolveFirstTick();
      if (this.closed) return;
      await sleep(this.pollMs, undefined, { signal: this.wake.signal }).catch(() => undefined);
    }
  }

  /** Read, decide, write; after a write (or a conflict) read again and re-decide, a few times at most. */
  private async tick(): Promise<void> {
    for (let round = 0; round < 4 && !this.closed; round++) {
      await this.readNew();
      const action = this.decide(this.now());
      if (!action) return;
      try {
        await this.append(action.type, action.data);
        if (action.type === 'LeaseRequested') this.askedHolder = this.state.holder;
      } catch (err) {
        if (!(err instanceof ConcurrencyError)) throw err;
        // Someone wrote first: read what they wrote and decide again.
      }
    }
  }

  private async readNew(): Promise<void> {
    const events = await this.store.readStream(this.stream, { fromRevision: this.state.revision + 1n });
    for (const event of events) this.state = evolveLease(this.state, event);
    this.lastReadOk = this.now();
    const s = this.state;
    if (s.holder === this.instanceId) this.setHolding(true, 'held');
    else this.setHolding(false, s.holder ? `held by ${s.holder}` : 'released');
  }

  private decide(now: number): { type: LeaseEventType; data: Record<string, string> } | undefined {
    const s = this.state;
    const me = this.instanceId;
    if (s.holder === me) {
      return s.request ? { type: 'LeaseRenewed', data: { instanceId: me, at: iso(now), until: iso(now + this.heartbeatMs) } } : undefined;
    }
    if (this.closing) return undefined;
    const acquire = (previous?: string) => ({
      type: 'LeaseAcquired' as const,
      data: { instanceId: me, at: iso(now), until: iso(now + this.heartbeatMs), ...(previous ? { previous } : {}) },
    });
    if (!s.holder) return acquire();
    if (s.request) return now >= s.request.takeoverAt ? acquire(s.holder) : undefined;
    if (this.askedHolder !== s.holder || now >= s.until) {
      return { type: 'LeaseRequested', data: { instanceId: me, at: iso(now), takeoverAt: iso(now + this.takeoverAfterMs) } };
    }
    return undefined;
  }

  private async append(type: LeaseEventType, data: Record<string, string>): Promise<void> {
    const expectedRevision: ExpectedRevision = this.state.revision < 0n ? 'no_stream' : this.state.revision;
    await this.store.appendToStream(this.stream, [{ type, data, metadata: { actor: `system:${this.name}`, ...ownInitiative(this.runId) } }], { expectedRevision });
    if (type === 'LeaseAcquired') {
      this.log.info({ previous: data.previous }, data.previous ? 'lease taken over: the holder left a request unanswered' : 'lease acquired');
    } else if (type === 'LeaseRenewed') {
      this.log.debug({ requestedBy: this.state.request?.instanceId }, 'lease renewed on request');
    }
  }

  /**
   * A holder that cannot read the stream cannot see requests. A request made just after its last good read
   * expires `takeoverAfterMs` later; stop a margin before that. Only when reads fail or hang: a holder whose whole
   * event loop was held up (load, a long GC) reads the stream at once when it resumes, and a takeover meanwhile
   * shows there.
   */
  private fenceIfStale(): void {
    if (!this.holding) return;
    const hanging = this.tickStartedAt !== undefined && this.now() - this.tickStartedAt > this.pollMs;
    if (!hanging && !this.lastTickFailed) return;
    const deadline = Math.min(this.lastReadOk + this.takeoverAfterMs, this.state.request?.takeoverAt ?? Number.POSITIVE_INFINITY);
    const margin = Math.max(2 * this.pollMs, this.takeoverAfterMs / 5);
    if (this.now() >= deadline - margin) this.setHolding(false, 'could not confirm the lease in time');
  }

  private setHolding(holding: boolean, reason: string): void {
    if (holding === this.holding) return;
    if (holding && this.closed) return;
    this.holding = holding;
    if (holding) {
      this.callbacks.acquired();
    } else {
      if (this.closed) this.log.info({ reason }, 'lease given up: this instance stops running the process');
      else this.log.warn({ reason }, 'lease lost: this instance stops running the process');
      this.callbacks.lost(reason);
    }
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();
