/**
 * Microsoft's side of the marketplace as plain state: subscriptions, their operations and purchase
 * tokens, and the legal transitions between statuses (docs/marketplace.md §5, §6). No I/O and no timers: time
 * arrives as `now`, and the caller (`marketplace.ts`) decides when webhooks go out and when
 * acknowledgement windows close. Every refusal is an `EmulatorError`.
 *
 *   PendingFulfillmentStart --activate--> Subscribed <--suspend/reinstate--> Suspended
 *   any but Unsubscribed --unsubscribe--> Unsubscribed (terminal)
 *
 * A subscription with an operation in `NotStarted` or `InProgress` is locked: no other change is
 * accepted until that operation reaches a final status.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type {
  AllowedCustomerOperation,
  OperationRequestSource,
  OperationStatus,
  SandboxType,
  SessionMode,
  TermUnit,
  UpdateOperationStatus,
} from '../marketplace/schemas.js';
import {
  availablePlans,
  findOffer,
  findPlan,
  isVisibleTo,
  maxQuantity,
  minQuantity,
  offersWithPlan,
  toPlanPayload,
} from './catalogue.js';
import type { Catalogue, PlanDefinition } from './catalogue.js';
import { addDays, termFrom } from './clock.js';
import { EmulatorError } from './errors.js';

export type EmulatedStatus = 'PendingFulfillmentStart' | 'Subscribed' | 'Suspended' | 'Unsubscribed';

export type EmulatedAction =
  | 'Subscribe'
  | 'Unsubscribe'
  | 'ChangePlan'
  | 'ChangeQuantity'
  | 'Suspend'
  | 'Reinstate'
  | 'Renew';

/** An action Microsoft sends today, or any other it may start sending (`Transfer`, say). */
export type AnyAction = EmulatedAction | (string & {});

export type AadIdentity = { emailId: string; objectId: string; tenantId: string; puid: string };

/**
 * A term unit: one the catalogue sells (`P1M` … `P5Y`) or any other Microsoft may start sending (`PAY`, say).
 * Term arithmetic counts an unknown unit as one month (`clock.ts` `termMonths`).
 */
export type EmulatedTermUnit = TermUnit | (string & {});

export type SubscriptionRecord = {
  id: string;
  name: string;
  publisherId: string;
  offerId: string;
  planId: string;
  /** Seats; undefined for plans that are not priced per seat. */
  quantity?: number;
  status: EmulatedStatus;
  beneficiary: AadIdentity;
  purchaser: AadIdentity;
  termUnit: EmulatedTermUnit;
  /** Set at activation; moves at each renewal. */
  startDate?: Date;
  endDate?: Date;
  autoRenew: boolean;
  /** When it was last suspended (the 30-day grace period runs from here); unset unless Suspended. */
  suspendedAt?: Date;
  isTest: boolean;
  isFreeTrial: boolean;
  allowedCustomerOperations: AllowedCustomerOperation[];
  sandboxType: SandboxType;
  sessionMode: SessionMode;
  created: Date;
  lastModified: Date;
  /** The plan bought (for `listAvailablePlans?planId=` and `sourceOffers`). */
  purchasedPlanId: string;
};

export type OperationRecord = {
  id: string;
  activityId: string;
  subscriptionId: string;
  offerId: string;
  publisherId: string;
  /** For ChangePlan the new plan, otherwise the subscription's plan. */
  planId: string;
  /** For ChangeQuantity the new quantity; for ChangePlan the quantity on the new plan. */
  quantity?: number;
  action: AnyAction;
  timeStamp: Date;
  status: OperationStatus;
  source: OperationRequestSource;
  errorStatusCode?: number;
  errorMessage?: string;
  /**
   * Made by `injectNotification`: completing it (PATCH, a 4xx) only sets its status; it never
   * changes the subscription, which Microsoft may not even know.
   */
  injected?: true;
  /** A revert notification: the id of the refused change it undoes (`revertOf`). */
  revertOf?: string;
};

/** What Microsoft has on record for an injected notification: no operation at all, or one in this status. */
export type NotificationRecord = 'none' | 'Succeeded' | 'Failed' | 'Conflict' | 'InProgress';
const RECORD_STATUSES: readonly NotificationRecord[] = ['Succeeded', 'Failed', 'Conflict', 'InProgress'];

/** No status given: a Succeeded record; a status Microsoft can have on record: that; any other status: no record. */
function defaultRecord(status: string | undefined): NotificationRecord {
  if (status === undefined) return 'Succeeded';
  return RECORD_STATUSES.find((r) => r === status) ?? 'none';
}

/** A webhook for anything: any action and status, for a subscription Microsoft may not know. */
export type NotificationInput = {
  subscriptionId: string;
  action: AnyAction;
  /** Default: a fresh id. An existing operation's id is allowed with `record: 'none'` (its record stays as it is). */
  operationId?: string;
  /** The webhook's `status` (any string). Default: `record`'s status, else `Succeeded`. */
  status?: string;
  /** Default: the subscription's (or, for an unknown one, the offer's first plan). Not checked against the catalogue. */
  planId?: string;
  quantity?: number;
  /** For a subscription Microsoft does not know (default: the catalogue's first offer). */
  offerId?: string;
  source?: OperationRequestSource;
  /** Default: the webhook's `status` when it is one of these, else `none`. */
  record?: NotificationRecord;
};

export type InjectedNotification = {
  /** What the webhook describes; in Microsoft's operations unless `recorded` is false. */
  operation: OperationRecord;
  recorded: boolean;
  /** The webhook's `status`. */
  status: string;
  /** Microsoft's subscription, when it knows it. */
  subscription?: SubscriptionRecord;
};

export type PurchaseToken = { token: string; subscriptionId: string; issuedAt: Date; expiresAt: Date };

