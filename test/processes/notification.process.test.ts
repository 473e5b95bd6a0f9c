/**
 * The notification executor on SQLite, with Microsoft played by the emulator's state (src/emulator/state.ts)
 * driven directly (no HTTP): what is recorded when Microsoft confirms a notification, fails it, does not know
 * it, takes an acknowledgement we did not record, or does not answer. The decisions themselves are tested
 * pure in notification.workflow.test.ts.
 */
import t from 'tap';
import type { Test } from 'tap';
import { readNotification } from '../../src/application/notification-events.js';
import { NotificationInbox } from '../../src/application/notification-inbox.js';
import type { InboxLog } from '../../src/application/notification-inbox.js';
import { detailsFromMicrosoft } from '../../src/application/subscription-details.js';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import { notificationStream } from '../../src/domain/notification/index.js';
import type { KnownSubscription } from '../../src/domain/subscription/index.js';
import { DEFAULT_CATALOGUE } from '../../src/emulator/catalogue.js';
import { EmulatorError } from '../../src/emulator/errors.js';
import { toOperationPayload, toSubscriptionPayload } from '../../src/emulator/payloads.js';
import { EmulatorState } from '../../src/emulator/state.js';
import type { OperationRecord } from '../../src/emulator/state.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { MarketplaceConflictError, MarketplaceNotFoundError, MarketplaceUnavailableError } from '../../src/marketplace/errors.js';
import type { MarketplaceErrorDetails } from '../../src/marketplace/errors.js';
import { normaliseOperation, normaliseSubscription } from '../../src/marketplace/schemas.js';
import type { NormalisedOperation, NormalisedSubscription, UpdateOperationStatus } from '../../src/marketplace/schemas.js';
import { notificationKey, notificationProcess } from '../../src/processes/notification.process.js';
import type { NotificationMarketplace } from '../../src/processes/notification.process.js';
import { RetryLater, startProcess } from '../../src/processes/runner/start.js';
import { capturingLogger } from './support.js';

const quiet: InboxLog = { info() {}, warn() {}, child: () => quiet };
const START = Date.parse('2026-05-01T12:00:00.000Z');

type Call = 'getOperation' | 'getSubscription' | 'updateOperationStatus';

/** Microsoft as the notification process sees it, answered from the emulator's state; faults on demand. */
class Microsoft implements NotificationMarketplace {
  readonly calls: string[] = [];
  /** The next call of this kind fails with this error instead of reaching Microsoft. */
  readonly failNext = new Map<Call, Error>();
  /** Runs after Microsoft took a PATCH, before our call returns (e.g. the process is killed). */
  afterPatch: (() => void) | undefined;

  constructor(
    readonly state: EmulatorState,
    private readonly now: () => Date,
  ) {}

  private enter(call: Call, what: string): void {
    this.calls.push(`${call} ${what}`);
    const fault = this.failNext.get(call);
    if (fault) {
      this.failNext.delete(call);
      throw fault;
    }
  }

  private details(call: string): MarketplaceErrorDetails {
    return { call, method: 'GET', url: 'https://marketplace.test/api', requestId: 'r', correlationId: 'c' };
  }

  private answer<T>(call: string, f: () => T): T {
    try {
      return f();
    } catch (err) {
      if (err instanceof EmulatorError && (err.kind === 'not-found' || err.kind === 'gone')) throw new MarketplaceNotFoundError(this.details(call));
      if (err instanceof EmulatorError && err.kind === 'conflict') throw new MarketplaceConflictError({ ...this.details(call), body: err.message });
      throw err;
    }
  }

  async getOperation(subscriptionId: string, operationId: string): Promise<NormalisedOperation> {
    this.enter('getOperation', operationId);
    return this.answer('getOperation', () => normaliseOperation(toOperationPayload(this.state.operation(subscriptionId, operationId))));
  }

