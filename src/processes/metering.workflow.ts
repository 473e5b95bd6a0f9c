/**
 * What the metering process decides, pure (the executor is metering.process.ts):
 * - `submissionDue`: an hour is closed and submitted `delayMs` after it ends (late-running reporters get that long);
 * - `answersOf`: Microsoft's per-item batch answer → how each dimension's hour settles. A `Duplicate` carrying the
 *   event Microsoft accepted first (our own earlier call, whose answer a crash kept us from recording) settles as
 *   that event: `Accepted`, billed its quantity, `via: 'duplicate'`;
 * - `expiry`: how close the hour's unsettled usage is to Microsoft's 24-hour limit.
 */
import { addQuantity, hourEndMs } from '../domain/metering/index.js';
import type { SettlementAnswer, UsageSubmitted } from '../domain/metering/index.js';
import type { BatchUsageItem, UsageEventRequest } from '../marketplace/metering.schemas.js';

export type Due = { due: true } | { due: false; inMs: number };

export function submissionDue(hour: string, nowMs: number, delayMs: number): Due {
  const at = hourEndMs(hour) + delayMs;
  return nowMs >= at ? { due: true } : { due: false, inMs: at - nowMs };
}

/** The usage event we send for a submitted dimension's hour. */
export function usageEventOf(s: UsageSubmitted['data']): UsageEventRequest {
  return { resourceId: s.subscriptionId, quantity: s.quantity, dimension: s.dimension, effectiveStartTime: s.effectiveStartTime, planId: s.planId };
}

export function answersOf(submitted: readonly UsageSubmitted['data'][], items: readonly BatchUsageItem[]): SettlementAnswer[] {
  return submitted.map((s, i): SettlementAnswer => {
    const item = items[i];
    if (!item) return { dimension: s.dimension, status: 'Error', billed: 0, via: 'answer', detail: 'no answer for this item' };
    const detail = item.error?.message ?? undefined;
    if (item.status === 'Accepted') {
      return { dimension: s.dimension, status: 'Accepted', billed: item.quantity ?? s.quantity, via: 'answer', ...(item.usageEventId ? { usageEventId: item.usageEventId } : {}), ...(item.messageTime ? { messageTime: item.messageTime } : {}) };
    }
    if (item.status === 'Duplicate') {
      const original = item.error?.additionalInfo?.acceptedMessage ?? undefined;
      const billed = original?.quantity ?? s.quantity;
      const differs = addQuantity(billed, -s.quantity) !== 0;
      return {
        dimension: s.dimension,
        status: 'Accepted',
        billed,
        via: 'duplicate',
        ...(original?.usageEventId ? { usageEventId: original.usageEventId } : {}),
        ...(original?.messageTime ? { messageTime: original.messageTime } : {}),
        detail: original ? `Microsoft had accepted this hour before${differs ? ` with quantity ${billed}, not ${s.quantity}` : ''}` : 'Microsoft holds an event for this hour; its answer did not carry the original',
      };
    }
    return { dimension: s.dimension, status: item.status, billed: 0, via: 'answer', ...(detail ? { detail } : {}) };
  });
}

export type Expiry = 'ok' | 'about-to-expire' | 'expired';

export function expiry(earliestExpiryMs: number | undefined, nowMs: number, warningMs: number): Expiry {
  if (earliestExpiryMs === undefined) return 'ok';
  if (nowMs >= earliestExpiryMs) return 'expired';
  return nowMs >= earliestExpiryMs - warningMs ? 'about-to-expire' : 'ok';
}

/** In batches of at most `size`. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
