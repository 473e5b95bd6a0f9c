/**
 * TypeBox schemas for Microsoft's SaaS Fulfillment API v2 payloads (saasapi.v2.json, docs/marketplace.md §4, §7.3).
 *
 * These describe what we *accept*, and they are deliberately tolerant (docs/marketplace.md §14.12):
 * - objects allow unknown properties (TypeBox objects do not set `additionalProperties: false`);
 * - enums are plain strings; the known values are listed in `*_VALUES` arrays and the `normalise*`
 *   functions trim spaces (`" Subscribed "`) and fix the case, but let unknown values through;
 * - `quantity` may be a number, a numeric string, `""` or `null` (`normaliseQuantity`);
 * - optional leaf fields may be `null`.
 *
 * `parse*` functions do the whole edge step: trim padded keys (`"id  "`), check the schema, normalise.
 * Request bodies we send (`SubscriberPlan`, `UpdateOperation`) are strict: we control them.
 */
import { isPrototypeKey } from '../json.js';
import { Type } from 'typebox';
import type { Static, TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import type { Validator } from 'typebox/compile';

// ------------------------------------------------------------------------------------------------
// Identifiers

/** Microsoft's identifiers (subscription, operation, request and correlation ids) are GUIDs: the one pattern. */
export const GUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isGuid(value: unknown): value is string {
  return typeof value === 'string' && GUID_PATTERN.test(value);
}

// ------------------------------------------------------------------------------------------------
// Known enum values

export const SUBSCRIPTION_STATUS_VALUES = [
  'NotStarted',
  'PendingFulfillmentStart',
  'Subscribed',
  'Suspended',
  'Unsubscribed',
] as const;
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUS_VALUES)[number];

export const TERM_UNIT_VALUES = ['P1M', 'P1Y', 'P2Y', 'P3Y', 'P4Y', 'P5Y'] as const;
export type TermUnit = (typeof TERM_UNIT_VALUES)[number];

/** The spec's six actions plus `Subscribe` (auto-activation, newest webhook docs, docs/marketplace.md §7.1). */
export const OPERATION_ACTION_VALUES = [
  'Subscribe',
  'Unsubscribe',
  'ChangePlan',
  'ChangeQuantity',
  'Suspend',
  'Reinstate',
  'Renew',
] as const;
export type OperationAction = (typeof OPERATION_ACTION_VALUES)[number];

export const OPERATION_STATUS_VALUES = ['NotStarted', 'InProgress', 'Succeeded', 'Failed', 'Conflict'] as const;
export type OperationStatus = (typeof OPERATION_STATUS_VALUES)[number];

/** Statuses at which polling an operation stops (docs/marketplace.md §6). */
export const FINAL_OPERATION_STATUS_VALUES = ['Succeeded', 'Failed', 'Conflict'] as const;
export type FinalOperationStatus = (typeof FINAL_OPERATION_STATUS_VALUES)[number];

/** Values for PATCH operation (docs/marketplace.md §3.11); not to be mixed up with OperationStatus. */
export const UPDATE_OPERATION_STATUS_VALUES = ['Success', 'Failure'] as const;
export type UpdateOperationStatus = (typeof UPDATE_OPERATION_STATUS_VALUES)[number];

export const ALLOWED_CUSTOMER_OPERATION_VALUES = ['Read', 'Update', 'Delete'] as const;
export type AllowedCustomerOperation = (typeof ALLOWED_CUSTOMER_OPERATION_VALUES)[number];

export const SANDBOX_TYPE_VALUES = ['None', 'Csp'] as const;
export type SandboxType = (typeof SANDBOX_TYPE_VALUES)[number];

export const SESSION_MODE_VALUES = ['None', 'DryRun'] as const;
export type SessionMode = (typeof SESSION_MODE_VALUES)[number];

export const OPERATION_REQUEST_SOURCE_VALUES = ['Azure', 'Partner'] as const;
export type OperationRequestSource = (typeof OPERATION_REQUEST_SOURCE_VALUES)[number];

