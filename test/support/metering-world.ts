/** What the metering tests share: a catalogue with a metered plan of two dimensions, and usage records. */
import { DEFAULT_CATALOGUE } from '../../src/emulator/catalogue.js';
import type { Catalogue } from '../../src/emulator/catalogue.js';

export const HOUR_MS = 3_600_000;

/** The default catalogue, with a second dimension on the flat `basic` plan. */
export const meteredCatalogue: Catalogue = {
  offers: DEFAULT_CATALOGUE.offers.map((offer) => ({
    ...offer,
    plans: offer.plans.map((plan) =>
      plan.planId === 'basic'
        ? { ...plan, meteringDimensions: [...(plan.meteringDimensions ?? []), { id: 'gb', displayName: 'GB processed', unitOfMeasure: 'per GB', pricePerUnit: 0.1 }] }
        : plan,
    ),
  })),
};

/** The start of the clock hour `hoursAgo` before now, plus `minute` minutes. */
export function inHour(hoursAgo: number, minute: number): string {
  const start = Math.floor(Date.now() / HOUR_MS) * HOUR_MS - hoursAgo * HOUR_MS;
  return new Date(start + minute * 60_000).toISOString();
}

export type UsageBody = { subscriptionId: string; dimension: string; quantity: number; effectiveTime: string; idempotencyKey: string };

export async function postUsage(url: string, token: string, records: UsageBody[]): Promise<{ status: number; body: { results: Array<{ idempotencyKey: string; outcome: string; reason?: string }> } & Record<string, unknown> }> {
  const res = await fetch(`${url}/api/usage`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(records.length === 1 ? records[0] : { records }),
  });
  return { status: res.status, body: (await res.json()) as { results: Array<{ idempotencyKey: string; outcome: string; reason?: string }> } };
}
