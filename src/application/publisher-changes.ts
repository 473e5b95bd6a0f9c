/**
 * Publisher-side changes (docs/marketplace.md §3.6–3.8, §7.5): change plan, change quantity, unsubscribe
 * (the operator API's `cancel`, kind `cancel` here as in the pending change).
 *
 * Microsoft decides; we apply locally only what Microsoft confirmed:
 *
 *   1. record the intent        RequestPlanChange / RequestQuantityChange / RequestUnsubscribe with a
 *                               fresh requestId → *Requested (a stale If-Match fails here with 412, a
 *                               change already pending with 409; nothing has been sent yet)
 *   2. ask Microsoft            PATCH / DELETE subscription → 202 + Operation-Location
 *   3. record the submission    RecordChangeSubmitted {requestId, operationId} → ChangeSubmitted
 *   4. follow the operation     poll Operation-Location to Succeeded / Failed / Conflict, in the
 *                               background (the HTTP request has answered 202 by then)
 *   5. settle                   Succeeded → ApplyPlanChange / ApplyQuantityChange (requestSource
 *                               'Partner') or Unsubscribe, each with Microsoft's operation id;
 *                               Failed / Conflict, or a 4xx in step 2 → RecordChangeRequestFailure
 *
 * Microsoft also sends a `Partner`-sourced webhook for the same operation. Whichever of it and step 5
 * comes first applies the change; the decider treats a second command carrying an operation id it
 * has already applied as a no-op (`appliedOperations`), so neither path checks for the other.
 *
 * Every step is idempotent, keyed by the requestId (and the operation id once known): a repeated
 * Request* with the same requestId, RecordChangeSubmitted with the same operation id, an Apply* of an
 * applied operation and RecordChangeRequestFailure of a settled request all record nothing.
 *
 * What a resumer (after a restart, or when step 2's outcome is unknown) has to do for each
 * subscription whose state has a `pendingChange`: call `resume(subscriptionId)` (`resumeAll()` does
 * it for every such subscription at startup), which
 *   - with an operationId (step 3 done): follows that operation again (steps 4–5);
 *   - without one (stopped between 1 and 3): looks for Microsoft's outstanding operation of the same
 *     action and value (List operations); if there is one, records it (step 3) and follows it;
 *     if there is none and Get subscription shows the change is not in place, Microsoft never got the
 *     request: records the failure, which releases the lock. If the change is in place but no
 *     operation id is known, it is left for reconciliation (logged).
 * It never sends the PATCH/DELETE again: re-sending is the operator's decision.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { CommandContext, SubscriptionLedger } from './subscription-ledger.js';
import { categoryPrefix, entityIdOf } from '../eventstore/eventstore.js';
import { DomainError } from '../domain/errors.js';
import { decodeSubscriptionEvent, subscriptionCategory, subscriptionStream } from '../domain/subscription/index.js';
import type { PendingChange, SubscriptionCommand } from '../domain/subscription/index.js';
import {
  MarketplaceAuthError,
  MarketplaceError,
  MarketplaceNotFoundError,
  MarketplaceOperationTimeoutError,
  MarketplaceUnavailableError,
} from '../marketplace/errors.js';
import type { AcceptedOperation, FulfillmentClient } from '../marketplace/fulfillment-client.js';
import type { OperationPollOptions } from '../marketplace/operation-poller.js';
import { isGuid } from '../marketplace/schemas.js';
import type { NormalisedOperation, NormalisedSubscription } from '../marketplace/schemas.js';

/** What the workflow needs of the Fulfillment client. */
export type PublisherChangeClient = Pick<
  FulfillmentClient,
  'changePlan' | 'changeQuantity' | 'deleteSubscription' | 'followOperation' | 'listOperations' | 'getSubscription' | 'url'
>;

export type PublisherChange =
  | { kind: 'plan'; planId: string }
  | { kind: 'quantity'; quantity: number }
  | { kind: 'cancel'; reason?: string };

export type PublisherChangeKind = PublisherChange['kind'];

/**
 * Where `resumeAll` finds the subscriptions with a pending publisher-side change: their ids (extra ids
 * are harmless, a missing one is not), or undefined when the source cannot answer correctly (then the
 * store is scanned).
 */
export type PendingChangeSource = () => Promise<readonly string[] | undefined>;

