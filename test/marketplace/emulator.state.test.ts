/** The emulator's state module without HTTP: statuses, legal transitions, the lock, the catalogue rules. */
import t from 'tap';
import type { Test } from 'tap';
import { DEFAULT_CATALOGUE, parseCatalogue, CatalogueError } from '../../src/emulator/catalogue.js';
import type { Catalogue } from '../../src/emulator/catalogue.js';
import { CalendarClock, addMonths, termFrom } from '../../src/emulator/clock.js';
import { EmulatorError } from '../../src/emulator/errors.js';
import { EmulatorState, urlUnsafeToken } from '../../src/emulator/state.js';
import type { StateOptions } from '../../src/emulator/state.js';

const T0 = new Date('2025-01-31T10:00:00Z');
const later = (ms: number): Date => new Date(T0.getTime() + ms);

function newState(overrides: Partial<StateOptions> = {}): EmulatorState {
  return new EmulatorState({ catalogue: DEFAULT_CATALOGUE, publisherId: 'contoso', pageSize: 100, purchaseTokenTtlMs: 60_000, ...overrides });
}

function rejects(t: Test, fn: () => unknown, kind: string, code: string): void {
  try {
    fn();
    t.fail(`expected ${kind}/${code}`);
  } catch (err) {
    t.ok(err instanceof EmulatorError, 'an EmulatorError');
    t.match(err, { kind, code }, `${kind} ${code}`);
  }
}

/** A Subscribed subscription; `quantity` null for plans not priced per seat. */
function active(state: EmulatorState, planId = 'standard', quantity: number | null = 5): string {
  const { subscription } = state.purchase(quantity === null ? { planId } : { planId, quantity }, T0);
  state.activate(subscription.id, {}, T0);
  return subscription.id;
}

t.test('purchase → PendingFulfillmentStart → activate → Subscribed, with a term', async (t) => {
  const state = newState();
  const { subscription, token } = state.purchase({ planId: 'premium', quantity: 7 }, T0);
  t.equal(subscription.status, 'PendingFulfillmentStart');
  t.equal(subscription.offerId, 'ledger-saas', 'offer inferred from the plan');
  t.equal(subscription.startDate, undefined, 'no term before activation');
  t.equal(state.resolve(token.token, T0).id, subscription.id);
  rejects(t, () => state.activate(subscription.id, { planId: 'basic' }, T0), 'bad-request', 'PlanMismatch');
  rejects(t, () => state.activate(subscription.id, { quantity: 8 }, T0), 'bad-request', 'QuantityMismatch');
  state.activate(subscription.id, { planId: 'premium', quantity: 7 }, T0);
  t.equal(subscription.status, 'Subscribed');
  t.same(subscription.startDate, new Date('2025-01-31T00:00:00Z'));
  t.same(subscription.endDate, new Date('2026-01-30T00:00:00Z'), 'P1Y ends the day before the next term');
  rejects(t, () => state.activate(subscription.id, {}, T0), 'wrong-state', 'AlreadyActivated');
});

t.test('term arithmetic clamps month ends', async (t) => {
  t.same(addMonths(new Date('2025-01-31T00:00:00Z'), 1), new Date('2025-02-28T00:00:00Z'));
  t.same(termFrom(new Date('2025-01-31T12:00:00Z'), 'P1M').endDate, new Date('2025-02-27T00:00:00Z'));
  t.same(termFrom(new Date('2025-03-01T00:00:00Z'), 'P2Y').endDate, new Date('2027-02-28T00:00:00Z'));
});

