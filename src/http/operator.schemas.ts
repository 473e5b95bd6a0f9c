/**
 * TypeBox schemas of the operator API: every parameter, header, body and response. Strict for our
 * own API: request objects forbid unknown fields (`additionalProperties: false`; the app's Ajv does
 * not strip them, so an unknown field is a 400), and response schemas list every field they send
 * (Fastify's serializer drops the rest). Revisions and positions are bigints: strings on the wire.
 */
import { Type } from 'typebox';
import type { Static } from 'typebox';

const strict = { additionalProperties: false } as const;

/** A stream revision or global position: a non-negative decimal integer as a string. */
export const Revision = Type.String({ pattern: '^(0|[1-9][0-9]*)$', description: 'a bigint as a decimal string' });
const Timestamp = Type.String({ description: 'ISO-8601 UTC' });
const Str = (description?: string) => Type.String(description ? { description } : {});

// ------------------------------------------------------------------------------------------------
// Requests

export const SubscriptionParams = Type.Object(
  {
    id: Type.String({
      minLength: 1,
      maxLength: 100,
      pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
      description: "Microsoft's SaaS subscription id (a GUID)",
    }),
  },
  strict,
);
export type SubscriptionParams = Static<typeof SubscriptionParams>;

/** `If-Match: "<revision>"` (the ETag of GET /api/subscriptions/:id) or `*`. */
export const IF_MATCH_PATTERN = '^\\s*(\\*|"(0|[1-9][0-9]*)")\\s*$';

export const CommandHeaders = Type.Object({
  'if-match': Type.Optional(
    Type.String({
      pattern: IF_MATCH_PATTERN,
      description:
        'The ETag of the subscription as last read (`"<revision>"`): the command fails with 412 if the subscription changed since. ' +
        'Without it the command is decided on the current state (conflicting writers are retried a bounded number of times).',
    }),
  ),
});
export type CommandHeaders = Static<typeof CommandHeaders>;

export const EventsQuery = Type.Object(
  { fromRevision: Type.Optional(Type.String({ pattern: '^(0|[1-9][0-9]*)$', description: 'first revision to return (inclusive); default 0' })) },
  strict,
);
export type EventsQuery = Static<typeof EventsQuery>;

export const ContactInput = Type.Object(
  {
    email: Type.String({ format: 'email', maxLength: 254 }),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    company: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    phone: Type.Optional(Type.String({ minLength: 1, maxLength: 50 })),
  },
  strict,
);

export const ActivateBody = Type.Object(
  { contact: ContactInput },
  { ...strict, description: "Activation: the customer's contact; the activation process then activates the subscription at Microsoft." },
);
export type ActivateBody = Static<typeof ActivateBody>;

export const PlanBody = Type.Object({ planId: Type.String({ minLength: 1, maxLength: 50, description: 'the plan to move to' }) }, strict);
export type PlanBody = Static<typeof PlanBody>;

export const QuantityBody = Type.Object(
  { quantity: Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'the new number of seats' }) },
  strict,
);
export type QuantityBody = Static<typeof QuantityBody>;

export const CancelBody = Type.Object({ reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })) }, strict);
export type CancelBody = Static<typeof CancelBody>;

// ------------------------------------------------------------------------------------------------
// Responses

// The problem schema of error responses is the /api plugin's (api.plugin.ts).

const Party = Type.Object(
  {
    emailId: Type.Optional(Type.String()),
    objectId: Type.Optional(Type.String()),
    tenantId: Type.Optional(Type.String()),
    puid: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  },
  strict,
);

const Term = Type.Object(
  {
    termUnit: Type.Optional(Type.String()),
    startDate: Type.Optional(Type.String()),
    endDate: Type.Optional(Type.String()),
    chargeDuration: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  },
  strict,
);

const Contact = Type.Object(
  {
    email: Type.String(),
    name: Type.Optional(Type.String()),
    company: Type.Optional(Type.String()),
    phone: Type.Optional(Type.String()),
  },
  strict,
);

const ChangeKind = Type.Union([Type.Literal('plan'), Type.Literal('quantity'), Type.Literal('cancel')]);

export const PendingChangeView = Type.Object(
  {
    kind: ChangeKind,
    requestId: Type.String(),
    planId: Type.Optional(Type.String()),
    quantity: Type.Optional(Type.Integer()),
    operationId: Type.Optional(Type.String({ description: "Microsoft's operation id, once Microsoft accepted the request (202)" })),
    requestedAt: Timestamp,
  },
  { ...strict, description: 'A publisher-side change asked of Microsoft that has not settled; it blocks further changes (409).' },
);

export const LastChangeView = Type.Object(
  {
    kind: ChangeKind,
    requestId: Type.String(),
    planId: Type.Optional(Type.String()),
    quantity: Type.Optional(Type.Integer()),
    reason: Type.Optional(Type.String({ description: 'cancellation reason' })),
    requestedAt: Timestamp,
    operationId: Type.Optional(Type.String()),
    outcome: Type.Union([Type.Literal('pending'), Type.Literal('applied'), Type.Literal('failed'), Type.Literal('abandoned')]),
    settledAt: Type.Optional(Timestamp),
    failure: Type.Optional(
      Type.Object(
        {
          status: Str("Microsoft's operation status (Failed, Conflict), the HTTP status it refused the request with, or NotSent/NotFound"),
          reason: Type.String(),
        },
        strict,
      ),
    ),
  },
  { ...strict, description: 'The most recent publisher-side change request and how it ended.' },
);