  async getSubscription(subscriptionId: string): Promise<NormalisedSubscription> {
    this.enter('getSubscription', subscriptionId);
    return this.answer('getSubscription', () => normaliseSubscription(toSubscriptionPayload(this.state.subscription(subscriptionId))));
  }

  async updateOperationStatus(subscriptionId: string, operationId: string, status: UpdateOperationStatus): Promise<void> {
    this.enter('updateOperationStatus', operationId);
    this.answer('updateOperationStatus', () => this.state.acknowledge(subscriptionId, operationId, status, this.now()));
    this.afterPatch?.();
  }
}

const unavailable = (call: string) =>
  new MarketplaceUnavailableError({ call, method: 'GET', url: 'https://marketplace.test/api', requestId: 'r', correlationId: 'c', status: 503, attempts: 4, reason: 'status 503' });

async function world(t: Test) {
  let clock = START;
  const now = () => new Date(clock);
  const store = openSqliteStore({ path: ':memory:', pollIntervalMs: 10 });
  t.teardown(() => store.close());
  const ledger = new SubscriptionLedger(store);
  const state = new EmulatorState({ catalogue: DEFAULT_CATALOGUE, publisherId: 'contoso', pageSize: 100, purchaseTokenTtlMs: 86_400_000 });
  const microsoft = new Microsoft(state, now);
  const provisioned: string[] = [];
  const { logger, lines } = capturingLogger();
  const handler = notificationProcess({
    store: () => store,
    ledger,
    marketplace: microsoft,
    provisioner: { provision: async (s: KnownSubscription, reason) => void provisioned.push(`${s.subscriptionId} ${reason}`) },
    logger,
    now,
  });
  const inbox = new NotificationInbox({ store, ledger, policy: { retiredPlans: [], maxSeats: 1000 }, now });

  /** Microsoft's notification of an operation (or any body), recorded as the webhook would; returns the delivery's event. */
  const deliver = async (payload: object): Promise<RecordedEvent> => {
    const body = JSON.stringify(payload);
    const outcome = await inbox.receive({ body, headers: { 'x-ms-correlationid': 'corr-1' }, reading: readNotification(body) }, quiet);
    if (outcome.kind !== 'accepted' && outcome.kind !== 'duplicate') throw new Error(`not accepted: ${JSON.stringify(outcome)}`);
    const events = await store.readStream(notificationStream(outcome.operationId));
    const last = events.filter((e) => e.type === 'NotificationReceived').at(-1);
    if (!last) throw new Error('no delivery recorded');
    return last;
  };
  const notify = (op: OperationRecord, over: object = {}) => deliver({ ...webhookOf(op), ...over });
  const webhookOf = (op: OperationRecord) => ({
    id: op.id,
    subscriptionId: op.subscriptionId,
    action: op.action,
    planId: op.planId,
    ...(op.quantity !== undefined ? { quantity: op.quantity } : {}),
    status: op.status,
    operationRequestSource: op.source,
    timeStamp: op.timeStamp.toISOString(),
    subscription: toSubscriptionPayload(state.subscription(op.subscriptionId)),
  });
  const history = async (operationId: string) => store.readStream(notificationStream(operationId));
  const outcome = async (operationId: string) => {
    const processed = (await history(operationId)).filter((e) => e.type === 'NotificationProcessed').at(-1);
    return processed?.data as { outcome: string; detail: string; subscriptionEvents: string[]; operationStatus?: string } | undefined;
  };
  const ours = async (id: string) => (await ledger.load(id)).state;

  /** A subscription Microsoft has Subscribed and we have recorded as such. */
  const active = async (planId = 'standard', quantity = 5): Promise<string> => {
    const bought = state.purchase({ planId, quantity }, now());
    state.activate(bought.subscription.id, { planId, quantity }, now());
    const sub = normaliseSubscription(toSubscriptionPayload(state.subscription(bought.subscription.id)));
    await ledger.execute(sub.id, { type: 'RecordPurchase', now: now().toISOString(), source: 'landing', subscription: detailsFromMicrosoft(sub), microsoftStatus: 'Subscribed' }, { actor: 'test' });
    return sub.id;
  };
  return {
    store,
    ledger,
    state,
    microsoft,
    handler,
    provisioned,
    lines,
    deliver,
    notify,
    history,
    outcome,
    ours,
    active,
    tick: (ms: number) => {
      clock += ms;
    },
    now,
  };
}

