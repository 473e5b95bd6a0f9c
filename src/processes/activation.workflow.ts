/**
 * Activation as a pure workflow: given what has happened so far in one run (the workflow's state) and what the
 * last step found out (the input), what to do next. The executor (activation.process.ts) does the I/O each step
 * names and turns its outcome into the next input; nothing here reads a clock, a store or the network (the
 * executor's clock arrives in the inputs as `atMs`).
 *
 * One run handles one event of a subscription stream, and makes at most ONE attempt:
 * - ActivationRequested: load the subscription (still pending and still this request, or stop: activated,
 *   unsubscribed or superseded meanwhile; or not due yet: a failed attempt said when the next one is) → provision
 *   in the ISV's product → ask Microsoft where the subscription is → activate with the plan and seats the customer
 *   confirmed → wait for Microsoft to report Subscribed → Get subscription and record the confirmation (Activated,
 *   with Microsoft's term).
 * - Activated with autoActivated (Microsoft activated it at purchase): Microsoft needs nothing from us; the
 *   product needs the customer, so only provision.
 *
 * Crash-safe without repeating what was done: before activating, the run asks Microsoft where the subscription
 * is. Subscribed (or Suspended) already → confirm without activating again, so a run killed after Microsoft
 * accepted the activation but before we recorded it confirms on restart. Unsubscribed → a final failure.
 *
 * A failed attempt is recorded (RecordActivationFailure → ActivationFailed with its number and, unless final,
 * `retryAt`). A failure that cannot change (Microsoft answered 400, 404 or 409, or the subscription is
 * Unsubscribed there) is final at once. Any other failure (Microsoft or the ISV not answering, 5xx, 429, our
 * credentials refused) is transient: the run ends with `retry-later` (the executor throws RetryLater, so the
 * runner tries the event again later without holding up other subscriptions), after a backoff that doubles from
 * `backoffMs` up to `maxBackoffMs`, for as long as activating can still matter: until Microsoft's limit for a
 * purchase in PendingFulfillmentStart, 30 days (docs/marketplace.md §5), counted from the purchase (Microsoft's
 * `created`, else when we recorded it). A transient failure whose next attempt would fall at or past that
 * deadline is final. A run that finds the next attempt not yet due makes none (`retry-later` until it is), so
 * the recorded schedule holds whatever the runner's own retry pace.
 */
import { termFromMicrosoft } from '../application/subscription-details.js';
import type { KnownSubscription, SubscriptionCommand, SubscriptionState } from '../domain/subscription/index.js';
import { decodeSubscriptionEvent } from '../domain/subscription/index.js';
import type { RecordedEvent } from '../eventstore/eventstore.js';
import type { NormalisedTerm } from '../marketplace/schemas.js';

export type ActivationPolicy = {
  /** Pause after the first failed attempt; doubles after each further one… */
  backoffMs: number;
  /** …up to this. */
  maxBackoffMs: number;
  /** How long after the purchase activating can still matter (Microsoft's limit for PendingFulfillmentStart). */
  deadlineMs: number;
  /** How long to wait for Microsoft to report Subscribed after an accepted activate. */
  confirmTimeoutMs: number;
};

/** Microsoft gives the publisher 30 days to activate a purchase in PendingFulfillmentStart (docs/marketplace.md §5). */
export const MICROSOFT_ACTIVATION_WINDOW_MS = 30 * 24 * 60 * 60 * 1000;

export const defaultActivationPolicy: ActivationPolicy = {
  backoffMs: 1000,
  maxBackoffMs: 15 * 60 * 1000,
  deadlineMs: MICROSOFT_ACTIVATION_WINDOW_MS,
  confirmTimeoutMs: 30_000,
};

/** While waiting for Subscribed: the first pause between two Get subscription calls, and the longest. */
export const subscribedPoll = { firstMs: 250, maxMs: 5000 } as const;

/** The event a run handles. */
export type ActivationTrigger = {
  kind: 'requested' | 'auto-activated';
  eventId: string;
  /** The request's correlation id (the triggering event's, else its id); sent with every call to Microsoft. */
  correlationId: string;
  /** ActivationRequested's `at`: which request this run serves (a newer one supersedes it). */
  requestedAt?: string;
};

/** Where a Get subscription answer comes from: the check before activating, the wait, or the confirmation. */
export type GetPurpose = 'locate' | 'await' | 'confirm';

type ConfirmActivation = Extract<SubscriptionCommand, { type: 'ConfirmActivation' }>;
type RecordActivationFailure = Extract<SubscriptionCommand, { type: 'RecordActivationFailure' }>;

