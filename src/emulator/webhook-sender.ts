/**
 * Sends webhook calls the way Microsoft does (docs/marketplace.md §7): a JSON POST to the configured URL with a
 * fresh bearer JWT per attempt, and redelivery with exponential backoff until the publisher answers
 * 200 (Microsoft: up to 500 attempts over 8 hours). For ChangePlan/ChangeQuantity a 4xx answer is a
 * refusal, not a failure, and stops redelivery.
 *
 * Every delivery and attempt is recorded, so tests and the control API can see what was sent when.
 * Fault injection (drops, duplicates, reordering, delay, bad tokens) happens here, on the way out.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock, Timers } from './clock.js';
import type { FaultInjector, TokenFault } from './faults.js';
import type { EmulatorWebhookPayload } from './payloads.js';
import type { TokenSigner } from './signing.js';

export type DeliveryState =
  /** Held back by the reorder fault. */
  | 'held'
  /** Being sent, or waiting for its next attempt. */
  | 'pending'
  /** The publisher answered 200. */
  | 'delivered'
  /** The publisher answered 4xx to a ChangePlan/ChangeQuantity: a refusal. */
  | 'rejected'
  /** Every attempt failed. */
  | 'abandoned'
  /** Never sent: the drop fault (Microsoft gave up after 8 hours). */
  | 'dropped';

export type DeliveryAttempt = {
  attempt: number;
  at: string;
  durationMs: number;
  statusCode?: number;
  error?: string;
  tokenFault?: TokenFault;
};

export type WebhookDelivery = {
  id: string;
  operationId: string;
  subscriptionId: string;
  action: string;
  payload: EmulatorWebhookPayload;
  /** Set on the extra copies sent by the duplicate fault. */
  duplicateOf?: string;
  state: DeliveryState;
  createdAt: string;
  nextAttemptAt?: string;
  attempts: DeliveryAttempt[];
};

export type AttemptOutcome = { statusCode: number } | { error: string };

export type RedeliveryPolicy = {
  /** Wait before the 2nd attempt; each further wait is multiplied by `factor`, up to `maxDelayMs`. */
  initialDelayMs: number;
  factor: number;
  maxDelayMs: number;
  /** Attempts in all, the first included (Microsoft: 500). */
  maxAttempts: number;
};

export const DEFAULT_REDELIVERY: RedeliveryPolicy = { initialDelayMs: 1000, factor: 2, maxDelayMs: 60_000, maxAttempts: 500 };

export type WebhookSenderOptions = {
  webhookUrl: () => string | undefined;
  signer: TokenSigner;
  faults: FaultInjector;
  timers: Timers;
  now: Clock;
  log: Logger;
  /** Per-attempt timeout; no answer in time counts as a failed attempt. */
  timeoutMs: number;
  redelivery: RedeliveryPolicy;
  /** Told about every attempt's outcome (the acknowledgement window listens here). */
  onAttempt?: (delivery: WebhookDelivery, outcome: AttemptOutcome) => void;
  /** Told when a delivery is given up. */
  onAbandoned?: (delivery: WebhookDelivery) => void;
};

export function backoffDelay(policy: RedeliveryPolicy, attemptsMade: number): number {
  return Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.factor ** Math.max(0, attemptsMade - 1));
}

export class WebhookSender {
  readonly #deliveries: WebhookDelivery[] = [];
  readonly #refusable = new Set<string>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #abort = new AbortController();
  #held: WebhookDelivery[] = [];
  #cancelHoldTimer: (() => void) | undefined;
  #closed = false;

  constructor(readonly options: WebhookSenderOptions) {}

