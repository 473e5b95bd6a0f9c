/**
 * The events of one SaaS subscription's life, as an auditor reads them.
 *
 * Every event says when (`at`, the time the fact became known to us, ISO-8601 UTC), why (`source`,
 * and Microsoft's `operationId` where a Microsoft operation caused it) and the data. Who did it
 * (`actor`), correlation and the audit chain hash travel in the store's event metadata.
 */
import { streamName } from '../streams.js';

/** Where a change came from. */
export type ChangeSource =
  | 'landing' // the customer's landing page (Resolve, activation form)
  | 'webhook' // a Microsoft notification
  | 'operator' // the ISV's staff or systems through the operator API
  | 'reconciliation' // comparison with Microsoft's subscription list
  | 'process'; // one of our process managers (activation, publisher-side change follow-up)

/** Who at Microsoft initiated an operation (`operationRequestSource`). Kept as a string: new values appear. */
export type OperationRequestSource = 'Azure' | 'Partner' | (string & {});

export type Party = {
  emailId?: string;
  objectId?: string;
  tenantId?: string;
  puid?: string | null;
};

export type Term = {
  termUnit?: string;
  startDate?: string;
  endDate?: string;
  chargeDuration?: string | null;
};

export type Contact = {
  email: string;
  name?: string;
  company?: string;
  phone?: string;
};

type Because = {
  at: string;
  source: ChangeSource;
  operationId?: string;
  /** What Microsoft reported when this event was recorded to converge on it (source `reconciliation`). */
  reported?: MicrosoftReport;
};

/** Microsoft's record of a subscription as Get/List subscriptions answered, kept on converging events as evidence. */
export type MicrosoftReport = {
  status: string;
  planId: string;
  quantity?: number;
  term?: Term;
  autoRenew?: boolean;
};

/** The fields of a subscription that Microsoft owns besides status, plan and quantity (refreshed from Get subscription). */
export type OwnedFields = {
  term?: Term;
  autoRenew?: boolean;
  isFreeTrial?: boolean;
  allowedCustomerOperations?: string[];
};

/** Everything Microsoft told us about the subscription when we first learned of it. */
export type SubscriptionDetails = {
  subscriptionId: string;
  name: string;
  publisherId?: string;
  offerId: string;
  planId: string;
  /** Seats; absent for plans that are not per seat. */
  quantity?: number;
  purchaser: Party;
  beneficiary: Party;
  term: Term;
  autoRenew: boolean;
  isFreeTrial: boolean;
  isTest: boolean;
  sandboxType?: string;
  sessionMode?: string;
  allowedCustomerOperations: string[];
  /** Microsoft's `created`. */
  created?: string;
};

export type Purchased = {
  type: 'Purchased';
  data: Because &
    SubscriptionDetails & {
      /** `saasSubscriptionStatus` at Microsoft when we recorded the purchase. */
      microsoftStatus: string;
    };
};

export type ActivationRequested = {
  type: 'ActivationRequested';
  data: Because & { planId: string; quantity?: number; contact: Contact };
};

export type ActivationFailed = {
  type: 'ActivationFailed';
  data: Because & {
    reason: string;
    /** The attempt's number within its activation request (1-based). */
    attempt: number;
    /** True when no attempt follows: the failure cannot change, or Microsoft's time for activating has run out. */
    final: boolean;
    /** When the next attempt is due (ISO-8601 UTC); only on a failure that is not final. Absent in events stored before it existed. */
    retryAt?: string;
  };
};

export type Activated = {
  type: 'Activated';
  data: Because & {
    planId: string;
    quantity?: number;
    /** True when Microsoft activated it at purchase (auto-activation): we never called Activate. */
    autoActivated: boolean;
    term?: Term;
  };
};

/** A publisher-side change we intend to make at Microsoft; it locks further publisher changes until settled. */
export type PlanChangeRequested = {
  type: 'PlanChangeRequested';
  data: Because & { requestId: string; planId: string; previousPlanId: string };
};