t.test('keyOf: the subscription a notification event is about, so one subscription stays in order while others go on', async (t) => {
  const w = await world(t);
  const id = await w.active();
  const event = await w.notify(w.state.suspend(id, w.now()));
  t.equal(w.handler.keyOf?.(event), id);
  t.equal(notificationKey({ ...event, type: 'NotificationProcessed', data: { operationId: 'x', subscriptionId: id, outcome: 'applied', detail: '', subscriptionEvents: [], at: '' } }), id);
  const unreadable = { ...event, streamId: 'notification-unreadable-1', data: { deliveryId: 'd', receivedAt: '', body: 'x', headers: {}, unreadable: 'no' } };
  t.equal(notificationKey(unreadable), 'notification-unreadable-1', 'without a subscription: its stream');
});

t.test('a confirmed plan change is applied, provisioned and acknowledged; Microsoft completes it', async (t) => {
  const w = await world(t);
  const id = await w.active();
  const op = w.state.customerChange(id, { planId: 'premium' }, w.now());
  await w.handler.handle(await w.notify(op));
  t.match(await w.outcome(op.id), { outcome: 'applied', subscriptionEvents: ['PlanChanged'], operationStatus: 'Succeeded' });
  t.equal(w.state.operation(id, op.id).status, 'Succeeded', 'Microsoft took our acknowledgement');
  t.match(await w.ours(id), { planId: 'premium' });
  t.same(w.provisioned, [`${id} plan-change`]);
  t.same(w.microsoft.calls, [`getOperation ${op.id}`, `updateOperationStatus ${op.id}`]);
});

t.test('Failed and Conflict at Microsoft: recorded with the reason, not applied', async (t) => {
  const w = await world(t);
  const id = await w.active();
  const op = w.state.customerChange(id, { planId: 'premium' }, w.now());
  w.state.reject(op.id, w.now(), 'the webhook could not be delivered');
  // The notification still says InProgress: only Microsoft's read-back counts.
  await w.handler.handle(await w.notify(op, { status: 'InProgress' }));
  t.match(await w.outcome(op.id), {
    outcome: 'failed',
    detail: `Microsoft's ChangePlan operation ${op.id} for subscription ${id} is Failed (the webhook could not be delivered): it did not happen, not applied`,
    subscriptionEvents: [],
    operationStatus: 'Failed',
  });
  t.match(await w.ours(id), { planId: 'standard' }, 'not applied');
  t.same(w.provisioned, [], 'not provisioned');
  t.notOk((await w.history(op.id)).some((e) => e.type === 'OperationAcknowledged'), 'not acknowledged');

  const seats = w.state.customerChange(id, { quantity: 9 }, w.now());
  w.state.subscription(id).quantity = 9; // the emulator answers Conflict when the value is already in place
  w.state.accept(seats.id, w.now());
  t.equal(w.state.operation(id, seats.id).status, 'Conflict');
  await w.handler.handle(await w.notify(seats, { status: 'InProgress' }));
  t.match(await w.outcome(seats.id), { outcome: 'failed', operationStatus: 'Conflict' });
  t.match(await w.ours(id), { quantity: 5 }, 'not applied');
  t.match(w.lines.find((l) => l.msg === 'notification not applied' && l.outcome === 'failed'), { operationId: op.id, subscriptionId: id }, 'logged as not applied');
});