/**
 * A known value, or any other (trimmed) string Microsoft may add later. Narrow it with
 * `isKnown(VALUES, v)` to get an exhaustive `switch`.
 */
export type KnownOrOther<T extends string> = T | (string & {});

export function isKnown<T extends string>(known: readonly T[], value: string | null | undefined): value is T {
  return typeof value === 'string' && (known as readonly string[]).includes(value);
}

/**
 * Trims spaces and maps a case-insensitive match to the canonical spelling. Unknown values are
 * returned trimmed, never rejected; `null`/`undefined`/blank become `undefined`.
 */
export function normaliseEnum<T extends string>(
  known: readonly T[],
  value: string | null | undefined,
): KnownOrOther<T> | undefined {
  if (typeof value !== 'string') return undefined;
  const trimmed = value.trim();
  if (trimmed === '') return undefined;
  const exact = known.find((k) => k === trimmed);
  if (exact !== undefined) return exact;
  const lower = trimmed.toLowerCase();
  const folded = known.find((k) => k.toLowerCase() === lower);
  return folded ?? trimmed;
}

export function normaliseSubscriptionStatus(value: string | null | undefined): KnownOrOther<SubscriptionStatus> | undefined {
  return normaliseEnum(SUBSCRIPTION_STATUS_VALUES, value);
}

export function normaliseTermUnit(value: string | null | undefined): KnownOrOther<TermUnit> | undefined {
  return normaliseEnum(TERM_UNIT_VALUES, value);
}

export function normaliseOperationAction(value: string | null | undefined): KnownOrOther<OperationAction> | undefined {
  return normaliseEnum(OPERATION_ACTION_VALUES, value);
}

/**
 * Operation status. Older docs and samples use `Success`/`Failure` (the PATCH values) where
 * `Succeeded`/`Failed` is meant (MicrosoftDocs/azure-docs#65643); those are mapped too.
 */
export function normaliseOperationStatus(value: string | null | undefined): KnownOrOther<OperationStatus> | undefined {
  const v = normaliseEnum(OPERATION_STATUS_VALUES, value);
  if (v === undefined) return undefined;
  const lower = v.toLowerCase();
  if (lower === 'success') return 'Succeeded';
  if (lower === 'failure') return 'Failed';
  return v;
}

export function normaliseOperationRequestSource(
  value: string | null | undefined,
): KnownOrOther<OperationRequestSource> | undefined {
  return normaliseEnum(OPERATION_REQUEST_SOURCE_VALUES, value);
}

export function isFinalOperationStatus(value: string | null | undefined): value is FinalOperationStatus {
  return isKnown(FINAL_OPERATION_STATUS_VALUES, value);
}

/**
 * `quantity` arrives as `10`, `"20"`, `""`, `null` or not at all (docs/marketplace.md §4.1).
 * Returns a non-negative integer or `undefined` (not per-seat, or unreadable).
 */
export function normaliseQuantity(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  if (typeof value === 'string') {
    const trimmed = value.trim();
    if (!/^\d+$/.test(trimmed)) return undefined;
    const n = Number(trimmed);
    return Number.isSafeInteger(n) ? n : undefined;
  }
  return undefined;
}

// ------------------------------------------------------------------------------------------------
// Wire schemas (what we accept)

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const OptString = () => Type.Optional(Nullable(Type.String()));
const OptBoolean = () => Type.Optional(Nullable(Type.Boolean()));
const OptNumber = () => Type.Optional(Nullable(Type.Number()));

/** number | string | "" | null | absent. */
export const Quantity = Type.Union([Type.Number(), Type.String(), Type.Null()]);
export type Quantity = Static<typeof Quantity>;

export const AadIdentifier = Type.Object({
  emailId: OptString(),
  objectId: OptString(),
  tenantId: OptString(),
  puid: OptString(),
});
export type AadIdentifier = Static<typeof AadIdentifier>;

export const Term = Type.Object({
  termUnit: OptString(),
  startDate: OptString(),
  endDate: OptString(),
  chargeDuration: OptString(),
});
export type Term = Static<typeof Term>;

