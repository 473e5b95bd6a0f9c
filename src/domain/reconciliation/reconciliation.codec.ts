/**
 * The one decode from a stored event to a reconciliation event (a run's stream) or to the index's last event.
 * Tolerant as stored history needs (unknown fields kept); a known type with the wrong shape is an
 * EventDecodeError naming the type and the first mismatch. A compile-time check keeps the schemas and the
 * types in reconciliation.events.ts saying the same thing.
 */
import Type from 'typebox';
import type { Static, TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import type { Validator } from 'typebox/compile';
import { EventDecodeError } from '../subscription/subscription.codec.js';
import type { ReconciliationEvent, ReconciliationEventType, ReconciliationIndexUpdated } from './reconciliation.events.js';

const Str = Type.String();
const Int = Type.Integer({ minimum: 0 });
const Opt = <T extends TSchema>(schema: T) => Type.Optional(schema);
const Trigger = Type.Union([Type.Literal('schedule'), Type.Literal('api'), Type.Literal('cli')]);
const Status = Type.Union([Type.Literal('running'), Type.Literal('interrupted'), Type.Literal('finished')]);

const Drifts = Type.Object({
  status: Int,
  plan: Int,
  quantity: Int,
  term: Int,
  autoRenew: Int,
  isFreeTrial: Int,
  allowedCustomerOperations: Int,
  unrecorded: Int,
});

export const RunCountsSchema = Type.Object({
  checked: Int,
  drifted: Int,
  drifts: Drifts,
  repaired: Int,
  purchasesRecorded: Int,
  inFlight: Int,
  unrepairable: Int,
  errors: Int,
  calls: Int,
});

const event = <K extends ReconciliationEventType, P extends Record<string, TSchema>>(type: K, data: P) =>
  Type.Object({ type: Type.Literal(type), data: Type.Object({ at: Str, instanceId: Str, ...data }) });

const schemas = {
  ReconciliationStarted: event('ReconciliationStarted', { runId: Str, trigger: Trigger }),
  ReconciliationResumed: event('ReconciliationResumed', { trigger: Trigger, fromPage: Int, counts: RunCountsSchema }),
  ReconciliationPageChecked: event('ReconciliationPageChecked', {
    page: Int,
    link: Opt(Str),
    nextLink: Opt(Str),
    found: RunCountsSchema,
    counts: RunCountsSchema,
  }),
  ReconciliationInterrupted: event('ReconciliationInterrupted', { reason: Str, pages: Int, counts: RunCountsSchema }),
  ReconciliationFinished: event('ReconciliationFinished', { pages: Int, counts: RunCountsSchema, durationMs: Int }),
} satisfies { [K in ReconciliationEventType]: TSchema };

const IndexedRunSchema = Type.Object({ runId: Str, trigger: Trigger, startedAt: Str, status: Status, at: Str });
const IndexSchema = Type.Object({
  type: Type.Literal('ReconciliationIndexUpdated'),
  data: Type.Object({
    at: Str,
    change: Type.Union([Type.Literal('started'), Type.Literal('resumed'), Type.Literal('renewed'), Type.Literal('finished'), Type.Literal('interrupted')]),
    runs: Type.Array(IndexedRunSchema),
    claim: Opt(Type.Object({ runId: Str, instanceId: Str, until: Str })),
  }),
});

type Schemas = typeof schemas;
type Decoded = { [K in keyof Schemas]: Static<Schemas[K]> }[keyof Schemas];
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const schemasMatchTypes: Same<Decoded, ReconciliationEvent> = true;
const indexMatchesType: Same<Static<typeof IndexSchema>, ReconciliationIndexUpdated> = true;
void schemasMatchTypes;
void indexMatchesType;

type Validators = { [K in keyof Schemas]: Validator<{}, Schemas[K]> };
let validators: Validators | undefined;
const compileIndex = () => Compile(IndexSchema);
let indexValidator: ReturnType<typeof compileIndex> | undefined;

function compiled(): Validators {
  validators ??= {
    ReconciliationStarted: Compile(schemas.ReconciliationStarted),
    ReconciliationResumed: Compile(schemas.ReconciliationResumed),
    ReconciliationPageChecked: Compile(schemas.ReconciliationPageChecked),
    ReconciliationInterrupted: Compile(schemas.ReconciliationInterrupted),
    ReconciliationFinished: Compile(schemas.ReconciliationFinished),
  };
  return validators;
}

function isKnownType(type: string): type is keyof Schemas {
  return Object.hasOwn(schemas, type);
}

function problemOf(errors: readonly { instancePath: string; message: string }[]): string {
  const first = errors[0];
  return first ? `${first.instancePath || '/'} ${first.message}` : 'invalid';
}

/** The run event a stored `{ type, data }` is; undefined when its type is not one. */
export function decodeReconciliationEvent(stored: { type: string; data: unknown }): ReconciliationEvent | undefined {
  const { type } = stored;
  if (!isKnownType(type)) return undefined;
  const candidate = { type, data: stored.data };
  const validator = compiled()[type];
  if (validator.Check(candidate)) return candidate;
  throw new EventDecodeError(type, problemOf(validator.Errors(candidate)));
}

/** The index's last event; undefined when the stream is empty or its last event is of another type. */
export function decodeIndexEvent(stored: { type: string; data: unknown } | undefined): ReconciliationIndexUpdated | undefined {
  if (!stored || stored.type !== 'ReconciliationIndexUpdated') return undefined;
  const candidate = { type: stored.type, data: stored.data };
  indexValidator ??= compileIndex();
  const validator = indexValidator;
  if (validator.Check(candidate)) return candidate;
  throw new EventDecodeError(stored.type, problemOf(validator.Errors(candidate)));
}
