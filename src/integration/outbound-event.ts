/**
 * The integration event: what the ISV's application receives for every event of a subscription's
 * life (docs/integration-events.md is the contract). A public, versioned shape that is mapped
 * field by field from the ledger's events, so that renaming something inside the ledger does not
 * change what the ISV's receiver parses.
 *
 * - `id` is the id of the ledger event it comes from: the idempotency key, the same on every
 *   attempt and after a restart.
 * - `sequence` is the event's revision in the subscription's stream: it grows with every event of
 *   that subscription (0 is the purchase). Deliveries of one subscription arrive in this order.
 * - `subscription` is the subscription as it stood right after the event.
 */
import { decodeSubscriptionEvent } from '../domain/subscription/index.js';
import type { KnownSubscription, Party, SubscriptionEvent, SubscriptionState, Term } from '../domain/subscription/index.js';
import type { RecordedEvent } from '../eventstore/eventstore.js';

export const INTEGRATION_EVENT_VERSION = 1;

/** The ledger event type → the integration event type. */
export const integrationEventTypes = {
  Purchased: 'subscription.purchased',
  ActivationRequested: 'subscription.activation_requested',
  ActivationFailed: 'subscription.activation_failed',
  Activated: 'subscription.activated',
  PlanChangeRequested: 'subscription.plan_change_requested',
  QuantityChangeRequested: 'subscription.quantity_change_requested',
  CancellationRequested: 'subscription.cancellation_requested',
  ChangeSubmitted: 'subscription.change_submitted',
  ChangeRequestFailed: 'subscription.change_request_failed',
  PlanChanged: 'subscription.plan_changed',
  QuantityChanged: 'subscription.quantity_changed',
  ChangeRejected: 'subscription.change_rejected',
  Suspended: 'subscription.suspended',
  Reinstated: 'subscription.reinstated',
  Renewed: 'subscription.renewed',
  Unsubscribed: 'subscription.unsubscribed',
  DetailsRefreshed: 'subscription.details_refreshed',
} as const satisfies Record<SubscriptionEvent['type'], `subscription.${string}`>;

export type IntegrationEventType = (typeof integrationEventTypes)[keyof typeof integrationEventTypes] | `subscription.${string}`;

/** The subscription right after the event: enough to provision without calling back. */
export type SubscriptionSnapshot = {
  status: KnownSubscription['status'];
  name: string;
  offerId: string;
  planId: string;
  quantity?: number;
  term: Term;
  autoRenew: boolean;
  isFreeTrial: boolean;
  isTest: boolean;
  purchaser: Party;
  beneficiary: Party;
  contact?: { email: string; name?: string; company?: string; phone?: string };
};

export type IntegrationEvent = {
  /** Idempotency key: the ledger event's id. Also sent as the `Idempotency-Key` header. */
  id: string;
  type: IntegrationEventType;
  version: typeof INTEGRATION_EVENT_VERSION;
  subscriptionId: string;
  /** The event's revision in the subscription's stream (0, 1, 2, …): ordering per subscription. */
  sequence: number;
  /** ISO-8601 UTC: when the fact became known to the ledger. */
  occurredAt: string;
  data: Record<string, unknown>;
  subscription?: SubscriptionSnapshot;
};

/** `PascalCase` → `subscription.snake_case`, for ledger event types added after this contract. */
export function integrationTypeOf(ledgerType: string): IntegrationEventType {
  const known = (integrationEventTypes as Record<string, IntegrationEventType>)[ledgerType];
  if (known) return known;
  return `subscription.${ledgerType.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase()}`;
}

/** Only the keys whose value is defined, so the JSON never carries `undefined` placeholders. */
function defined(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) out[key] = value;
  return out;
}

function party(p: Party): Party {
  return defined({ emailId: p.emailId, objectId: p.objectId, tenantId: p.tenantId }) as Party;
}

function term(t: Term | undefined): Term | undefined {
  return t ? (defined({ termUnit: t.termUnit, startDate: t.startDate, endDate: t.endDate }) as Term) : undefined;
}

