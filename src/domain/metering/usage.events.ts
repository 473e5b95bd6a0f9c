/**
 * The metering events, as TypeBox schemas (the types are derived from them, so schema and type cannot drift).
 *
 * Streams:
 * - `usage-<subscriptionId>.<YYYY-MM-DDTHH>`: one clock hour of one subscription, every dimension
 *   (UsageRecorded, LateUsageRecorded, UsageHourClosed, UsageSubmitted, UsageSettled).
 * - `allowance-<subscriptionId>.<YYYY-MM>`: the included quantity consumed in one UTC month (IncludedQuantityApplied).
 */
import Type from 'typebox';
import type { Static } from 'typebox';

const Str = Type.String();
const Num = Type.Number();
const Opt = Type.Optional;

const hourOfSubscription = { subscriptionId: Str, hour: Str, at: Str };
const record = { dimension: Str, quantity: Num, effectiveTime: Str, idempotencyKey: Str };

/** A usage record the ISV's product reported, for an hour not closed yet. */
export const UsageRecordedSchema = Type.Object({ type: Type.Literal('UsageRecorded'), data: Type.Object({ ...hourOfSubscription, ...record }) });
/** A usage record for an hour already closed (submitted or being submitted): kept and reported, never billed. */
export const LateUsageRecordedSchema = Type.Object({ type: Type.Literal('LateUsageRecorded'), data: Type.Object({ ...hourOfSubscription, ...record }) });

export const ClosedLineSchema = Type.Object({ dimension: Str, quantity: Num, records: Num, effectiveStartTime: Str });
export type ClosedLine = Static<typeof ClosedLineSchema>;
/** The hour's totals, frozen: from here on a record for the hour is late. */
export const UsageHourClosedSchema = Type.Object({
  type: Type.Literal('UsageHourClosed'),
  data: Type.Object({ ...hourOfSubscription, lines: Type.Array(ClosedLineSchema) }),
});

/** Recorded before the call to Microsoft: what is being sent (`quantity` = `recorded` − `included`). */
export const UsageSubmittedSchema = Type.Object({
  type: Type.Literal('UsageSubmitted'),
  data: Type.Object({ ...hourOfSubscription, dimension: Str, planId: Str, recorded: Num, included: Num, quantity: Num, effectiveStartTime: Str }),
});

/** How a dimension's hour ended (Microsoft's per-item status, or `Included`: nothing above the included quantity). */
export const UsageSettledSchema = Type.Object({
  type: Type.Literal('UsageSettled'),
  data: Type.Object({
    ...hourOfSubscription,
    dimension: Str,
    status: Str,
    /** What Microsoft bills: the accepted quantity, 0 otherwise. */
    billed: Num,
    /** `answer`: Microsoft's answer to our call; `duplicate`: its 409 carrying the event it had accepted before; `local`: decided here. */
    via: Type.Union([Type.Literal('answer'), Type.Literal('duplicate'), Type.Literal('local')]),
    usageEventId: Opt(Str),
    messageTime: Opt(Str),
    detail: Opt(Str),
  }),
});

/** Included quantity consumed by one dimension's hour. */
export const IncludedQuantityAppliedSchema = Type.Object({
  type: Type.Literal('IncludedQuantityApplied'),
  data: Type.Object({ subscriptionId: Str, month: Str, hour: Str, dimension: Str, recorded: Num, includedPerMonth: Num, usedBefore: Num, applied: Num, at: Str }),
});

export type UsageRecorded = Static<typeof UsageRecordedSchema>;
export type LateUsageRecorded = Static<typeof LateUsageRecordedSchema>;
export type UsageHourClosed = Static<typeof UsageHourClosedSchema>;
export type UsageSubmitted = Static<typeof UsageSubmittedSchema>;
export type UsageSettled = Static<typeof UsageSettledSchema>;
export type IncludedQuantityApplied = Static<typeof IncludedQuantityAppliedSchema>;

export type UsageHourEvent = UsageRecorded | LateUsageRecorded | UsageHourClosed | UsageSubmitted | UsageSettled;
export type AllowanceEvent = IncludedQuantityApplied;

export const usageHourSchemas = {
  UsageRecorded: UsageRecordedSchema,
  LateUsageRecorded: LateUsageRecordedSchema,
  UsageHourClosed: UsageHourClosedSchema,
  UsageSubmitted: UsageSubmittedSchema,
  UsageSettled: UsageSettledSchema,
} as const;

export const allowanceSchemas = { IncludedQuantityApplied: IncludedQuantityAppliedSchema } as const;
