/**
 * The outbox of one subscription: its integration events and what became of each delivery, as
 * events in an `outbox-<subscriptionId>` stream. Pure: the event types and the fold.
 *
 * The queue is ordered by `sequence`; only its head is ever being delivered, so a subscription whose
 * deliveries fail holds back only its own later events. The head leaves the queue when it is
 * Delivered or, by an operator, DeadLetterSkipped; a DeadLettered head stays and blocks the queue
 * until an operator retries (DeadLetterRetried starts a new round of attempts) or skips it.
 */
import Type from 'typebox';
import { EventDecodeError, PartySchema, TermSchema } from '../domain/subscription/index.js';
import { streamName } from '../eventstore/eventstore.js';
import type { Static, TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import { INTEGRATION_EVENT_VERSION } from './outbound-event.js';
import type { IntegrationEvent } from './outbound-event.js';

export const outboxCategory = 'outbox';
export const outboxStream = (subscriptionId: string): string => streamName(outboxCategory, subscriptionId);

export type DeliveryScheduled = { type: 'DeliveryScheduled'; data: { eventId: string; sequence: number; at: string; event: IntegrationEvent } };
export type DeliveryFailed = {
  type: 'DeliveryFailed';
  data: { eventId: string; attempt: number; at: string; error: string; status?: number; nextAttemptAt: string };
};
export type Delivered = { type: 'Delivered'; data: { eventId: string; attempt: number; at: string; status: number; durationMs: number } };
export type DeadLettered = { type: 'DeadLettered'; data: { eventId: string; attempts: number; at: string; error: string; status?: number } };
export type DeadLetterRetried = { type: 'DeadLetterRetried'; data: { eventId: string; at: string; actor: string } };
export type DeadLetterSkipped = { type: 'DeadLetterSkipped'; data: { eventId: string; at: string; actor: string; reason?: string } };

export type OutboxEvent = DeliveryScheduled | DeliveryFailed | Delivered | DeadLettered | DeadLetterRetried | DeadLetterSkipped;

export const outboxEventTypes: readonly OutboxEvent['type'][] = [
  'DeliveryScheduled',
  'DeliveryFailed',
  'Delivered',
  'DeadLettered',
  'DeadLetterRetried',
  'DeadLetterSkipped',
];

export type OutboxEntry = {
  event: IntegrationEvent;
  scheduledAt: string;
  /** Attempts in the current round (a retry by an operator starts a new round). */
  attempts: number;
  lastError?: string;
  lastStatus?: number;
  lastAttemptAt?: string;
  nextAttemptAt?: string;
  deadLetteredAt?: string;
};

export type OutboxState = {
  subscriptionId: string;
  /** The highest sequence ever scheduled: a repeat of an older one (a replayed event) is ignored. */
  lastScheduled: number;
  /** Not yet delivered nor skipped, by sequence. */
  pending: OutboxEntry[];
  delivered: number;
  skipped: number;
  lastDeliveredSequence?: number;
};

export const initialOutbox = (subscriptionId: string): OutboxState => ({ subscriptionId, lastScheduled: -1, pending: [], delivered: 0, skipped: 0 });

export function isOutboxEvent(e: { type: string }): e is OutboxEvent {
  return (outboxEventTypes as readonly string[]).includes(e.type);
}

function update(state: OutboxState, eventId: string, change: (entry: OutboxEntry) => OutboxEntry): OutboxState {
  const i = state.pending.findIndex((p) => p.event.id === eventId);
  if (i < 0) return state;
  const pending = [...state.pending];
  pending[i] = change(pending[i] as OutboxEntry);
  return { ...state, pending };
}

function without(state: OutboxState, eventId: string): { state: OutboxState; entry?: OutboxEntry } {
  const entry = state.pending.find((p) => p.event.id === eventId);
  if (!entry) return { state };
  return { state: { ...state, pending: state.pending.filter((p) => p !== entry) }, entry };
}

export function evolveOutbox(state: OutboxState, event: OutboxEvent): OutboxState {
  switch (event.type) {
    case 'DeliveryScheduled': {
      const d = event.data;
      if (d.sequence <= state.lastScheduled || state.pending.some((p) => p.event.id === d.eventId)) return state;
      const pending = [...state.pending, { event: d.event, scheduledAt: d.at, attempts: 0 }].sort((a, b) => a.event.sequence - b.event.sequence);
      return { ...state, lastScheduled: d.sequence, pending };
    }
    case 'DeliveryFailed': {
      const d = event.data;
      return update(state, d.eventId, (e) => ({
        ...e,
        attempts: Math.max(e.attempts, d.attempt),
        lastError: d.error,
        lastAttemptAt: d.at,
        nextAttemptAt: d.nextAttemptAt,
        ...(d.status !== undefined ? { lastStatus: d.status } : {}),
      }));
    }
    case 'Delivered': {
      const { state: next, entry } = without(state, event.data.eventId);
      if (!entry) return state;
      const last = Math.max(state.lastDeliveredSequence ?? -1, entry.event.sequence);
      return { ...next, delivered: state.delivered + 1, lastDeliveredSequence: last };
    }
    case 'DeadLettered': {
      const d = event.data;
      return update(state, d.eventId, (e) => {
        const { nextAttemptAt: _next, ...rest } = e;
        return { ...rest, attempts: Math.max(e.attempts, d.attempts), lastError: d.error, deadLetteredAt: d.at, ...(d.status !== undefined ? { lastStatus: d.status } : {}) };
      });
    }
    case 'DeadLetterRetried':
      return update(state, event.data.eventId, (e) => {
        if (!e.deadLetteredAt) return e;
        const { deadLetteredAt: _dead, nextAttemptAt: _next, ...rest } = e;
        return { ...rest, attempts: 0 };
      });
    case 'DeadLetterSkipped': {
      const { state: next, entry } = without(state, event.data.eventId);
      return entry ? { ...next, skipped: state.skipped + 1 } : state;
    }
    default: {
      const _exhaustive: never = event;
      return state;
    }
  }
}

/** What the queue's head needs now. */
export type NextStep =
  | { kind: 'idle' }
  | { kind: 'blocked'; entry: OutboxEntry }
  | { kind: 'wait'; entry: OutboxEntry; untilMs: number }
  | { kind: 'deliver'; entry: OutboxEntry; attempt: number };

export function nextStep(state: OutboxState, nowMs: number, notBeforeMs?: number): NextStep {
  const head = state.pending[0];
  if (!head) return { kind: 'idle' };
  if (head.deadLetteredAt) return { kind: 'blocked', entry: head };
  const scheduled = head.nextAttemptAt ? Date.parse(head.nextAttemptAt) : 0;
  const due = notBeforeMs !== undefined ? Math.min(scheduled, notBeforeMs) : scheduled;
  if (due > nowMs) return { kind: 'wait', entry: head, untilMs: due };
  return { kind: 'deliver', entry: head, attempt: head.attempts + 1 };
}

/** Exponential backoff with equal jitter: half the delay fixed, half random; a Retry-After is honoured up to the cap. */
export function backoffDelay(attempt: number, options: { baseMs: number; maxMs: number; random?: () => number; retryAfterMs?: number }): number {
  const exp = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(attempt - 1, 30));
  const jittered = exp / 2 + (options.random ?? Math.random)() * (exp / 2);
  const floor = options.retryAfterMs !== undefined ? Math.min(options.retryAfterMs, options.maxMs) : 0;
  return Math.round(Math.max(jittered, floor));
}

