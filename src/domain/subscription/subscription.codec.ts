/**
 * The one decode from a stored event to a subscription event: `decodeSubscriptionEvent({ type, data })`.
 *
 * A schema per event type mirrors subscription.events.ts (a compile-time check below keeps the two in
 * step). The schemas are as tolerant as the stored history needs: unknown fields are kept (events written
 * by a newer version), optional fields may be absent. A type that is not a subscription event decodes to
 * `undefined` (streams carry other events too); a subscription event whose data does not fit its schema
 * is an `EventDecodeError` naming the type and the first mismatch, never a silently wrong state.
 *
 * Stored names that changed are read here and nowhere else: `PlanChanged` and `QuantityChanged` stored
 * before Microsoft's time was called `timeStamp` carry it as `occurredAt`, which decodes as `timeStamp`.
 */
import Type from 'typebox';
import type { Static, TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import type { Validator } from 'typebox/compile';
import type { SubscriptionEvent, SubscriptionEventType } from './subscription.events.js';

const Str = Type.String();
const Opt = <T extends TSchema>(schema: T) => Type.Optional(schema);

const ChangeSource = Type.Union([
  Type.Literal('landing'),
  Type.Literal('webhook'),
  Type.Literal('operator'),
  Type.Literal('reconciliation'),
  Type.Literal('process'),
]);

/** A party and a term as stored: the one schema of each, also used by the outbox and notification decoders. */
export const PartySchema = Type.Object({ emailId: Opt(Str), objectId: Opt(Str), tenantId: Opt(Str), puid: Opt(Type.Union([Str, Type.Null()])) });
export const TermSchema = Type.Object({ termUnit: Opt(Str), startDate: Opt(Str), endDate: Opt(Str), chargeDuration: Opt(Type.Union([Str, Type.Null()])) });
const Report = Type.Object({ status: Str, planId: Str, quantity: Opt(Type.Number()), term: Opt(TermSchema), autoRenew: Opt(Type.Boolean()) });
const Owned = Type.Object({ term: Opt(TermSchema), autoRenew: Opt(Type.Boolean()), isFreeTrial: Opt(Type.Boolean()), allowedCustomerOperations: Opt(Type.Array(Str)) });

/** `Because` without its `operationId`: the events that require one say so, the others spread `byOperation`. */
const because = { at: Str, source: ChangeSource, reported: Opt(Report) };
const byOperation = { operationId: Opt(Str) };
const Party = PartySchema;
const Term = TermSchema;
const Contact = Type.Object({ email: Str, name: Opt(Str), company: Opt(Str), phone: Opt(Str) });
const ChangeAction = Type.Union([Type.Literal('ChangePlan'), Type.Literal('ChangeQuantity')]);

const details = {
  subscriptionId: Str,
  name: Str,
  publisherId: Opt(Str),
  offerId: Str,
  planId: Str,
  quantity: Opt(Type.Number()),
  purchaser: Party,
  beneficiary: Party,
  term: Term,
  autoRenew: Type.Boolean(),
  isFreeTrial: Type.Boolean(),
  isTest: Type.Boolean(),
  sandboxType: Opt(Str),
  sessionMode: Opt(Str),
  allowedCustomerOperations: Type.Array(Str),
  created: Opt(Str),
};

const event = <K extends SubscriptionEventType, P extends Record<string, TSchema>>(type: K, data: P) =>
  Type.Object({ type: Type.Literal(type), data: Type.Object({ ...because, ...data }) });

/** Microsoft's `timeStamp` of the operation that changed the plan or the quantity. */
const planChanged = { ...byOperation, planId: Str, previousPlanId: Str, requestSource: Opt(Str), timeStamp: Opt(Str) };
const quantityChanged = { ...byOperation, quantity: Type.Number(), previousQuantity: Opt(Type.Number()), requestSource: Opt(Str), timeStamp: Opt(Str) };

/** The events as the domain knows them now. */
const schemas = {
  Purchased: event('Purchased', { ...byOperation, ...details, microsoftStatus: Str }),
  ActivationRequested: event('ActivationRequested', { ...byOperation, planId: Str, quantity: Opt(Type.Number()), contact: Contact }),
  ActivationFailed: event('ActivationFailed', { ...byOperation, reason: Str, attempt: Type.Number(), final: Type.Boolean(), retryAt: Opt(Str) }),
  Activated: event('Activated', { ...byOperation, planId: Str, quantity: Opt(Type.Number()), autoActivated: Type.Boolean(), term: Opt(Term) }),
  PlanChangeRequested: event('PlanChangeRequested', { ...byOperation, requestId: Str, planId: Str, previousPlanId: Str }),
  QuantityChangeRequested: event('QuantityChangeRequested', { ...byOperation, requestId: Str, quantity: Type.Number(), previousQuantity: Opt(Type.Number()) }),
  CancellationRequested: event('CancellationRequested', { ...byOperation, requestId: Str, reason: Opt(Str) }),
  ChangeSubmitted: event('ChangeSubmitted', { requestId: Str, operationId: Str }),
  ChangeRequestFailed: event('ChangeRequestFailed', { ...byOperation, requestId: Str, status: Str, reason: Str }),
  PlanChanged: event('PlanChanged', planChanged),
  QuantityChanged: event('QuantityChanged', quantityChanged),
  ChangeRejected: event('ChangeRejected', {
    operationId: Str,
    action: ChangeAction,
    planId: Opt(Str),
    quantity: Opt(Type.Number()),
    reason: Str,
  }),
  Suspended: event('Suspended', { ...byOperation }),
  Reinstated: event('Reinstated', { ...byOperation }),
  Renewed: event('Renewed', { ...byOperation, term: Opt(Term) }),
  Unsubscribed: event('Unsubscribed', { ...byOperation, reason: Opt(Str) }),
  DetailsRefreshed: event('DetailsRefreshed', { ...byOperation, changes: Owned, previous: Owned }),
} satisfies { [K in SubscriptionEventType]: TSchema };

type Schemas = typeof schemas;
type Decoded = { [K in keyof Schemas]: Static<Schemas[K]> }[keyof Schemas];

// The schemas and the event types say the same thing: each side is assignable to the other, and each
// event type's data has the same field names (assignability alone lets an optional field be renamed).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type DataOf<E, K> = E extends { type: K; data: infer D } ? D : never;
type FieldsMatch = { [K in SubscriptionEventType]: Same<keyof DataOf<Decoded, K>, keyof DataOf<SubscriptionEvent, K>> };
const schemasMatchTypes: Same<Decoded, SubscriptionEvent> = true;
const fieldsMatch: FieldsMatch[SubscriptionEventType] extends true ? true : false = true;
void schemasMatchTypes;
void fieldsMatch;

/** What the stores may hold: the events as they are now, and the names they were stored with before. */
const storedSchemas = {
  ...schemas,
  PlanChanged: event('PlanChanged', { ...planChanged, occurredAt: Opt(Str) }),
  QuantityChanged: event('QuantityChanged', { ...quantityChanged, occurredAt: Opt(Str) }),
} satisfies { [K in SubscriptionEventType]: TSchema };

type StoredSchemas = typeof storedSchemas;
type Stored = { [K in keyof StoredSchemas]: Static<StoredSchemas[K]> }[keyof StoredSchemas];

type Validators = { [K in keyof StoredSchemas]: Validator<{}, StoredSchemas[K]> };
let validators: Validators | undefined;
/** Compiled on first use, so importing the domain costs nothing. */
function compiled(): Validators {
  validators ??= {
    Purchased: Compile(storedSchemas.Purchased),
    ActivationRequested: Compile(storedSchemas.ActivationRequested),
    ActivationFailed: Compile(storedSchemas.ActivationFailed),
    Activated: Compile(storedSchemas.Activated),
    PlanChangeRequested: Compile(storedSchemas.PlanChangeRequested),
    QuantityChangeRequested: Compile(storedSchemas.QuantityChangeRequested),
    CancellationRequested: Compile(storedSchemas.CancellationRequested),
    ChangeSubmitted: Compile(storedSchemas.ChangeSubmitted),
    ChangeRequestFailed: Compile(storedSchemas.ChangeRequestFailed),
    PlanChanged: Compile(storedSchemas.PlanChanged),
    QuantityChanged: Compile(storedSchemas.QuantityChanged),
    ChangeRejected: Compile(storedSchemas.ChangeRejected),
    Suspended: Compile(storedSchemas.Suspended),
    Reinstated: Compile(storedSchemas.Reinstated),
    Renewed: Compile(storedSchemas.Renewed),
    Unsubscribed: Compile(storedSchemas.Unsubscribed),
    DetailsRefreshed: Compile(storedSchemas.DetailsRefreshed),
  };
  return validators;
}

/** A stored event of a known type whose data does not have that type's shape. */
export class EventDecodeError extends Error {
  override name = 'EventDecodeError';
  constructor(
    readonly eventType: string,
    readonly problem: string,
  ) {
    super(`stored ${eventType} event does not match its schema: ${problem}`);
  }
}

function isKnownType(type: string): type is keyof StoredSchemas {
  return Object.hasOwn(storedSchemas, type);
}

/** A stored event under today's names. */
function upcast(stored: Stored): SubscriptionEvent {
  switch (stored.type) {
    case 'PlanChanged':
      return { type: stored.type, data: withTimeStamp(stored.data) };
    case 'QuantityChanged':
      return { type: stored.type, data: withTimeStamp(stored.data) };
    default:
      return stored;
  }
}

/** Microsoft's time as `timeStamp`, whether it was stored under that name or as `occurredAt`. */
function withTimeStamp<D extends { timeStamp?: string; occurredAt?: string }>(data: D): Omit<D, 'timeStamp' | 'occurredAt'> & { timeStamp?: string } {
  const { timeStamp, occurredAt, ...rest } = data;
  const time = timeStamp ?? occurredAt;
  return time === undefined ? rest : { ...rest, timeStamp: time };
}

/** The subscription event a stored `{ type, data }` is; undefined when its type is not a subscription event. */
export function decodeSubscriptionEvent(stored: { type: string; data: unknown }): SubscriptionEvent | undefined {
  const { type } = stored;
  if (!isKnownType(type)) return undefined;
  const candidate = { type, data: stored.data };
  const validator = compiled()[type];
  if (validator.Check(candidate)) return upcast(candidate);
  const first = validator.Errors(candidate)[0];
  throw new EventDecodeError(type, first ? `${first.instancePath || '/'} ${first.message}` : 'invalid');
}
