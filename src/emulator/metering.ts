/**
 * Microsoft's Marketplace Metering Service, emulated (docs/marketplace.md §11): what it accepts and what it says.
 *
 * Per usage event, in this order: a `resourceId` that is a known SaaS subscription (else `ResourceNotFound`), in
 * status Subscribed (else `ResourceNotActive`), the subscription's plan (else `BadArgument`), a dimension of that
 * plan (else `InvalidDimension`), a quantity above 0 (else `InvalidQuantity`), an `effectiveStartTime` between 24
 * hours back and now (older: `Expired`; later than now: `BadArgument`), and no event accepted before for the same
 * resource, dimension and clock hour (else `Duplicate`, carrying the event accepted first). Times are Microsoft's
 * calendar (the emulator's clock, moved by `/emulator/clock/advance`).
 *
 * `accepted()` lists what was accepted, for tests comparing billed usage with sent usage.
 */
import { randomUUID } from 'node:crypto';
import { findPlan } from './catalogue.js';
import type { EmulatorState } from './state.js';

export const METERING_STATUSES = [
  'Accepted',
  'Expired',
  'Duplicate',
  'Error',
  'ResourceNotFound',
  'ResourceNotAuthorized',
  'ResourceNotActive',
  'InvalidDimension',
  'InvalidQuantity',
  'BadArgument',
] as const;
export type MeteringStatus = (typeof METERING_STATUSES)[number];

/** An accepted usage event, as Microsoft answers it. */
export type AcceptedUsage = {
  usageEventId: string;
  status: 'Accepted';
  messageTime: string;
  resourceId: string;
  quantity: number;
  dimension: string;
  effectiveStartTime: string;
  planId: string;
};

export type ConflictBody = { additionalInfo: { acceptedMessage: Omit<AcceptedUsage, 'status'> & { status: 'Duplicate' } }; message: string; code: 'Conflict' };

export type UsageOutcome =
  | { status: 'Accepted'; accepted: AcceptedUsage }
  | { status: 'Duplicate'; conflict: ConflictBody; echo: Record<string, unknown> }
  | { status: Exclude<MeteringStatus, 'Accepted' | 'Duplicate'>; message: string; target: string; echo: Record<string, unknown> };

const WINDOW_MS = 24 * 3_600_000;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const hourKey = (resourceId: string, dimension: string, ms: number): string => `${resourceId.toLowerCase()}|${dimension}|${new Date(ms).toISOString().slice(0, 13)}`;

export class EmulatedMeter {
  readonly #accepted = new Map<string, AcceptedUsage>();
  readonly #all: AcceptedUsage[] = [];

  constructor(
    private readonly state: EmulatorState,
    private readonly now: () => Date,
  ) {}

  /** One usage event (an item of a batch, or the body of a single post), judged by Microsoft's rules. */
  submit(raw: unknown): UsageOutcome {
    const event = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
    const echo = pick(event);
    const refuse = (status: Exclude<MeteringStatus, 'Accepted' | 'Duplicate'>, target: string, message: string): UsageOutcome => ({ status, message, target, echo });
    const { resourceId, dimension, quantity, effectiveStartTime, planId } = event;
    if (event.resourceUri !== undefined && resourceId !== undefined) return refuse('BadArgument', 'resourceUri', 'Use resourceId or resourceUri, never both.');
    if (typeof resourceId !== 'string' || !GUID.test(resourceId)) return refuse('BadArgument', 'resourceId', 'resourceId must be the SaaS subscription id (a GUID).');
    const sub = this.state.subscriptions().find((s) => s.id.toLowerCase() === resourceId.toLowerCase());
    if (!sub) return refuse('ResourceNotFound', 'resourceId', `Resource ${resourceId} was not found.`);
    if (sub.status !== 'Subscribed') return refuse('ResourceNotActive', 'resourceId', `Resource ${resourceId} is ${sub.status}, not Subscribed.`);
    if (typeof planId !== 'string' || planId !== sub.planId) return refuse('BadArgument', 'planId', `planId must be the subscription's plan ${sub.planId}.`);
    const plan = findPlan(this.state.catalogue, sub.offerId, sub.planId);
    if (typeof dimension !== 'string' || !(plan?.meteringDimensions ?? []).some((d) => d.id === dimension)) {
      return refuse('InvalidDimension', 'dimension', `Dimension ${String(dimension)} is not a dimension of plan ${sub.planId}.`);
    }
    if (typeof quantity !== 'number' || !Number.isFinite(quantity) || quantity <= 0) return refuse('InvalidQuantity', 'quantity', 'quantity must be above 0.');
    const at = typeof effectiveStartTime === 'string' ? Date.parse(effectiveStartTime) : Number.NaN;
    if (Number.isNaN(at)) return refuse('BadArgument', 'effectiveStartTime', 'effectiveStartTime must be a UTC date-time.');
    const nowMs = this.now().getTime();
    if (at < nowMs - WINDOW_MS) return refuse('Expired', 'effectiveStartTime', 'The usage event is older than 24 hours.');
    if (at > nowMs) return refuse('BadArgument', 'effectiveStartTime', 'effectiveStartTime is in the future.');
    const key = hourKey(resourceId, dimension, at);
    const first = this.#accepted.get(key);
    if (first) {
      return {
        status: 'Duplicate',
        echo,
        conflict: { additionalInfo: { acceptedMessage: { ...first, status: 'Duplicate' } }, message: 'This usage event already exist.', code: 'Conflict' },
      };
    }
    const accepted: AcceptedUsage = {
      usageEventId: randomUUID(),
      status: 'Accepted',
      messageTime: new Date(nowMs).toISOString(),
      resourceId,
      quantity,
      dimension,
      effectiveStartTime: new Date(at).toISOString(),
      planId,
    };
    this.#accepted.set(key, accepted);
    this.#all.push(accepted);
    return { status: 'Accepted', accepted };
  }

  /** What Microsoft accepted (and would bill), in the order it accepted it. */
  accepted(filter: { resourceId?: string; dimension?: string } = {}): AcceptedUsage[] {
    return this.#all.filter(
      (u) => (filter.resourceId === undefined || u.resourceId.toLowerCase() === filter.resourceId.toLowerCase()) && (filter.dimension === undefined || u.dimension === filter.dimension),
    );
  }
}

/** The fields of a usage event Microsoft echoes in a batch item. */
function pick(event: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of ['resourceId', 'resourceUri', 'quantity', 'dimension', 'effectiveStartTime', 'planId']) if (event[k] !== undefined) out[k] = event[k];
  return out;
}
