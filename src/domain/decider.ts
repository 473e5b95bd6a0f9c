/** The whole business logic of one aggregate, pure: no I/O, no clock (time arrives inside the command). */
export type Decider<C, S, E> = {
  /** Throws a DomainError on an illegal command; returns [] when the command is already satisfied. */
  decide: (command: C, state: S) => E[];
  evolve: (state: S, event: E) => S;
  initialState: () => S;
};

/** Fold a history into state. */
export function fold<C, S, E>(decider: Decider<C, S, E>, events: Iterable<E>): S {
  let state = decider.initialState();
  for (const event of events) state = decider.evolve(state, event);
  return state;
}
