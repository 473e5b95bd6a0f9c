/**
 * TypeBox schemas of the read-model API (`/api/read/…`). Strict like the rest of the operator API:
 * unknown query parameters are a 400 (the app's Ajv neither strips nor coerces), so every query
 * value is a string with a pattern; response schemas list every field (nulls are explicit, so each
 * row has the same shape). Positions and revisions are bigints: decimal strings.
 */
import { Type } from 'typebox';
import type { Static } from 'typebox';

const strict = { additionalProperties: false } as const;
const Bool = Type.Union([Type.Literal('true'), Type.Literal('false')]);
const Order = Type.Union([Type.Literal('asc'), Type.Literal('desc')], { description: 'default desc' });
const Id = (description: string) => Type.String({ minLength: 1, maxLength: 200, description });
const Time = (description: string) =>
  Type.String({ pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2})?)?$', maxLength: 40, description });
const Limit = Type.String({ pattern: '^([1-9][0-9]?|[1-4][0-9]{2}|500)$', description: 'rows per page, 1–500; default 50' });
const Cursor = Type.String({ pattern: '^[A-Za-z0-9_-]{1,2000}$', description: 'the `nextCursor` of the previous page (opaque)' });
const Statuses = Type.String({
  pattern: '^(PendingFulfillmentStart|Subscribed|Suspended|Unsubscribed)(,(PendingFulfillmentStart|Subscribed|Suspended|Unsubscribed))*$',
  description: 'one status or several, comma-separated',
});

export const SubscriptionSort = Type.Union([Type.Literal('createdAt'), Type.Literal('activatedAt'), Type.Literal('cancelledAt'), Type.Literal('updatedAt'), Type.Literal('status'), Type.Literal('offerId'), Type.Literal('planId'), Type.Literal('quantity'), Type.Literal('subscriptionId')], { description: 'default createdAt' });

const subscriptionFilters = {
  status: Type.Optional(Statuses),
  offerId: Type.Optional(Id('offer id')),
  planId: Type.Optional(Id('current plan id')),
  tenantId: Type.Optional(Id("purchaser's or beneficiary's Entra tenant id")),
  email: Type.Optional(Type.String({ minLength: 3, maxLength: 254, description: "purchaser's, beneficiary's or contact's email (case-insensitive)" })),
  freeTrial: Type.Optional(Bool),
  test: Type.Optional(Bool),
  csp: Type.Optional(Bool),
  createdFrom: Type.Optional(Time('created at or after (Microsoft\'s `created`, else when we recorded the purchase)')),
  createdTo: Type.Optional(Time('created before')),
  activatedFrom: Type.Optional(Time('activated at or after')),
  activatedTo: Type.Optional(Time('activated before')),
  sort: Type.Optional(SubscriptionSort),
  order: Type.Optional(Order),
};

export const SubscriptionsQuery = Type.Object({ ...subscriptionFilters, limit: Type.Optional(Limit), cursor: Type.Optional(Cursor) }, strict);
export type SubscriptionsQuery = Static<typeof SubscriptionsQuery>;

export const SubscriptionsCsvQuery = Type.Object(subscriptionFilters, strict);
export type SubscriptionsCsvQuery = Static<typeof SubscriptionsCsvQuery>;

export const OperationsQuery = Type.Object(
  {
    subscriptionId: Type.Optional(Id('SaaS subscription id')),
    action: Type.Optional(Id('ChangePlan, ChangeQuantity, Suspend, Reinstate, Renew, Unsubscribe, Subscribe, …')),
    source: Type.Optional(Id('Azure (customer side) or Partner (publisher side)')),
    outcome: Type.Optional(
      Type.Union([Type.Literal('pending'), Type.Literal('applied'), Type.Literal('no-change'), Type.Literal('rejected'), Type.Literal('ignored'), Type.Literal('unverified'), Type.Literal('failed')]),
    ),
    from: Type.Optional(Time('first heard of at or after')),
    to: Type.Optional(Time('first heard of before')),
    order: Type.Optional(Order),
    limit: Type.Optional(Limit),
    cursor: Type.Optional(Cursor),
  },
  strict,
);
export type OperationsQuery = Static<typeof OperationsQuery>;

export const MetricsQuery = Type.Object(
  {
    offerId: Type.Optional(Id('offer id')),
    planId: Type.Optional(Id('plan id')),
    from: Type.Optional(Time('first day (inclusive) of the daily series and activations')),
    to: Type.Optional(Time('end (exclusive)')),
    includeTest: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')], { description: 'count test subscriptions (isTest); default false' })),
  },
  strict,
);
export type MetricsQuery = Static<typeof MetricsQuery>;

// ------------------------------------------------------------------------------------------------
// Responses

const S = Type.String();
const NS = Type.Union([Type.String(), Type.Null()]);
const NI = Type.Union([Type.Integer(), Type.Null()]);
const NN = Type.Union([Type.Number(), Type.Null()]);
const B = Type.Boolean();
const I = Type.Integer();

const Party = Type.Object({ email: NS, tenantId: NS, objectId: NS }, strict);

