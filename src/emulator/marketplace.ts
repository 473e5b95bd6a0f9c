/**
 * The emulated marketplace: `EmulatorState` plus time and webhooks. This is where Microsoft's
 * asynchronous behaviour lives:
 *
 * - Publisher PATCH/DELETE answer 202 at once; the operation stays `NotStarted` for
 *   `operationDelayMs`, then a change becomes `InProgress` and is offered to the publisher through a
 *   `ChangePlan`/`ChangeQuantity` webhook (`operationRequestSource: "Partner"`), and a delete
 *   completes with an `Unsubscribe` webhook.
 * - Customer-side changes (`"Azure"`) send their webhook at once.
 * - The acknowledgement window (`ackWindowMs`, Microsoft: 10 s) opens when a ChangePlan,
 *   ChangeQuantity or Reinstate webhook is queued: PATCH operation `Success` completes it, `Failure`
 *   or a 4xx webhook answer refuses it (ChangePlan/ChangeQuantity only), silence accepts it.
 * - Notifications (Subscribe, Suspend, Renew, Unsubscribe) are `Succeeded` before they are sent.
 * - A refused ChangePlan/ChangeQuantity is followed by a revert notification (docs/marketplace.md
 *   §14.9): by default after a PATCH Failure (`revertNotifications`).
 */
import type { Logger } from 'pino';
import type { SaaSOperation, UpdateOperationStatus } from '../marketplace/schemas.js';
import type { CalendarClock, Timers } from './clock.js';
import type { FaultInjector } from './faults.js';
import {
  toInjectedWebhookPayload,
  toOperationPayload,
  toResolvedPayload,
  toSubscriptionPayload,
  toWebhookPayload,
  unknownSubscriptionPayload,
} from './payloads.js';
import type { EmulatorWebhookPayload } from './payloads.js';
import type { TokenSigner } from './signing.js';
import { isAcknowledgeable, isPending, isRefusable } from './state.js';
import type {
  BulkStatus,
  EmulatorState,
  InjectedNotification,
  NotificationInput,
  OperationRecord,
  PurchaseInput,
  SilentChange,
  SubscriptionRecord,
  TimedEvent,
} from './state.js';
import { WebhookSender } from './webhook-sender.js';
import type { AttemptOutcome, RedeliveryPolicy, WebhookDelivery } from './webhook-sender.js';

export type MarketplaceTimings = {
  /** How long the publisher has to acknowledge a change before it is accepted (Microsoft: 10 s). */
  ackWindowMs: number;
  /** How long a publisher-requested PATCH/DELETE stays `NotStarted` before Microsoft processes it. */
  operationDelayMs: number;
  /** Per-attempt webhook timeout. */
  webhookTimeoutMs: number;
  redelivery: RedeliveryPolicy;
};

export const DEFAULT_TIMINGS: MarketplaceTimings = {
  ackWindowMs: 10_000,
  operationDelayMs: 2_000,
  webhookTimeoutMs: 10_000,
  redelivery: { initialDelayMs: 1_000, factor: 2, maxDelayMs: 60_000, maxAttempts: 500 },
};

/**
 * When Microsoft sends a revert notification after a refused change: after a PATCH `Failure`
 * (default), after any refusal (also a 4xx answer to the webhook), or never.
 */
export type RevertNotifications = 'failure' | 'all' | 'none';

export type MarketplaceOptions = {
  state: EmulatorState;
  signer: TokenSigner;
  faults: FaultInjector;
  timers: Timers;
  /** Microsoft's calendar (dates records; `advanceClock` moves it on). */
  calendar: CalendarClock;
  log: Logger;
  timings: MarketplaceTimings;
  webhookUrl: () => string | undefined;
  landingPageUrl: () => string;
  /** Default `failure`. */
  revertNotifications?: RevertNotifications;
};

export type PurchaseResult = {
  subscription: SubscriptionRecord;
  token: string;
  tokenExpiresAt: Date;
  landingPageUrl: string;
  /** The `Subscribe` operation of an auto-activated purchase. */
  operation?: OperationRecord;
};

export class EmulatedMarketplace {
  readonly state: EmulatorState;
  readonly webhooks: WebhookSender;
  readonly #o: MarketplaceOptions;
  /** Cancels the acknowledgement-window timer of an InProgress operation. */
  readonly #ackTimers = new Map<string, () => void>();

