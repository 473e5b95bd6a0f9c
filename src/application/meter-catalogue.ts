/**
 * The meter dimensions of a plan, as Microsoft lists them (`listAvailablePlans` → `planComponents.meteringDimensions`),
 * cached per offer and plan: a plan's dimensions cannot change once it is published (docs/marketplace.md §11), so
 * an entry is kept for `ttlMs` (METERING_PLAN_CACHE_MS, default 1 hour) and only re-read after that; concurrent
 * lookups of one plan share one call. At most `maxEntries` plans are kept (oldest dropped first).
 */
import type { FulfillmentClient } from '../marketplace/fulfillment-client.js';

export type MeterCatalogueOptions = {
  marketplace: Pick<FulfillmentClient, 'listAvailablePlans'>;
  ttlMs: number;
  now?: () => number;
  maxEntries?: number;
};

type Entry = { dimensions: ReadonlySet<string>; until: number };

export class MeterCatalogue {
  readonly #entries = new Map<string, Entry>();
  readonly #pending = new Map<string, Promise<ReadonlySet<string>>>();
  #calls = 0;

  constructor(private readonly options: MeterCatalogueOptions) {}

  /** Calls made to Microsoft so far (for tests and logs). */
  get calls(): number {
    return this.#calls;
  }

  /** The dimension ids of `planId` of the subscription's offer (read through the subscription, as Microsoft requires). */
  async dimensionsOf(subscriptionId: string, offerId: string, planId: string): Promise<ReadonlySet<string>> {
    const key = `${offerId}\u0000${planId}`;
    const now = this.options.now?.() ?? Date.now();
    const hit = this.#entries.get(key);
    if (hit && hit.until > now) return hit.dimensions;
    const pending = this.#pending.get(key);
    if (pending) return pending;
    const lookup = this.#read(subscriptionId, planId, key, now).finally(() => this.#pending.delete(key));
    this.#pending.set(key, lookup);
    return lookup;
  }

  async #read(subscriptionId: string, planId: string, key: string, now: number): Promise<ReadonlySet<string>> {
    this.#calls++;
    const plans = await this.options.marketplace.listAvailablePlans(subscriptionId, { planId });
    const plan = plans.find((p) => p.planId === planId);
    const dimensions = new Set((plan?.planComponents?.meteringDimensions ?? []).flatMap((d) => (d.id ? [d.id] : [])));
    this.#entries.delete(key);
    this.#entries.set(key, { dimensions, until: now + this.options.ttlMs });
    const max = this.options.maxEntries ?? 1000;
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= max) break;
      this.#entries.delete(oldest);
    }
    return dimensions;
  }
}