export type PublisherChangesOptions = {
  ledger: SubscriptionLedger;
  client: PublisherChangeClient;
  logger: Logger;
  /** Clock for the commands' `now`. */
  now?: () => Date;
  /** How operations are polled (default: the poller's: 2 s, growing to 15 s, up to 5 min). */
  poll?: Pick<OperationPollOptions, 'initialDelayMs' | 'intervalMs' | 'backoffFactor' | 'maxIntervalMs' | 'maxWaitMs'>;
  /** Wait before `resume` looks at Microsoft after a submission whose outcome is unknown. Default 5 s. */
  recheckDelayMs?: number;
};

export type ChangeContext = Pick<CommandContext, 'actor' | 'expectedRevision'> & {
  /** A GUID tying the events and Microsoft's calls together (x-ms-correlationid); new when absent. */
  correlationId?: string;
  /** What asked for the change (the operator request's id); the change's own request id when absent. */
  causationId?: string;
};

export type SubmittedChange = {
  subscriptionId: string;
  requestId: string;
  kind: PublisherChangeKind;
  /** Microsoft's operation id (from Operation-Location). */
  operationId?: string;
  /** The stream's revision after the last event recorded here. */
  revision: bigint | undefined;
};

/**
 * Why a change was not submitted to Microsoft.
 * - `rejected`: Microsoft answered 4xx (`microsoftStatus`); recorded as ChangeRequestFailed. The
 *   message keeps saying "Microsoft refused …": it is the operator API's `detail` and the recorded
 *   failure's `reason`, which API users read.
 * - `not-sent`: it certainly never reached Microsoft (throttled to the end, connection refused, no
 *   token); recorded as ChangeRequestFailed.
 * - `unknown`: it may have reached Microsoft (5xx, timeout); the change stays pending and `resume`
 *   runs after `recheckDelayMs` to find out.
 */
export class ChangeNotSubmittedError extends Error {
  override readonly name = 'ChangeNotSubmittedError';
  constructor(
    readonly outcome: 'rejected' | 'not-sent' | 'unknown',
    readonly subscriptionId: string,
    readonly requestId: string,
    message: string,
    readonly microsoftStatus?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type ResumeOutcome = 'nothing-pending' | 'following' | 'failed' | 'needs-reconciliation';

const ACTOR = 'system:publisher-changes';
const PENDING_AT_MICROSOFT = new Set(['NotStarted', 'InProgress']);
const CHANGE_REQUESTED = new Set(['PlanChangeRequested', 'QuantityChangeRequested', 'CancellationRequested']);

function actionOf(kind: PublisherChangeKind): string {
  return kind === 'plan' ? 'ChangePlan' : kind === 'quantity' ? 'ChangeQuantity' : 'Unsubscribe';
}

function changeOf(p: PendingChange, reason?: string): PublisherChange {
  if (p.kind === 'plan') return { kind: 'plan', planId: p.planId };
  if (p.kind === 'quantity') return { kind: 'quantity', quantity: p.quantity };
  return reason === undefined ? { kind: 'cancel' } : { kind: 'cancel', reason };
}

function describeChange(change: PublisherChange): Record<string, unknown> {
  if (change.kind === 'plan') return { kind: 'plan', planId: change.planId };
  if (change.kind === 'quantity') return { kind: 'quantity', quantity: change.quantity };
  return { kind: 'cancel' };
}

/** True when a failed PATCH/DELETE certainly never reached (or was never acted on by) Microsoft. */
function certainlyNotSent(err: unknown): boolean {
  if (err instanceof MarketplaceAuthError || err instanceof TypeError) return true;
  if (err instanceof MarketplaceUnavailableError) {
    if (err.status === 429) return true;
    let cause: unknown = err.cause;
    for (let i = 0; i < 4 && cause && typeof cause === 'object'; i++) {
      if ((cause as { code?: unknown }).code === 'ECONNREFUSED') return true;
      cause = (cause as { cause?: unknown }).cause;
    }
  }
  return false;
}

function shortBody(err: MarketplaceError): string {
  const body = err.body?.trim();
  return body ? `: ${body.slice(0, 300)}` : '';
}

export class PublisherChanges {
  readonly #ledger: SubscriptionLedger;
  readonly #client: PublisherChangeClient;
  readonly #log: Logger;
  readonly #now: () => Date;
  readonly #poll: PublisherChangesOptions['poll'];
  readonly #recheckDelayMs: number;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #stop = new AbortController();

  constructor(options: PublisherChangesOptions) {
    this.#ledger = options.ledger;
    this.#client = options.client;
    this.#log = options.logger.child({ component: 'publisher-changes' });
    this.#now = options.now ?? (() => new Date());
    this.#poll = options.poll;
    this.#recheckDelayMs = options.recheckDelayMs ?? 5_000;
  }

  /** Background work still running (operations being followed). */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * Steps 1–3, then step 4–5 in the background. Resolves once Microsoft accepted the change (202) and
   * it is recorded; rejects with the ledger's errors (DomainError, ConcurrencyError) before anything
   * was sent, or with `ChangeNotSubmittedError` when Microsoft did not take it.
   */
  async request(subscriptionId: string, change: PublisherChange, context: ChangeContext): Promise<SubmittedChange> {
    if (this.#stop.signal.aborted) throw new Error('publisher changes are shutting down');
    const requestId = randomUUID();
    const correlationId = context.correlationId && isGuid(context.correlationId) ? context.correlationId : randomUUID();
    const log = this.#log.child({ subscriptionId, requestId, correlationId });

    // 1. The intent: this is where If-Match (412) and the one-change-at-a-time rule (409) bite.
    const intent = await this.#ledger.execute(subscriptionId, this.#intentCommand(requestId, change), {
      actor: context.actor,
      correlationId,
      causationId: context.causationId ?? requestId,
      ...(context.expectedRevision !== undefined ? { expectedRevision: context.expectedRevision } : {}),
    });
    let revision = intent.revision;
    log.info({ ...describeChange(change), actor: context.actor }, 'publisher change requested');

    // 2. Microsoft.
    let accepted: AcceptedOperation;
    try {
      accepted = await this.#submit(subscriptionId, change, correlationId);
    } catch (err) {
      throw await this.#notSubmitted(subscriptionId, requestId, change, correlationId, err);
    }

    // 3. The submission. If recording it fails, the operation is still followed: step 5 records it first.
    if (accepted.operationId) {
      try {
        const submitted = await this.#record(subscriptionId, requestId, correlationId, {
          type: 'RecordChangeSubmitted',
          requestId,
          operationId: accepted.operationId,
        });
        revision = submitted.revision ?? revision;
      } catch (err) {
        log.error({ err, operationId: accepted.operationId }, 'could not record the submission; it is recorded when the operation finishes');
      }
    } else {
      log.warn({ operationLocation: accepted.operationLocation }, 'Operation-Location without an operation id; it is recorded when the operation finishes');
    }
    log.info({ operationId: accepted.operationId }, 'publisher change accepted by Microsoft');