  constructor(options: MarketplaceOptions) {
    this.#o = options;
    this.state = options.state;
    this.webhooks = new WebhookSender({
      webhookUrl: options.webhookUrl,
      signer: options.signer,
      faults: options.faults,
      timers: options.timers,
      now: options.calendar.now,
      log: options.log,
      timeoutMs: options.timings.webhookTimeoutMs,
      redelivery: options.timings.redelivery,
      onAttempt: (d, outcome) => this.#onAttempt(d, outcome),
      onAbandoned: (d) => this.#onAbandoned(d),
    });
  }

  get timings(): MarketplaceTimings {
    return this.#o.timings;
  }

  // ---------------------------------------------------------------------------------------------
  // Fulfillment API (the publisher's calls)

  resolve(token: string | undefined): ReturnType<typeof toResolvedPayload> {
    return toResolvedPayload(this.state.resolve(token, this.#o.calendar.now()));
  }

  activate(subscriptionId: string, body: { planId?: string; quantity?: number }): void {
    const sub = this.state.activate(subscriptionId, body, this.#o.calendar.now());
    this.#o.log.info({ subscriptionId, planId: sub.planId }, 'subscription activated');
    if (this.#o.faults.failActivation()) {
      this.#o.log.warn({ subscriptionId }, 'fault: activation will fail; the subscription will be cancelled');
      this.#o.timers.schedule(this.#o.timings.operationDelayMs, () => {
        try {
          this.#notify(this.state.unsubscribe(subscriptionId, this.#o.calendar.now()));
        } catch (err) {
          this.#o.log.warn({ subscriptionId, err }, 'could not fail the activation');
        }
      });
    }
  }

  updateSubscription(subscriptionId: string, body: { planId?: unknown; quantity?: unknown }): OperationRecord {
    const op = this.state.requestUpdate(subscriptionId, body, this.#o.calendar.now());
    this.#o.log.info({ subscriptionId, operationId: op.id, action: op.action }, 'publisher requested a change');
    this.#o.timers.schedule(this.#o.timings.operationDelayMs, () => this.#beginPartnerOperation(op.id));
    return op;
  }

  deleteSubscription(subscriptionId: string): OperationRecord {
    const op = this.state.requestDelete(subscriptionId, this.#o.calendar.now());
    this.#o.log.info({ subscriptionId, operationId: op.id }, 'publisher requested cancellation');
    this.#o.timers.schedule(this.#o.timings.operationDelayMs, () => this.#beginPartnerOperation(op.id));
    return op;
  }

  updateOperation(subscriptionId: string, operationId: string, status: UpdateOperationStatus): OperationRecord {
    const inFlight = this.webhooks
      .deliveries({ operationId })
      .some((d) => d.state === 'pending' && d.attempts.length === 0 && d.nextAttemptAt === undefined);
    if (inFlight) {
      this.#o.log.warn(
        { subscriptionId, operationId },
        'operation PATCHed before the webhook call returned: answer the webhook first, then PATCH',
      );
    }
    const before = this.state.operation(subscriptionId, operationId).status;
    const op = this.state.acknowledge(subscriptionId, operationId, status, this.#o.calendar.now());
    if (before === 'InProgress' && op.status !== 'InProgress') {
      this.#clearAckTimer(op.id);
      this.#o.log.info({ subscriptionId, operationId, status: op.status }, 'operation acknowledged by the publisher');
      if (op.status === 'Failed') this.#revert(op, 'failure');
    }
    return op;
  }

  // ---------------------------------------------------------------------------------------------
  // The customer's (and Microsoft's own) side

  /** A purchase; `silent` keeps the `Subscribe` webhook of an auto-activated plan from going out (its operation is still recorded). */
  purchase(input: PurchaseInput, options: { silent?: boolean } = {}): PurchaseResult {
    const { subscription, token, operation } = this.state.purchase(input, this.#o.calendar.now());
    this.#o.log.info(
      {
        subscriptionId: subscription.id,
        offerId: subscription.offerId,
        planId: subscription.planId,
        status: subscription.status,
        silent: options.silent ?? false,
      },
      'purchase made',
    );
    const result: PurchaseResult = {
      subscription,
      token: token.token,
      tokenExpiresAt: token.expiresAt,
      landingPageUrl: this.landingPageUrlFor(token.token),
    };
    if (operation) {
      result.operation = operation;
      if (!options.silent) this.#notify(operation);
    }
    return result;
  }

  /** Many silent purchases straight into `status` (see `EmulatorState.purchaseMany`). */
  purchaseMany(input: PurchaseInput, count: number, status: BulkStatus): SubscriptionRecord[] {
    const bought = this.state.purchaseMany(input, count, status, this.#o.calendar.now());
    this.#o.log.info({ count, planId: input.planId, status }, 'bulk purchase made (no webhooks)');
    return bought;
  }

  /** Drift: Microsoft's record changes and no webhook is sent (see `EmulatorState.silentChange`). */
  silentChange(subscriptionId: string, change: SilentChange): SubscriptionRecord {
    const sub = this.state.silentChange(subscriptionId, change, this.#o.calendar.now());
    this.#o.log.info({ subscriptionId, change: Object.keys(change) }, 'silent change at Microsoft: no webhook sent');
    return sub;
  }

  /** A fresh landing-page token for an existing subscription ("Manage account"). */
  newLandingToken(subscriptionId: string): { token: string; tokenExpiresAt: Date; landingPageUrl: string } {
    const token = this.state.issueToken(subscriptionId, this.#o.calendar.now());
    return { token: token.token, tokenExpiresAt: token.expiresAt, landingPageUrl: this.landingPageUrlFor(token.token) };
  }

  landingPageUrlFor(token: string): string {
    const url = new URL(this.#o.landingPageUrl());
    url.searchParams.set('token', token);
    return url.toString();
  }

  changePlan(subscriptionId: string, planId: string): OperationRecord {
    return this.#offer(this.state.customerChange(subscriptionId, { planId }, this.#o.calendar.now()));
  }

  changeQuantity(subscriptionId: string, quantity: number): OperationRecord {
    return this.#offer(this.state.customerChange(subscriptionId, { quantity }, this.#o.calendar.now()));
  }

  suspend(subscriptionId: string): OperationRecord {
    return this.#notify(this.state.suspend(subscriptionId, this.#o.calendar.now()));
  }

  reinstate(subscriptionId: string): OperationRecord {
    return this.#offer(this.state.reinstate(subscriptionId, this.#o.calendar.now()));
  }

  renew(subscriptionId: string): OperationRecord {
    return this.#notify(this.state.renew(subscriptionId, this.#o.calendar.now()));
  }

  unsubscribe(subscriptionId: string): OperationRecord {
    return this.#notify(this.state.unsubscribe(subscriptionId, this.#o.calendar.now()));
  }

  setAutoRenew(subscriptionId: string, autoRenew: boolean): SubscriptionRecord {
    return this.state.setAutoRenew(subscriptionId, autoRenew, this.#o.calendar.now());
  }

  /**
   * Sends a webhook for anything (see `EmulatorState.injectNotification`), signed and delivered
   * (faults, redelivery) exactly as the real ones are. No acknowledgement window: a recorded
   * `InProgress` stays so until the publisher PATCHes it or refuses it with a 4xx.
   */
  sendNotification(input: NotificationInput, options: { termUnit?: string } = {}): { injected: InjectedNotification; delivery: WebhookDelivery } {
    const injected = this.state.injectNotification(input, this.#o.calendar.now());
    const { operation, subscription, status } = injected;
    const block = subscription ? toSubscriptionPayload(subscription) : unknownSubscriptionPayload(operation);
    const payload = toInjectedWebhookPayload(operation, block, status, options.termUnit);
    this.#o.log.info(
      { subscriptionId: operation.subscriptionId, operationId: operation.id, action: operation.action, status, recorded: injected.recorded },
      'injected notification sent',
    );
    return { injected, delivery: this.webhooks.send(payload, { refusable: isRefusable(operation.action) }) };
  }

  /**
   * Moves Microsoft's calendar on by `ms` and lets it catch up (`EmulatorState.advanceTo`): renewals
   * and term ends send their `Renew`/`Unsubscribe` webhooks, in the order they happened; an expired
   * pending purchase sends none.
   */
  advanceClock(ms: number): { now: Date; events: TimedEvent[] } {
    const now = this.#o.calendar.advance(ms);
    const events = this.state.advanceTo(now);
    for (const event of events) {
      this.#o.log.info(
        { subscriptionId: event.subscriptionId, event: event.kind, at: event.at.toISOString(), operationId: event.operation?.id },
        'calendar: subscription moved on',
      );
      if (event.operation) this.#notify(event.operation);
    }
    return { now, events };
  }

  deliveries(filter: { subscriptionId?: string; operationId?: string } = {}): WebhookDelivery[] {
    return this.webhooks.deliveries(filter);
  }

  operationPayload(op: OperationRecord): SaaSOperation {
    return toOperationPayload(op);
  }

  async close(): Promise<void> {
    for (const cancel of this.#ackTimers.values()) cancel();
    this.#ackTimers.clear();
    await this.webhooks.close();
  }

  // ---------------------------------------------------------------------------------------------
  // Internals

  #beginPartnerOperation(operationId: string): void {
    const op = this.state.beginOperation(operationId, this.#o.calendar.now());
    if (op.action === 'Unsubscribe') {
      this.#o.log.info({ subscriptionId: op.subscriptionId, operationId }, 'cancellation completed');
      this.#send(op);
    } else {
      this.#offer(op);
    }
  }

  /** Sends a notification: the operation is already final. */
  #notify(op: OperationRecord): OperationRecord {
    this.#send(op);
    return op;
  }

  /** Sends an acknowledgeable operation and opens its acknowledgement window. */
  #offer(op: OperationRecord): OperationRecord {
    if (!isAcknowledgeable(op.action) || op.status !== 'InProgress') return this.#notify(op);
    this.#send(op);
    const cancel = this.#o.timers.schedule(this.#o.timings.ackWindowMs, () => {
      this.#ackTimers.delete(op.id);
      if (op.status !== 'InProgress') return;
      this.state.accept(op.id, this.#o.calendar.now());
      this.#o.log.info(
        { subscriptionId: op.subscriptionId, operationId: op.id, action: op.action, status: op.status },
        'acknowledgement window elapsed: change accepted',
      );
    });
    this.#ackTimers.set(op.id, cancel);
    return op;
  }

  #send(op: OperationRecord): WebhookDelivery {
    const sub = this.state.subscription(op.subscriptionId);
    const payload: EmulatorWebhookPayload = toWebhookPayload(op, sub);
    return this.webhooks.send(payload, { refusable: isRefusable(op.action) });
  }

  /** The revert notification of a refused change, when `revertNotifications` asks for one after this kind of refusal. */
  #revert(refused: OperationRecord, how: 'failure' | 'answer'): void {
    const when = this.#o.revertNotifications ?? 'failure';
    if (when === 'none' || (when === 'failure' && how !== 'failure')) return;
    if (refused.injected || !isRefusable(refused.action)) return;
    const op = this.state.revertOperation(refused.id, this.#o.calendar.now());
    this.#o.log.info(
      { subscriptionId: op.subscriptionId, operationId: op.id, revertOf: refused.id, action: op.action, planId: op.planId, quantity: op.quantity },
      'change refused: revert notification sent',
    );
    this.#notify(op);
  }

  #clearAckTimer(operationId: string): void {
    this.#ackTimers.get(operationId)?.();
    this.#ackTimers.delete(operationId);
  }

  #onAttempt(d: WebhookDelivery, outcome: AttemptOutcome): void {
    if (d.state !== 'rejected' || !('statusCode' in outcome)) return;
    const op = this.state.operationById(d.operationId);
    if (!op || op.status !== 'InProgress') {
      this.#o.log.info({ operationId: d.operationId, statusCode: outcome.statusCode }, 'refusal came after the operation completed; ignored');
      return;
    }
    this.state.reject(op.id, this.#o.calendar.now(), `the webhook answered ${outcome.statusCode}`, outcome.statusCode);
    this.#clearAckTimer(op.id);
    this.#o.log.info({ subscriptionId: op.subscriptionId, operationId: op.id, action: op.action }, 'change refused by the publisher');
    this.#revert(op, 'answer');
  }

  #onAbandoned(d: WebhookDelivery): void {
    const op = this.state.operationById(d.operationId);
    if (!op || !isPending(op)) return;
    this.state.reject(op.id, this.#o.calendar.now(), 'the webhook could not be delivered');
    this.#clearAckTimer(op.id);
  }
}
