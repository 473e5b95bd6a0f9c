/**
 * Given events / when command / then events or error, for any `Decider`.
 *
 *   const spec = deciderSpec(subscriptionDecider);
 *   spec(t).given(history).when(command).then([expectedEvent]);
 *   spec(t).given(history).when(command).thenNothing();
 *   spec(t).given(history).when(command).thenError('illegal-transition', { messageIncludes: ['Renew', 'Unsubscribed'] });
 *
 * On every case, and at no cost to the test, the helper also checks that the decider is pure:
 * - the state folded from `given` and the command are deep-frozen before `decide` sees them, so a
 *   mutation throws (a TypeError, reported as such rather than as a DomainError);
 * - `decide` runs twice on the same inputs and must give the same events (or the same error).
 *
 * Events are compared as they are stored: as JSON (an `undefined` field is the same as no field).
 * `then`/`thenNothing` return the state after the emitted events, `thenError` the DomainError,
 * for further assertions.
 */
import type { Test } from 'tap';
import { fold } from '../../src/domain/decider.js';
import type { Decider } from '../../src/domain/decider.js';
import { DomainError } from '../../src/domain/errors.js';

/** Passed through to tap's assertions: `{ todo: 'why' }` records a known discrepancy without failing the run. */
export type Extra = { todo?: string | boolean };

export type ErrorExpectation = Extra & {
  /** Fragments the error message must contain (e.g. the command type and the status). */
  messageIncludes?: readonly string[];
  /** The HTTP status the edge answers with. */
  status?: number;
};

export type Then<S, E> = {
  /** The state `decide` saw: the fold of the given events (deep-frozen). */
  readonly state: S;
  /** The command emits exactly these events. Returns the state after them. */
  then(expected: readonly E[], extra?: Extra): S;
  /** The command is already satisfied: no events. Returns the (unchanged) state. */
  thenNothing(extra?: Extra): S;
  /** The command is refused with a DomainError carrying `code`. */
  thenError(code: string, expectation?: ErrorExpectation): DomainError | undefined;
};

export type When<C, S, E> = { when(command: C): Then<S, E> };
export type Given<C, S, E> = { given(events: readonly E[]): When<C, S, E> };

type Outcome<E> = { ok: true; events: E[] } | { ok: false; error: unknown };

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Reflect.ownKeys(value)) deepFreeze((value as Record<PropertyKey, unknown>)[key]);
  }
  return value;
}

/** The stored form of a value: what survives JSON serialisation. */
export function asStored<T>(value: T): unknown {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

function run<C, S, E>(decider: Decider<C, S, E>, command: C, state: S): Outcome<E> {
  try {
    return { ok: true, events: decider.decide(command, state) };
  } catch (error) {
    return { ok: false, error };
  }
}

function describe(error: unknown): string {
  if (error instanceof DomainError) return `DomainError ${error.code} (${error.status}): ${error.message}`;
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

function sameOutcome<E>(a: Outcome<E>, b: Outcome<E>): boolean {
  if (a.ok && b.ok) return JSON.stringify(a.events) === JSON.stringify(b.events);
  if (!a.ok && !b.ok) return describe(a.error) === describe(b.error);
  return false;
}

export function deciderSpec<C extends { type: string }, S, E extends { type: string }>(decider: Decider<C, S, E>): (t: Test) => Given<C, S, E> {
  return (t) => ({
    given(events) {
      return {
        when(command) {
          const state = deepFreeze(fold(decider, events));
          deepFreeze(command);
          const outcome = run(decider, command, state);
          const again = run(decider, command, state);
          // Purity is never the discrepancy a `todo` records: it is asserted without `extra`.
          const pure = (): void => {
            t.ok(sameOutcome(outcome, again), `${command.type}: the same inputs give the same outcome`);
          };
          const after = (emitted: readonly E[]): S => emitted.reduce(decider.evolve, state);

          return {
            state,
            then(expected, extra = {}) {
              pure();
              if (!outcome.ok) {
                t.fail(`${command.type}: expected ${expected.length} event(s), but it threw ${describe(outcome.error)}`, extra);
                return state;
              }
              t.strictSame(
                asStored(outcome.events),
                asStored(expected),
                `${command.type} emits ${expected.map((e) => e.type).join(', ') || 'nothing'}`,
                extra,
              );
              return after(outcome.events);
            },
            thenNothing(extra = {}) {
              pure();
              if (!outcome.ok) {
                t.fail(`${command.type}: expected no events, but it threw ${describe(outcome.error)}`, extra);
                return state;
              }
              t.strictSame(asStored(outcome.events), [], `${command.type} is already satisfied: no events`, extra);
              return after(outcome.events);
            },
            thenError(code, expectation = {}) {
              const { messageIncludes = [], status, ...extra } = expectation;
              pure();
              if (outcome.ok) {
                t.fail(`${command.type}: expected DomainError ${code}, but it emitted ${JSON.stringify(outcome.events)}`, extra);
                return undefined;
              }
              const error = outcome.error;
              if (!(error instanceof DomainError)) {
                t.fail(`${command.type}: expected DomainError ${code}, but it threw ${describe(error)}`, extra);
                return undefined;
              }
              t.equal(error.code, code, `${command.type} is refused with ${code}`, extra);
              for (const fragment of messageIncludes) {
                t.ok(error.message.includes(fragment), `the message names ${JSON.stringify(fragment)}: ${error.message}`, extra);
              }
              if (status !== undefined) t.equal(error.status, status, `${code} answers HTTP ${status}`, extra);
              return error;
            },
          };
        },
      };
    },
  });
}
