/** The whole business logic of one aggregate, pure: no I/O, no clock (time arrives inside the command). */
export type Decider<C, S, E> = {
  /** Throws a DomainError on an illegal command; returns [] when the command is already satisfied. */
  decide: (command: C, state: S) => E[];
  evolve: (state: S, event: E) => S;
  initialState: () => S;
};

/**
 * The one way from a stored `{ type, data }` to an event of an aggregate: undefined for a type that is not
 * one of its events (skipped when folding); an error for one of its types with the wrong shape.
 * Kept beside the decider rather than inside it where the decode needs more than the domain (old stored
 * shapes read through an edge parser, e.g. notifications).
 */
export type EventDecoder<E> = { decode: (stored: { type: string; data: unknown }) => E | undefined };

/** Fold a history into state. */
export function fold<C, S, E>(decider: Decider<C, S, E>, events: Iterable<E>): S {
  let state = decider.initialState();
  for (const event of events) state = decider.evolve(state, event);
  return state;
}