export type QuantityChangeRequested = {
  type: 'QuantityChangeRequested';
  data: Because & { requestId: string; quantity: number; previousQuantity?: number };
};

export type CancellationRequested = {
  type: 'CancellationRequested';
  data: Because & { requestId: string; reason?: string };
};

/** Microsoft accepted a publisher-side change (202) and gave it this operation id. */
export type ChangeSubmitted = {
  type: 'ChangeSubmitted';
  data: Because & { requestId: string; operationId: string };
};

/** A publisher-side change did not happen at Microsoft: rejected (a 4xx answer), or its operation `Failed` or `Conflict`. */
export type ChangeRequestFailed = {
  type: 'ChangeRequestFailed';
  data: Because & { requestId: string; status: string; reason: string };
};

export type PlanChanged = {
  type: 'PlanChanged';
  data: Because & {
    planId: string;
    previousPlanId: string;
    requestSource?: OperationRequestSource;
    /**
     * Microsoft's `timeStamp` of the operation: a change older than the last one applied is superseded.
     * Events stored before the rename call it `occurredAt`; subscription.codec.ts reads that as `timeStamp`.
     */
    timeStamp?: string;
  };
};

export type QuantityChanged = {
  type: 'QuantityChanged';
  /** `timeStamp` as in PlanChanged. */
  data: Because & { quantity: number; previousQuantity?: number; requestSource?: OperationRequestSource; timeStamp?: string };
};

/** The ISV refused a customer-side change (policy), inside Microsoft's acknowledgement window. */
export type ChangeRejected = {
  type: 'ChangeRejected';
  data: Because & {
    operationId: string;
    action: 'ChangePlan' | 'ChangeQuantity';
    planId?: string;
    quantity?: number;
    reason: string;
  };
};

export type Suspended = { type: 'Suspended'; data: Because };
export type Reinstated = { type: 'Reinstated'; data: Because };
export type Renewed = { type: 'Renewed'; data: Because & { term?: Term } };
export type Unsubscribed = { type: 'Unsubscribed'; data: Because & { reason?: string } };
/**
 * Fields Microsoft owns (term, auto-renew, free trial, allowed customer operations) differed from ours when read
 * back from Microsoft (after a change, at activation, or by reconciliation): the new values and the old ones.
 */
export type DetailsRefreshed = { type: 'DetailsRefreshed'; data: Because & { changes: OwnedFields; previous: OwnedFields } };

export type SubscriptionEvent =
  | Purchased
  | ActivationRequested
  | ActivationFailed
  | Activated
  | PlanChangeRequested
  | QuantityChangeRequested
  | CancellationRequested
  | ChangeSubmitted
  | ChangeRequestFailed
  | PlanChanged
  | QuantityChanged
  | ChangeRejected
  | Suspended
  | Reinstated
  | Renewed
  | Unsubscribed
  | DetailsRefreshed;

export type SubscriptionEventType = SubscriptionEvent['type'];

export const subscriptionEventTypes: readonly SubscriptionEventType[] = [
  'Purchased',
  'ActivationRequested',
  'ActivationFailed',
  'Activated',
  'PlanChangeRequested',
  'QuantityChangeRequested',
  'CancellationRequested',
  'ChangeSubmitted',
  'ChangeRequestFailed',
  'PlanChanged',
  'QuantityChanged',
  'ChangeRejected',
  'Suspended',
  'Reinstated',
  'Renewed',
  'Unsubscribed',
  'DetailsRefreshed',
];

export const subscriptionCategory = 'subscription';

export function subscriptionStream(subscriptionId: string): string {
  return streamName(subscriptionCategory, subscriptionId);
}

export function isSubscriptionEvent(e: { type: string }): e is SubscriptionEvent {
  return (subscriptionEventTypes as readonly string[]).includes(e.type);
}