export type PurchaseInput = {
  /** Optional when the plan ID is unique across the catalogue's offers. */
  offerId?: string;
  planId: string;
  /** Seats for per-seat plans (default: the plan's minimum); must be absent for other plans. */
  quantity?: number;
  subscriptionName?: string;
  freeTrial?: boolean;
  isTest?: boolean;
  autoRenew?: boolean;
  beneficiary?: Partial<AadIdentity>;
  purchaser?: Partial<AadIdentity>;
  /** A CSP bought it for the beneficiary: purchaser ≠ beneficiary, `allowedCustomerOperations` = `["Read"]`. */
  csp?: boolean;
  sandboxType?: SandboxType;
  sessionMode?: SessionMode;
  /** Overrides the plan's auto-activation setting. */
  autoActivate?: boolean;
};

/** What `contents()` gives and `restore()` takes: the records, in the order they were made. */
export type StateContents = { counter: number; subscriptions: SubscriptionRecord[]; operations: OperationRecord[]; tokens: PurchaseToken[] };

export type Purchase = { subscription: SubscriptionRecord; token: PurchaseToken; operation?: OperationRecord };

/** What a plan or quantity change asks for, once validated. */
export type Change = { kind: 'plan'; planId: string; quantity?: number } | { kind: 'quantity'; quantity: number };

export type IdSource = { uuid(): string; purchaseToken(): string };

/**
 * Microsoft's calendar catching up (`advanceTo`): what happened to a subscription, and when.
 *
 * - `renewed`: the term ended with autoRenew on; the next term started (`Renew` operation, to send).
 * - `ended`: the term ended with autoRenew off: Unsubscribed (`Unsubscribe` operation, to send).
 * - `expired`: still PendingFulfillmentStart when the publisher's 30 days ran out: Unsubscribed, nothing to send.
 * - `grace-ended`: Suspended for 30 days: Unsubscribed (`Unsubscribe` operation, to send).
 */
export type TimedEvent = {
  kind: 'renewed' | 'ended' | 'expired' | 'grace-ended';
  subscriptionId: string;
  at: Date;
  /** The operation whose webhook is to be sent (none for `expired`). */
  operation?: OperationRecord;
};

/**
 * docs/marketplace.md §5: newer documentation gives the publisher 30 days to activate a
 * subscription that is still PendingFulfillmentStart. The source's sentence stops before saying
 * what happens then; the emulator takes the presumption recorded there (cancelled, unverified):
 * the subscription becomes Unsubscribed. §5 names no webhook for it, unlike the end of the
 * Suspended grace period, and the publisher may never have heard of the subscription (the landing
 * page is its only news of a purchase): none is sent, and only List subscriptions shows it.
 */
export const PENDING_ACTIVATION_LIMIT_DAYS = 30;
/** docs/marketplace.md §5: Suspended for 30 days without payment → Unsubscribed, with an `Unsubscribe` webhook. */
export const SUSPENDED_GRACE_DAYS = 30;

/**
 * A change at Microsoft that no webhook announces (drift): any of these fields, applied at once to
 * Microsoft's record. Plan and seats are checked against the catalogue as a normal change is.
 */
export type SilentChange = {
  status?: 'Subscribed' | 'Suspended' | 'Unsubscribed';
  planId?: string;
  quantity?: number;
  termUnit?: EmulatedTermUnit;
  startDate?: Date;
  endDate?: Date;
  autoRenew?: boolean;
};

/** Statuses a subscription can be bought straight into by `purchaseMany` (benchmarks, drift tests). */
export type BulkStatus = EmulatedStatus;

/**
 * Purchase tokens are opaque and deliberately URL-unsafe: standard base64 with `+`, `/` and `=`
 * always present, so that a caller that decodes the landing page's `?token=` twice (or turns `+`
 * into a space) sends a token that does not resolve (docs/marketplace.md §14.1).
 */
export function urlUnsafeToken(): string {
  const bytes = Buffer.concat([randomBytes(42), Buffer.from([0xfb, 0xff, 0xbf]), randomBytes(2)]);
  return bytes.toString('base64');
}

export const defaultIds: IdSource = { uuid: () => randomUUID(), purchaseToken: urlUnsafeToken };

export type StateOptions = {
  catalogue: Catalogue;
  publisherId: string;
  /** `List subscriptions` page size (Microsoft: 100); `setPageSize` changes it. */
  pageSize: number;
  /** How long a purchase token resolves (Microsoft: 24 h). */
  purchaseTokenTtlMs: number;
  ids?: IdSource;
};

const PENDING: readonly OperationStatus[] = ['NotStarted', 'InProgress'];
const ACKNOWLEDGEABLE: readonly EmulatedAction[] = ['ChangePlan', 'ChangeQuantity', 'Reinstate'];

export function isPending(op: OperationRecord): boolean {
  return PENDING.includes(op.status);
}

/** ChangePlan, ChangeQuantity and Reinstate wait for the publisher; the others are notifications. */
export function isAcknowledgeable(action: AnyAction): boolean {
  return ACKNOWLEDGEABLE.some((a) => a === action);
}

/** Only ChangePlan and ChangeQuantity may be refused (a 4xx answer or PATCH Failure); Reinstate may not. */
export function isRefusable(action: AnyAction): boolean {
  return action === 'ChangePlan' || action === 'ChangeQuantity';
}

export class EmulatorState {
  readonly #subscriptions = new Map<string, SubscriptionRecord>();
  readonly #operations = new Map<string, OperationRecord>();
  /** The same operations by subscription, oldest first (thousands of subscriptions, each with a few). */
  readonly #operationsBySubscription = new Map<string, OperationRecord[]>();
  readonly #tokens = new Map<string, PurchaseToken>();
  readonly #ids: IdSource;
  #catalogue: Catalogue;
  #counter = 0;

  constructor(readonly options: StateOptions) {
    this.setPageSize(options.pageSize);
    this.#catalogue = options.catalogue;
    this.#ids = options.ids ?? defaultIds;
  }

  get catalogue(): Catalogue {
    return this.#catalogue;
  }

  /** Pages already handed out stay valid: a continuation token is an offset into the purchase order. */
  setPageSize(pageSize: number): void {
    if (!Number.isInteger(pageSize) || pageSize < 1) throw new EmulatorError('bad-request', 'BadPageSize', 'pageSize must be a positive integer');
    this.options.pageSize = pageSize;
  }