/** The public data of each event type; `at` becomes the envelope's `occurredAt`. */
export function integrationData(event: SubscriptionEvent): Record<string, unknown> {
  const base = { source: event.data.source, operationId: event.data.operationId };
  switch (event.type) {
    case 'Purchased': {
      const d = event.data;
      return defined({
        ...base,
        name: d.name,
        offerId: d.offerId,
        planId: d.planId,
        quantity: d.quantity,
        term: term(d.term),
        autoRenew: d.autoRenew,
        isFreeTrial: d.isFreeTrial,
        isTest: d.isTest,
        purchaser: party(d.purchaser),
        beneficiary: party(d.beneficiary),
        microsoftStatus: d.microsoftStatus,
      });
    }
    case 'ActivationRequested':
      return defined({ ...base, planId: event.data.planId, quantity: event.data.quantity, contact: { ...event.data.contact } });
    case 'ActivationFailed':
      return defined({ ...base, reason: event.data.reason, attempt: event.data.attempt, final: event.data.final, retryAt: event.data.retryAt });
    case 'Activated':
      return defined({ ...base, planId: event.data.planId, quantity: event.data.quantity, autoActivated: event.data.autoActivated, term: term(event.data.term) });
    case 'PlanChangeRequested':
      return defined({ ...base, requestId: event.data.requestId, planId: event.data.planId, previousPlanId: event.data.previousPlanId });
    case 'QuantityChangeRequested':
      return defined({ ...base, requestId: event.data.requestId, quantity: event.data.quantity, previousQuantity: event.data.previousQuantity });
    case 'CancellationRequested':
      return defined({ ...base, requestId: event.data.requestId, reason: event.data.reason });
    case 'ChangeSubmitted':
      return defined({ ...base, requestId: event.data.requestId });
    case 'ChangeRequestFailed':
      return defined({ ...base, requestId: event.data.requestId, status: event.data.status, reason: event.data.reason });
    case 'PlanChanged':
      return defined({ ...base, planId: event.data.planId, previousPlanId: event.data.previousPlanId, requestSource: event.data.requestSource });
    case 'QuantityChanged':
      return defined({ ...base, quantity: event.data.quantity, previousQuantity: event.data.previousQuantity, requestSource: event.data.requestSource });
    case 'ChangeRejected':
      return defined({ ...base, action: event.data.action, planId: event.data.planId, quantity: event.data.quantity, reason: event.data.reason });
    case 'Suspended':
    case 'Reinstated':
      return defined(base);
    case 'Renewed':
      return defined({ ...base, term: term(event.data.term) });
    case 'Unsubscribed':
      return defined({ ...base, reason: event.data.reason });
    case 'DetailsRefreshed': {
      const { term: t, ...rest } = event.data.changes;
      const { term: before, ...previous } = event.data.previous;
      return defined({ ...base, changes: defined({ ...rest, term: term(t) }), previous: defined({ ...previous, term: term(before) }) });
    }
    default: {
      const _exhaustive: never = event;
      return {};
    }
  }
}

export function subscriptionSnapshot(state: KnownSubscription): SubscriptionSnapshot {
  return defined({
    status: state.status,
    name: state.name,
    offerId: state.offerId,
    planId: state.planId,
    quantity: state.quantity,
    term: term(state.term) ?? {},
    autoRenew: state.autoRenew,
    isFreeTrial: state.isFreeTrial,
    isTest: state.isTest,
    purchaser: party(state.purchaser),
    beneficiary: party(state.beneficiary),
    contact: state.contact ? defined({ ...state.contact }) : undefined,
  }) as SubscriptionSnapshot;
}

/**
 * The integration event for one recorded subscription event, given the subscription's state right
 * after it. Ledger event types this contract does not know yet travel with an empty `data`.
 */
export function toIntegrationEvent(recorded: RecordedEvent, subscriptionId: string, stateAfter: SubscriptionState): IntegrationEvent {
  const decoded = decodeSubscriptionEvent(recorded);
  const known = decoded !== undefined && Object.hasOwn(integrationEventTypes, decoded.type);
  // A ledger event type this version does not know keeps its own time, when it has one.
  const at = decoded ? decoded.data.at : atOf(recorded.data);
  const event: IntegrationEvent = {
    id: recorded.id,
    type: integrationTypeOf(recorded.type),
    version: INTEGRATION_EVENT_VERSION,
    subscriptionId,
    sequence: Number(recorded.revision),
    occurredAt: typeof at === 'string' ? at : recorded.recordedAt,
    data: decoded && known ? integrationData(decoded) : {},
  };
  if (stateAfter.status !== 'Initial') event.subscription = subscriptionSnapshot(stateAfter);
  return event;
}

function atOf(data: unknown): string | undefined {
  if (typeof data !== 'object' || data === null || !('at' in data)) return undefined;
  return typeof data.at === 'string' ? data.at : undefined;
}