  /** Queues a webhook call (and, under the duplicate fault, its copies). Returns the primary delivery. */
  send(payload: EmulatorWebhookPayload, options: { refusable: boolean }): WebhookDelivery {
    const primary = this.#newDelivery(payload);
    if (this.options.faults.drop(payload.action)) {
      primary.state = 'dropped';
      this.#deliveries.push(primary);
      this.options.log.warn(
        { deliveryId: primary.id, operationId: primary.operationId, action: primary.action },
        'fault: webhook dropped for good; it will never be sent',
      );
      return primary;
    }
    const copies = this.options.faults.duplicateCopies();
    const all = [primary];
    for (let i = 0; i < copies; i++) all.push({ ...this.#newDelivery(payload), duplicateOf: primary.id });
    for (const d of all) {
      if (options.refusable) this.#refusable.add(d.id);
      this.#deliveries.push(d);
      this.#enqueue(d);
    }
    return primary;
  }

  /** All deliveries so far, oldest first (copies of the records). */
  deliveries(filter: { subscriptionId?: string; operationId?: string } = {}): WebhookDelivery[] {
    return this.#deliveries
      .filter(
        (d) =>
          (filter.subscriptionId === undefined || d.subscriptionId === filter.subscriptionId) &&
          (filter.operationId === undefined || d.operationId === filter.operationId),
      )
      .map((d) => structuredClone(d));
  }

  /**
   * Sends held deliveries now (newest first), e.g. when the reorder fault is cleared. Each one's first
   * attempt starts when the previous one's has been answered, so "newest first" is the order in which
   * they reach the receiver, not merely the order in which they were started.
   */
  flushHeld(): void {
    this.#cancelHoldTimer?.();
    this.#cancelHoldTimer = undefined;
    const held = this.#held.reverse();
    this.#held = [];
    for (const d of held) d.state = 'pending';
    const next = (i: number): void => {
      const d = held[i];
      if (!d || this.#closed) return;
      this.#start(d, () => next(i + 1));
    };
    next(0);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#abort.abort();
    await Promise.allSettled([...this.#inFlight]);
  }

  #newDelivery(payload: EmulatorWebhookPayload): WebhookDelivery {
    return {
      id: randomUUID(),
      operationId: payload.id,
      subscriptionId: payload.subscriptionId,
      action: payload.action,
      payload,
      state: 'pending',
      createdAt: this.options.now().toISOString(),
      attempts: [],
    };
  }

  #enqueue(d: WebhookDelivery): void {
    const reorder = this.options.faults.reorder();
    if (!reorder) {
      this.#start(d);
      return;
    }
    d.state = 'held';
    this.#held.push(d);
    this.options.faults.fired.reorder++;
    if (this.#held.length >= reorder.window) {
      this.flushHeld();
    } else if (this.#held.length === 1) {
      this.#cancelHoldTimer = this.options.timers.schedule(reorder.maxHoldMs, () => this.flushHeld());
    }
  }

  /** `answered` runs once this first attempt has had its answer (whatever it was). */
  #start(d: WebhookDelivery, answered?: () => void): void {
    const delay = this.options.faults.webhookDelayMs();
    if (delay > 0) {
      d.nextAttemptAt = new Date(this.options.now().getTime() + delay).toISOString();
      this.options.timers.schedule(delay, () => this.#attempt(d, answered));
    } else {
      this.#attempt(d, answered);
    }
  }

  #attempt(d: WebhookDelivery, answered?: () => void): void {
    if (this.#closed) return;
    const p = this.#tryOnce(d).finally(() => {
      this.#inFlight.delete(p);
      answered?.();
    });
    this.#inFlight.add(p);
  }

  async #tryOnce(d: WebhookDelivery): Promise<void> {
    const { log, signer, faults, redelivery } = this.options;
    delete d.nextAttemptAt;
    const attemptNo = d.attempts.length + 1;
    const startedAt = this.options.now();
    const started = Date.now();
    const tokenFault = faults.tokenFault();
    const outcome = await this.#post(d, tokenFault, signer);
    if (this.#closed) return;
    const attempt: DeliveryAttempt = {
      attempt: attemptNo,
      at: startedAt.toISOString(),
      durationMs: Date.now() - started,
      ...outcome,
    };
    if (tokenFault) attempt.tokenFault = tokenFault;
    d.attempts.push(attempt);
    const logFields = { deliveryId: d.id, operationId: d.operationId, action: d.action, attempt: attemptNo, ...outcome };

    if ('statusCode' in outcome && outcome.statusCode === 200) {
      d.state = 'delivered';
      log.info(logFields, 'webhook delivered');
    } else if ('statusCode' in outcome && outcome.statusCode >= 400 && outcome.statusCode < 500 && this.#refusable.has(d.id)) {
      d.state = 'rejected';
      log.info(logFields, 'webhook answered 4xx: the publisher refuses the change');
    } else if (attemptNo >= redelivery.maxAttempts) {
      d.state = 'abandoned';
      log.warn(logFields, 'webhook delivery abandoned after the last attempt');
    } else {
      const wait = backoffDelay(redelivery, attemptNo);
      d.nextAttemptAt = new Date(this.options.now().getTime() + wait).toISOString();
      log.warn({ ...logFields, retryInMs: wait }, 'webhook not acknowledged with 200; will redeliver');
      this.options.timers.schedule(wait, () => this.#attempt(d));
    }
    this.options.onAttempt?.(d, outcome);
    if (d.state === 'abandoned') this.options.onAbandoned?.(d);
  }

  async #post(d: WebhookDelivery, tokenFault: TokenFault | undefined, signer: TokenSigner): Promise<AttemptOutcome> {
    const url = this.options.webhookUrl();
    if (!url) return { error: 'no webhook URL is configured' };
    try {
      const token = await signer.webhookToken(tokenFault);
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'marketplace-emulator' };
      if (token !== undefined) headers.authorization = `Bearer ${token}`;
      const signal = AbortSignal.any([AbortSignal.timeout(this.options.timeoutMs), this.#abort.signal]);
      const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(d.payload), signal });
      await res.arrayBuffer().catch(() => undefined);
      return { statusCode: res.status };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      if (e.name === 'TimeoutError') return { error: `no answer within ${this.options.timeoutMs} ms` };
      return { error: e.cause?.code ?? e.message };
    }
  }
}