/** When and until when the runner is to try the event again (RetryLater's `afterMs` and `until`). */
export type RetryPlan = { afterMs: number; until: string };

/** What the last step found out. `atMs`: the executor's clock when it was found out (epoch ms). */
export type ActivationInput =
  | { type: 'Triggered'; trigger: ActivationTrigger }
  | { type: 'SubscriptionLoaded'; subscription: SubscriptionState; atMs: number }
  | { type: 'Provisioned' }
  | { type: 'MicrosoftAnswered'; purpose: GetPurpose; status: string | undefined; term?: NormalisedTerm; atMs: number }
  | { type: 'ActivationAccepted'; atMs: number }
  | { type: 'ActivationConfirmed' }
  /** A step of the attempt failed; `transient` failures may be retried, not before `retryAfterMs` (a hint, e.g. Retry-After). */
  | { type: 'AttemptFailed'; reason: string; transient: boolean; atMs: number; retryAfterMs?: number }
  /** The failure is recorded; `retry` as the record-failure step planned it (absent when final). */
  | { type: 'FailureRecorded'; final: boolean; retry?: RetryPlan };

export type ActivationOutcome =
  | 'unknown-subscription' // the stream has no subscription (nothing to activate)
  | 'not-pending' // activated (or unsubscribed) meanwhile
  | 'superseded' // given up on, or a newer request replaced this one
  | 'provisioned' // auto-activated: provisioning was all there was to do
  | 'activated'
  | 'gave-up'; // a final failure is recorded

/** What to do next. Commands come without `now`: the executor stamps them. */
export type ActivationStep =
  | { kind: 'done'; outcome: ActivationOutcome }
  | { kind: 'load' }
  | { kind: 'provision'; subscription: KnownSubscription }
  /** `alreadyActive`: Microsoft has it active already, so this confirms without activating. */
  | { kind: 'get-subscription'; purpose: 'locate' | 'confirm'; alreadyActive?: string }
  | { kind: 'activate'; planId: string; quantity?: number }
  /** Pause `afterMs`, then Get subscription to see whether Microsoft reports Subscribed yet. */
  | { kind: 'await-subscribed'; afterMs: number }
  | { kind: 'confirm'; command: Omit<ConfirmActivation, 'now'> }
  /** `retry`: the plan for the next attempt (absent when the failure is final). */
  | { kind: 'record-failure'; attempt: number; command: Omit<RecordActivationFailure, 'now'>; retry?: RetryPlan }
  /** End the run; the runner is to handle the event again after `afterMs`, until `until` (RetryLater). */
  | ({ kind: 'retry-later'; reason: string } & RetryPlan);

export type ActivationState = {
  trigger?: ActivationTrigger;
  /** The attempt under way (1-based, within its activation request); 0 before it starts. */
  attempt: number;
  /** The subscription as loaded at the start of the attempt. */
  subscription?: KnownSubscription;
  /** While waiting for Subscribed: when to stop, and the pause before the next Get. */
  wait?: { deadlineMs: number; nextMs: number };
};

export type ActivationWorkflow = {
  initialState(): ActivationState;
  evolve(state: ActivationState, input: ActivationInput): ActivationState;
  /** The next step after `input`, given the state before it. */
  decide(input: ActivationInput, state: ActivationState): ActivationStep;
  /** Whether a failure of this step fails the attempt (recorded, perhaps retried later) rather than the whole run. */
  failsTheAttempt(step: ActivationStep, state: ActivationState): boolean;
};

/** The event a run handles, or undefined for the events this process ignores. */
export function activationTrigger(event: RecordedEvent): ActivationTrigger | undefined {
  const decoded = decodeSubscriptionEvent(event);
  if (!decoded) return undefined;
  const ids = { eventId: event.id, correlationId: event.metadata.correlationId ?? event.id };
  if (decoded.type === 'ActivationRequested') return { kind: 'requested', ...ids, requestedAt: decoded.data.at };
  if (decoded.type === 'Activated' && decoded.data.autoActivated) return { kind: 'auto-activated', ...ids };
  return undefined;
}

const isActive = (status: string | undefined): boolean => status === 'Subscribed' || status === 'Suspended';

