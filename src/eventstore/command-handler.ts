/**
 * The generic command handler: read the stream → fold → decide → append at the revision read.
 * On a concurrency conflict it re-reads and decides again (bounded), unless the caller pinned
 * the revision (If-Match), in which case the conflict is the caller's answer.
 */
import type { Decider, EventDecoder } from '../domain/decider.js';
import { ConcurrencyError } from './eventstore.js';
import { jitteredPause, retryOnConflict } from './conflict-retry.js';
import type { EventMetadata, EventStore, ExpectedRevision, RecordedEvent } from './eventstore.js';

type DomainEvent = { type: string; data: unknown };

export type Aggregate<S> = {
  state: S;
  /** Revision of the stream's last event; undefined when the stream does not exist. */
  revision: bigint | undefined;
  events: RecordedEvent[];
};

export type HandleOptions = {
  /** The revision the caller last saw (If-Match): no retry on conflict. */
  expectedRevision?: bigint;
  /** Attempts after the first on a conflict when no revision is pinned. Default 5. */
  maxRetries?: number;
  metadata?: EventMetadata;
};

export type HandleResult<S, E> = {
  /** What the command added; empty when it was already satisfied (idempotent repeat). */
  events: E[];
  state: S;
  revision: bigint | undefined;
  position?: bigint;
  attempts: number;
};

export async function loadAggregate<C, S, E extends DomainEvent>(
  store: EventStore,
  streamId: string,
  decider: Decider<C, S, E> & EventDecoder<E>,
): Promise<Aggregate<S>> {
  const events = await store.readStream(streamId);
  let state = decider.initialState();
  for (const e of events) {
    const event = decider.decode(e);
    if (event) state = decider.evolve(state, event);
  }
  const last = events[events.length - 1];
  return { state, revision: last?.revision, events };
}

export async function handleCommand<C, S, E extends DomainEvent>(
  store: EventStore,
  streamId: string,
  decider: Decider<C, S, E> & EventDecoder<E>,
  command: C,
  options: HandleOptions = {},
): Promise<HandleResult<S, E>> {
  // A pinned revision is the caller's own check: its conflict is the answer, not something to retry.
  const maxRetries = options.expectedRevision === undefined ? (options.maxRetries ?? 5) : 0;
  return retryOnConflict({ maxAttempts: maxRetries + 1, pauseMs: jitteredPause }, async (attempt) => {
    const { state, revision } = await loadAggregate(store, streamId, decider);
    if (options.expectedRevision !== undefined && options.expectedRevision !== revision) {
      throw new ConcurrencyError(streamId, options.expectedRevision, revision ?? -1n);
    }
    const events = decider.decide(command, state);
    if (events.length === 0) return { events, state, revision, attempts: attempt };
    const expected: ExpectedRevision = revision === undefined ? 'no_stream' : revision;
    const result = await store.appendToStream(
      streamId,
      events.map((e) => ({ type: e.type, data: e.data, metadata: options.metadata })),
      { expectedRevision: expected },
    );
    const next = events.reduce(decider.evolve, state);
    return { events, state: next, revision: result.nextExpectedRevision, position: result.position, attempts: attempt };
  });
}