t.test('a subscription Microsoft does not know is recorded as unverified; it does not block what comes after', async (t) => {
  const w = await world(t);
  const stranger = crypto.randomUUID();
  const subscribe = { id: crypto.randomUUID(), subscriptionId: stranger, action: 'Subscribe', status: 'Succeeded' };
  const id = await w.active();
  const sus = w.state.suspend(id, w.now());
  await w.deliver(subscribe);
  await w.notify(sus);
  const running = startProcess(w.store, w.handler, capturingLogger().logger, { mode: 'catch-up', retryBaseMs: 10, retryMaxMs: 50 });
  t.teardown(() => running.stop());
  await running.idle();
  t.match(await w.outcome(subscribe.id), {
    outcome: 'unverified',
    detail: `Microsoft has no operation ${subscribe.id} for this Subscribe, and does not know subscription ${stranger}: not applied; processed again if Microsoft delivers it again`,
  });
  t.equal((await w.ours(stranger)).status, 'Initial', 'nothing recorded for it');
  t.match(await w.outcome(sus.id), { outcome: 'applied', operationStatus: 'Succeeded' }, 'the next notification was processed');
  t.equal((await w.ours(id)).status, 'Suspended');

  // Known here, an operation Microsoft confirms, but Get subscription 404: unverified as well, not an endless retry.
  const gone = { id: crypto.randomUUID(), subscriptionId: crypto.randomUUID(), action: 'Suspend', status: 'Succeeded' };
  w.microsoft.getOperation = async (subscriptionId) => normaliseOperation({ id: gone.id, subscriptionId, action: 'Suspend', status: 'Succeeded' });
  await w.handler.handle(await w.deliver(gone));
  t.match(await w.outcome(gone.id), { outcome: 'unverified', detail: `Microsoft does not know subscription ${gone.subscriptionId} (Get subscription: 404): not applied; processed again if Microsoft delivers it again` });
});

t.test('no operation record: applied only when Get subscription shows what the notification claims', async (t) => {
  const w = await world(t);
  const id = await w.active();
  const unsubscribe = { id: crypto.randomUUID(), subscriptionId: id, action: 'Unsubscribe', status: 'Succeeded' };
  await w.handler.handle(await w.deliver(unsubscribe));
  t.match(await w.outcome(unsubscribe.id), { outcome: 'unverified', detail: new RegExp(`subscription ${id} is Subscribed at Microsoft, not Unsubscribed`) });
  t.equal((await w.ours(id)).status, 'Subscribed', 'not unsubscribed on a claim Microsoft does not back');

  // Microsoft cancels it (a failed activation has no operation to read back); the same notification delivered again now applies.
  w.state.subscription(id).status = 'Unsubscribed';
  await w.handler.handle(await w.deliver(unsubscribe));
  t.match(await w.outcome(unsubscribe.id), { outcome: 'applied', subscriptionEvents: ['Unsubscribed'] });
  t.equal((await w.ours(id)).status, 'Unsubscribed');
  t.same(
    (await w.history(unsubscribe.id)).map((e) => e.type),
    ['NotificationReceived', 'NotificationProcessed', 'NotificationReceived', 'NotificationProcessed'],
    'both outcomes are on the record',
  );
  // Applied is for good: a further delivery changes nothing and calls nobody.
  const calls = w.microsoft.calls.length;
  await w.handler.handle(await w.deliver(unsubscribe));
  t.equal(w.microsoft.calls.length, calls, 'not processed again');
  t.equal((await w.history(unsubscribe.id)).filter((e) => e.type === 'NotificationProcessed').length, 2);
});

