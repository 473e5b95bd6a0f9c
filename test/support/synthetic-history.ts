/**
 * Realistic, deterministic event histories without a marketplace: subscription streams produced by
 * the real decider (so every sequence is one the service can write), interleaved in time order with
 * the `notification-<operation id>` streams the webhook and the notification process write (received,
 * sometimes twice; acknowledged for plan and seat changes; processed). Used by the projection tests
 * and the projection benchmark.
 */
import { prng } from './prng.js';
import { subscriptionDecider, subscriptionStream } from '../../src/domain/subscription/index.js';
import type { SubscriptionCommand, SubscriptionDetails, SubscriptionEvent, SubscriptionState } from '../../src/domain/subscription/index.js';
import { notificationStream } from '../../src/domain/notification/notification.events.js';
import type { NewEvent } from '../../src/eventstore/eventstore.js';

export type Append = { at: number; streamId: string; events: NewEvent[] };

export type HistoryOptions = {
  subscriptions: number;
  seed?: number;
  /** First purchase time. */
  start?: string;
  /** Billing months simulated after activation (each may renew, change, suspend, cancel). */
  months?: number;
};


const PLANS = [
  { offerId: 'ledger-saas', planId: 'basic', seats: false, trial: false },
  { offerId: 'ledger-saas', planId: 'standard', seats: true, trial: true },
  { offerId: 'ledger-saas', planId: 'premium', seats: true, trial: false },
  { offerId: 'ledger-analytics', planId: 'team', seats: true, trial: true },
  { offerId: 'ledger-analytics', planId: 'enterprise', seats: true, trial: false },
] as const;

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