export const Subscription = Type.Object({
  id: Type.String(),
  name: OptString(),
  publisherId: OptString(),
  offerId: OptString(),
  planId: OptString(),
  quantity: Type.Optional(Quantity),
  saasSubscriptionStatus: OptString(),
  beneficiary: Type.Optional(Nullable(AadIdentifier)),
  purchaser: Type.Optional(Nullable(AadIdentifier)),
  term: Type.Optional(Nullable(Term)),
  autoRenew: OptBoolean(),
  isTest: OptBoolean(),
  isFreeTrial: OptBoolean(),
  allowedCustomerOperations: Type.Optional(Nullable(Type.Array(Type.String()))),
  sandboxType: OptString(),
  sessionMode: OptString(),
  created: OptString(),
  lastModified: OptString(),
});
export type Subscription = Static<typeof Subscription>;

export const ResolvedSubscription = Type.Object({
  id: Type.String(),
  subscriptionName: OptString(),
  offerId: OptString(),
  planId: OptString(),
  quantity: Type.Optional(Quantity),
  subscription: Type.Optional(Nullable(Subscription)),
});
export type ResolvedSubscription = Static<typeof ResolvedSubscription>;

export const SubscriptionsResponse = Type.Object({
  subscriptions: Type.Optional(Nullable(Type.Array(Subscription))),
  '@nextLink': OptString(),
  continuationToken: OptString(),
});
export type SubscriptionsResponse = Static<typeof SubscriptionsResponse>;

export const MeteredQuantityIncluded = Type.Object({
  dimensionId: OptString(),
  units: Type.Optional(Nullable(Type.Union([Type.String(), Type.Number()]))),
});
export type MeteredQuantityIncluded = Static<typeof MeteredQuantityIncluded>;

export const RecurrentBillingTerm = Type.Object({
  currency: OptString(),
  price: OptNumber(),
  termUnit: OptString(),
  termDescription: OptString(),
  meteredQuantityIncluded: Type.Optional(Nullable(Type.Array(MeteredQuantityIncluded))),
});
export type RecurrentBillingTerm = Static<typeof RecurrentBillingTerm>;

export const MeteringDimension = Type.Object({
  id: OptString(),
  currency: OptString(),
  pricePerUnit: OptNumber(),
  unitOfMeasure: OptString(),
  displayName: OptString(),
});
export type MeteringDimension = Static<typeof MeteringDimension>;

export const SourceOffer = Type.Object({
  externalId: OptString(),
});
export type SourceOffer = Static<typeof SourceOffer>;

export const Plan = Type.Object({
  planId: Type.String(),
  displayName: OptString(),
  isPrivate: OptBoolean(),
  description: OptString(),
  minQuantity: Type.Optional(Quantity),
  maxQuantity: Type.Optional(Quantity),
  hasFreeTrials: OptBoolean(),
  isPricePerSeat: OptBoolean(),
  isStopSell: OptBoolean(),
  market: OptString(),
  planComponents: Type.Optional(
    Nullable(
      Type.Object({
        recurrentBillingTerms: Type.Optional(Nullable(Type.Array(RecurrentBillingTerm))),
        meteringDimensions: Type.Optional(Nullable(Type.Array(MeteringDimension))),
      }),
    ),
  ),
  sourceOffers: Type.Optional(Nullable(Type.Array(SourceOffer))),
});
export type Plan = Static<typeof Plan>;

export const SubscriptionPlans = Type.Object({
  plans: Type.Optional(Nullable(Type.Array(Plan))),
});
export type SubscriptionPlans = Static<typeof SubscriptionPlans>;

export const SaaSOperation = Type.Object({
  id: Type.String(),
  activityId: OptString(),
  subscriptionId: OptString(),
  offerId: OptString(),
  publisherId: OptString(),
  planId: OptString(),
  quantity: Type.Optional(Quantity),
  action: OptString(),
  timeStamp: OptString(),
  status: OptString(),
  errorStatusCode: Type.Optional(Nullable(Type.Union([Type.String(), Type.Number()]))),
  errorMessage: OptString(),
});
export type SaaSOperation = Static<typeof SaaSOperation>;