t.test('an operation not final yet is unverified, and a redelivery once Microsoft finished applies it', async (t) => {
  const w = await world(t);
  const id = await w.active();
  const op = w.state.requestUpdate(id, { quantity: 8 }, w.now()); // a Partner change: NotStarted for a while
  const first = await w.notify(op, { status: 'InProgress' });
  await w.handler.handle(first);
  t.match(await w.outcome(op.id), { outcome: 'unverified', operationStatus: 'NotStarted' });
  t.match(await w.ours(id), { quantity: 5 });
  w.state.beginOperation(op.id, w.now());
  await w.handler.handle(first); // a replay of the old delivery changes nothing: only a new delivery reopens it
  t.equal((await w.history(op.id)).filter((e) => e.type === 'NotificationProcessed').length, 1);
  await w.handler.handle(await w.notify(op));
  t.match(await w.outcome(op.id), { outcome: 'applied', subscriptionEvents: ['QuantityChanged'], operationStatus: 'Succeeded' });
  t.match(await w.ours(id), { quantity: 8 });
  t.equal(w.state.operation(id, op.id).status, 'Succeeded', 'acknowledged');
  t.match(w.lines.find((l) => l.msg === 'notification delivered again: processing it again'), { operationId: op.id, previous: 'unverified' });
});

t.test('an acknowledgement Microsoft took before the process was killed is recorded after the restart, as recovered', async (t) => {
  const w = await world(t);
  const id = await w.active();
  const op = w.state.customerChange(id, { quantity: 12 }, w.now());
  const event = await w.notify(op);
  w.microsoft.afterPatch = () => {
    throw new Error('killed between the accepted PATCH and the append');
  };
  await t.rejects(w.handler.handle(event), /killed/);
  t.equal(w.state.operation(id, op.id).status, 'Succeeded', 'Microsoft took the acknowledgement');
  t.same((await w.history(op.id)).map((e) => e.type), ['NotificationReceived'], 'the gap: nothing recorded of it');

  w.microsoft.afterPatch = undefined;
  w.tick(30_000);
  await w.handler.handle(event); // after the restart the runner hands the same event over again
  const events = await w.history(op.id);
  t.same(events.map((e) => e.type), ['NotificationReceived', 'OperationAcknowledged', 'NotificationProcessed']);
  t.match(events[1]?.data, { status: 'Success', note: /^recovered: an earlier run applied this change but stopped before recording its acknowledgement/ });
  t.match(await w.outcome(op.id), { outcome: 'applied', detail: 'ChangeQuantity applied by an earlier run of this notification', operationStatus: 'Succeeded' });
  t.equal(w.microsoft.calls.filter((c) => c.startsWith('updateOperationStatus')).length, 1, 'the PATCH is not sent again');
  t.equal((await w.ledger.load(id)).events.filter((e) => e.type === 'QuantityChanged').length, 1, 'applied once');
});