export function activationWorkflow(policy: ActivationPolicy = defaultActivationPolicy): ActivationWorkflow {
  function decide(input: ActivationInput, state: ActivationState): ActivationStep {
    switch (input.type) {
      case 'Triggered':
        return { kind: 'load' };
      case 'SubscriptionLoaded':
        return afterLoad(policy, input, state);
      case 'Provisioned':
        return triggerOf(state).kind === 'auto-activated' ? { kind: 'done', outcome: 'provisioned' } : { kind: 'get-subscription', purpose: 'locate' };
      case 'MicrosoftAnswered':
        return afterAnswer(policy, input, state);
      case 'ActivationAccepted':
        return { kind: 'await-subscribed', afterMs: 0 };
      case 'ActivationConfirmed':
        return { kind: 'done', outcome: 'activated' };
      case 'AttemptFailed':
        return failure(policy, state, input);
      case 'FailureRecorded':
        if (input.final || !input.retry) return { kind: 'done', outcome: 'gave-up' };
        return { kind: 'retry-later', reason: `activation attempt ${state.attempt} failed`, ...input.retry };
      default: {
        const _exhaustive: never = input;
        return _exhaustive;
      }
    }
  }

  function evolve(state: ActivationState, input: ActivationInput): ActivationState {
    switch (input.type) {
      case 'Triggered':
        return { attempt: 0, trigger: input.trigger };
      case 'SubscriptionLoaded': {
        const s = input.subscription;
        return {
          ...(state.trigger ? { trigger: state.trigger } : {}),
          // The load of a requested activation starts its next attempt (or ends the run).
          attempt: state.trigger?.kind === 'requested' && s.status !== 'Initial' ? s.activation.attempts + 1 : 0,
          ...(s.status === 'Initial' ? {} : { subscription: s }),
        };
      }
      case 'ActivationAccepted':
        return { ...state, wait: { deadlineMs: input.atMs + policy.confirmTimeoutMs, nextMs: subscribedPoll.firstMs } };
      case 'MicrosoftAnswered':
        if (input.purpose !== 'await' || !state.wait) return state;
        return { ...state, wait: { ...state.wait, nextMs: Math.min(state.wait.nextMs * 2, subscribedPoll.maxMs) } };
      default:
        return state;
    }
  }

  return { initialState: () => ({ attempt: 0 }), evolve, decide, failsTheAttempt };
}

/**
 * After loading: nothing to do (unknown, no longer pending, superseded), only provisioning (auto-activated), not
 * yet (the last failed attempt said when the next is due, and it is not), or an attempt: provision first.
 */
function afterLoad(policy: ActivationPolicy, input: Extract<ActivationInput, { type: 'SubscriptionLoaded' }>, state: ActivationState): ActivationStep {
  const s = input.subscription;
  const trigger = triggerOf(state);
  if (s.status === 'Initial') return { kind: 'done', outcome: 'unknown-subscription' };
  if (trigger.kind === 'auto-activated') return { kind: 'provision', subscription: s };
  if (s.status !== 'PendingFulfillmentStart') return { kind: 'done', outcome: 'not-pending' };
  if (s.activation.gaveUp || s.activation.requestedAt !== trigger.requestedAt) return { kind: 'done', outcome: 'superseded' };
  const dueMs = s.activation.nextAttemptAt === undefined ? NaN : Date.parse(s.activation.nextAttemptAt);
  if (dueMs > input.atMs) {
    return { kind: 'retry-later', reason: `the next activation attempt is due at ${s.activation.nextAttemptAt}`, afterMs: dueMs - input.atMs, until: iso(deadlineOf(policy, s, input.atMs)) };
  }
  return { kind: 'provision', subscription: s };
}

/**
 * The decisions after a Get subscription, by its purpose. Before activating (locate): activate, or confirm without
 * activating when Microsoft has the subscription active already, or fail for good when it is Unsubscribed. While
 * waiting (await): confirm once it is active, else wait on, or fail (transiently) past the deadline. For the
 * confirmation (confirm): record it with the plan and seats it activated with and Microsoft's term.
 */