// ------------------------------------------------------------------------------------------------
// The one decode from a stored event to an outbox event (no casts): compiled TypeBox schemas whose
// static types are checked against the event types above at compile time.

const Str = Type.String();
const Num = Type.Number();
const Opt = <T extends TSchema>(schema: T) => Type.Optional(schema);
const Party = PartySchema;
const Term = TermSchema;
const Snapshot = Type.Object({
  status: Type.Union([Type.Literal('PendingFulfillmentStart'), Type.Literal('Subscribed'), Type.Literal('Suspended'), Type.Literal('Unsubscribed')]),
  name: Str,
  offerId: Str,
  planId: Str,
  quantity: Opt(Num),
  term: Term,
  autoRenew: Type.Boolean(),
  isFreeTrial: Type.Boolean(),
  isTest: Type.Boolean(),
  purchaser: Party,
  beneficiary: Party,
  contact: Opt(Type.Object({ email: Str, name: Opt(Str), company: Opt(Str), phone: Opt(Str) })),
});
const IntegrationEventSchema = Type.Object({
  id: Str,
  type: Type.TemplateLiteral('subscription.${string}'),
  version: Type.Literal(INTEGRATION_EVENT_VERSION),
  subscriptionId: Str,
  sequence: Num,
  occurredAt: Str,
  data: Type.Record(Type.String(), Type.Unknown()),
  subscription: Opt(Snapshot),
});
const outboxSchema = Type.Union([
  Type.Object({ type: Type.Literal('DeliveryScheduled'), data: Type.Object({ eventId: Str, sequence: Num, at: Str, event: IntegrationEventSchema }) }),
  Type.Object({ type: Type.Literal('DeliveryFailed'), data: Type.Object({ eventId: Str, attempt: Num, at: Str, error: Str, status: Opt(Num), nextAttemptAt: Str }) }),
  Type.Object({ type: Type.Literal('Delivered'), data: Type.Object({ eventId: Str, attempt: Num, at: Str, status: Num, durationMs: Num }) }),
  Type.Object({ type: Type.Literal('DeadLettered'), data: Type.Object({ eventId: Str, attempts: Num, at: Str, error: Str, status: Opt(Num) }) }),
  Type.Object({ type: Type.Literal('DeadLetterRetried'), data: Type.Object({ eventId: Str, at: Str, actor: Str }) }),
  Type.Object({ type: Type.Literal('DeadLetterSkipped'), data: Type.Object({ eventId: Str, at: Str, actor: Str, reason: Opt(Str) }) }),
]);
const decodedIsOutboxEvent: [Static<typeof outboxSchema>] extends [OutboxEvent] ? true : false = true;
void decodedIsOutboxEvent;

const compileOutbox = () => Compile(outboxSchema);
let outboxValidator: ReturnType<typeof compileOutbox> | undefined;

/** The outbox event a stored `{ type, data }` is; undefined for other types; an EventDecodeError for an outbox type of the wrong shape. */
export function decodeOutboxEvent(stored: { type: string; data: unknown }): OutboxEvent | undefined {
  if (!isOutboxEvent(stored)) return undefined;
  const candidate = { type: stored.type, data: stored.data };
  const validator = (outboxValidator ??= compileOutbox());
  if (validator.Check(candidate)) return candidate;
  const first = validator.Errors(candidate)[0];
  throw new EventDecodeError(stored.type, first ? `${first.instancePath || '/'} ${first.message}` : 'invalid');
}