export const SubscriptionItem = Type.Object(
  {
    subscriptionId: S,
    name: NS,
    publisherId: NS,
    offerId: S,
    planId: S,
    quantity: NI,
    status: S,
    autoRenew: B,
    isFreeTrial: B,
    isTest: B,
    isCsp: Type.Boolean({ description: 'bought through a CSP: allowedCustomerOperations is ["Read"]' }),
    sandboxType: NS,
    sessionMode: NS,
    allowedCustomerOperations: Type.Array(S),
    term: Type.Object({ termUnit: NS, startDate: NS, endDate: NS }, strict),
    purchaser: Party,
    beneficiary: Party,
    contact: Type.Union([Type.Object({ email: S, name: NS, company: NS, phone: NS }, strict), Type.Null()]),
    createdAt: S,
    microsoftCreated: NS,
    purchasedAt: S,
    activationRequestedAt: NS,
    activatedAt: NS,
    autoActivated: B,
    activationFailures: I,
    activationError: NS,
    activationAttempts: I,
    activationNextAttemptAt: NS,
    activationGaveUp: B,
    suspendedAt: NS,
    suspensions: I,
    reinstatedAt: NS,
    reinstatements: I,
    renewedAt: NS,
    renewals: I,
    cancelledAt: NS,
    cancelReason: NS,
    cancelSource: NS,
    pendingChange: Type.Union([Type.String({ description: '`plan:<id>`, `quantity:<n>` or `cancel`' }), Type.Null()]),
    lastOperation: Type.Union([Type.Object({ operationId: S, event: S, at: S }, strict), Type.Null()]),
    lastEventType: S,
    updatedAt: S,
    revision: Type.String({ description: 'the stream revision this row reflects' }),
    position: Type.String({ description: 'the global position this row reflects' }),
  },
  strict,
);
export type SubscriptionItem = Static<typeof SubscriptionItem>;

const pageFields = {
  total: Type.Integer({ description: 'rows matching the filters' }),
  nextCursor: Type.Optional(Type.String({ description: 'absent on the last page' })),
};

export const SubscriptionPage = Type.Object(
  { items: Type.Array(SubscriptionItem), ...pageFields, sort: S, order: S, limit: I },
  { ...strict, description: 'One page of subscriptions from the read model' },
);

export const OperationItem = Type.Object(
  {
    operationId: S,
    subscriptionId: NS,
    action: NS,
    source: NS,
    microsoftStatus: NS,
    planId: NS,
    quantity: NI,
    requestId: NS,
    requestedAt: NS,
    submittedAt: NS,
    firstReceivedAt: NS,
    lastReceivedAt: NS,
    deliveries: I,
    acknowledgedAt: NS,
    ackStatus: NS,
    ackLatencyMs: NI,
    ackNote: NS,
    processedAt: NS,
    notificationOutcome: NS,
    outcome: S,
    outcomeDetail: NS,
    subscriptionEvents: Type.Array(S),
    appliedEvent: NS,
    appliedAt: NS,
    updatedAt: S,
  },
  strict,
);
export type OperationItem = Static<typeof OperationItem>;

export const OperationPage = Type.Object({ items: Type.Array(OperationItem), ...pageFields, order: S, limit: I }, strict);

const PlanKey = { offerId: S, planId: S };
export const MetricsView = Type.Object(
  {
    filters: Type.Object({ offerId: NS, planId: NS, from: NS, to: NS, includeTest: B }, strict),
    active: Type.Array(
      Type.Object(
        { ...PlanKey, activeSubscriptions: I, activeSeats: I, suspendedSubscriptions: I, suspendedSeats: I, pendingSubscriptions: I, cancelledSubscriptions: I },
        strict,
      ),
    ),
    daily: Type.Array(
      Type.Object(
        {
          day: S,
          ...PlanKey,
          purchases: I,
          activations: I,
          cancellations: I,
          suspensions: I,
          reinstatements: I,
          renewals: I,
          planChangesIn: I,
          planChangesOut: I,
          seatsAdded: I,
          seatsRemoved: I,
          trialStarts: I,
          trialConversions: I,
          trialCancellations: I,
        },
        strict,
      ),
    ),
    timeToActivation: Type.Array(
      Type.Object({ ...PlanKey, activations: I, averageSeconds: Type.Number(), medianSeconds: NN, p90Seconds: NN, maxSeconds: NN }, strict),
      { description: 'From purchase (Microsoft\'s `created`) to activation, by the plan bought; auto-activated purchases left out' },
    ),
    suspensions: Type.Array(Type.Object({ ...PlanKey, suspensions: I, reinstatements: I, currentlySuspended: I, cancelledWhileSuspended: I }, strict)),
    freeTrials: Type.Array(
      Type.Object({ ...PlanKey, trials: I, inTrial: I, converted: I, cancelled: I, conversionRate: NN }, strict),
      { description: 'By the plan bought; a trial converts at its first renewal, conversionRate = converted / (converted + cancelled)' },
    ),
  },
  strict,
);
export type MetricsView = Static<typeof MetricsView>;

export const ProjectionStatusView = Type.Object(
  {
    projections: Type.Array(
      Type.Object(
        {
          name: S,
          version: I,
          description: S,
          state: Type.Union([Type.Literal('catching-up'), Type.Literal('rebuilding'), Type.Literal('live'), Type.Literal('standby'), Type.Literal('failing'), Type.Literal('superseded'), Type.Literal('stopped')]),
          position: Type.Optional(S),
          eventsApplied: I,
          rebuiltAt: Type.Optional(S),
          updatedAt: Type.Optional(S),
          lastError: Type.Optional(S),
        },
        strict,
      ),
    ),
  },
  strict,
);