t.test('purchase tokens: URL-unsafe, expire, and a once-too-often decoded token does not resolve', async (t) => {
  for (let i = 0; i < 20; i++) {
    const token = urlUnsafeToken();
    t.match(token, /\+/, 'has +');
    t.match(token, /\//, 'has /');
    t.match(token, /=$/, 'has padding');
  }
  const state = newState();
  const { token } = state.purchase({ planId: 'basic' }, T0);
  rejects(t, () => state.resolve(token.token.replaceAll('+', ' '), T0), 'bad-request', 'InvalidValue');
  rejects(t, () => state.resolve(encodeURIComponent(token.token), T0), 'bad-request', 'InvalidValue');
  rejects(t, () => state.resolve(undefined, T0), 'bad-request', 'MissingToken');
  t.ok(state.resolve(token.token, later(59_999)));
  rejects(t, () => state.resolve(token.token, later(60_000)), 'bad-request', 'TokenExpired');
  const fresh = state.issueToken(token.subscriptionId, later(60_000));
  t.ok(state.resolve(fresh.token, later(60_001)), 'a fresh token for Manage account');
});

t.test('purchase validation: seats, free trial, stop-sell, private audience, CSP', async (t) => {
  const state = newState();
  rejects(t, () => state.purchase({ planId: 'nope' }, T0), 'bad-request', 'UnknownPlan');
  rejects(t, () => state.purchase({ offerId: 'other', planId: 'basic' }, T0), 'bad-request', 'UnknownOffer');
  rejects(t, () => state.purchase({ planId: 'legacy' }, T0), 'bad-request', 'PlanStopSold');
  rejects(t, () => state.purchase({ planId: 'basic', quantity: 2 }, T0), 'bad-request', 'PlanNotPerSeat');
  rejects(t, () => state.purchase({ planId: 'premium', quantity: 4 }, T0), 'bad-request', 'QuantityOutOfRange');
  rejects(t, () => state.purchase({ planId: 'premium', quantity: 501 }, T0), 'bad-request', 'QuantityOutOfRange');
  rejects(t, () => state.purchase({ planId: 'premium', freeTrial: true }, T0), 'bad-request', 'NoFreeTrial');
  t.equal(state.purchase({ planId: 'premium' }, T0).subscription.quantity, 5, 'default quantity is the plan minimum');
  const trial = state.purchase({ planId: 'standard', freeTrial: true, isTest: true }, T0).subscription;
  t.equal(trial.isFreeTrial, true);
  t.equal(trial.isTest, true);

  const csp = state.purchase({ planId: 'basic', csp: true, sandboxType: 'Csp' }, T0).subscription;
  t.not(csp.purchaser.tenantId, csp.beneficiary.tenantId, 'CSP purchaser is another tenant');
  t.same(csp.allowedCustomerOperations, ['Read']);
  t.equal(csp.sandboxType, 'Csp');
  const direct = state.purchase({ planId: 'basic' }, T0).subscription;
  t.same(direct.purchaser, direct.beneficiary, 'a direct purchase: purchaser = beneficiary');
  t.same(direct.allowedCustomerOperations, ['Read', 'Update', 'Delete']);

  const audience = '11111111-2222-4333-8444-555555555555';
  const catalogue: Catalogue = {
    offers: [{ offerId: 'o', plans: [{ planId: 'p', displayName: 'P', isPrivate: true, audienceTenantIds: [audience] }] }],
  };
  const priv = newState({ catalogue });
  rejects(t, () => priv.purchase({ planId: 'p' }, T0), 'bad-request', 'PlanNotAvailable');
  t.ok(priv.purchase({ planId: 'p', beneficiary: { tenantId: audience } }, T0));
});

t.test('auto-activated plan: Subscribed at purchase with a Succeeded Subscribe operation', async (t) => {
  const state = newState();
  const { subscription, operation } = state.purchase({ planId: 'instant' }, T0);
  t.equal(subscription.status, 'Subscribed');
  t.ok(subscription.startDate);
  t.match(operation, { action: 'Subscribe', status: 'Succeeded', source: 'Azure' });
  const manual = state.purchase({ planId: 'basic', autoActivate: true }, T0);
  t.equal(manual.subscription.status, 'Subscribed', 'the purchase may override the plan setting');
});

t.test('publisher change: NotStarted → InProgress → Success applies; the subscription is locked meanwhile', async (t) => {
  const state = newState();
  const id = active(state);
  const op = state.requestUpdate(id, { planId: 'premium' }, T0);
  t.match(op, { action: 'ChangePlan', status: 'NotStarted', source: 'Partner', planId: 'premium', quantity: 5 });
  t.ok(state.isLocked(id));
  rejects(t, () => state.requestUpdate(id, { quantity: 6 }, T0), 'locked', 'SubscriptionLocked');
  rejects(t, () => state.requestDelete(id, T0), 'locked', 'SubscriptionLocked');
  rejects(t, () => state.suspend(id, T0), 'locked', 'SubscriptionLocked');
  rejects(t, () => state.acknowledge(id, op.id, 'Success', T0), 'conflict', 'OperationNotStarted');
  state.beginOperation(op.id, T0);
  t.equal(op.status, 'InProgress');
  t.equal(state.subscription(id).planId, 'standard', 'not applied before acknowledgement');
  state.acknowledge(id, op.id, 'Success', T0);
  t.equal(op.status, 'Succeeded');
  t.equal(state.subscription(id).planId, 'premium');
  t.equal(state.subscription(id).termUnit, 'P1Y', 'term unit follows the plan');
  t.notOk(state.isLocked(id));
  t.equal(state.acknowledge(id, op.id, 'Success', T0).status, 'Succeeded', 'repeating Success is harmless');
  rejects(t, () => state.acknowledge(id, op.id, 'Failure', T0), 'conflict', 'OperationCompleted');
});

t.test('Failure refuses; reject, accept and Conflict', async (t) => {
  const state = newState();
  const id = active(state);
  const op = state.customerChange(id, { quantity: 9 }, T0);
  t.match(op, { action: 'ChangeQuantity', status: 'InProgress', source: 'Azure', quantity: 9 });
  state.acknowledge(id, op.id, 'Failure', T0);
  t.equal(op.status, 'Failed');
  t.equal(state.subscription(id).quantity, 5, 'unchanged');

  const op2 = state.customerChange(id, { quantity: 9 }, T0);
  state.reject(op2.id, T0, 'the webhook answered 400', 400);
  t.match(op2, { status: 'Failed', errorStatusCode: 400 });

  const op3 = state.customerChange(id, { quantity: 9 }, T0);
  state.accept(op3.id, T0);
  t.equal(state.subscription(id).quantity, 9);

  const op4 = state.customerChange(id, { quantity: 10 }, T0);
  state.subscription(id).quantity = 10;
  t.equal(state.accept(op4.id, T0).status, 'Conflict', 'Conflict when the value is already in place');
});

t.test('change validation follows Microsoft: one field, allowed, Subscribed, available, different, in range', async (t) => {
  const state = newState();
  const id = active(state);
  rejects(t, () => state.requestUpdate(id, {}, T0), 'bad-request', 'PlanOrQuantity');
  rejects(t, () => state.requestUpdate(id, { planId: 'premium', quantity: 6 }, T0), 'bad-request', 'PlanOrQuantity');
  rejects(t, () => state.requestUpdate(id, { planId: 'standard' }, T0), 'bad-request', 'SamePlan');
  rejects(t, () => state.requestUpdate(id, { planId: 'legacy' }, T0), 'bad-request', 'PlanNotAvailable');
  rejects(t, () => state.requestUpdate(id, { planId: 'nope' }, T0), 'bad-request', 'PlanNotAvailable');
  rejects(t, () => state.requestUpdate(id, { quantity: 5 }, T0), 'bad-request', 'SameQuantity');
  rejects(t, () => state.requestUpdate(id, { quantity: 51 }, T0), 'bad-request', 'QuantityOutOfRange');
  rejects(t, () => state.requestUpdate(id, { quantity: '6' }, T0), 'bad-request', 'BadArgument');
  rejects(t, () => state.requestUpdate(id, { planId: 'enterprise-private' }, T0), 'bad-request', 'QuantityOutOfRange');

  const flat = active(state, 'basic', null);
  rejects(t, () => state.requestUpdate(flat, { quantity: 3 }, T0), 'bad-request', 'PlanNotPerSeat');
  const toSeats = state.requestUpdate(flat, { planId: 'premium' }, T0);
  t.equal(toSeats.quantity, 5, 'flat → per-seat starts at the plan minimum');

  const pending = state.purchase({ planId: 'basic' }, T0).subscription.id;
  rejects(t, () => state.requestUpdate(pending, { planId: 'instant' }, T0), 'wrong-state', 'InvalidStatus');

  const csp = state.purchase({ planId: 'standard', csp: true }, T0).subscription.id;
  state.activate(csp, {}, T0);
  rejects(t, () => state.requestUpdate(csp, { quantity: 3 }, T0), 'bad-request', 'UpdateNotAllowed');
  rejects(t, () => state.requestDelete(csp, T0), 'bad-request', 'DeleteNotAllowed');
  t.ok(state.customerChange(csp, { quantity: 3 }, T0), 'the CSP itself can still change it');
});

t.test('suspend / reinstate / renew / unsubscribe transitions', async (t) => {
  const state = newState();
  const id = active(state);
  rejects(t, () => state.reinstate(id, T0), 'wrong-state', 'InvalidStatus');
  t.match(state.suspend(id, T0), { action: 'Suspend', status: 'Succeeded' });
  t.equal(state.subscription(id).status, 'Suspended', 'Microsoft changes the state before notifying');
  rejects(t, () => state.suspend(id, T0), 'wrong-state', 'InvalidStatus');
  rejects(t, () => state.renew(id, T0), 'wrong-state', 'InvalidStatus');
  rejects(t, () => state.customerChange(id, { quantity: 6 }, T0), 'wrong-state', 'InvalidStatus');
  const reinstate = state.reinstate(id, T0);
  t.match(reinstate, { action: 'Reinstate', status: 'InProgress' });
  t.equal(state.subscription(id).status, 'Suspended', 'stays Suspended while the reinstate is processed');
  rejects(t, () => state.acknowledge(id, reinstate.id, 'Failure', T0), 'bad-request', 'CannotRefuse');
  state.acknowledge(id, reinstate.id, 'Success', T0);
  t.equal(state.subscription(id).status, 'Subscribed');

  const sub = state.subscription(id);
  sub.isFreeTrial = true;
  const oldEnd = sub.endDate;
  t.match(state.renew(id, T0), { action: 'Renew', status: 'Succeeded' });
  t.same(sub.startDate, new Date((oldEnd as Date).getTime() + 86_400_000), 'the new term starts the day after the old one ended');
  t.equal(sub.isFreeTrial, false, 'a renewal converts a free trial');
  state.setAutoRenew(id, false, T0);
  rejects(t, () => state.renew(id, T0), 'wrong-state', 'AutoRenewOff');

  t.match(state.unsubscribe(id, T0), { action: 'Unsubscribe', status: 'Succeeded', source: 'Azure' });
  t.equal(sub.status, 'Unsubscribed');
  rejects(t, () => state.unsubscribe(id, T0), 'wrong-state', 'InvalidStatus');
  rejects(t, () => state.activate(id, {}, T0), 'gone', 'SubscriptionUnsubscribed');
  rejects(t, () => state.availablePlans(id), 'forbidden', 'SubscriptionUnsubscribed');
  t.equal(state.subscriptions().length, 1, 'Unsubscribed subscriptions are never deleted');

  const pending = state.purchase({ planId: 'basic' }, T0).subscription.id;
  t.ok(state.unsubscribe(pending, T0), 'a subscription can be cancelled at any point, even before activation');
});

t.test('publisher DELETE completes when begun', async (t) => {
  const state = newState();
  const id = active(state);
  const op = state.requestDelete(id, T0);
  t.match(op, { action: 'Unsubscribe', status: 'NotStarted', source: 'Partner' });
  t.equal(state.subscription(id).status, 'Subscribed');
  state.beginOperation(op.id, later(10));
  t.equal(op.status, 'Succeeded');
  t.equal(state.subscription(id).status, 'Unsubscribed');
  rejects(t, () => state.requestDelete(id, T0), 'wrong-state', 'InvalidStatus');
});

t.test('paging with an opaque continuation token', async (t) => {
  const state = newState({ pageSize: 2 });
  t.same(state.listSubscriptions().subscriptions, []);
  const ids = [1, 2, 3, 4, 5].map(() => state.purchase({ planId: 'basic' }, T0).subscription.id);
  const seen: string[] = [];
  let token: string | undefined;
  let pages = 0;
  do {
    const page = state.listSubscriptions(token);
    seen.push(...page.subscriptions.map((s) => s.id));
    token = page.continuationToken;
    pages++;
  } while (token !== undefined);
  t.equal(pages, 3);
  t.same(seen, ids);
  rejects(t, () => state.listSubscriptions('garbage'), 'bad-request', 'InvalidContinuationToken');
});

t.test('listAvailablePlans: current plan included, stop-sell and foreign private plans excluded, sourceOffers on request', async (t) => {
  const state = newState();
  const id = active(state);
  const plans = state.availablePlans(id).map((p) => p.planId);
  t.same(plans, ['basic', 'standard', 'premium', 'enterprise-private', 'instant']);
  t.same(state.availablePlans(id, 'nope'), [], 'an unknown planId gives an empty list');
  const priv = state.purchase({ planId: 'enterprise-private', quantity: 10 }, T0).subscription.id;
  const [bought] = state.availablePlans(priv, 'enterprise-private');
  t.same(bought?.sourceOffers, [{ externalId: '6c2f7a9e-2f4b-4b8e-9a51-1d0c6b1e7f10' }], 'the private offer id for the purchased plan');
  t.equal(state.availablePlans(priv).find((p) => p.planId === 'enterprise-private')?.sourceOffers, undefined);
  const seat = state.availablePlans(id, 'standard')[0];
  t.match(seat, { isPricePerSeat: true, minQuantity: 1, maxQuantity: 50, hasFreeTrials: true });
});

t.test('operations: lookups and pending list', async (t) => {
  const state = newState();
  const id = active(state);
  const other = active(state);
  const op = state.customerChange(id, { quantity: 6 }, T0);
  t.same(state.pendingOperations(id).map((o) => o.id), [op.id]);
  t.same(state.pendingOperations(other), []);
  rejects(t, () => state.operation(other, op.id), 'not-found', 'OperationNotFound');
  rejects(t, () => state.operation('nope', op.id), 'not-found', 'SubscriptionNotFound');
});

t.test('catalogue validation', async (t) => {
  t.throws(() => parseCatalogue({ offers: [] }), CatalogueError);
  t.throws(() => parseCatalogue({ offers: [{ offerId: 'o', plans: [{ planId: 'p', displayName: 'P', typo: 1 }] }] }), /typo|additional/);
  t.throws(
    () => parseCatalogue({ offers: [{ offerId: 'o', plans: [{ planId: 'p', displayName: 'P', minQuantity: 5, maxQuantity: 2 }] }] }),
    /minQuantity > maxQuantity/,
  );
  t.throws(
    () =>
      parseCatalogue({
        offers: [{ offerId: 'o', plans: [{ planId: 'p', displayName: 'P' }, { planId: 'p', displayName: 'Q' }] }],
      }),
    /listed twice/,
  );
  t.ok(parseCatalogue(DEFAULT_CATALOGUE));
});

t.test('silent change: applied at once with no operation, plan and seats checked as a change is', async (t) => {
  const state = newState();
  const id = active(state);
  const sub = state.silentChange(id, { quantity: 9 }, later(1000));
  t.equal(sub.quantity, 9);
  t.same(state.operations(id), [], 'no operation: nobody is told');
  t.same(sub.lastModified, later(1000));

  state.silentChange(id, { planId: 'premium' }, later(2000));
  t.match(state.subscription(id), { planId: 'premium', quantity: 9, termUnit: 'P1Y' }, 'seats kept, term unit follows the plan');
  t.same(state.subscription(id).startDate, new Date('2025-01-31T00:00:00Z'), 'a new term starts when the unit changes');
  t.same(state.subscription(id).endDate, new Date('2026-01-30T00:00:00Z'));
  state.silentChange(id, { planId: 'basic' }, T0);
  t.equal(state.subscription(id).quantity, undefined, 'a flat plan has no seats');

  rejects(t, () => state.silentChange(id, { planId: 'legacy' }, T0), 'bad-request', 'PlanNotAvailable');
  rejects(t, () => state.silentChange(id, { planId: 'nope' }, T0), 'bad-request', 'PlanNotAvailable');
  rejects(t, () => state.silentChange(id, { quantity: 3 }, T0), 'bad-request', 'PlanNotPerSeat');
  rejects(t, () => state.silentChange(id, { planId: 'premium', quantity: 2 }, T0), 'bad-request', 'QuantityOutOfRange');
  t.equal(state.subscription(id).planId, 'basic', 'a refused change changes nothing');
  rejects(t, () => state.silentChange('nope', { quantity: 3 }, T0), 'not-found', 'SubscriptionNotFound');
});

t.test('silent change: status, term and autoRenew, also while locked and out of Unsubscribed', async (t) => {
  const state = newState();
  const id = active(state);
  state.customerChange(id, { quantity: 9 }, T0);
  t.ok(state.isLocked(id));
  state.silentChange(id, { status: 'Suspended', autoRenew: false }, T0);
  t.match(state.subscription(id), { status: 'Suspended', autoRenew: false }, 'not held back by the lock');
  state.silentChange(id, { status: 'Unsubscribed' }, T0);
  state.silentChange(id, { status: 'Subscribed' }, T0);
  t.equal(state.subscription(id).status, 'Subscribed', 'Microsoft may say Subscribed where we say Unsubscribed');

  state.silentChange(id, { termUnit: 'P2Y' }, T0);
  t.same(state.subscription(id).startDate, new Date('2025-01-31T00:00:00Z'), 'a new unit keeps the start');
  t.same(state.subscription(id).endDate, new Date('2027-01-30T00:00:00Z'), 'and moves the end');
  state.silentChange(id, { termUnit: 'PAY' }, T0);
  t.equal(state.subscription(id).termUnit, 'PAY', 'any term unit Microsoft may send');
  const start = new Date('2025-06-01T00:00:00Z');
  state.silentChange(id, { termUnit: 'P1M', startDate: start }, T0);
  t.same(state.subscription(id).endDate, new Date('2025-06-30T00:00:00Z'), 'a start alone gets the end of its term');
  state.silentChange(id, { endDate: new Date('2025-07-15T00:00:00Z') }, T0);
  t.same(state.subscription(id).endDate, new Date('2025-07-15T00:00:00Z'));
  rejects(t, () => state.silentChange(id, { startDate: new Date('2025-08-01T00:00:00Z'), endDate: start }, T0), 'bad-request', 'BadTerm');

  const pending = state.purchase({ planId: 'standard' }, T0).subscription.id;
  rejects(t, () => state.silentChange(pending, { endDate: start }, T0), 'bad-request', 'BadTerm');
  state.silentChange(pending, { status: 'Subscribed' }, later(86_400_000));
  t.match(state.subscription(pending), { status: 'Subscribed', startDate: new Date('2025-02-01T00:00:00Z') }, 'an unannounced activation starts a term');
});

t.test('purchaseMany: many subscriptions straight into a status, no operations', async (t) => {
  const state = newState({ pageSize: 100 });
  const bought = state.purchaseMany({ planId: 'standard', quantity: 3 }, 250, 'Subscribed', T0);
  t.equal(bought.length, 250);
  t.equal(new Set(bought.map((s) => s.id)).size, 250, 'distinct ids');
  t.match(bought[0], { status: 'Subscribed', quantity: 3, startDate: new Date('2025-01-31T00:00:00Z') });
  t.equal(state.operations(bought[0]?.id ?? '').length, 0);
  t.equal(state.purchaseMany({ planId: 'instant' }, 1, 'PendingFulfillmentStart', T0)[0]?.status, 'PendingFulfillmentStart', 'auto-activation does not apply');
  t.equal(state.purchaseMany({ planId: 'basic' }, 1, 'Suspended', T0)[0]?.status, 'Suspended');
  rejects(t, () => state.purchaseMany({ planId: 'standard', quantity: 99 }, 2, 'Subscribed', T0), 'bad-request', 'QuantityOutOfRange');
  let pages = 0;
  let token: string | undefined;
  do {
    const page = state.listSubscriptions(token);
    token = page.continuationToken;
    pages++;
  } while (token !== undefined);
  t.equal(pages, 3, '252 subscriptions in pages of 100');
  state.setPageSize(300);
  t.equal(state.listSubscriptions().subscriptions.length, 252);
  rejects(t, () => state.setPageSize(0), 'bad-request', 'BadPageSize');
  rejects(t, () => newState({ pageSize: 0 }), 'bad-request', 'BadPageSize');
});

t.test('injected notifications: a record in the status asked for, or none; the subscription never changes', async (t) => {
  const state = newState();
  const id = active(state);
  const before = structuredClone(state.subscription(id));

  const conflict = state.injectNotification({ subscriptionId: id, action: 'ChangePlan', planId: 'premium', record: 'Conflict' }, T0);
  t.match(conflict, { recorded: true, status: 'Conflict', operation: { action: 'ChangePlan', planId: 'premium', quantity: 5, status: 'Conflict', source: 'Azure' } });
  t.equal(state.operation(id, conflict.operation.id).status, 'Conflict', 'Get operation finds it');

  const none = state.injectNotification({ subscriptionId: id, action: 'Transfer', record: 'none' }, T0);
  t.match(none, { recorded: false, status: 'Succeeded', operation: { action: 'Transfer', planId: 'standard' } });
  rejects(t, () => state.operation(id, none.operation.id), 'not-found', 'OperationNotFound');

  t.equal(state.injectNotification({ subscriptionId: id, action: 'Renew' }, T0).recorded, true, 'no status, no record: a Succeeded record');
  t.match(state.injectNotification({ subscriptionId: id, action: 'Renew', status: 'Failed' }, T0), { recorded: true, operation: { status: 'Failed' } });
  t.match(state.injectNotification({ subscriptionId: id, action: 'Renew', status: 'Weird' }, T0), { recorded: false, status: 'Weird' }, 'a status Microsoft cannot hold: no record');
  t.match(state.injectNotification({ subscriptionId: id, action: 'Renew', status: 'NotStarted', record: 'Succeeded' }, T0), {
    status: 'NotStarted',
    operation: { status: 'Succeeded' },
  });

  rejects(t, () => state.injectNotification({ subscriptionId: id, action: 'Renew', operationId: conflict.operation.id, record: 'Succeeded' }, T0), 'conflict', 'OperationExists');
  const replay = state.injectNotification({ subscriptionId: id, action: 'ChangePlan', operationId: conflict.operation.id, planId: 'basic', record: 'none' }, T0);
  t.equal(replay.operation.id, conflict.operation.id, 'an existing id with no new record');
  t.match(state.operation(id, conflict.operation.id), { planId: 'premium', status: 'Conflict' }, 'the record stays as it was');

  const inProgress = state.injectNotification({ subscriptionId: id, action: 'ChangeQuantity', quantity: 9, record: 'InProgress' }, T0);
  t.ok(state.isLocked(id), 'an InProgress record locks, as any pending operation does');
  state.acknowledge(id, inProgress.operation.id, 'Success', T0);
  t.equal(inProgress.operation.status, 'Succeeded');
  t.notOk(state.isLocked(id));
  t.same(state.subscription(id), before, 'nothing injected changed the subscription');

  const ghost = '0d7f3c2a-9b8e-4f1d-a6c5-3e2b1a0f9d8c';
  const unknown = state.injectNotification({ subscriptionId: ghost, action: 'Unsubscribe' }, T0);
  t.match(unknown, { recorded: true, subscription: undefined, operation: { subscriptionId: ghost, offerId: 'ledger-saas', planId: 'basic' } });
  rejects(t, () => state.subscription(ghost), 'not-found', 'SubscriptionNotFound');
  rejects(t, () => state.operation(ghost, unknown.operation.id), 'not-found', 'SubscriptionNotFound');
});

t.test('the calendar: renewals at term end, one per term passed, in order', async (t) => {
  const state = newState();
  const id = active(state);
  const sub = state.subscription(id);
  sub.isFreeTrial = true;
  t.same(sub.endDate, new Date('2025-02-27T00:00:00Z'));
  t.same(state.advanceTo(new Date('2025-02-27T23:59:59Z')), [], 'the last day of the term is still in it');
  const [renewed, ...none] = state.advanceTo(new Date('2025-02-28T00:00:00Z'));
  t.same(none, []);
  t.match(renewed, { kind: 'renewed', subscriptionId: id, at: new Date('2025-02-28T00:00:00Z'), operation: { action: 'Renew', status: 'Succeeded', source: 'Azure' } });
  t.same(renewed?.operation?.timeStamp, new Date('2025-02-28T00:00:00Z'), 'dated when it happened');
  t.match(sub, { startDate: new Date('2025-02-28T00:00:00Z'), endDate: new Date('2025-03-27T00:00:00Z'), isFreeTrial: false, status: 'Subscribed' });

  const yearly = active(state, 'premium', 5);
  const events = state.advanceTo(new Date('2025-06-01T00:00:00Z'));
  t.same(
    events.map((e) => [e.kind, e.subscriptionId, e.at.toISOString().slice(0, 10)]),
    [
      ['renewed', id, '2025-03-28'],
      ['renewed', id, '2025-04-28'],
      ['renewed', id, '2025-05-28'],
    ],
    'every term that passed, oldest first; the yearly plan is not due',
  );
  t.same(state.subscription(yearly).endDate, new Date('2026-01-30T00:00:00Z'));
  t.same(state.advanceTo(new Date('2025-06-01T00:00:00Z')), [], 'nothing twice');
});

t.test('the calendar: autoRenew off ends the subscription at term end; pending operations fail', async (t) => {
  const state = newState();
  const id = active(state);
  state.setAutoRenew(id, false, T0);
  const change = state.customerChange(id, { quantity: 9 }, T0);
  const [ended] = state.advanceTo(new Date('2025-03-15T00:00:00Z'));
  t.match(ended, { kind: 'ended', at: new Date('2025-02-28T00:00:00Z'), operation: { action: 'Unsubscribe', status: 'Succeeded' } });
  t.equal(state.subscription(id).status, 'Unsubscribed');
  t.match(change, { status: 'Failed', errorMessage: /ended/ }, 'a change still pending can no longer happen');
  t.same(state.advanceTo(new Date('2026-01-01T00:00:00Z')), [], 'Unsubscribed is final');
});

t.test('the calendar: a purchase never activated expires after 30 days, with no operation', async (t) => {
  const state = newState();
  const pending = state.purchase({ planId: 'basic' }, T0).subscription;
  const activated = state.purchase({ planId: 'basic' }, T0).subscription;
  t.same(state.advanceTo(later(29 * 86_400_000)), []);
  state.activate(activated.id, {}, later(29 * 86_400_000));
  const events = state.advanceTo(later(30 * 86_400_000));
  t.same(events, [{ kind: 'expired', subscriptionId: pending.id, at: later(30 * 86_400_000) }], 'no operation: no webhook to send');
  t.equal(pending.status, 'Unsubscribed');
  t.same(state.operations(pending.id), []);
  t.equal(activated.status, 'Subscribed', 'activated in time');
});

t.test('the calendar: 30 days Suspended ends the subscription; a reinstatement stops the count', async (t) => {
  const state = newState();
  const kept = active(state, 'premium', 5);
  const lost = active(state, 'premium', 5);
  state.suspend(kept, T0);
  state.suspend(lost, later(86_400_000));
  state.acknowledge(kept, state.reinstate(kept, later(10 * 86_400_000)).id, 'Success', later(10 * 86_400_000));
  t.equal(state.subscription(kept).suspendedAt, undefined);
  t.same(state.advanceTo(later(30 * 86_400_000)), [], 'the grace period runs from the suspension');
  const [ended] = state.advanceTo(later(31 * 86_400_000));
  t.match(ended, { kind: 'grace-ended', subscriptionId: lost, at: later(31 * 86_400_000), operation: { action: 'Unsubscribe' } });
  t.equal(state.subscription(kept).status, 'Subscribed');

  const silent = active(state, 'premium', 5);
  state.silentChange(silent, { status: 'Suspended' }, later(31 * 86_400_000));
  t.match(state.advanceTo(later(61 * 86_400_000)), [{ kind: 'grace-ended', subscriptionId: silent }], 'a silent suspension has its grace period too');
});

t.test('CalendarClock: a base clock moved forward, never back', async (t) => {
  const clock = new CalendarClock(() => T0);
  t.same(clock.now(), T0);
  t.same(clock.advance(86_400_000), later(86_400_000));
  t.equal(clock.offsetMs, 86_400_000);
  t.throws(() => clock.advance(-1), RangeError);
  t.throws(() => clock.advance(Number.NaN), RangeError);
});

t.test('revertOperation: after a refused change, the same action back to what was kept', async (t) => {
  const state = newState();
  const id = active(state);
  const refused = state.customerChange(id, { planId: 'premium' }, T0);
  rejects(t, () => state.revertOperation(refused.id, T0), 'wrong-state', 'NothingToRevert');
  state.acknowledge(id, refused.id, 'Failure', T0);
  const revert = state.revertOperation(refused.id, later(5));
  t.match(revert, { action: 'ChangePlan', planId: 'standard', quantity: 5, status: 'Succeeded', source: 'Azure', revertOf: refused.id });
  t.notOk(state.isLocked(id));
  t.same(state.acknowledge(id, revert.id, 'Success', T0), revert, 'a Success on it is a harmless repeat');

  state.acknowledge(id, state.reinstate(state.suspend(id, T0).subscriptionId, T0).id, 'Success', T0);
  const suspend = state.suspend(id, T0);
  rejects(t, () => state.revertOperation(suspend.id, T0), 'wrong-state', 'NothingToRevert');
  const injected = state.injectNotification({ subscriptionId: id, action: 'ChangePlan', record: 'Failed' }, T0);
  rejects(t, () => state.revertOperation(injected.operation.id, T0), 'wrong-state', 'NothingToRevert');
});