export function syntheticHistory(options: HistoryOptions): Append[] {
  const rnd = prng(options.seed ?? 42);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rnd() * items.length)] as T;
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(rnd() * 16).toString(16)).join('');
  const uuid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-${pick(['8', '9', 'a', 'b'])}${hex(3)}-${hex(12)}`;
  const start = Date.parse(options.start ?? '2026-01-05T08:00:00.000Z');
  const months = options.months ?? 6;
  const appends: Append[] = [];
  const iso = (ms: number) => new Date(ms).toISOString();

  for (let i = 0; i < options.subscriptions; i++) {
    const id = uuid();
    const stream = subscriptionStream(id);
    const plan = pick(PLANS);
    const tenant = uuid();
    const csp = rnd() < 0.1;
    const trial = plan.trial && rnd() < 0.35;
    let state: SubscriptionState = subscriptionDecider.initialState();
    let t = start + i * 7 * MINUTE + Math.floor(rnd() * 5 * MINUTE);
    const email = `user${i}@customer${i % 997}.example`;

    /** Run a command through the decider; its events become one append at time `at`. */
    const run = (command: SubscriptionCommand, actor: string, at = t): SubscriptionEvent[] => {
      let events: SubscriptionEvent[];
      try {
        events = subscriptionDecider.decide(command, state);
      } catch {
        return [];
      }
      state = events.reduce(subscriptionDecider.evolve, state);
      if (events.length > 0) appends.push({ at, streamId: stream, events: events.map((e) => ({ type: e.type, data: e.data, metadata: { actor } })) });
      return events;
    };

    /** A Microsoft notification: received (sometimes twice), applied, acknowledged when it asks, processed. */
    const notify = (
      action: string,
      source: 'Azure' | 'Partner',
      body: { planId?: string; quantity?: number; status: string },
      apply: (operationId: string, at: number) => { events: SubscriptionEvent[]; outcome: string },
    ) => {
      const operationId = uuid();
      const receivedAt = t;
      const payload = { id: operationId, activityId: uuid(), subscriptionId: id, publisherId: 'fabrikam', offerId: plan.offerId, timeStamp: iso(t), action, operationRequestSource: source, ...body };
      const nstream = notificationStream(operationId);
      const received = (at: number): Append => ({
        at,
        streamId: nstream,
        events: [{ type: 'NotificationReceived', data: { deliveryId: uuid(), receivedAt: iso(at), operationId, subscriptionId: id, action, body: JSON.stringify(payload), headers: { 'content-type': 'application/json' } }, metadata: { actor: 'microsoft' } }],
      });
      appends.push(received(t));
      t += 40 + Math.floor(rnd() * 200);
      const { events, outcome } = apply(operationId, t);
      t += 20 + Math.floor(rnd() * 300);
      const after: NewEvent[] = [];
      if ((action === 'ChangePlan' || action === 'ChangeQuantity') && outcome === 'applied') {
        after.push({ type: 'OperationAcknowledged', data: { operationId, subscriptionId: id, status: 'Success', at: iso(t), latencyMs: t - receivedAt }, metadata: { actor: 'system:notifications' } });
      }
      after.push({
        type: 'NotificationProcessed',
        data: { operationId, subscriptionId: id, action, outcome, detail: `${action} ${outcome}`, subscriptionEvents: events.map((e) => e.type), at: iso(t) },
        metadata: { actor: 'system:notifications' },
      });
      appends.push({ at: t, streamId: nstream, events: after });
      if (rnd() < 0.05) appends.push(received(t + 30_000)); // Microsoft delivered it again
      return operationId;
    };

    const details: SubscriptionDetails = {
      subscriptionId: id,
      name: `Subscription ${i}`,
      publisherId: 'fabrikam',
      offerId: plan.offerId,
      planId: plan.planId,
      ...(plan.seats ? { quantity: 1 + Math.floor(rnd() * 40) } : {}),
      purchaser: csp ? { emailId: `admin@csp${i % 13}.example`, tenantId: uuid(), objectId: uuid() } : { emailId: email, tenantId: tenant, objectId: uuid() },
      beneficiary: { emailId: email, tenantId: tenant, objectId: uuid(), puid: null },
      term: { termUnit: plan.planId === 'premium' || plan.planId === 'enterprise' ? 'P1Y' : 'P1M' },
      autoRenew: true,
      isFreeTrial: trial,
      isTest: rnd() < 0.05,
      allowedCustomerOperations: csp ? ['Read'] : ['Read', 'Update', 'Delete'],
      ...(csp ? { sandboxType: 'None' } : {}),
      created: iso(t - Math.floor(rnd() * 10 * MINUTE)),
    };

    const autoActivated = rnd() < 0.1;
    if (autoActivated) {
      notify('Subscribe', 'Azure', { status: 'Succeeded' }, (operationId, at) => {
        const events = run({ type: 'RecordPurchase', now: iso(at), source: 'webhook', subscription: details, microsoftStatus: 'Subscribed', operationId }, 'microsoft', at);
        return { events, outcome: 'applied' };
      });
    } else {
      run({ type: 'RecordPurchase', now: iso(t), source: 'landing', subscription: details, microsoftStatus: 'PendingFulfillmentStart' }, `customer:${email}`);
      if (rnd() < 0.06) {
        // never activated; some are cancelled by the customer a few days later
        if (rnd() < 0.5) {
          t += 3 * DAY;
          notify('Unsubscribe', 'Azure', { status: 'Succeeded' }, (operationId, at) => ({
            events: run({ type: 'Unsubscribe', now: iso(at), source: 'webhook', operationId, reason: 'Microsoft notified Unsubscribe' }, 'microsoft', at),
            outcome: 'applied',
          }));
        }
        continue;
      }
      t += MINUTE + Math.floor(rnd() * 30 * MINUTE);
      run({ type: 'RequestActivation', now: iso(t), source: 'landing', contact: { email, name: `User ${i}`, company: `Customer ${i % 997}` } }, `customer:${email}`);
      if (rnd() < 0.05) {
        t += 2000;
        run({ type: 'RecordActivationFailure', now: iso(t), source: 'process', reason: 'Microsoft answered 500', final: false }, 'system:activation');
      }
      t += 1000 + Math.floor(rnd() * 60_000);
      run({ type: 'ConfirmActivation', now: iso(t), source: 'process', term: { termUnit: details.term.termUnit, startDate: iso(t).slice(0, 10), endDate: iso(t + 30 * DAY).slice(0, 10) } }, 'system:activation');
    }

    for (let m = 0; m < months && state.status !== 'Unsubscribed'; m++) {
      t += 2 * DAY + Math.floor(rnd() * 20 * DAY);
      const r = rnd();
      const seats = state.status !== 'Initial' ? state.quantity : undefined;
      if (state.status === 'Suspended') {
        if (rnd() < 0.7) notify('Reinstate', 'Azure', { status: 'InProgress' }, (operationId, at) => ({ events: run({ type: 'Reinstate', now: iso(at), source: 'webhook', operationId }, 'microsoft', at), outcome: 'applied' }));
        else notify('Unsubscribe', 'Azure', { status: 'Succeeded' }, (operationId, at) => ({ events: run({ type: 'Unsubscribe', now: iso(at), source: 'webhook', operationId }, 'microsoft', at), outcome: 'applied' }));
        continue;
      }
      if (r < 0.12 && plan.seats && !csp) {
        const target = pick(PLANS.filter((p) => p.offerId === plan.offerId && p.seats && p.planId !== (state.status !== 'Initial' ? state.planId : '')));
        notify('ChangePlan', 'Azure', { planId: target.planId, status: 'InProgress' }, (operationId, at) => ({
          events: run({ type: 'ApplyPlanChange', now: iso(at), source: 'webhook', operationId, planId: target.planId, requestSource: 'Azure' }, 'microsoft', at),
          outcome: 'applied',
        }));
      } else if (r < 0.27 && seats !== undefined && !csp) {
        const quantity = Math.max(1, seats + pick([-3, -1, 1, 2, 5, 10]));
        if (quantity > 45) {
          notify('ChangeQuantity', 'Azure', { quantity, status: 'InProgress' }, (operationId, at) => ({
            events: run({ type: 'RefuseChange', now: iso(at), source: 'webhook', operationId, action: 'ChangeQuantity', quantity, reason: `${quantity} seats is more than the product supports (45)` }, 'system:policy', at),
            outcome: 'rejected',
          }));
        } else if (quantity !== seats) {
          notify('ChangeQuantity', 'Azure', { quantity, status: 'InProgress' }, (operationId, at) => ({
            events: run({ type: 'ApplyQuantityChange', now: iso(at), source: 'webhook', operationId, quantity, requestSource: 'Azure' }, 'microsoft', at),
            outcome: 'applied',
          }));
        }
      } else if (r < 0.33 && !csp && state.status === 'Subscribed') {
        // a publisher-side change: requested, accepted by Microsoft, confirmed by its Partner notification (or failed)
        const requestId = uuid();
        const target = pick(PLANS.filter((p) => p.offerId === plan.offerId && p.planId !== (state.status !== 'Initial' ? state.planId : '')));
        run({ type: 'RequestPlanChange', now: iso(t), source: 'operator', requestId, planId: target.planId }, 'operator:api');
        t += 300;
        const operationId = uuid();
        run({ type: 'RecordChangeSubmitted', now: iso(t), source: 'operator', requestId, operationId }, 'operator:api');
        t += 2000;
        if (rnd() < 0.2) {
          run({ type: 'RecordChangeRequestFailure', now: iso(t), source: 'process', requestId, operationId, status: 'Failed', reason: 'Microsoft reported Failed' }, 'system:publisher-changes');
        } else {
          // the Partner notification names the operation Microsoft gave us
          const nstream = notificationStream(operationId);
          const payload = { id: operationId, subscriptionId: id, action: 'ChangePlan', planId: target.planId, status: 'InProgress', operationRequestSource: 'Partner' };
          appends.push({ at: t, streamId: nstream, events: [{ type: 'NotificationReceived', data: { deliveryId: uuid(), receivedAt: iso(t), operationId, subscriptionId: id, action: 'ChangePlan', body: JSON.stringify(payload), headers: {} }, metadata: { actor: 'microsoft' } }] });
          t += 100;
          const events = run({ type: 'ApplyPlanChange', now: iso(t), source: 'webhook', operationId, planId: target.planId, requestSource: 'Partner' }, 'microsoft');
          t += 150;
          appends.push({
            at: t,
            streamId: nstream,
            events: [
              { type: 'OperationAcknowledged', data: { operationId, subscriptionId: id, status: 'Success', at: iso(t), latencyMs: 250 }, metadata: { actor: 'system:notifications' } },
              { type: 'NotificationProcessed', data: { operationId, subscriptionId: id, action: 'ChangePlan', outcome: 'applied', detail: 'ChangePlan applied', subscriptionEvents: events.map((e) => e.type), at: iso(t) }, metadata: { actor: 'system:notifications' } },
            ],
          });
        }
      } else if (r < 0.40) {
        notify('Suspend', 'Azure', { status: 'Succeeded' }, (operationId, at) => ({ events: run({ type: 'Suspend', now: iso(at), source: 'webhook', operationId }, 'microsoft', at), outcome: 'applied' }));
      } else if (r < 0.50) {
        notify('Unsubscribe', 'Azure', { status: 'Succeeded' }, (operationId, at) => ({ events: run({ type: 'Unsubscribe', now: iso(at), source: 'webhook', operationId, reason: 'Microsoft notified Unsubscribe' }, 'microsoft', at), outcome: 'applied' }));
      } else if (state.status === 'Subscribed') {
        notify('Renew', 'Azure', { status: 'Succeeded' }, (operationId, at) => ({
          events: run({ type: 'Renew', now: iso(at), source: 'webhook', operationId, term: { startDate: iso(at).slice(0, 10), endDate: iso(at + 30 * DAY).slice(0, 10) } }, 'microsoft', at),
          outcome: 'applied',
        }));
      }
    }
  }
  // Interleave the subscriptions' lives in time order (stable: a stream's own appends keep their order).
  return appends.map((a, i) => ({ a, i })).sort((x, y) => x.a.at - y.a.at || x.i - y.i).map((x) => x.a);
}

export function countEvents(appends: readonly Append[]): number {
  return appends.reduce((n, a) => n + a.events.length, 0);
}

/** Append a history to a store, in order. */
export async function writeHistory(store: { appendToStream(streamId: string, events: readonly NewEvent[]): Promise<unknown> }, appends: readonly Append[]): Promise<void> {
  for (const a of appends) await store.appendToStream(a.streamId, a.events);
}
