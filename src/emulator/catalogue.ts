/**
 * The offer/plan catalogue the emulator sells from: what `listAvailablePlans` returns, which plans a
 * purchase or a plan change may use, and the seat limits of per-seat plans.
 *
 * A catalogue is plain data, checked against `CatalogueSchema` (strict: a typo in a catalogue file is
 * an error, not a silently ignored field).
 */
import { Type } from 'typebox';
import type { Static } from 'typebox';
import { Value } from 'typebox/value';
import { TERM_UNIT_VALUES } from '../marketplace/schemas.js';
import type { Plan } from '../marketplace/schemas.js';

const TermUnitSchema = Type.Enum(TERM_UNIT_VALUES);

export const MeteringDimensionSchema = Type.Object(
  {
    id: Type.String({ minLength: 1 }),
    displayName: Type.String(),
    unitOfMeasure: Type.String(),
    pricePerUnit: Type.Number({ minimum: 0 }),
    currency: Type.Optional(Type.String()),
    /** Units included in the recurring price (`meteredQuantityIncluded`). */
    includedQuantity: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);

export const PlanDefinitionSchema = Type.Object(
  {
    planId: Type.String({ minLength: 1, maxLength: 50 }),
    displayName: Type.String({ minLength: 1 }),
    description: Type.Optional(Type.String()),
    /** Private plans are offered only to `audienceTenantIds` (to everyone when the list is absent). */
    isPrivate: Type.Optional(Type.Boolean()),
    audienceTenantIds: Type.Optional(Type.Array(Type.String({ format: 'uuid' }))),
    /** The private offer (GUID) a purchase of this plan came through: `sourceOffers[].externalId`. */
    privateOfferId: Type.Optional(Type.String({ format: 'uuid' })),
    isPricePerSeat: Type.Optional(Type.Boolean()),
    /** Seat limits; only meaningful when `isPricePerSeat`. Defaults 1 and 10000. */
    minQuantity: Type.Optional(Type.Integer({ minimum: 1 })),
    maxQuantity: Type.Optional(Type.Integer({ minimum: 1 })),
    hasFreeTrials: Type.Optional(Type.Boolean()),
    isStopSell: Type.Optional(Type.Boolean()),
    market: Type.Optional(Type.String()),
    termUnit: Type.Optional(TermUnitSchema),
    price: Type.Optional(Type.Number({ minimum: 0 })),
    currency: Type.Optional(Type.String()),
    meteringDimensions: Type.Optional(Type.Array(MeteringDimensionSchema)),
    /** Auto-activation (docs/marketplace.md §7.6): Subscribed at purchase, `Subscribe` webhook, no Activate needed. */
    autoActivate: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type PlanDefinition = Static<typeof PlanDefinitionSchema>;

export const OfferDefinitionSchema = Type.Object(
  {
    offerId: Type.String({ minLength: 1 }),
    plans: Type.Array(PlanDefinitionSchema, { minItems: 1 }),
  },
  { additionalProperties: false },
);
export type OfferDefinition = Static<typeof OfferDefinitionSchema>;

export const CatalogueSchema = Type.Object(
  { offers: Type.Array(OfferDefinitionSchema, { minItems: 1 }) },
  { additionalProperties: false },
);
export type Catalogue = Static<typeof CatalogueSchema>;

export const DEFAULT_MIN_QUANTITY = 1;
export const DEFAULT_MAX_QUANTITY = 10_000;

/** A demo catalogue: one offer with a flat plan, two per-seat plans, a private, a stop-sell and an auto-activated plan. */
export const DEFAULT_CATALOGUE: Catalogue = {
  offers: [
    {
      offerId: 'ledger-saas',
      plans: [
        {
          planId: 'basic',
          displayName: 'Basic',
          description: 'Flat monthly fee',
          termUnit: 'P1M',
          price: 10,
          currency: 'USD',
          meteringDimensions: [
            { id: 'api-calls', displayName: 'API calls', unitOfMeasure: 'per 1000 calls', pricePerUnit: 0.5, includedQuantity: 100 },
          ],
        },
        {
          planId: 'standard',
          displayName: 'Standard',
          description: 'Per seat, monthly, with a free trial',
          isPricePerSeat: true,
          minQuantity: 1,
          maxQuantity: 50,
          hasFreeTrials: true,
          termUnit: 'P1M',
          price: 5,
          currency: 'USD',
        },
        {
          planId: 'premium',
          displayName: 'Premium',
          description: 'Per seat, yearly',
          isPricePerSeat: true,
          minQuantity: 5,
          maxQuantity: 500,
          termUnit: 'P1Y',
          price: 50,
          currency: 'USD',
        },
        {
          planId: 'enterprise-private',
          displayName: 'Enterprise (private offer)',
          description: 'Negotiated per-seat plan',
          isPrivate: true,
          privateOfferId: '6c2f7a9e-2f4b-4b8e-9a51-1d0c6b1e7f10',
          isPricePerSeat: true,
          minQuantity: 10,
          maxQuantity: 1000,
          termUnit: 'P1Y',
          price: 40,
          currency: 'USD',
        },
        {
          planId: 'legacy',
          displayName: 'Legacy (stop-sell)',
          isStopSell: true,
          termUnit: 'P1M',
          price: 8,
          currency: 'USD',
        },
        {
          planId: 'instant',
          displayName: 'Instant (auto-activated)',
          description: 'Activated and billed at purchase',
          autoActivate: true,
          termUnit: 'P1M',
          price: 12,
          currency: 'USD',
        },
      ],
    },
  ],
};

export class CatalogueError extends Error {
  override name = 'CatalogueError';
}

/** Checks a catalogue read from a file or given in options; throws with every problem listed. */
export function parseCatalogue(raw: unknown): Catalogue {
  if (!Value.Check(CatalogueSchema, raw)) {
    const problems = Value.Errors(CatalogueSchema, raw).map((e) => `${e.instancePath || '/'} ${e.message}`);
    throw new CatalogueError(`invalid emulator catalogue: ${problems.slice(0, 10).join('; ')}`);
  }
  const catalogue = raw as Catalogue;
  const problems: string[] = [];
  const offerIds = new Set<string>();
  for (const offer of catalogue.offers) {
    if (offerIds.has(offer.offerId)) problems.push(`offer ${offer.offerId} is listed twice`);
    offerIds.add(offer.offerId);
    const planIds = new Set<string>();
    for (const plan of offer.plans) {
      if (planIds.has(plan.planId)) problems.push(`plan ${offer.offerId}/${plan.planId} is listed twice`);
      planIds.add(plan.planId);
      if (minQuantity(plan) > maxQuantity(plan)) problems.push(`plan ${offer.offerId}/${plan.planId}: minQuantity > maxQuantity`);
    }
  }
  if (problems.length > 0) throw new CatalogueError(`invalid emulator catalogue: ${problems.join('; ')}`);
  return catalogue;
}

export function minQuantity(plan: PlanDefinition): number {
  return plan.minQuantity ?? DEFAULT_MIN_QUANTITY;
}

export function maxQuantity(plan: PlanDefinition): number {
  return plan.maxQuantity ?? DEFAULT_MAX_QUANTITY;
}

export function findOffer(catalogue: Catalogue, offerId: string): OfferDefinition | undefined {
  return catalogue.offers.find((o) => o.offerId === offerId);
}

export function findPlan(catalogue: Catalogue, offerId: string, planId: string): PlanDefinition | undefined {
  return findOffer(catalogue, offerId)?.plans.find((p) => p.planId === planId);
}

/** Offers whose catalogue holds `planId` (to infer the offer of a purchase that names only a plan). */
export function offersWithPlan(catalogue: Catalogue, planId: string): OfferDefinition[] {
  return catalogue.offers.filter((o) => o.plans.some((p) => p.planId === planId));
}

/** A private plan is visible to its audience tenants (to everyone when no audience is configured). */
export function isVisibleTo(plan: PlanDefinition, tenantId: string): boolean {
  if (!plan.isPrivate || plan.audienceTenantIds === undefined) return true;
  return plan.audienceTenantIds.some((t) => t.toLowerCase() === tenantId.toLowerCase());
}

/** Plans a subscription may switch to, in catalogue order, always including its current plan. */
export function availablePlans(
  catalogue: Catalogue,
  offerId: string,
  currentPlanId: string,
  beneficiaryTenantId: string,
): PlanDefinition[] {
  const offer = findOffer(catalogue, offerId);
  if (!offer) return [];
  return offer.plans.filter(
    (p) => p.planId === currentPlanId || (!p.isStopSell && isVisibleTo(p, beneficiaryTenantId)),
  );
}

function termDescription(unit: string): string {
  switch (unit) {
    case 'P1M':
      return '1 month';
    case 'P1Y':
      return '1 year';
    default:
      return `${unit.slice(1, -1)} years`;
  }
}

/** The `Plan` object of `listAvailablePlans` (docs/marketplace.md §4.3). */
export function toPlanPayload(plan: PlanDefinition, options: { withSourceOffers?: boolean } = {}): Plan {
  const currency = plan.currency ?? 'USD';
  const termUnit = plan.termUnit ?? 'P1M';
  const dimensions = plan.meteringDimensions ?? [];
  const payload: Plan = {
    planId: plan.planId,
    displayName: plan.displayName,
    isPrivate: plan.isPrivate ?? false,
    description: plan.description ?? plan.displayName,
    hasFreeTrials: plan.hasFreeTrials ?? false,
    isPricePerSeat: plan.isPricePerSeat ?? false,
    isStopSell: plan.isStopSell ?? false,
    market: plan.market ?? 'US',
    planComponents: {
      recurrentBillingTerms: [
        {
          currency,
          price: plan.price ?? 0,
          termUnit,
          termDescription: termDescription(termUnit),
          meteredQuantityIncluded: dimensions
            .filter((d) => d.includedQuantity !== undefined)
            .map((d) => ({ dimensionId: d.id, units: String(d.includedQuantity) })),
        },
      ],
      meteringDimensions: dimensions.map((d) => ({
        id: d.id,
        currency: d.currency ?? currency,
        pricePerUnit: d.pricePerUnit,
        unitOfMeasure: d.unitOfMeasure,
        displayName: d.displayName,
      })),
    },
  };
  if (plan.isPricePerSeat) {
    payload.minQuantity = minQuantity(plan);
    payload.maxQuantity = maxQuantity(plan);
  }
  if (options.withSourceOffers && plan.privateOfferId !== undefined) {
    payload.sourceOffers = [{ externalId: plan.privateOfferId }];
  }
  return payload;
}