    // 4–5. In the background.
    this.#track(this.#follow(subscriptionId, requestId, change, accepted, correlationId));
    return {
      subscriptionId,
      requestId,
      kind: change.kind,
      ...(accepted.operationId ? { operationId: accepted.operationId } : {}),
      revision,
    };
  }

  /**
   * Continues the pending change of a subscription (see the header comment): for the resumer after a
   * restart, and after a submission whose outcome was unknown. Following happens in the background.
   */
  async resume(subscriptionId: string, context: { correlationId?: string } = {}): Promise<ResumeOutcome> {
    const correlationId = context.correlationId && isGuid(context.correlationId) ? context.correlationId : randomUUID();
    const { state, events } = await this.#ledger.load(subscriptionId);
    if (state.status === 'Initial' || !state.pendingChange) return 'nothing-pending';
    const p = state.pendingChange;
    const log = this.#log.child({ subscriptionId, requestId: p.requestId, correlationId });
    const reason = p.kind === 'cancel' ? cancellationReason(events, p.requestId) : undefined;
    const change = changeOf(p, reason);

    let operationId = p.operationId;
    if (!operationId) {
      const outstanding = await this.#client.listOperations(subscriptionId, { correlationId });
      const match = outstanding.find((op) => this.#matches(op, change) && PENDING_AT_MICROSOFT.has(op.status ?? ''));
      if (match) {
        operationId = match.id;
        await this.#record(subscriptionId, p.requestId, correlationId, { type: 'RecordChangeSubmitted', requestId: p.requestId, operationId });
        log.info({ operationId }, 'found the pending change at Microsoft');
      } else {
        const sub = await this.#client.getSubscription(subscriptionId, { correlationId });
        if (inPlace(change, sub)) {
          log.error(
            { ...describeChange(change), microsoftStatus: sub.saasSubscriptionStatus },
            'the change is in place at Microsoft but its operation id is unknown: needs reconciliation',
          );
          return 'needs-reconciliation';
        }
        await this.#recordFailure(subscriptionId, p.requestId, correlationId, 'NotReceived', 'Microsoft has no operation for this request and the change is not in place');
        log.warn({ ...describeChange(change) }, 'Microsoft never received the change; recorded as failed');
        return 'failed';
      }
    }
    const accepted: AcceptedOperation = {
      subscriptionId,
      operationId,
      operationLocation: this.#client
        .url(`saas/subscriptions/${encodeURIComponent(subscriptionId)}/operations/${encodeURIComponent(operationId)}`)
        .toString(),
      requestId: randomUUID(),
      correlationId,
    };
    this.#track(this.#follow(subscriptionId, p.requestId, change, accepted, correlationId));
    return 'following';
  }

  /**
   * At startup: `resume` every subscription whose publisher-side change was left pending by a
   * restart. With `pending` (the read model of subscriptions, once caught up: see
   * projections/pending-changes.ts) only the subscriptions it lists are looked at; without it, or when it
   * answers undefined (the read model cannot be trusted), the subscription streams of the store are
   * scanned. `resume` reads each candidate's own stream, so a candidate with nothing pending costs one
   * read. One failure does not stop the others.
   */
  async resumeAll(pending?: PendingChangeSource): Promise<{ subscriptionId: string; outcome: ResumeOutcome | 'error' }[]> {
    const listed = pending ? await pending() : undefined;
    const candidates = listed ? new Set(listed) : await this.#scanForPendingChanges();
    const results: { subscriptionId: string; outcome: ResumeOutcome | 'error' }[] = [];
    for (const subscriptionId of candidates) {
      try {
        results.push({ subscriptionId, outcome: await this.resume(subscriptionId) });
      } catch (err) {
        this.#log.error({ err, subscriptionId }, 'could not resume the pending change; the next start tries again');
        results.push({ subscriptionId, outcome: 'error' });
      }
    }
    const resumed = results.filter((r) => r.outcome !== 'nothing-pending');
    if (resumed.length > 0) this.#log.info({ resumed }, 'pending publisher changes resumed');
    return results;
  }

  /** The fallback: every subscription that ever had a change requested, from the whole store. */
  async #scanForPendingChanges(): Promise<Set<string>> {
    this.#log.info('no read model of pending changes: scanning the subscription streams for them');
    const candidates = new Set<string>();
    const prefix = categoryPrefix(subscriptionCategory);
    for await (const e of this.#ledger.store.readAll({ streamPrefixes: [prefix] })) {
      if (CHANGE_REQUESTED.has(e.type)) candidates.add(entityIdOf(e.streamId));
    }
    return candidates;
  }

  /** Resolves when no background work is left (tests; graceful shutdown after `close`). */
  async idle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /**
   * Stops following operations and waits for the background work to end. Pending changes stay
   * pending in the ledger; the resumer picks them up on the next start. Call before closing the store.
   */
  async close(): Promise<void> {
    this.#stop.abort(new Error('publisher changes closed'));
    await this.idle();
  }

  // ----------------------------------------------------------------------------------------------

  #intentCommand(requestId: string, change: PublisherChange): SubscriptionCommand {
    const meta = { now: this.#now().toISOString(), source: 'operator' as const, requestId };
    switch (change.kind) {
      case 'plan':
        return { ...meta, type: 'RequestPlanChange', planId: change.planId };
      case 'quantity':
        return { ...meta, type: 'RequestQuantityChange', quantity: change.quantity };
      case 'cancel':
        return { ...meta, type: 'RequestUnsubscribe', ...(change.reason !== undefined ? { reason: change.reason } : {}) };
      default: {
        const _exhaustive: never = change;
        throw new TypeError(`unknown change ${JSON.stringify(_exhaustive)}`);
      }
    }
  }

  #submit(subscriptionId: string, change: PublisherChange, correlationId: string): Promise<AcceptedOperation> {
    // No abort signal: once sent, a PATCH/DELETE is left to finish even while shutting down.
    const options = { correlationId };
    switch (change.kind) {
      case 'plan':
        return this.#client.changePlan(subscriptionId, change.planId, options);
      case 'quantity':
        return this.#client.changeQuantity(subscriptionId, change.quantity, options);
      case 'cancel':
        return this.#client.deleteSubscription(subscriptionId, options);
      default: {
        const _exhaustive: never = change;
        throw new TypeError(`unknown change ${JSON.stringify(_exhaustive)}`);
      }
    }
  }

  /** Step 2 failed: record what is certain, and say what happened. */
  async #notSubmitted(
    subscriptionId: string,
    requestId: string,
    change: PublisherChange,
    correlationId: string,
    err: unknown,
  ): Promise<ChangeNotSubmittedError> {
    const log = this.#log.child({ subscriptionId, requestId, correlationId });
    const action = actionOf(change.kind);
    if (err instanceof MarketplaceError && err.status !== undefined && err.status >= 400 && err.status < 500 && err.status !== 429) {
      const reason = `Microsoft refused ${action} with ${err.status}${shortBody(err)} (x-ms-requestid ${err.requestId})`;
      await this.#recordFailureQuietly(subscriptionId, requestId, correlationId, String(err.status), reason);
      log.warn({ status: err.status, microsoftRequestId: err.requestId }, 'Microsoft rejected the publisher change');
      return new ChangeNotSubmittedError('rejected', subscriptionId, requestId, reason, err.status, { cause: err });
    }
    if (certainlyNotSent(err)) {
      const reason = `${action} was not sent to Microsoft: ${(err as Error).message}`;
      await this.#recordFailureQuietly(subscriptionId, requestId, correlationId, 'NotSent', reason);
      log.warn({ err }, 'publisher change not sent');
      return new ChangeNotSubmittedError('not-sent', subscriptionId, requestId, reason, undefined, { cause: err });
    }
    log.error({ err }, 'publisher change outcome unknown: Microsoft may have received it; checking again later');
    this.#track(this.#recheck(subscriptionId, correlationId));
    return new ChangeNotSubmittedError(
      'unknown',
      subscriptionId,
      requestId,
      `${action} may or may not have reached Microsoft (${(err as Error).message}); the change stays pending until Microsoft's operations are checked`,
      err instanceof MarketplaceError ? err.status : undefined,
      { cause: err },
    );
  }

  async #recheck(subscriptionId: string, correlationId: string): Promise<void> {
    try {
      await sleep(this.#recheckDelayMs, undefined, { signal: this.#stop.signal });
    } catch {
      return; // closed
    }
    const outcome = await this.resume(subscriptionId, { correlationId });
    this.#log.info({ subscriptionId, outcome }, 'publisher change with an unknown outcome checked again');
  }

  /** Steps 4–5. */
  async #follow(
    subscriptionId: string,
    requestId: string,
    change: PublisherChange,
    accepted: AcceptedOperation,
    correlationId: string,
  ): Promise<void> {
    const log = this.#log.child({ subscriptionId, requestId, correlationId, operationId: accepted.operationId });
    let operation: NormalisedOperation;
    try {
      const result = await this.#client.followOperation(accepted, { ...this.#poll, correlationId, signal: this.#stop.signal });
      operation = result.operation;
    } catch (err) {
      if (this.#stop.signal.aborted) {
        log.info('stopped following the operation (shutting down); the resumer continues it');
      } else if (err instanceof MarketplaceOperationTimeoutError) {
        log.warn({ lastStatus: err.lastStatus, polls: err.polls }, 'operation still not final; left pending for the resumer');
      } else if (err instanceof MarketplaceNotFoundError && accepted.operationId) {
        await this.#recordFailure(subscriptionId, requestId, correlationId, 'NotFound', `Microsoft does not know operation ${accepted.operationId}`, accepted.operationId);
        log.warn('Microsoft does not know the operation; recorded as failed');
      } else {
        log.error({ err }, 'could not follow the operation; left pending for the resumer');
      }
      return;
    }

    const operationId = operation.id || accepted.operationId;
    if (!operationId) {
      log.error({ status: operation.status }, 'the final operation has no id; left pending for reconciliation');
      return;
    }
    // Step 3 again (a no-op when it was recorded): Apply* settles the pending change by operation id.
    try {
      await this.#record(subscriptionId, requestId, correlationId, { type: 'RecordChangeSubmitted', requestId, operationId });
    } catch (err) {
      // `no-such-request`: the request has settled already (e.g. the webhook applied it). Carry on:
      // the commands below are no-ops then.
      if (!(err instanceof DomainError)) throw err;
      log.debug({ code: err.code }, 'submission not recorded again');
    }

    if (operation.status === 'Succeeded') {
      await this.#apply(subscriptionId, requestId, change, operationId, correlationId);
      return;
    }
    const reason =
      operation.errorMessage?.trim() ||
      (operation.status === 'Conflict'
        ? 'Microsoft reported Conflict (the plan or quantity is already in place, or another change won)'
        : `Microsoft reported ${operation.status ?? 'an unknown status'}`);
    await this.#recordFailure(subscriptionId, requestId, correlationId, operation.status ?? 'Failed', reason, operationId);
    log.warn({ status: operation.status, reason }, 'publisher change did not happen at Microsoft');
  }

  /** Step 5 on Succeeded. A no-op when the Partner webhook applied the same operation first. */
  async #apply(subscriptionId: string, requestId: string, change: PublisherChange, operationId: string, correlationId: string): Promise<void> {
    const log = this.#log.child({ subscriptionId, requestId, correlationId, operationId });
    const base = { now: this.#now().toISOString(), source: 'process' as const, operationId };
    const command: SubscriptionCommand =
      change.kind === 'plan'
        ? { ...base, type: 'ApplyPlanChange', planId: change.planId, requestSource: 'Partner' }
        : change.kind === 'quantity'
          ? { ...base, type: 'ApplyQuantityChange', quantity: change.quantity, requestSource: 'Partner' }
          : { ...base, type: 'Unsubscribe', reason: change.reason ?? 'cancelled by the publisher' };
    try {
      const result = await this.#ledger.execute(subscriptionId, command, { actor: ACTOR, correlationId, causationId: requestId });
      log.info(
        { ...describeChange(change), recorded: result.events.map((e) => e.type) },
        result.events.length > 0 ? 'publisher change applied after Microsoft confirmed it' : 'publisher change was already applied',
      );
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      // E.g. suspended meanwhile, or unsubscribed by a webhook that carried no operation id.
      log.error({ code: err.code, detail: err.message }, 'Microsoft confirmed the change but it cannot be applied here: needs reconciliation');
    }
  }

  #record(subscriptionId: string, requestId: string, correlationId: string, command: DistributiveOmit<SubscriptionCommand, 'now' | 'source'>) {
    return this.#ledger.execute(subscriptionId, { ...command, now: this.#now().toISOString(), source: 'process' } as SubscriptionCommand, {
      actor: ACTOR,
      correlationId,
      causationId: requestId,
    });
  }

  async #recordFailure(subscriptionId: string, requestId: string, correlationId: string, status: string, reason: string, operationId?: string): Promise<void> {
    await this.#record(subscriptionId, requestId, correlationId, {
      type: 'RecordChangeRequestFailure',
      requestId,
      status,
      reason,
      ...(operationId ? { operationId } : {}),
    });
  }

  /** In the request path: a failure to record must not hide why Microsoft rejected the change. */
  async #recordFailureQuietly(subscriptionId: string, requestId: string, correlationId: string, status: string, reason: string): Promise<void> {
    try {
      await this.#recordFailure(subscriptionId, requestId, correlationId, status, reason);
    } catch (err) {
      this.#log.error({ err, subscriptionId, requestId }, 'could not record the failed change request; it stays pending for the resumer');
    }
  }

  #matches(op: NormalisedOperation, change: PublisherChange): boolean {
    if (op.action !== actionOf(change.kind)) return false;
    if (change.kind === 'plan') return op.planId === change.planId;
    if (change.kind === 'quantity') return op.quantity === change.quantity;
    return true;
  }

  #track(work: Promise<void>): void {
    const tracked: Promise<void> = work
      .catch((err: unknown) => {
        this.#log.error({ err }, 'publisher change background work failed; the resumer continues it');
      })
      .finally(() => {
        this.#inFlight.delete(tracked);
      });
    this.#inFlight.add(tracked);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function inPlace(change: PublisherChange, sub: NormalisedSubscription): boolean {
  if (change.kind === 'plan') return sub.planId === change.planId;
  if (change.kind === 'quantity') return sub.quantity === change.quantity;
  return sub.saasSubscriptionStatus === 'Unsubscribed';
}

function cancellationReason(events: readonly { type: string; data: unknown }[], requestId: string): string | undefined {
  for (const stored of events) {
    const e = decodeSubscriptionEvent(stored);
    if (e?.type === 'CancellationRequested' && e.data.requestId === requestId) return e.data.reason;
  }
  return undefined;
}