  // ---------------------------------------------------------------------------------------------
  // Purchases and tokens

  purchase(input: PurchaseInput, now: Date): Purchase {
    const offerId = this.#offerFor(input);
    const plan = findPlan(this.#catalogue, offerId, input.planId);
    if (!plan) throw new EmulatorError('bad-request', 'UnknownPlan', `offer ${offerId} has no plan ${input.planId}`);
    if (plan.isStopSell) throw new EmulatorError('bad-request', 'PlanStopSold', `plan ${plan.planId} is no longer sold`);
    const n = ++this.#counter;
    const beneficiary = this.#identity(input.beneficiary, `customer${n}@customer${n}.example`);
    if (!isVisibleTo(plan, beneficiary.tenantId)) {
      throw new EmulatorError(
        'bad-request',
        'PlanNotAvailable',
        `private plan ${plan.planId} is not offered to tenant ${beneficiary.tenantId}`,
      );
    }
    const quantity = this.#purchaseQuantity(plan, input.quantity);
    if (input.freeTrial && !plan.hasFreeTrials) {
      throw new EmulatorError('bad-request', 'NoFreeTrial', `plan ${plan.planId} has no free trial`);
    }
    const csp = input.csp ?? false;
    const purchaser =
      input.purchaser !== undefined || csp
        ? this.#identity(input.purchaser, csp ? `admin@csp-partner${n}.example` : beneficiary.emailId)
        : { ...beneficiary };
    if (csp && purchaser.tenantId === beneficiary.tenantId) {
      throw new EmulatorError('bad-request', 'CspSameTenant', 'a CSP purchaser must be in another tenant than the beneficiary');
    }
    const autoActivate = input.autoActivate ?? plan.autoActivate ?? false;
    const sub: SubscriptionRecord = {
      id: this.#ids.uuid(),
      name: input.subscriptionName ?? `Subscription ${n}`,
      publisherId: this.options.publisherId,
      offerId,
      planId: plan.planId,
      status: 'PendingFulfillmentStart',
      beneficiary,
      purchaser,
      termUnit: plan.termUnit ?? 'P1M',
      autoRenew: input.autoRenew ?? true,
      isTest: input.isTest ?? false,
      isFreeTrial: input.freeTrial ?? false,
      allowedCustomerOperations: csp ? ['Read'] : ['Read', 'Update', 'Delete'],
      sandboxType: input.sandboxType ?? 'None',
      sessionMode: input.sessionMode ?? 'None',
      created: now,
      lastModified: now,
      purchasedPlanId: plan.planId,
    };
    if (quantity !== undefined) sub.quantity = quantity;
    this.#subscriptions.set(sub.id, sub);
    const token = this.issueToken(sub.id, now);
    if (!autoActivate) return { subscription: sub, token };
    this.#startTerm(sub, now);
    sub.status = 'Subscribed';
    const operation = this.#newOperation(sub, 'Subscribe', 'Azure', now, 'Succeeded');
    return { subscription: sub, token, operation };
  }

  /**
   * Many purchases at once, straight into `status` (no operations recorded, nothing to notify): for
   * benchmarks and drift tests that need thousands of subscriptions. Each is validated as one purchase is.
   */
  purchaseMany(input: PurchaseInput, count: number, status: BulkStatus, now: Date): SubscriptionRecord[] {
    const bought: SubscriptionRecord[] = [];
    for (let i = 0; i < count; i++) {
      const { subscription } = this.purchase({ ...input, autoActivate: false }, now);
      if (status !== 'PendingFulfillmentStart') this.#startTerm(subscription, now);
      this.#setStatus(subscription, status, now);
      bought.push(subscription);
    }
    return bought;
  }

  /** A fresh landing-page token for an existing subscription ("Manage account", docs/marketplace.md §9). */
  issueToken(subscriptionId: string, now: Date): PurchaseToken {
    this.subscription(subscriptionId);
    const token: PurchaseToken = {
      token: this.#ids.purchaseToken(),
      subscriptionId,
      issuedAt: now,
      expiresAt: new Date(now.getTime() + this.options.purchaseTokenTtlMs),
    };
    this.#tokens.set(token.token, token);
    return token;
  }

  /** Resolve works in every status (docs/marketplace.md §3.1). */
  resolve(token: string | undefined, now: Date): SubscriptionRecord {
    if (token === undefined || token.trim() === '') {
      throw new EmulatorError('bad-request', 'MissingToken', 'the x-ms-marketplace-token header is required');
    }
    const found = this.#tokens.get(token);
    if (!found) {
      throw new EmulatorError(
        'bad-request',
        'InvalidValue',
        'Failed to decrypt token: the marketplace token is malformed or unknown (was it URL-decoded exactly once?)',
      );
    }
    if (now.getTime() >= found.expiresAt.getTime()) {
      throw new EmulatorError('bad-request', 'TokenExpired', `the marketplace token expired at ${found.expiresAt.toISOString()}`);
    }
    return this.subscription(found.subscriptionId);
  }

  // ---------------------------------------------------------------------------------------------
  // Reads

  subscription(id: string): SubscriptionRecord {
    const sub = this.#subscriptions.get(id);
    if (!sub) throw new EmulatorError('not-found', 'SubscriptionNotFound', `subscription ${id} not found`);
    return sub;
  }

  subscriptions(): SubscriptionRecord[] {
    return [...this.#subscriptions.values()];
  }

  /** One page, in purchase order. `continuationToken` is opaque to callers. */
  listSubscriptions(continuationToken?: string): { subscriptions: SubscriptionRecord[]; continuationToken?: string } {
    const offset = continuationToken === undefined ? 0 : decodeContinuation(continuationToken);
    const all = this.subscriptions();
    const page = all.slice(offset, offset + this.options.pageSize);
    const next = offset + page.length;
    return next < all.length ? { subscriptions: page, continuationToken: encodeContinuation(next) } : { subscriptions: page };
  }

  availablePlans(subscriptionId: string, planIdFilter?: string): ReturnType<typeof toPlanPayload>[] {
    const sub = this.subscription(subscriptionId);
    if (sub.status === 'Unsubscribed') {
      throw new EmulatorError('forbidden', 'SubscriptionUnsubscribed', `subscription ${sub.id} is Unsubscribed`);
    }
    let plans = availablePlans(this.#catalogue, sub.offerId, sub.planId, sub.beneficiary.tenantId);
    if (planIdFilter !== undefined) plans = plans.filter((p) => p.planId === planIdFilter);
    const withSourceOffers = planIdFilter !== undefined && planIdFilter === sub.purchasedPlanId;
    return plans.map((p) => toPlanPayload(p, { withSourceOffers }));
  }

  operation(subscriptionId: string, operationId: string): OperationRecord {
    this.subscription(subscriptionId);
    const op = this.#operations.get(operationId);
    if (!op || op.subscriptionId !== subscriptionId) {
      throw new EmulatorError('not-found', 'OperationNotFound', `operation ${operationId} not found on subscription ${subscriptionId}`);
    }
    return op;
  }

  operationById(operationId: string): OperationRecord | undefined {
    return this.#operations.get(operationId);
  }

  /** Every operation of a subscription, oldest first. */
  operations(subscriptionId: string): OperationRecord[] {
    return [...(this.#operationsBySubscription.get(subscriptionId) ?? [])];
  }

  pendingOperations(subscriptionId: string): OperationRecord[] {
    this.subscription(subscriptionId);
    return this.operations(subscriptionId).filter(isPending);
  }

  isLocked(subscriptionId: string): boolean {
    return this.operations(subscriptionId).some(isPending);
  }

  // ---------------------------------------------------------------------------------------------
  // Publisher calls (Fulfillment API)

  activate(subscriptionId: string, body: { planId?: string; quantity?: number }, now: Date): SubscriptionRecord {
    const sub = this.subscription(subscriptionId);
    if (sub.status === 'Unsubscribed') throw new EmulatorError('gone', 'SubscriptionUnsubscribed', `subscription ${sub.id} is Unsubscribed`);
    if (sub.status !== 'PendingFulfillmentStart') {
      throw new EmulatorError('wrong-state', 'AlreadyActivated', `subscription ${sub.id} is already ${sub.status}; activate only once`);
    }
    if (body.planId !== undefined && body.planId !== sub.planId) {
      throw new EmulatorError('bad-request', 'PlanMismatch', `planId ${body.planId} does not match the purchased plan ${sub.planId}`);
    }
    if (body.quantity !== undefined && body.quantity !== sub.quantity) {
      throw new EmulatorError(
        'bad-request',
        'QuantityMismatch',
        `quantity ${body.quantity} does not match the purchased quantity ${sub.quantity ?? '(none: not a per-seat plan)'}`,
      );
    }
    this.#startTerm(sub, now);
    sub.status = 'Subscribed';
    sub.lastModified = now;
    return sub;
  }

  /** PATCH subscription: 202 with an operation that starts `NotStarted` (see `beginOperation`). */
  requestUpdate(subscriptionId: string, body: { planId?: unknown; quantity?: unknown }, now: Date): OperationRecord {
    const sub = this.subscription(subscriptionId);
    const change = this.#validateChange(sub, body, 'publisher');
    return this.#changeOperation(sub, change, 'Partner', now, 'NotStarted');
  }

  /** DELETE subscription: 202 with an Unsubscribe operation that starts `NotStarted`. */
  requestDelete(subscriptionId: string, now: Date): OperationRecord {
    const sub = this.subscription(subscriptionId);
    if (!sub.allowedCustomerOperations.includes('Delete')) {
      throw new EmulatorError(
        'bad-request',
        'DeleteNotAllowed',
        `Delete is not in allowedCustomerOperations (${sub.allowedCustomerOperations.join(', ')}) of subscription ${sub.id}`,
      );
    }
    this.#assertNot(sub, 'Unsubscribed');
    this.#assertUnlocked(sub);
    return this.#newOperation(sub, 'Unsubscribe', 'Partner', now, 'NotStarted');
  }

  /** A publisher-requested operation leaves `NotStarted`: a change waits for acknowledgement, a delete completes. */
  beginOperation(operationId: string, now: Date): OperationRecord {
    const op = this.#mustOperation(operationId);
    if (op.status !== 'NotStarted') return op;
    op.timeStamp = now;
    if (op.action === 'Unsubscribe') {
      const sub = this.subscription(op.subscriptionId);
      sub.status = 'Unsubscribed';
      sub.lastModified = now;
      op.status = 'Succeeded';
    } else {
      op.status = 'InProgress';
    }
    return op;
  }

  /**
   * PATCH operation (docs/marketplace.md §3.11). Success on a pending change applies it; Failure refuses it.
   * Repeating the status an operation already has is harmless; contradicting it is a 409.
   */
  acknowledge(subscriptionId: string, operationId: string, status: UpdateOperationStatus, now: Date): OperationRecord {
    const op = this.operation(subscriptionId, operationId);
    if (op.status === 'NotStarted') {
      throw new EmulatorError('conflict', 'OperationNotStarted', `operation ${op.id} has not been sent to the publisher yet`);
    }
    if (op.status === 'InProgress') {
      if (status === 'Success') return this.accept(op.id, now);
      if (!isRefusable(op.action)) {
        throw new EmulatorError(
          'bad-request',
          'CannotRefuse',
          `a ${op.action} cannot be refused; cancel the subscription with DELETE if it cannot be served`,
        );
      }
      return this.reject(op.id, now, 'Failure reported by the publisher');
    }
    const same = (status === 'Success' && op.status === 'Succeeded') || (status === 'Failure' && op.status === 'Failed');
    if (same) return op;
    throw new EmulatorError('conflict', 'OperationCompleted', `operation ${op.id} is already ${op.status}`);
  }

  /** Completes a pending acknowledgeable operation: applies the change (or `Conflict` if it is already in place). */
  accept(operationId: string, now: Date): OperationRecord {
    const op = this.#mustOperation(operationId);
    if (op.status !== 'InProgress') return op;
    op.timeStamp = now;
    if (op.injected) {
      op.status = 'Succeeded';
      return op;
    }
    const sub = this.subscription(op.subscriptionId);
    sub.lastModified = now;
    switch (op.action) {
      case 'ChangePlan': {
        if (sub.planId === op.planId) {
          op.status = 'Conflict';
          return op;
        }
        const plan = findPlan(this.#catalogue, sub.offerId, op.planId);
        const termUnit = plan?.termUnit ?? sub.termUnit;
        sub.planId = op.planId;
        if (op.quantity === undefined) delete sub.quantity;
        else sub.quantity = op.quantity;
        if (termUnit !== sub.termUnit) {
          sub.termUnit = termUnit;
          this.#startTerm(sub, now);
        }
        break;
      }
      case 'ChangeQuantity':
        if (sub.quantity === op.quantity) {
          op.status = 'Conflict';
          return op;
        }
        if (op.quantity !== undefined) sub.quantity = op.quantity;
        break;
      case 'Reinstate':
        sub.status = 'Subscribed';
        delete sub.suspendedAt;
        break;
      default:
        break;
    }
    op.status = 'Succeeded';
    return op;
  }

  /**
   * The revert notification after a refused ChangePlan/ChangeQuantity (docs/marketplace.md §14.9):
   * a change of the same kind whose plan and seats are the subscription's current ones, which the
   * refusal kept. Microsoft's status for it is not documented; the emulator makes it `Succeeded`
   * from `Azure`, a settled notification with nothing left to acknowledge (a PATCH Success on it is
   * a harmless repeat).
   */
  revertOperation(refusedId: string, now: Date): OperationRecord {
    const refused = this.#mustOperation(refusedId);
    if (refused.status !== 'Failed' || !isRefusable(refused.action) || refused.injected) {
      throw new EmulatorError('wrong-state', 'NothingToRevert', `operation ${refused.id} is not a refused plan or seat change`);
    }
    const sub = this.subscription(refused.subscriptionId);
    const op = this.#newOperation(sub, refused.action, 'Azure', now, 'Succeeded');
    op.revertOf = refused.id;
    return op;
  }

  /** Refuses a pending operation (PATCH Failure, a 4xx webhook answer, or delivery given up). */
  reject(operationId: string, now: Date, message: string, errorStatusCode?: number): OperationRecord {
    const op = this.#mustOperation(operationId);
    if (!isPending(op)) return op;
    op.status = 'Failed';
    op.timeStamp = now;
    op.errorMessage = message;
    if (errorStatusCode !== undefined) op.errorStatusCode = errorStatusCode;
    return op;
  }

  // ---------------------------------------------------------------------------------------------
  // Customer actions (Azure portal / M365 admin center / CSP / Microsoft itself)

  /** The customer changes plan or seats: an InProgress operation awaiting the publisher's acknowledgement. */
  customerChange(subscriptionId: string, body: { planId?: unknown; quantity?: unknown }, now: Date): OperationRecord {
    const sub = this.subscription(subscriptionId);
    const change = this.#validateChange(sub, body, 'customer');
    return this.#changeOperation(sub, change, 'Azure', now, 'InProgress');
  }

  /** Payment failed: Subscribed → Suspended, then the publisher is told (docs/marketplace.md §5). */
  suspend(subscriptionId: string, now: Date): OperationRecord {
    const sub = this.subscription(subscriptionId);
    this.#assertStatus(sub, 'Subscribed');
    this.#assertUnlocked(sub);
    sub.status = 'Suspended';
    sub.suspendedAt = now;
    sub.lastModified = now;
    return this.#newOperation(sub, 'Suspend', 'Azure', now, 'Succeeded');
  }

  /** Payment fixed: stays Suspended until the reinstate completes (acknowledged or window elapsed). */
  reinstate(subscriptionId: string, now: Date): OperationRecord {
    const sub = this.subscription(subscriptionId);
    this.#assertStatus(sub, 'Suspended');
    this.#assertUnlocked(sub);
    return this.#newOperation(sub, 'Reinstate', 'Azure', now, 'InProgress');
  }

  /** End of term with autoRenew: the term moves on; a free trial converts to paid. */
  renew(subscriptionId: string, now: Date): OperationRecord {
    const sub = this.subscription(subscriptionId);
    this.#assertStatus(sub, 'Subscribed');
    this.#assertUnlocked(sub);
    if (!sub.autoRenew) {
      throw new EmulatorError('wrong-state', 'AutoRenewOff', `subscription ${sub.id} has autoRenew off; it is cancelled at term end instead`);
    }
    const nextStart = sub.endDate ? addDays(sub.endDate, 1) : now;
    const term = termFrom(nextStart, sub.termUnit);
    sub.startDate = term.startDate;
    sub.endDate = term.endDate;
    sub.isFreeTrial = false;
    sub.lastModified = now;
    return this.#newOperation(sub, 'Renew', 'Azure', now, 'Succeeded');
  }

  /** The customer (or Microsoft, e.g. a failed activation) cancels. */
  unsubscribe(subscriptionId: string, now: Date): OperationRecord {
    const sub = this.subscription(subscriptionId);
    this.#assertNot(sub, 'Unsubscribed');
    this.#assertUnlocked(sub);
    sub.status = 'Unsubscribed';
    sub.lastModified = now;
    return this.#newOperation(sub, 'Unsubscribe', 'Azure', now, 'Succeeded');
  }

  /** Sets the autoRenew flag (the customer switches it off or on in the portal). */
  setAutoRenew(subscriptionId: string, autoRenew: boolean, now: Date): SubscriptionRecord {
    const sub = this.subscription(subscriptionId);
    this.#assertNot(sub, 'Unsubscribed');
    sub.autoRenew = autoRenew;
    sub.lastModified = now;
    return sub;
  }

  // ---------------------------------------------------------------------------------------------
  // Time: what Microsoft's calendar does (renewals, term ends, the 30-day limits)

  /**
   * Brings every subscription up to `now` (Microsoft's calendar has moved on): each term that
   * ended is renewed or, with autoRenew off, ends the subscription; the 30-day limits of a pending
   * purchase and of a suspension run out. A term ends at the end of its `endDate` (the next one
   * starts the day after, docs/marketplace.md §4.1); several may pass in one call. Calendar events do
   * not wait for the lock; a subscription that ends fails its pending operations. Events are
   * returned in the order they happened, with their time.
   */
  advanceTo(now: Date): TimedEvent[] {
    const events: TimedEvent[] = [];
    for (const sub of this.#subscriptions.values()) {
      for (let guard = 0; guard < 10_000; guard++) {
        const event = this.#nextTimedEvent(sub, now);
        if (!event) break;
        events.push(event);
      }
    }
    return events.sort((a, b) => a.at.getTime() - b.at.getTime());
  }

  #nextTimedEvent(sub: SubscriptionRecord, now: Date): TimedEvent | undefined {
    const base = { subscriptionId: sub.id };
    if (sub.status === 'PendingFulfillmentStart') {
      const at = addDays(sub.created, PENDING_ACTIVATION_LIMIT_DAYS);
      if (at.getTime() > now.getTime()) return undefined;
      this.#end(sub, at, 'the publisher did not activate it within 30 days');
      return { ...base, kind: 'expired', at };
    }
    if (sub.status === 'Suspended' && sub.suspendedAt) {
      const at = addDays(sub.suspendedAt, SUSPENDED_GRACE_DAYS);
      if (at.getTime() > now.getTime()) return undefined;
      this.#end(sub, at, 'the 30-day grace period of the suspension ended');
      return { ...base, kind: 'grace-ended', at, operation: this.#newOperation(sub, 'Unsubscribe', 'Azure', at, 'Succeeded') };
    }
    if (sub.status !== 'Subscribed' || !sub.endDate) return undefined;
    const at = addDays(sub.endDate, 1);
    if (at.getTime() > now.getTime()) return undefined;
    if (!sub.autoRenew) {
      this.#end(sub, at, 'the term ended with autoRenew off');
      return { ...base, kind: 'ended', at, operation: this.#newOperation(sub, 'Unsubscribe', 'Azure', at, 'Succeeded') };
    }
    const term = termFrom(at, sub.termUnit);
    sub.startDate = term.startDate;
    sub.endDate = term.endDate;
    sub.isFreeTrial = false;
    sub.lastModified = at;
    return { ...base, kind: 'renewed', at, operation: this.#newOperation(sub, 'Renew', 'Azure', at, 'Succeeded') };
  }

  /** Unsubscribed by the calendar; what was still pending can no longer happen. */
  #end(sub: SubscriptionRecord, at: Date, why: string): void {
    for (const op of this.operations(sub.id).filter(isPending)) this.reject(op.id, at, `the subscription ended: ${why}`);
    sub.status = 'Unsubscribed';
    delete sub.suspendedAt;
    sub.lastModified = at;
  }

  // ---------------------------------------------------------------------------------------------
  // Drift: Microsoft's record changes and nobody is told

  /**
   * Applies `change` to Microsoft's record with no operation and no webhook (Get subscription and
   * List subscriptions show it; nothing else does). Not held back by the lock: Microsoft's own
   * record is what drifted. Any status may be set, even out of Unsubscribed (our side may be the
   * one that is wrong). The plan must be one the subscription could change to, seats within the
   * resulting plan's limits; a plan with another term unit starts a new term, as a plan change does.
   * All checks come first: a refused change changes nothing.
   */
  silentChange(subscriptionId: string, change: SilentChange, now: Date): SubscriptionRecord {
    const sub = this.subscription(subscriptionId);
    const planId = change.planId ?? sub.planId;
    let plan = findPlan(this.#catalogue, sub.offerId, planId);
    if (planId !== sub.planId) {
      plan = availablePlans(this.#catalogue, sub.offerId, sub.planId, sub.beneficiary.tenantId).find((p) => p.planId === planId);
      if (!plan) throw new EmulatorError('bad-request', 'PlanNotAvailable', `plan ${planId} is not available to subscription ${sub.id}`);
    }
    const quantity = this.#silentQuantity(sub, plan, planId, change.quantity);
    const term = this.#silentTerm(sub, change, planId === sub.planId ? undefined : plan, now);
    sub.planId = planId;
    if (quantity === undefined) delete sub.quantity;
    else sub.quantity = quantity;
    sub.termUnit = term.termUnit;
    if (term.startDate && term.endDate) {
      sub.startDate = term.startDate;
      sub.endDate = term.endDate;
    }
    if (change.status !== undefined) this.#setStatus(sub, change.status, now);
    if (change.autoRenew !== undefined) sub.autoRenew = change.autoRenew;
    sub.lastModified = now;
    return sub;
  }

  // ---------------------------------------------------------------------------------------------
  // Notifications of any kind (operations in other statuses, unknown actions and subscriptions)

  /**
   * The operation an arbitrary webhook describes, recorded in status `record` (or not at all for
   * `'none'`: Get operation answers 404). The subscription is never changed and need not exist
   * (then Get subscription, and Get operation with it, answer 404). A recorded `InProgress` locks a
   * known subscription until the publisher PATCHes it, as any pending operation does.
   */
  injectNotification(input: NotificationInput, now: Date): InjectedNotification {
    const record = input.record ?? defaultRecord(input.status);
    const status = input.status ?? (record === 'none' ? 'Succeeded' : record);
    const sub = this.#subscriptions.get(input.subscriptionId);
    const existing = input.operationId === undefined ? undefined : this.#operations.get(input.operationId);
    if (existing && record !== 'none') {
      throw new EmulatorError('conflict', 'OperationExists', `operation ${existing.id} is already on record; send it with record "none"`);
    }
    const offerId = sub?.offerId ?? input.offerId ?? this.#catalogue.offers[0]?.offerId ?? 'unknown-offer';
    const planId = input.planId ?? sub?.planId ?? findOffer(this.#catalogue, offerId)?.plans[0]?.planId ?? 'unknown-plan';
    const quantity = input.quantity ?? sub?.quantity;
    const op: OperationRecord = {
      id: input.operationId ?? this.#ids.uuid(),
      activityId: this.#ids.uuid(),
      subscriptionId: input.subscriptionId,
      offerId,
      publisherId: this.options.publisherId,
      planId,
      action: input.action,
      timeStamp: now,
      status: record === 'none' ? 'Succeeded' : record,
      source: input.source ?? 'Azure',
      injected: true,
    };
    if (quantity !== undefined) op.quantity = quantity;
    if (record !== 'none') this.#record(op);
    const injected: InjectedNotification = { operation: op, recorded: record !== 'none', status };
    if (sub) injected.subscription = sub;
    return injected;
  }

  // ---------------------------------------------------------------------------------------------
  // Persistence (src/emulator/persistence.ts keeps a sandbox's state in DATA_DIR)

  /** Everything Microsoft has on record, by reference, oldest first: serialise it at once. */
  contents(): StateContents {
    return {
      counter: this.#counter,
      subscriptions: [...this.#subscriptions.values()],
      operations: [...this.#operations.values()],
      tokens: [...this.#tokens.values()],
    };
  }

  /** Loads saved contents into a state that has none yet (at start-up, before any request). */
  restore(contents: StateContents): void {
    if (this.#subscriptions.size > 0 || this.#operations.size > 0) throw new Error('restore: the emulator state is not empty');
    this.#counter = contents.counter;
    for (const sub of contents.subscriptions) this.#subscriptions.set(sub.id, sub);
    for (const op of contents.operations) this.#record(op);
    for (const token of contents.tokens) this.#tokens.set(token.token, token);
  }

  // ---------------------------------------------------------------------------------------------
  // Internals

  #offerFor(input: PurchaseInput): string {
    if (input.offerId !== undefined) {
      if (!findOffer(this.#catalogue, input.offerId)) {
        throw new EmulatorError('bad-request', 'UnknownOffer', `the catalogue has no offer ${input.offerId}`);
      }
      return input.offerId;
    }
    const offers = offersWithPlan(this.#catalogue, input.planId);
    const [first, ...rest] = offers;
    if (!first) throw new EmulatorError('bad-request', 'UnknownPlan', `no offer in the catalogue has a plan ${input.planId}`);
    if (rest.length > 0) {
      throw new EmulatorError(
        'bad-request',
        'AmbiguousPlan',
        `plan ${input.planId} exists in offers ${offers.map((o) => o.offerId).join(', ')}; give offerId`,
      );
    }
    return first.offerId;
  }

  #identity(given: Partial<AadIdentity> | undefined, emailId: string): AadIdentity {
    return {
      emailId: given?.emailId ?? emailId,
      objectId: given?.objectId ?? this.#ids.uuid(),
      tenantId: given?.tenantId ?? this.#ids.uuid(),
      puid: given?.puid ?? randomBytes(8).toString('hex').toUpperCase(),
    };
  }

  #purchaseQuantity(plan: PlanDefinition, quantity: number | undefined): number | undefined {
    if (!plan.isPricePerSeat) {
      if (quantity !== undefined) {
        throw new EmulatorError('bad-request', 'PlanNotPerSeat', `plan ${plan.planId} is not priced per seat; omit quantity`);
      }
      return undefined;
    }
    const q = quantity ?? minQuantity(plan);
    this.#assertSeats(plan, q);
    return q;
  }

  /**
   * The term after a silent change. A subscription that leaves PendingFulfillmentStart starts a term
   * today (an activation nobody was told of); a new plan's other term unit starts one too (as an accepted
   * ChangePlan does); a term unit given on its own keeps the start and moves the end. Dates given win.
   */
  #silentTerm(
    sub: SubscriptionRecord,
    change: SilentChange,
    newPlan: PlanDefinition | undefined,
    now: Date,
  ): { termUnit: EmulatedTermUnit; startDate?: Date; endDate?: Date } {
    const termUnit = change.termUnit ?? newPlan?.termUnit ?? sub.termUnit;
    let term = sub.startDate && sub.endDate ? { startDate: sub.startDate, endDate: sub.endDate } : undefined;
    const activates = sub.status === 'PendingFulfillmentStart' && (change.status === 'Subscribed' || change.status === 'Suspended');
    if (activates && !term) term = termFrom(now, termUnit);
    else if (term && termUnit !== sub.termUnit) term = termFrom(change.termUnit !== undefined ? term.startDate : now, termUnit);
    const startDate = change.startDate ?? term?.startDate;
    let endDate = change.endDate ?? term?.endDate;
    if (change.startDate && !change.endDate) endDate = termFrom(change.startDate, termUnit).endDate;
    if (!startDate || !endDate) {
      if (change.endDate) throw new EmulatorError('bad-request', 'BadTerm', `subscription ${sub.id} has no term yet: give startDate with endDate`);
      return { termUnit };
    }
    if (startDate.getTime() > endDate.getTime()) throw new EmulatorError('bad-request', 'BadTerm', 'startDate is after endDate');
    return { termUnit, startDate, endDate };
  }

  /** Seats after a silent change: as given (per-seat plans only, within limits), kept, or dropped for a flat plan. */
  #silentQuantity(sub: SubscriptionRecord, plan: PlanDefinition | undefined, planId: string, quantity: number | undefined): number | undefined {
    if (!plan) {
      // The plan left the catalogue: nothing to check against, take the seats as given.
      return quantity ?? sub.quantity;
    }
    if (!plan.isPricePerSeat) {
      if (quantity !== undefined) throw new EmulatorError('bad-request', 'PlanNotPerSeat', `plan ${planId} is not priced per seat`);
      return undefined;
    }
    const seats = quantity ?? sub.quantity ?? minQuantity(plan);
    this.#assertSeats(plan, seats);
    return seats;
  }

  #assertSeats(plan: PlanDefinition, quantity: number): void {
    const min = minQuantity(plan);
    const max = maxQuantity(plan);
    if (!Number.isInteger(quantity) || quantity < min || quantity > max) {
      throw new EmulatorError(
        'bad-request',
        'QuantityOutOfRange',
        `quantity ${quantity} is outside plan ${plan.planId}'s limits (${min}–${max})`,
      );
    }
  }

  #assertStatus(sub: SubscriptionRecord, status: EmulatedStatus): void {
    if (sub.status !== status) {
      throw new EmulatorError('wrong-state', 'InvalidStatus', `subscription ${sub.id} is ${sub.status}, not ${status}`);
    }
  }

  #assertNot(sub: SubscriptionRecord, status: EmulatedStatus): void {
    if (sub.status === status) throw new EmulatorError('wrong-state', 'InvalidStatus', `subscription ${sub.id} is already ${status}`);
  }

  #assertUnlocked(sub: SubscriptionRecord): void {
    const pending = this.operations(sub.id).filter(isPending);
    if (pending.length > 0) {
      throw new EmulatorError(
        'locked',
        'SubscriptionLocked',
        `subscription ${sub.id} is locked due to pending operation(s): ${pending.map((o) => `${o.action} ${o.id}`).join(', ')}`,
      );
    }
  }

  /** Checks a plan-or-quantity change in Microsoft's order: shape, permission, status, lock, values. */
  #validateChange(sub: SubscriptionRecord, body: { planId?: unknown; quantity?: unknown }, actor: 'publisher' | 'customer'): Change {
    const hasPlan = body.planId !== undefined && body.planId !== null;
    const hasQuantity = body.quantity !== undefined && body.quantity !== null;
    if (hasPlan === hasQuantity) {
      throw new EmulatorError('bad-request', 'PlanOrQuantity', 'give exactly one of planId or quantity');
    }
    if (hasPlan && (typeof body.planId !== 'string' || body.planId === '')) {
      throw new EmulatorError('bad-request', 'BadArgument', 'planId must be a non-empty string');
    }
    if (hasQuantity && !(typeof body.quantity === 'number' && Number.isInteger(body.quantity))) {
      throw new EmulatorError('bad-request', 'BadArgument', 'quantity must be an integer');
    }
    if (actor === 'publisher' && !sub.allowedCustomerOperations.includes('Update')) {
      throw new EmulatorError(
        'bad-request',
        'UpdateNotAllowed',
        `Update is not in allowedCustomerOperations (${sub.allowedCustomerOperations.join(', ')}) of subscription ${sub.id}`,
      );
    }
    this.#assertStatus(sub, 'Subscribed');
    this.#assertUnlocked(sub);
    const current = findPlan(this.#catalogue, sub.offerId, sub.planId);
    if (hasPlan) {
      const planId = body.planId as string;
      if (planId === sub.planId) throw new EmulatorError('bad-request', 'SamePlan', `subscription ${sub.id} is already on plan ${planId}`);
      const target = availablePlans(this.#catalogue, sub.offerId, sub.planId, sub.beneficiary.tenantId).find(
        (p) => p.planId === planId,
      );
      if (!target) {
        throw new EmulatorError('bad-request', 'PlanNotAvailable', `plan ${planId} is not available to subscription ${sub.id}`);
      }
      if (!target.isPricePerSeat) return { kind: 'plan', planId };
      const quantity = sub.quantity ?? minQuantity(target);
      this.#assertSeats(target, quantity);
      return { kind: 'plan', planId, quantity };
    }
    const quantity = body.quantity as number;
    if (!current?.isPricePerSeat) {
      throw new EmulatorError('bad-request', 'PlanNotPerSeat', `plan ${sub.planId} is not priced per seat`);
    }
    if (quantity === sub.quantity) throw new EmulatorError('bad-request', 'SameQuantity', `subscription ${sub.id} already has ${quantity} seats`);
    this.#assertSeats(current, quantity);
    return { kind: 'quantity', quantity };
  }

  #changeOperation(
    sub: SubscriptionRecord,
    change: Change,
    source: OperationRequestSource,
    now: Date,
    status: OperationStatus,
  ): OperationRecord {
    if (change.kind === 'plan') {
      return this.#newOperation(sub, 'ChangePlan', source, now, status, { planId: change.planId, quantity: change.quantity });
    }
    return this.#newOperation(sub, 'ChangeQuantity', source, now, status, { planId: sub.planId, quantity: change.quantity });
  }

  #newOperation(
    sub: SubscriptionRecord,
    action: AnyAction,
    source: OperationRequestSource,
    now: Date,
    status: OperationStatus,
    target: { planId: string; quantity?: number | undefined } = { planId: sub.planId, quantity: sub.quantity },
  ): OperationRecord {
    const op: OperationRecord = {
      id: this.#ids.uuid(),
      activityId: this.#ids.uuid(),
      subscriptionId: sub.id,
      offerId: sub.offerId,
      publisherId: sub.publisherId,
      planId: target.planId,
      action,
      timeStamp: now,
      status,
      source,
    };
    if (target.quantity !== undefined) op.quantity = target.quantity;
    this.#record(op);
    return op;
  }

  #record(op: OperationRecord): void {
    this.#operations.set(op.id, op);
    const list = this.#operationsBySubscription.get(op.subscriptionId);
    if (list) list.push(op);
    else this.#operationsBySubscription.set(op.subscriptionId, [op]);
  }

  #mustOperation(operationId: string): OperationRecord {
    const op = this.#operations.get(operationId);
    if (!op) throw new EmulatorError('not-found', 'OperationNotFound', `operation ${operationId} not found`);
    return op;
  }

  /** A status set from outside the normal transitions; a newly Suspended subscription starts its grace period. */
  #setStatus(sub: SubscriptionRecord, status: EmulatedStatus, now: Date): void {
    if (status === 'Suspended' && sub.status !== 'Suspended') sub.suspendedAt = now;
    if (status !== 'Suspended') delete sub.suspendedAt;
    sub.status = status;
  }

  #startTerm(sub: SubscriptionRecord, now: Date): void {
    const term = termFrom(now, sub.termUnit);
    sub.startDate = term.startDate;
    sub.endDate = term.endDate;
  }
}

function encodeContinuation(offset: number): string {
  return Buffer.from(`page:${offset}`).toString('base64url');
}

function decodeContinuation(token: string): number {
  const m = /^page:(\d+)$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
  if (!m) throw new EmulatorError('bad-request', 'InvalidContinuationToken', 'the continuationToken is not one this service issued');
  return Number(m[1]);
}
