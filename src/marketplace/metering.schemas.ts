/**
 * Microsoft's Metering Service payloads (meteringapi.v1.json), tolerant like schemas.ts: unknown fields are
 * ignored, and a status we do not know is kept as a string (Microsoft adds values).
 */
import { Type } from 'typebox';
import type { Static } from 'typebox';

const OptString = () => Type.Optional(Type.Union([Type.String(), Type.Null()]));
const OptNumber = () => Type.Optional(Type.Union([Type.Number(), Type.Null()]));

/** What we send for one usage event (the spec's `UsageEvent`, SaaS form: `resourceId`, never `resourceUri`). */
export type UsageEventRequest = { resourceId: string; quantity: number; dimension: string; effectiveStartTime: string; planId: string };

export const AcceptedUsageEvent = Type.Object({
  usageEventId: OptString(),
  status: OptString(),
  messageTime: OptString(),
  resourceId: OptString(),
  quantity: OptNumber(),
  dimension: OptString(),
  effectiveStartTime: OptString(),
  planId: OptString(),
});
export type AcceptedUsageEvent = Static<typeof AcceptedUsageEvent>;

/** 409 body (and a duplicate batch item's `error`): the event Microsoft accepted first. */
export const UsageConflict = Type.Object({
  additionalInfo: Type.Optional(Type.Union([Type.Object({ acceptedMessage: Type.Optional(Type.Union([AcceptedUsageEvent, Type.Null()])) }), Type.Null()])),
  message: OptString(),
  code: OptString(),
});
export type UsageConflict = Static<typeof UsageConflict>;

export const BatchUsageItem = Type.Object({
  ...AcceptedUsageEvent.properties,
  status: Type.String(),
  error: Type.Optional(Type.Union([Type.Object({ ...UsageConflict.properties, target: OptString() }), Type.Null()])),
});
export type BatchUsageItem = Static<typeof BatchUsageItem>;

export const BatchUsageResponse = Type.Object({
  count: OptNumber(),
  result: Type.Optional(Type.Union([Type.Array(BatchUsageItem), Type.Null()])),
});
