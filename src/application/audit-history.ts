/**
 * What an auditor reads of one subscription (issue 12): every event of its stream in order with where it came from
 * (the provenance), who did it and what it changed; and the subscription exactly as it stood at a moment.
 *
 * Provenance is derived from what the appends record: the event's `data.source` (landing, webhook, operator,
 * reconciliation, process), Microsoft's `data.operationId`, and the store metadata's `actor`
 * (`operator:<name>`, `customer:<email>`, `microsoft`, `system:<process>`), `correlationId` and `causationId`.
 * A webhook's change points at the stream holding Microsoft's raw notification: `notification-<operation id>`.
 *
 * "What changed" is a diff of the folded state before and after each event, folded with the domain's own
 * `evolve` (src/domain/subscription/), so it says what the ledger's state did, not what the event claims.
 */
import { decodeSubscriptionEvent, evolve, initialState, subscriptionStream } from '../domain/subscription/index.js';
import type { SubscriptionState } from '../domain/subscription/index.js';
import { notificationStream } from '../domain/notification/index.js';
import type { EventStore, RecordedEvent } from '../eventstore/eventstore.js';

export type SourceKind = 'landing' | 'webhook' | 'operator' | 'reconciliation' | 'process' | 'unknown';

export type Provenance = {
  kind: SourceKind;
  /** Microsoft's operation id, when a Microsoft operation caused the event. */
  operationId?: string;
  /** The stream holding Microsoft's raw notification(s) of that operation (source webhook). */
  notificationStream?: string;
  /** The operator's name (actor `operator:<name>`). */
  operator?: string;
  /** The customer (actor `customer:<email or id>`). */
  customer?: string;
  /** The process manager (actor `system:<name>`). */
  process?: string;
};

export type Change = { path: string; before?: unknown; after?: unknown };

export type HistoryEntry = {
  revision: string;
  position: string;
  eventId: string;
  type: string;
  /** When the store recorded it. */
  recordedAt: string;
  /** When the fact became known, as the event says (`data.at`). */
  at?: string;
  source: Provenance;
  /** Who, as recorded (`metadata.actor`). */
  actor?: string;
  correlationId?: string;
  causationId?: string;
  /** The folded state's fields that this event changed (empty: a repeat, or bookkeeping). */
  changes: Change[];
};

export type SubscriptionHistory = { subscriptionId: string; entries: HistoryEntry[]; state: SubscriptionState };

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

function field(data: unknown, key: string): unknown {
  return typeof data === 'object' && data !== null && !Array.isArray(data) ? (data as Record<string, unknown>)[key] : undefined;
}

const kinds: readonly SourceKind[] = ['landing', 'webhook', 'operator', 'reconciliation', 'process'];

/** Where an event came from, from its data (`source`, `operationId`) and metadata (`actor`). */
export function provenanceOf(event: Pick<RecordedEvent, 'data' | 'metadata'>): Provenance {
  const declared = str(field(event.data, 'source'));
  const actor = str(event.metadata.actor) ?? '';
  const operationId = str(field(event.data, 'operationId'));
  const fromActor: SourceKind = actor.startsWith('operator:') ? 'operator' : actor.startsWith('customer:') ? 'landing' : actor === 'microsoft' ? 'webhook' : actor.startsWith('system:reconciliation') ? 'reconciliation' : actor.startsWith('system:') ? 'process' : 'unknown';
  const kind = kinds.find((k) => k === declared) ?? fromActor;
  const [prefix, ...rest] = actor.split(':');
  const name = rest.join(':');
  return {
    kind,
    ...(operationId ? { operationId } : {}),
    ...(operationId && kind === 'webhook' ? { notificationStream: notificationStream(operationId) } : {}),
    ...(prefix === 'operator' && name ? { operator: name } : {}),
    ...(prefix === 'customer' && name ? { customer: name } : {}),
    ...(prefix === 'system' && name ? { process: name } : {}),
  };
}

function isPlain(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The fields that differ between two JSON-like values, as paths (`activation.attempts`); arrays compare whole. */
export function diff(before: unknown, after: unknown, path = ''): Change[] {
  if (isPlain(before) && isPlain(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => diff(before[k], after[k], path ? `${path}.${k}` : k));
  }
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  return [{ path: path || '(state)', ...(before !== undefined ? { before } : {}), ...(after !== undefined ? { after } : {}) }];
}

/** The state as plain JSON (undefined fields dropped), so diffs and comparisons see what a reader sees. */
function plain(state: SubscriptionState): unknown {
  return JSON.parse(JSON.stringify(state)) as unknown;
}

/** Folds the recorded events with the domain's evolve; non-subscription events leave the state as it is. */
export function foldRecorded(state: SubscriptionState, event: RecordedEvent): SubscriptionState {
  const decoded = decodeSubscriptionEvent(event);
  return decoded ? evolve(state, decoded) : state;
}

export function historyOf(subscriptionId: string, events: readonly RecordedEvent[]): SubscriptionHistory {
  let state = initialState();
  const entries = events.map((e): HistoryEntry => {
    const before = plain(state);
    state = foldRecorded(state, e);
    const at = str(field(e.data, 'at'));
    const actor = str(e.metadata.actor);
    const correlationId = str(e.metadata.correlationId);
    const causationId = str(e.metadata.causationId);
    return {
      revision: e.revision.toString(),
      position: e.position.toString(),
      eventId: e.id,
      type: e.type,
      recordedAt: e.recordedAt,
      ...(at ? { at } : {}),
      source: provenanceOf(e),
      ...(actor ? { actor } : {}),
      ...(correlationId ? { correlationId } : {}),
      ...(causationId ? { causationId } : {}),
      changes: diff(before, plain(state)),
    };
  });
  return { subscriptionId, entries, state };
}

export async function subscriptionHistory(store: EventStore, subscriptionId: string): Promise<SubscriptionHistory | undefined> {
  const events = await store.readStream(subscriptionStream(subscriptionId));
  return events.length === 0 ? undefined : historyOf(subscriptionId, events);
}

export type StateAt = {
  subscriptionId: string;
  at: string;
  /** Events recorded at or before `at` (the state folds them), and the last one's revision. */
  events: number;
  revision?: string;
  lastEventAt?: string;
  state: SubscriptionState;
};

/** An ISO-8601 time with a date, a time and a zone (`2026-03-01T10:00:00Z`, `…+02:00`), as epoch ms; undefined when it is not one. */
export function parseInstant(text: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * The subscription as it stood at `atMs`: the events the store recorded at or before it, folded. The store's
 * `recordedAt` is the clock used (not the events' own `at`): it says when the ledger knew it.
 * Undefined when the subscription has no event at all.
 */
export async function subscriptionStateAt(store: EventStore, subscriptionId: string, atMs: number): Promise<StateAt | undefined> {
  const events = await store.readStream(subscriptionStream(subscriptionId));
  if (events.length === 0) return undefined;
  let state = initialState();
  let count = 0;
  let last: RecordedEvent | undefined;
  for (const e of events) {
    if (Date.parse(e.recordedAt) > atMs) break;
    state = foldRecorded(state, e);
    count++;
    last = e;
  }
  return {
    subscriptionId,
    at: new Date(atMs).toISOString(),
    events: count,
    ...(last ? { revision: last.revision.toString(), lastEventAt: last.recordedAt } : {}),
    state,
  };
}
