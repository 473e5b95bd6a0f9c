/**
 * What the catch-up runner holds back, and why: the keys whose events wait (retrying after a failure, parked for
 * an operator, or simply not handled yet behind the checkpoint), as they are kept in the checkpoint record
 * (checkpoints.ts), and the pure rule that says what happens after a handler failed.
 *
 * The record is bounded by what is held NOW, never by history: a key leaves it when its last held event is
 * handled. Events are kept by reference (stream, revision, position, type) and re-read at start.
 *
 * Operators ask for a parked key to be retried by appending `ParkedRetryRequested {key, at, actor}` to the
 * process's `processctl-<name>` stream (src/processes/parked.ts does); the runner follows that stream with its
 * events, so the request reaches whichever instance runs the process, in order, after a restart too.
 */
import Type from 'typebox';
import type { Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { StoreUnavailableError, streamName } from '../../eventstore/eventstore.js';
import type { RecordedEvent } from '../../eventstore/eventstore.js';
import { RetryLater } from './types.js';

const Str = Type.String();
const Digits = Type.String({ pattern: '^[0-9]+$' });

const EventRefSchema = Type.Object({ streamId: Str, revision: Digits, position: Digits, type: Str });

const FailureSchema = Type.Object({
  /** `retrying`: another attempt is due at `nextAttemptAt`. `parked`: no more attempts until an operator retries. */
  status: Type.Union([Type.Literal('retrying'), Type.Literal('parked')]),
  /** Failed attempts at the key's first event. */
  attempts: Type.Integer({ minimum: 1 }),
  /** Of those, the ordinary errors (not RetryLater, not the store unavailable): what `maxAttempts` bounds. */
  errors: Type.Optional(Type.Integer({ minimum: 0 })),
  firstFailureAt: Str,
  lastFailureAt: Str,
  lastError: Str,
  /** Whether the last failure was a RetryLater (or the store being unavailable): retried without a bound on attempts. */
  transient: Type.Boolean(),
  nextAttemptAt: Type.Optional(Str),
  /** The RetryLater deadline the handler gave, past which the event is parked. */
  until: Type.Optional(Str),
});

const HeldKeySchema = Type.Object({
  key: Str,
  /** The key's unhandled events the checkpoint is past (all of them while the key fails), oldest first. */
  events: Type.Array(EventRefSchema, { minItems: 1 }),
  failure: Type.Optional(FailureSchema),
});

const HeldSchema = Type.Array(HeldKeySchema);

export type EventRef = Static<typeof EventRefSchema>;
export type HeldFailure = Static<typeof FailureSchema>;
export type HeldKey = Static<typeof HeldKeySchema>;

const compileHeld = () => Compile(HeldSchema);
let heldValidator: ReturnType<typeof compileHeld> | undefined;

/** The `held` list of a stored checkpoint: the list, or a problem saying why it cannot be read. */
export function decodeHeld(value: unknown): { held: HeldKey[] } | { problem: string } {
  if (value === undefined) return { held: [] };
  const validator = (heldValidator ??= compileHeld());
  if (validator.Check(value)) return { held: value };
  const first = validator.Errors(value)[0];
  return { problem: first ? `held${first.instancePath} ${first.message}` : 'held: invalid' };
}

export const refOf = (event: RecordedEvent): EventRef => ({
  streamId: event.streamId,
  revision: event.revision.toString(),
  position: event.position.toString(),
  type: event.type,
});

// ---- operators' requests ----

export const RETRY_REQUESTED = 'ParkedRetryRequested';

/** Where operators' requests about a process's held keys go (one small event per request, bounded with keepLast). */
export const controlStream = (name: string): string => streamName('processctl', name);

/** Requests kept in the control stream; the runner has long read older ones. */
export const CONTROL_STREAM_KEEP = 100;

const RetryRequestSchema = Type.Object({ key: Type.String({ minLength: 1 }), at: Str, actor: Str });
export type RetryRequest = Static<typeof RetryRequestSchema>;
const compileRequest = () => Compile(RetryRequestSchema);
let requestValidator: ReturnType<typeof compileRequest> | undefined;

/** A `ParkedRetryRequested` event's data; undefined for any other event or a malformed one. */
export function decodeRetryRequest(event: Pick<RecordedEvent, 'type' | 'data'>): RetryRequest | undefined {
  if (event.type !== RETRY_REQUESTED) return undefined;
  const validator = (requestValidator ??= compileRequest());
  return validator.Check(event.data) ? event.data : undefined;
}

// ---- after a failure ----

export type FailurePolicy = {
  /** Attempts at an event failing with an ordinary error before it is parked (RetryLaters do not count). */
  maxAttempts: number;
  retryBaseMs: number;
  /** Cap of the backoff after an ordinary error. */
  retryMaxMs: number;
  /** Cap of the backoff after a RetryLater (or the store being unavailable). */
  retryLaterMaxMs: number;
};

export const defaultFailurePolicy: FailurePolicy = { maxAttempts: 8, retryBaseMs: 200, retryMaxMs: 30_000, retryLaterMaxMs: 5 * 60_000 };

export type FailureDecision =
  | { kind: 'retry'; inMs: number; transient: boolean; until?: string }
  | { kind: 'park'; transient: boolean; why: string; until?: string };

/** Whether a handler's error says "later" (a RetryLater, or the store being unavailable) rather than "maybe never". */
export const isTransient = (err: unknown): boolean => err instanceof RetryLater || err instanceof StoreUnavailableError;

/**
 * What follows a failure of an event, at `nowMs` (pure). `count.attempts`: failed attempts so far, this one
 * included; `count.errors`: of those, the ordinary errors (this one included when it is one).
 * - RetryLater: retry after `retryBaseMs · 2^(attempts-1)` capped by `retryLaterMaxMs`, at least `afterMs`, but not
 *   after `until`, so that the handler gets an attempt at its deadline; at or past `until`, park. No bound on
 *   attempts. The store being unavailable counts as a RetryLater without a deadline.
 * - Any other error: retry after `retryBaseMs · 2^(errors-1)` capped by `retryMaxMs`; the `maxAttempts`-th ordinary
 *   error parks (RetryLaters before it do not count).
 */
export function afterFailure(err: unknown, count: { attempts: number; errors: number }, policy: FailurePolicy, nowMs: number): FailureDecision {
  const backoff = (n: number, cap: number) => Math.min(cap, policy.retryBaseMs * 2 ** Math.min(Math.max(n - 1, 0), 30));
  if (err instanceof RetryLater || err instanceof StoreUnavailableError) {
    const options = err instanceof RetryLater ? err.options : {};
    const untilMs = options.until !== undefined ? Date.parse(options.until) : Number.NaN;
    const until = Number.isNaN(untilMs) ? undefined : options.until;
    if (until !== undefined && untilMs <= nowMs) return { kind: 'park', transient: true, why: `still failing at its deadline ${until}`, until };
    let inMs = Math.max(options.afterMs ?? 0, backoff(count.attempts, policy.retryLaterMaxMs));
    if (until !== undefined) inMs = Math.min(inMs, untilMs - nowMs);
    return { kind: 'retry', inMs, transient: true, ...(until !== undefined ? { until } : {}) };
  }
  if (count.errors >= policy.maxAttempts) return { kind: 'park', transient: false, why: `failed ${count.errors} times` };
  return { kind: 'retry', inMs: backoff(count.errors, policy.retryMaxMs), transient: false };
}

/** An error's message for the record and the operator (bounded). */
export function describeError(err: unknown): string {
  const text = err instanceof Error ? `${err.name === 'Error' ? '' : `${err.name}: `}${err.message}` : String(err);
  return text.slice(0, 500);
}
