/**
 * The one decode from a stored event to a subscription event: `decodeSubscriptionEvent({ type, data })`.
 *
 * A schema per event type mirrors subscription.events.ts (a compile-time check below keeps the two in
 * step). The schemas are as tolerant as the stored history needs: unknown fields are kept (events written
 * by a newer version), optional fields may be absent. A type that is not a subscription event decodes to
 * `undefined` (streams carry other events too); a subscription event whose data does not fit its schema
 * is an `EventDecodeError` naming the type and the first mismatch, never a silently wrong state.
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

/** `Because` without its `operationId`: the events that require one say so, the others spread `byOperation`. */
const because = { at: Str, source: ChangeSource };
const byOperation = { operationId: Opt(Str) };

const Party = Type.Object({ emailId: Opt(Str), objectId: Opt(Str), tenantId: Opt(Str), puid: Opt(Type.Union([Str, Type.Null()])) });
const Term = Type.Object({ termUnit: Opt(Str), startDate: Opt(Str), endDate: Opt(Str), chargeDuration: Opt(Type.Union([Str, Type.Null()])) });
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

const schemas = {
  Purchased: event('Purchased', { ...byOperation, ...details, microsoftStatus: Str }),
  ActivationRequested: event('ActivationRequested', { ...byOperation, planId: Str, quantity: Opt(Type.Number()), contact: Contact }),
  ActivationFailed: event('ActivationFailed', { ...byOperation, reason: Str, attempt: Type.Number(), final: Type.Boolean() }),
  Activated: event('Activated', { ...byOperation, planId: Str, quantity: Opt(Type.Number()), autoActivated: Type.Boolean(), term: Opt(Term) }),
  PlanChangeRequested: event('PlanChangeRequested', { ...byOperation, requestId: Str, planId: Str, previousPlanId: Str }),
  QuantityChangeRequested: event('QuantityChangeRequested', { ...byOperation, requestId: Str, quantity: Type.Number(), previousQuantity: Opt(Type.Number()) }),
  CancellationRequested: event('CancellationRequested', { ...byOperation, requestId: Str, reason: Opt(Str) }),
  ChangeSubmitted: event('ChangeSubmitted', { requestId: Str, operationId: Str }),
  ChangeRequestFailed: event('ChangeRequestFailed', { ...byOperation, requestId: Str, status: Str, reason: Str }),
  PlanChanged: event('PlanChanged', { ...byOperation, planId: Str, previousPlanId: Str, requestSource: Opt(Str), occurredAt: Opt(Str) }),
  QuantityChanged: event('QuantityChanged', { ...byOperation, quantity: Type.Number(), previousQuantity: Opt(Type.Number()), requestSource: Opt(Str), occurredAt: Opt(Str) }),
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
} satisfies { [K in SubscriptionEventType]: TSchema };

type Schemas = typeof schemas;
type Decoded = { [K in keyof Schemas]: Static<Schemas[K]> }[keyof Schemas];

// The schemas and the event types say the same thing: each side is assignable to the other.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const schemasMatchTypes: Same<Decoded, SubscriptionEvent> = true;
void schemasMatchTypes;

type Validators = { [K in keyof Schemas]: Validator<{}, Schemas[K]> };
let validators: Validators | undefined;
/** Compiled on first use, so importing the domain costs nothing. */
function compiled(): Validators {
  validators ??= {
    Purchased: Compile(schemas.Purchased),
    ActivationRequested: Compile(schemas.ActivationRequested),
    ActivationFailed: Compile(schemas.ActivationFailed),
    Activated: Compile(schemas.Activated),
    PlanChangeRequested: Compile(schemas.PlanChangeRequested),
    QuantityChangeRequested: Compile(schemas.QuantityChangeRequested),
    CancellationRequested: Compile(schemas.CancellationRequested),
    ChangeSubmitted: Compile(schemas.ChangeSubmitted),
    ChangeRequestFailed: Compile(schemas.ChangeRequestFailed),
    PlanChanged: Compile(schemas.PlanChanged),
    QuantityChanged: Compile(schemas.QuantityChanged),
    ChangeRejected: Compile(schemas.ChangeRejected),
    Suspended: Compile(schemas.Suspended),
    Reinstated: Compile(schemas.Reinstated),
    Renewed: Compile(schemas.Renewed),
    Unsubscribed: Compile(schemas.Unsubscribed),
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

function isKnownType(type: string): type is keyof Schemas {
  return Object.hasOwn(schemas, type);
}

/** The subscription event a stored `{ type, data }` is; undefined when its type is not a subscription event. */
export function decodeSubscriptionEvent(stored: { type: string; data: unknown }): SubscriptionEvent | undefined {
  const { type } = stored;
  if (!isKnownType(type)) return undefined;
  const candidate = { type, data: stored.data };
  const validator = compiled()[type];
  if (validator.Check(candidate)) return candidate;
  const first = validator.Errors(candidate)[0];
  throw new EventDecodeError(type, first ? `${first.instancePath || '/'} ${first.message}` : 'invalid');
}