export const OperationList = Type.Object({
  operations: Type.Optional(Nullable(Type.Array(SaaSOperation))),
});
export type OperationList = Static<typeof OperationList>;

/** Webhook POST body (docs/marketplace.md §7.3). `operationRequestedSource` is the emulator's spelling. */
export const WebhookPayload = Type.Object({
  id: Type.String(),
  activityId: OptString(),
  subscriptionId: Type.String(),
  publisherId: OptString(),
  offerId: OptString(),
  planId: OptString(),
  quantity: Type.Optional(Quantity),
  timeStamp: OptString(),
  action: Type.String(),
  status: OptString(),
  operationRequestSource: OptString(),
  operationRequestedSource: OptString(),
  subscription: Type.Optional(Nullable(Subscription)),
  purchaseToken: OptString(),
});
export type WebhookPayload = Static<typeof WebhookPayload>;

// ------------------------------------------------------------------------------------------------
// Request bodies (what we send; strict)

/** Body of activate (`{planId, quantity}`) and of PATCH subscription (one of the two). */
export const SubscriberPlan = Type.Object(
  {
    planId: Type.Optional(Type.String({ minLength: 1 })),
    quantity: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type SubscriberPlan = Static<typeof SubscriberPlan>;

export const UpdateOperation = Type.Object(
  {
    status: Type.Union(UPDATE_OPERATION_STATUS_VALUES.map((v) => Type.Literal(v))),
    planId: Type.Optional(Type.String()),
    quantity: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type UpdateOperation = {
  status: UpdateOperationStatus;
  planId?: string;
  quantity?: number;
};

/** Microsoft's declared 500 body; real error bodies are often plain text (docs/marketplace.md §4.5). */
export const FulfillmentErrorResponse = Type.Object({
  error: Type.Optional(Nullable(Type.Object({ code: OptString(), message: OptString() }))),
});
export type FulfillmentErrorResponse = Static<typeof FulfillmentErrorResponse>;

// ------------------------------------------------------------------------------------------------
// Normalised shapes (what the client returns). Unknown fields are kept.

export type NormalisedTerm = Omit<Term, 'termUnit'> & { termUnit?: KnownOrOther<TermUnit> };

export type NormalisedSubscription = Omit<
  Subscription,
  'quantity' | 'saasSubscriptionStatus' | 'term' | 'allowedCustomerOperations' | 'sandboxType' | 'sessionMode'
> & {
  quantity?: number;
  saasSubscriptionStatus?: KnownOrOther<SubscriptionStatus>;
  term?: NormalisedTerm;
  allowedCustomerOperations?: KnownOrOther<AllowedCustomerOperation>[];
  sandboxType?: KnownOrOther<SandboxType>;
  sessionMode?: KnownOrOther<SessionMode>;
};

export type NormalisedResolvedSubscription = Omit<ResolvedSubscription, 'quantity' | 'subscription'> & {
  quantity?: number;
  subscription?: NormalisedSubscription;
};

export type NormalisedPlan = Omit<Plan, 'minQuantity' | 'maxQuantity'> & {
  minQuantity?: number;
  maxQuantity?: number;
};

export type NormalisedOperation = Omit<SaaSOperation, 'quantity' | 'action' | 'status'> & {
  quantity?: number;
  action?: KnownOrOther<OperationAction>;
  status?: KnownOrOther<OperationStatus>;
};

export type NormalisedWebhookPayload = Omit<
  WebhookPayload,
  'quantity' | 'action' | 'status' | 'subscription' | 'operationRequestSource' | 'operationRequestedSource'
> & {
  quantity?: number;
  action: KnownOrOther<OperationAction>;
  status?: KnownOrOther<OperationStatus>;
  /** `operationRequestSource`, or the emulator's `operationRequestedSource`. */
  operationRequestSource?: KnownOrOther<OperationRequestSource>;
  subscription?: NormalisedSubscription;
};

/** Drops `null`/`undefined`-valued keys so that optional fields read as absent. */
function withoutNulls<T extends object>(value: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) out[k] = v;
  return out as T;
}

export function normaliseTerm(term: Term): NormalisedTerm {
  const { termUnit, ...rest } = term;
  const unit = normaliseTermUnit(termUnit);
  return withoutNulls({ ...rest, ...(unit !== undefined ? { termUnit: unit } : {}) });
}

export function normaliseSubscription(sub: Subscription): NormalisedSubscription {
  const { quantity, saasSubscriptionStatus, term, allowedCustomerOperations, sandboxType, sessionMode, ...rest } = sub;
  const out: NormalisedSubscription = withoutNulls({ ...rest, id: sub.id.trim() });
  const q = normaliseQuantity(quantity);
  if (q !== undefined) out.quantity = q;
  const status = normaliseSubscriptionStatus(saasSubscriptionStatus);
  if (status !== undefined) out.saasSubscriptionStatus = status;
  if (term) out.term = normaliseTerm(term);
  if (allowedCustomerOperations) {
    out.allowedCustomerOperations = allowedCustomerOperations
      .map((op) => normaliseEnum(ALLOWED_CUSTOMER_OPERATION_VALUES, op))
      .filter((op): op is KnownOrOther<AllowedCustomerOperation> => op !== undefined);
  }
  const sandbox = normaliseEnum(SANDBOX_TYPE_VALUES, sandboxType);
  if (sandbox !== undefined) out.sandboxType = sandbox;
  const mode = normaliseEnum(SESSION_MODE_VALUES, sessionMode);
  if (mode !== undefined) out.sessionMode = mode;
  return out;
}

export function normaliseResolvedSubscription(r: ResolvedSubscription): NormalisedResolvedSubscription {
  const { quantity, subscription, ...rest } = r;
  const out: NormalisedResolvedSubscription = withoutNulls({ ...rest, id: r.id.trim() });
  const q = normaliseQuantity(quantity) ?? (subscription ? normaliseQuantity(subscription.quantity) : undefined);
  if (q !== undefined) out.quantity = q;
  if (subscription) out.subscription = normaliseSubscription(subscription);
  return out;
}

export function normalisePlan(plan: Plan): NormalisedPlan {
  const { minQuantity, maxQuantity, ...rest } = plan;
  const out: NormalisedPlan = withoutNulls({ ...rest });
  const min = normaliseQuantity(minQuantity);
  if (min !== undefined) out.minQuantity = min;
  const max = normaliseQuantity(maxQuantity);
  if (max !== undefined) out.maxQuantity = max;
  return out;
}

export function normaliseOperation(op: SaaSOperation): NormalisedOperation {
  const { quantity, action, status, ...rest } = op;
  const out: NormalisedOperation = withoutNulls({ ...rest, id: op.id.trim() });
  const q = normaliseQuantity(quantity);
  if (q !== undefined) out.quantity = q;
  const a = normaliseOperationAction(action);
  if (a !== undefined) out.action = a;
  const s = normaliseOperationStatus(status);
  if (s !== undefined) out.status = s;
  return out;
}

export function normaliseWebhookPayload(p: WebhookPayload): NormalisedWebhookPayload {
  const { quantity, action, status, subscription, operationRequestSource, operationRequestedSource, ...rest } = p;
  const out: NormalisedWebhookPayload = withoutNulls({
    ...rest,
    id: p.id.trim(),
    subscriptionId: p.subscriptionId.trim(),
    action: normaliseOperationAction(action) ?? action.trim(),
  });
  const q = normaliseQuantity(quantity);
  if (q !== undefined) out.quantity = q;
  const s = normaliseOperationStatus(status);
  if (s !== undefined) out.status = s;
  const source = normaliseOperationRequestSource(operationRequestSource ?? operationRequestedSource);
  if (source !== undefined) out.operationRequestSource = source;
  if (subscription) out.subscription = normaliseSubscription(subscription);
  return out;
}

// ------------------------------------------------------------------------------------------------
// Parsing at the edge

/** A payload that does not even match the tolerant schema (e.g. no `id`). */
export class PayloadShapeError extends Error {
  override readonly name = 'PayloadShapeError';
  constructor(
    readonly schemaName: string,
    readonly problems: string[],
  ) {
    super(`${schemaName} payload does not match the expected shape: ${problems.slice(0, 5).join('; ')}`);
  }
}

/** Keys that would reach an object's prototype (or pass for its built-ins) if assigned: never taken from a payload. */

/**
 * Trims whitespace around object keys, recursively (`"id  "` → `"id"`, docs/marketplace.md §3.10). If both a
 * padded and a clean key exist, the clean one wins unless it is null/undefined. Prototype keys (`__proto__`,
 * `constructor`, `prototype`, padded or not) are dropped: assigning `out["__proto__"]` would set the
 * object's prototype, and every check after it would read inherited fields.
 */
export function trimKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(trimKeys);
  if (value === null || typeof value !== 'object') return value;
  const source = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(source)) {
    const key = k.trim();
    if (isPrototypeKey(key)) continue;
    if (key !== k && source[key] !== undefined && source[key] !== null) continue;
    if (key === k && (v === undefined || v === null) && key in out) continue;
    out[key] = trimKeys(v);
  }
  return out;
}

const validators = new WeakMap<TSchema, Validator<{}, TSchema>>();
/** The schema compiled once, on first use (a compiled check is about 100 times faster than an interpreted one). */
function validatorOf<T extends TSchema>(schema: T): Validator<{}, T> {
  let v = validators.get(schema);
  if (!v) {
    v = Compile(schema);
    validators.set(schema, v);
  }
  return v as Validator<{}, T>;
}

/** A payload checked against a tolerant schema (keys trimmed, compiled once); a PayloadShapeError otherwise. */
export function check<T extends TSchema>(schemaName: string, schema: T, raw: unknown): Static<T> {
  const value = trimKeys(raw);
  const validator = validatorOf(schema);
  if (validator.Check(value)) return value as Static<T>;
  const problems = validator.Errors(value).map((e) => {
    const err = e as { instancePath?: string; message?: string };
    return `${err.instancePath || '/'} ${err.message ?? 'is invalid'}`;
  });
  throw new PayloadShapeError(schemaName, problems.length > 0 ? problems : ['is invalid']);
}

export function parseSubscription(raw: unknown): NormalisedSubscription {
  return normaliseSubscription(check('Subscription', Subscription, raw));
}

export function parseResolvedSubscription(raw: unknown): NormalisedResolvedSubscription {
  return normaliseResolvedSubscription(check('ResolvedSubscription', ResolvedSubscription, raw));
}

/** `undefined`/`null` (an empty body) means no subscriptions. */
export function parseSubscriptionsResponse(raw: unknown): {
  subscriptions: NormalisedSubscription[];
  nextLink?: string;
  continuationToken?: string;
} {
  if (raw === undefined || raw === null) return { subscriptions: [] };
  const page = check('SubscriptionsResponse', SubscriptionsResponse, raw);
  const out: { subscriptions: NormalisedSubscription[]; nextLink?: string; continuationToken?: string } = {
    subscriptions: (page.subscriptions ?? []).map(normaliseSubscription),
  };
  const nextLink = page['@nextLink']?.trim();
  if (nextLink) out.nextLink = nextLink;
  const token = page.continuationToken?.trim();
  if (token) out.continuationToken = token;
  return out;
}

export function parseSubscriptionPlans(raw: unknown): NormalisedPlan[] {
  if (raw === undefined || raw === null) return [];
  return (check('SubscriptionPlans', SubscriptionPlans, raw).plans ?? []).map(normalisePlan);
}

export function parseOperation(raw: unknown): NormalisedOperation {
  return normaliseOperation(check('SaaSOperation', SaaSOperation, raw));
}

/** `undefined`/`null`/`{}` (nothing pending) means no operations. */
export function parseOperationList(raw: unknown): NormalisedOperation[] {
  if (raw === undefined || raw === null) return [];
  return (check('OperationList', OperationList, raw).operations ?? []).map(normaliseOperation);
}

export function parseWebhookPayload(raw: unknown): NormalisedWebhookPayload {
  return normaliseWebhookPayload(check('WebhookPayload', WebhookPayload, raw));
}
