/**
 * Usage intake: the ISV's product reports metered usage, one record or many (`POST /api/usage`).
 *
 * Each record is judged on its own and gets one outcome:
 * - `recorded`: a `UsageRecorded` event in its subscription's hour;
 * - `late`: its hour was already closed for submission: a `LateUsageRecorded` event, reported, never billed;
 * - `duplicate`: its idempotency key was recorded before in that subscription's hour with the same content: nothing new;
 * - `conflict`: the key was recorded before with other content: nothing recorded;
 * - `refused` with a reason: `not-active` (the subscription is not Subscribed, or unknown), `unknown-dimension`
 *   (not a meter of its plan, from Microsoft's listAvailablePlans), `invalid-quantity` (not above 0), `expired`
 *   (older than Microsoft's 24 hours), `in-the-future` (more than 5 minutes ahead of our clock).
 * An idempotency key is unique within one subscription and clock hour (where a record is stored): the product
 * reuses a key only to repeat the same record.
 */
import { ownInitiative } from '../eventstore/provenance.js';
import type { Provenance } from '../eventstore/provenance.js';
import { DomainError } from '../domain/errors.js';
import { MICROSOFT_WINDOW_MS, fingerprint, hourOf } from '../domain/metering/index.js';
import type { UsageRecord } from '../domain/metering/index.js';
import type { SubscriptionState } from '../domain/subscription/index.js';
import type { MeterCatalogue } from './meter-catalogue.js';
import type { SubscriptionLedger } from './subscription-ledger.js';
import type { UsageLedger } from './usage-ledger.js';

export const FUTURE_SKEW_MS = 5 * 60_000;

export type UsageInput = UsageRecord & { subscriptionId: string };

export type RefusalReason = 'not-active' | 'unknown-dimension' | 'invalid-quantity' | 'expired' | 'in-the-future';
export type UsageOutcome = 'recorded' | 'late' | 'duplicate' | 'conflict' | 'refused';

export type UsageResult = { subscriptionId: string; idempotencyKey: string; outcome: UsageOutcome; hour?: string; reason?: RefusalReason; detail?: string };

export type UsageIntakeOptions = {
  subscriptions: Pick<SubscriptionLedger, 'load'>;
  usage: Pick<UsageLedger, 'executeHour'>;
  meters: Pick<MeterCatalogue, 'dimensionsOf'>;
  now?: () => Date;
};

type Refusal = { reason: RefusalReason; detail: string };

export class UsageIntake {
  constructor(private readonly options: UsageIntakeOptions) {}

  /** Records what can be recorded; the results are in the order of `records`. */
  async record(records: readonly UsageInput[], actor: string, provenance: Provenance = ownInitiative()): Promise<UsageResult[]> {
    const now = this.options.now?.() ?? new Date();
    const refusals = await this.#judge(records, now);
    const results: UsageResult[] = records.map((r, i) => {
      const refused = refusals[i];
      return refused ? { subscriptionId: r.subscriptionId, idempotencyKey: r.idempotencyKey, outcome: 'refused', ...refused } : { subscriptionId: r.subscriptionId, idempotencyKey: r.idempotencyKey, outcome: 'recorded' };
    });
    const groups = new Map<string, { subscriptionId: string; hour: string; indexes: number[] }>();
    records.forEach((r, i) => {
      if (refusals[i]) return;
      const hour = hourOf(r.effectiveTime) ?? '';
      const key = `${r.subscriptionId}.${hour}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { subscriptionId: r.subscriptionId, hour, indexes: [] }));
      g.indexes.push(i);
    });
    for (const g of groups.values()) {
      const batch = g.indexes.map((i) => recordOf(records[i]));
      const result = await this.options.usage.executeHour(g.subscriptionId, g.hour, { type: 'RecordUsage', subscriptionId: g.subscriptionId, hour: g.hour, records: batch, now: now.toISOString() }, { actor, ...provenance });
      const written = new Map(result.events.map((e) => [e.type === 'UsageRecorded' || e.type === 'LateUsageRecorded' ? e.data.idempotencyKey : '', e.type]));
      for (const i of g.indexes) {
        const r = records[i];
        const out = results[i];
        if (!r || !out) continue;
        const type = written.get(r.idempotencyKey);
        out.hour = g.hour;
        if (type !== undefined && firstIndexOf(records, g.indexes, r.idempotencyKey) === i) out.outcome = type === 'UsageRecorded' ? 'recorded' : 'late';
        else out.outcome = result.state.keys.get(r.idempotencyKey) === fingerprint(recordOf(r)) ? 'duplicate' : 'conflict';
      }
    }
    return results;
  }

  /** The refusal of each record, or undefined for one that may be recorded. */
  async #judge(records: readonly UsageInput[], now: Date): Promise<(Refusal | undefined)[]> {
    const subscriptions = new Map<string, Promise<SubscriptionState>>();
    const stateOf = (id: string): Promise<SubscriptionState> => {
      let s = subscriptions.get(id);
      if (!s) subscriptions.set(id, (s = this.options.subscriptions.load(id).then((a) => a.state)));
      return s;
    };
    const out: (Refusal | undefined)[] = [];
    for (const r of records) out.push(timeOrQuantityRefusal(r, now.getTime()) ?? (await this.#subscriptionRefusal(r, await stateOf(r.subscriptionId))));
    return out;
  }

  async #subscriptionRefusal(r: UsageInput, state: SubscriptionState): Promise<Refusal | undefined> {
    if (state.status !== 'Subscribed') {
      return { reason: 'not-active', detail: state.status === 'Initial' ? `subscription ${r.subscriptionId} is not known here` : `subscription ${r.subscriptionId} is ${state.status}, not Subscribed` };
    }
    const { offerId, planId } = state;
    const dimensions = await this.options.meters.dimensionsOf(r.subscriptionId, offerId, planId);
    if (!dimensions.has(r.dimension)) {
      const known = [...dimensions].join(', ') || 'none';
      return { reason: 'unknown-dimension', detail: `${r.dimension} is not a meter of plan ${planId} (its meters: ${known})` };
    }
    return undefined;
  }
}

function recordOf(r: UsageInput | undefined): UsageRecord {
  if (!r) throw new DomainError('invalid-record', 'no such record', 422);
  return { dimension: r.dimension, quantity: r.quantity, effectiveTime: new Date(Date.parse(r.effectiveTime)).toISOString(), idempotencyKey: r.idempotencyKey };
}

function firstIndexOf(records: readonly UsageInput[], indexes: readonly number[], key: string): number | undefined {
  return indexes.find((i) => records[i]?.idempotencyKey === key);
}

function timeOrQuantityRefusal(r: UsageInput, nowMs: number): Refusal | undefined {
  if (!(r.quantity > 0) || !Number.isFinite(r.quantity)) return { reason: 'invalid-quantity', detail: `quantity must be above 0, got ${r.quantity}` };
  const at = Date.parse(r.effectiveTime);
  if (Number.isNaN(at)) throw new DomainError('invalid-time', `effectiveTime ${r.effectiveTime} is not a time`, 400);
  if (at <= nowMs - MICROSOFT_WINDOW_MS) return { reason: 'expired', detail: `effectiveTime ${r.effectiveTime} is more than 24 hours ago: Microsoft no longer accepts it` };
  if (at > nowMs + FUTURE_SKEW_MS) return { reason: 'in-the-future', detail: `effectiveTime ${r.effectiveTime} is in the future` };
  return undefined;
}