const Activation = Type.Object(
  {
    requestedAt: Type.Optional(Timestamp),
    failures: Type.Integer({ description: 'failed attempts in all, across activation requests' }),
    attempts: Type.Integer({ description: 'failed attempts of the current activation request' }),
    lastError: Type.Optional(Type.String()),
    nextAttemptAt: Type.Optional(Type.String({ description: 'ISO-8601 UTC: when the activation process tries again, after a failure that was not final' })),
    gaveUp: Type.Boolean({ description: 'retries stopped after a final failure; an operator has to look' }),
  },
  strict,
);

export const SubscriptionStatus = Type.Union([
  Type.Literal('PendingFulfillmentStart'),
  Type.Literal('Subscribed'),
  Type.Literal('Suspended'),
  Type.Literal('Unsubscribed'),
]);

export const SubscriptionView = Type.Object(
  {
    subscriptionId: Type.String(),
    revision: Revision,
    status: SubscriptionStatus,
    name: Type.String(),
    publisherId: Type.Optional(Type.String()),
    offerId: Type.String(),
    planId: Type.String(),
    quantity: Type.Optional(Type.Integer()),
    term: Term,
    autoRenew: Type.Boolean(),
    isFreeTrial: Type.Boolean(),
    isTest: Type.Boolean(),
    autoActivated: Type.Boolean(),
    sandboxType: Type.Optional(Type.String()),
    sessionMode: Type.Optional(Type.String()),
    allowedCustomerOperations: Type.Array(Type.String()),
    created: Type.Optional(Type.String()),
    purchaser: Party,
    beneficiary: Party,
    contact: Type.Optional(Contact),
    activation: Activation,
    pendingChange: Type.Optional(PendingChangeView),
    lastChange: Type.Optional(LastChangeView),
    purchasedAt: Timestamp,
    activatedAt: Type.Optional(Timestamp),
    suspendedAt: Type.Optional(Timestamp),
    lastRenewedAt: Type.Optional(Timestamp),
    unsubscribedAt: Type.Optional(Timestamp),
    appliedOperations: Type.Array(Type.String(), { description: 'Microsoft operation ids already applied (a repeat is a no-op)' }),
  },
  { ...strict, description: 'The subscription as the ledger knows it now' },
);
export type SubscriptionView = Static<typeof SubscriptionView>;

const JsonObject = (description: string) => Type.Object({}, { additionalProperties: true, description });

/** Where an event came from (issue 12), derived from its data (`source`, `operationId`) and metadata (`actor`). */
export const ProvenanceView = Type.Object(
  {
    kind: Type.Union([Type.Literal('landing'), Type.Literal('webhook'), Type.Literal('operator'), Type.Literal('reconciliation'), Type.Literal('process'), Type.Literal('unknown')]),
    operationId: Type.Optional(Type.String({ description: "Microsoft's operation id, when a Microsoft operation caused it" })),
    notificationStream: Type.Optional(Type.String({ description: "the stream holding Microsoft's raw notification of that operation" })),
    operator: Type.Optional(Type.String({ description: "the operator's name (actor operator:<name>)" })),
    customer: Type.Optional(Type.String()),
    process: Type.Optional(Type.String()),
  },
  strict,
);

/** One field of the folded subscription state that an event changed. */
export const StateChangeView = Type.Object(
  { path: Type.String({ description: 'dotted path in the state, e.g. activation.attempts' }), before: Type.Optional(Type.Unknown()), after: Type.Optional(Type.Unknown()) },
  strict,
);

export const RecordedEventView = Type.Object(
  {
    source: Type.Optional(ProvenanceView),
    changes: Type.Optional(Type.Array(StateChangeView, { description: "the subscription state's fields this event changed (folded with the domain's evolve)" })),
    eventId: Type.String(),
    type: Type.String(),
    revision: Revision,
    position: Revision,
    recordedAt: Timestamp,
    data: JsonObject('the event as recorded (see the domain events)'),
    metadata: JsonObject('actor, correlationId, causationId, ...'),
  },
  strict,
);
export type RecordedEventView = Static<typeof RecordedEventView>;

export const EventHistory = Type.Object(
  {
    subscriptionId: Type.String(),
    fromRevision: Revision,
    events: Type.Array(RecordedEventView),
  },
  { ...strict, description: "The subscription's events from `fromRevision` on, oldest first" },
);
export type EventHistory = Static<typeof EventHistory>;

export const Accepted = Type.Object(
  {
    subscriptionId: Type.String(),
    status: Type.Literal('accepted'),
    command: Type.Union([Type.Literal('activate'), Type.Literal('plan'), Type.Literal('quantity'), Type.Literal('cancel')]),
    requestId: Type.Optional(Type.String({ description: 'the publisher-side change request; see pendingChange / lastChange' })),
    operationId: Type.Optional(Type.String({ description: "Microsoft's operation id (from Operation-Location)" })),
    revision: Revision,
    location: Type.String({ description: 'where to follow the subscription (also the Location header)' }),
  },
  { ...strict, description: 'The command was recorded; Microsoft completes it asynchronously. Follow `location`.' },
);
export type Accepted = Static<typeof Accepted>;