function afterAnswer(
  policy: ActivationPolicy,
  input: Extract<ActivationInput, { type: 'MicrosoftAnswered' }>,
  state: ActivationState,
): ActivationStep {
  const { planId, quantity } = activationPlan(subscriptionOf(state));
  switch (input.purpose) {
    case 'locate':
      if (input.status === 'Unsubscribed') {
        return failure(policy, state, { reason: 'the subscription is Unsubscribed at Microsoft; it cannot be activated', transient: false, atMs: input.atMs });
      }
      if (isActive(input.status)) return { kind: 'get-subscription', purpose: 'confirm', ...(input.status ? { alreadyActive: input.status } : {}) };
      return { kind: 'activate', planId, ...(quantity !== undefined ? { quantity } : {}) };
    case 'await': {
      if (isActive(input.status)) return { kind: 'get-subscription', purpose: 'confirm' };
      const wait = state.wait;
      if (!wait) throw new Error('activation workflow: waiting for Subscribed before Microsoft accepted an activation');
      if (input.atMs + wait.nextMs > wait.deadlineMs) {
        const reason = `Microsoft accepted the activation but did not report Subscribed within ${policy.confirmTimeoutMs} ms`;
        return failure(policy, state, { reason, transient: true, atMs: input.atMs });
      }
      return { kind: 'await-subscribed', afterMs: wait.nextMs };
    }
    case 'confirm': {
      const term = input.term;
      return {
        kind: 'confirm',
        command: {
          type: 'ConfirmActivation',
          source: 'process',
          ...(planId ? { planId } : {}),
          ...(quantity !== undefined ? { quantity } : {}),
          ...(term ? { term: termFromMicrosoft(term) } : {}),
        },
      };
    }
    default: {
      const _exhaustive: never = input.purpose;
      return _exhaustive;
    }
  }
}

/** Whether a failure of this step fails the attempt (recorded, perhaps retried) rather than the whole run. */
function failsTheAttempt(step: ActivationStep, state: ActivationState): boolean {
  if (state.trigger?.kind !== 'requested') return false;
  switch (step.kind) {
    case 'provision':
    case 'get-subscription':
    case 'activate':
    case 'await-subscribed':
    case 'confirm':
      return true;
    default:
      return false;
  }
}

/**
 * Records a failed attempt: final when the failure is not transient, or when the next attempt (after the backoff,
 * or the failure's own hint if longer) would fall at or past the deadline; otherwise with when it is due.
 */
function failure(
  policy: ActivationPolicy,
  state: ActivationState,
  failed: { reason: string; transient: boolean; atMs: number; retryAfterMs?: number },
): ActivationStep {
  const attempt = state.attempt;
  const command = { type: 'RecordActivationFailure', source: 'process' } as const;
  if (!failed.transient) return { kind: 'record-failure', attempt, command: { ...command, reason: failed.reason, final: true } };
  const deadlineMs = deadlineOf(policy, subscriptionOf(state), failed.atMs);
  const afterMs = Math.max(backoffAfter(policy, attempt), Math.min(failed.retryAfterMs ?? 0, policy.maxBackoffMs));
  if (failed.atMs + afterMs >= deadlineMs) {
    const ended = failed.atMs >= deadlineMs ? 'ended' : 'ends';
    const reason = `${failed.reason}; not retried: the time for activating this purchase ${ended} at ${iso(deadlineMs)} (Microsoft allows 30 days from the purchase)`;
    return { kind: 'record-failure', attempt, command: { ...command, reason, final: true } };
  }
  return {
    kind: 'record-failure',
    attempt,
    command: { ...command, reason: failed.reason, final: false, retryAt: iso(failed.atMs + afterMs) },
    retry: { afterMs, until: iso(deadlineMs) },
  };
}

/** The pause after failed attempt `attempt` (1-based): `backoffMs` doubling, at most `maxBackoffMs`. */
export function backoffAfter(policy: ActivationPolicy, attempt: number): number {
  return Math.min(policy.maxBackoffMs, policy.backoffMs * 2 ** Math.max(0, attempt - 1));
}

/**
 * Until when activating can still matter: the purchase (Microsoft's `created`, else when we recorded it) plus
 * `deadlineMs`. Neither readable cannot happen (we stamp `purchasedAt`); then a full window from now.
 */
export function deadlineOf(policy: ActivationPolicy, s: KnownSubscription, nowMs: number): number {
  const created = s.created === undefined ? NaN : Date.parse(s.created);
  const from = Number.isFinite(created) ? created : Date.parse(s.purchasedAt);
  return (Number.isFinite(from) ? from : nowMs) + policy.deadlineMs;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** The plan and seats to activate with: what the customer confirmed when requesting, else what was bought. */
export function activationPlan(s: KnownSubscription): { planId: string; quantity?: number } {
  const quantity = s.activation.quantity ?? s.quantity;
  return { planId: s.activation.planId ?? s.planId, ...(quantity !== undefined ? { quantity } : {}) };
}

function triggerOf(state: ActivationState): ActivationTrigger {
  if (!state.trigger) throw new Error('activation workflow: an input arrived before the run was triggered');
  return state.trigger;
}

function subscriptionOf(state: ActivationState): KnownSubscription {
  if (!state.subscription) throw new Error('activation workflow: Microsoft answered before the subscription was loaded');
  return state.subscription;
}