t.test('the acknowledgement outlasts a short outage: RetryLater until the window ends, then what Microsoft did is recorded', async (t) => {
  const w = await world(t);
  const id = await w.active();
  const op = w.state.customerChange(id, { planId: 'premium' }, w.now());
  const event = await w.notify(op);
  w.microsoft.failNext.set('updateOperationStatus', unavailable('updateOperationStatus'));
  const err = await w.handler.handle(event).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, RetryLater);
  t.equal(err instanceof RetryLater ? err.options.until : undefined, '2026-05-01T12:00:10.000Z', 'until the end of the 10-second window');
  t.match(await w.ours(id), { planId: 'premium' }, 'applied (and provisioned) before the acknowledgement, as the window requires');

  // Retried inside the window: Microsoft answers now.
  w.tick(2_000);
  await w.handler.handle(event);
  t.match(await w.outcome(op.id), { outcome: 'applied', operationStatus: 'Succeeded' });
  t.match((await w.history(op.id)).find((e) => e.type === 'OperationAcknowledged')?.data, { status: 'Success', latencyMs: 2_000 });

  // Another change; Microsoft stays down for the whole window and accepts it when the window ends (silence is acceptance).
  const seats = w.state.customerChange(id, { quantity: 7 }, w.now());
  const second = await w.notify(seats);
  w.microsoft.failNext.set('updateOperationStatus', unavailable('updateOperationStatus'));
  await t.rejects(w.handler.handle(second), RetryLater);
  w.tick(11_000);
  w.state.accept(seats.id, w.now());
  await w.handler.handle(second);
  t.match(await w.outcome(seats.id), {
    outcome: 'applied',
    detail: /^ChangeQuantity applied by an earlier run of this notification; our acknowledgement did not get through \(Marketplace API unavailable .*\), Microsoft completed the operation$/,
    operationStatus: 'Succeeded',
  });
  t.same((await w.history(seats.id)).map((e) => e.type), ['NotificationReceived', 'NotificationProcessed'], 'no acknowledgement of ours is claimed: the window accepted it');

  // The PATCH fails after the window ended: Microsoft is asked once more, and its answer recorded.
  const third = w.state.customerChange(id, { quantity: 6 }, w.now());
  const late = await w.notify(third);
  w.tick(12_000);
  w.microsoft.failNext.set('updateOperationStatus', unavailable('updateOperationStatus'));
  const before = w.microsoft.calls.length;
  await t.rejects(w.handler.handle(late), RetryLater, 'Microsoft has not settled it yet');
  t.same(w.microsoft.calls.slice(before), [`getOperation ${third.id}`, `updateOperationStatus ${third.id}`, `getOperation ${third.id}`], 'read back after the failed PATCH');
  w.state.accept(third.id, w.now());
  await w.handler.handle(late);
  t.match(await w.outcome(third.id), { outcome: 'applied', operationStatus: 'Succeeded' });
});

t.test('Get operation or Get subscription not answering: RetryLater without a deadline; nothing recorded', async (t) => {
  const w = await world(t);
  const id = await w.active();
  const sus = w.state.suspend(id, w.now());
  const event = await w.notify(sus);
  w.microsoft.failNext.set('getOperation', unavailable('getOperation'));
  const err = await w.handler.handle(event).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, RetryLater);
  t.equal(err instanceof RetryLater ? err.options.until : 'set', undefined);
  t.match(err, { message: new RegExp(`^Get operation ${sus.id}: Marketplace API unavailable`) });
  w.microsoft.failNext.set('getSubscription', unavailable('getSubscription'));
  await t.rejects(w.handler.handle(event), RetryLater);
  t.same((await w.history(sus.id)).map((e) => e.type), ['NotificationReceived'], 'no outcome yet');
  await w.handler.handle(event);
  t.match(await w.outcome(sus.id), { outcome: 'applied' });
  // Any other failure is not RetryLater (the runner retries it a bounded number of times).
  const other = w.state.renew(await w.active(), w.now());
  w.microsoft.failNext.set('getOperation', new Error('a bug'));
  await t.rejects(w.handler.handle(await w.notify(other)), { message: 'a bug' });
});

t.test('unknown actions and new term units are recorded and never crash anything', async (t) => {
  const w = await world(t);
  const id = await w.active();
  const transfer = { id: crypto.randomUUID(), subscriptionId: id, action: 'Transfer', status: 'Succeeded', subscription: { id, term: { termUnit: 'PAY' } } };
  await w.handler.handle(await w.deliver(transfer));
  t.match(await w.outcome(transfer.id), { outcome: 'ignored', detail: 'unknown action Transfer: recorded, not acted on' });
  t.same(w.microsoft.calls, [], 'Microsoft is not called for it');

  // A renewal onto a term unit we have never seen: applied, the unit kept as sent.
  const renew = w.state.renew(id, w.now());
  await w.handler.handle(await w.notify(renew, { subscription: { ...toSubscriptionPayload(w.state.subscription(id)), term: { termUnit: 'PAY', startDate: '2026-06-01', endDate: '2026-06-30' } } }));
  t.match(await w.outcome(renew.id), { outcome: 'applied', subscriptionEvents: ['Renewed'] });
  t.match(await w.ours(id), { term: { termUnit: 'PAY' } });
});
