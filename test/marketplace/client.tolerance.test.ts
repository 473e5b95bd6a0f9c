/**
 * Tolerant reading of Microsoft's payloads (docs/marketplace.md §14.12): unknown fields pass, unknown enum
 * values do not crash, quantity as number/string/""/null, padded status strings and keys.
 */
import t from 'tap';
import { Value } from 'typebox/value';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import {
  OPERATION_ACTION_VALUES,
  PayloadShapeError,
  SUBSCRIPTION_STATUS_VALUES,
  SubscriberPlan,
  UpdateOperation,
  isFinalOperationStatus,
  isKnown,
  normaliseOperationStatus,
  normaliseQuantity,
  normaliseSubscriptionStatus,
  parseOperation,
  parseOperationList,
  parseResolvedSubscription,
  parseSubscription,
  parseSubscriptionPlans,
  parseWebhookPayload,
} from '../../src/marketplace/schemas.js';
import { NoTokenProvider } from '../../src/marketplace/token-provider.js';
import { validateComponent, validateRequestBody } from '../support/openapi.js';
import { captureLogger, startScriptedServer } from '../support/scripted-server.js';
import { OP_ID, SUB_ID, operation, plans, resolved, subscription } from './fixtures.js';

t.test('quantity: number, string, empty, null, absent', async (t) => {
  t.equal(normaliseQuantity(10), 10);
  t.equal(normaliseQuantity('20'), 20);
  t.equal(normaliseQuantity(' 20 '), 20);
  t.equal(normaliseQuantity(''), undefined);
  t.equal(normaliseQuantity(null), undefined);
  t.equal(normaliseQuantity(undefined), undefined);
  t.equal(normaliseQuantity('ten'), undefined);
  t.equal(normaliseQuantity(-1), undefined);
  t.equal(normaliseQuantity(2.5), undefined);
  for (const q of [10, '20', '', null]) {
    t.doesNotThrow(() => parseSubscription(subscription({ quantity: q })), `quantity ${JSON.stringify(q)} accepted`);
  }
  t.equal(parseSubscription(subscription({ quantity: '20' })).quantity, 20);
  t.notOk('quantity' in parseSubscription(subscription({ quantity: '' })), 'empty → absent');
  t.notOk('quantity' in parseSubscription(subscription({ quantity: null })), 'null → absent');
});

t.test('status strings with spaces and odd case are trimmed to the known value', async (t) => {
  t.equal(normaliseSubscriptionStatus(' Subscribed '), 'Subscribed');
  t.equal(normaliseSubscriptionStatus('pendingfulfillmentstart'), 'PendingFulfillmentStart');
  t.equal(parseSubscription(subscription({ saasSubscriptionStatus: ' Subscribed ' })).saasSubscriptionStatus, 'Subscribed');
  t.equal(normaliseOperationStatus(' Succeeded'), 'Succeeded');
  t.equal(normaliseOperationStatus('Success'), 'Succeeded', 'the old docs spelling');
  t.equal(normaliseOperationStatus('Failure'), 'Failed');
  t.ok(isFinalOperationStatus(normaliseOperationStatus('conflict')));
});

t.test('unknown enum values pass through instead of crashing', async (t) => {
  const sub = parseSubscription(
    subscription({
      saasSubscriptionStatus: 'Hibernating',
      term: { termUnit: 'P10Y', startDate: '2026-01-01T00:00:00Z', chargeDuration: null },
      allowedCustomerOperations: ['Read', 'Transfer'],
      sandboxType: 'Partner',
      sessionMode: 'WetRun',
    }),
  );
  t.equal(sub.saasSubscriptionStatus, 'Hibernating');
  t.notOk(isKnown(SUBSCRIPTION_STATUS_VALUES, sub.saasSubscriptionStatus), 'recognisably unknown');
  t.equal(sub.term?.termUnit, 'P10Y');
  t.notOk(sub.term && 'chargeDuration' in sub.term, 'null chargeDuration → absent');
  t.same(sub.allowedCustomerOperations, ['Read', 'Transfer']);
  const op = parseOperation(operation({ action: 'Transmogrify', status: 'Pondering' }));
  t.equal(op.action, 'Transmogrify');
  t.equal(op.status, 'Pondering');
  t.notOk(isFinalOperationStatus(op.status));
  t.ok(isKnown(OPERATION_ACTION_VALUES, parseOperation(operation({ action: 'Subscribe' })).action), 'Subscribe is known');
});

t.test('unknown fields pass and are kept', async (t) => {
  const sub = parseSubscription(subscription({ newField2027: { nested: true }, term: { termUnit: 'P1M', brandNew: 1 } }));
  t.same((sub as Record<string, unknown>).newField2027, { nested: true });
  t.same((sub.term as Record<string, unknown> | undefined)?.brandNew, 1);
  const plansOut = parseSubscriptionPlans({ ...plans(), extra: 'x' });
  t.equal(plansOut.length, 1);
  t.equal(parseSubscriptionPlans(undefined).length, 0, 'empty body → no plans');
});

t.test("padded keys ('id  ') and nulls", async (t) => {
  const op = parseOperation({ ...operation(), id: undefined, 'id  ': OP_ID, errorStatusCode: null, errorMessage: null });
  t.equal(op.id, OP_ID);
  const sub = parseSubscription(subscription({ beneficiary: { emailId: '', puid: null, tenantId: 'x' }, purchaser: null }));
  t.equal(sub.beneficiary?.puid, null, 'nested nulls are kept as sent');
  t.notOk('purchaser' in sub, 'top-level null → absent');
});

t.test('resolve: quantity falls back to the nested subscription', async (t) => {
  const r = parseResolvedSubscription({ ...resolved(), quantity: '', subscription: subscription({ quantity: '12' }) });
  t.equal(r.quantity, 12);
  t.equal(r.subscription?.quantity, 12);
});

t.test('operation lists: empty JSON means none', async (t) => {
  t.same(parseOperationList(undefined), []);
  t.same(parseOperationList({}), []);
  t.equal(parseOperationList({ operations: [operation()] }).length, 1);
});

t.test('a payload without what we cannot do without is a shape error', async (t) => {
  t.throws(() => parseSubscription({ name: 'no id' }), PayloadShapeError);
  t.throws(() => parseOperation({ status: 'Succeeded' }), PayloadShapeError);
  t.throws(() => parseSubscription({ id: SUB_ID, autoRenew: 'maybe' }), PayloadShapeError);
});

t.test('webhook payloads (docs/marketplace.md §7.3)', async (t) => {
  const p = parseWebhookPayload({
    ...operation({ action: ' ChangePlan ', status: 'InProgress' }),
    operationRequestSource: 'Partner',
    subscription: subscription({ quantity: '' }),
    purchaseToken: null,
  });
  t.match(p, { id: OP_ID, subscriptionId: SUB_ID, action: 'ChangePlan', status: 'InProgress', operationRequestSource: 'Partner' });
  t.notOk(p.subscription && 'quantity' in p.subscription);
  const emu = parseWebhookPayload({ id: OP_ID, subscriptionId: SUB_ID, action: 'Subscribe', operationRequestedSource: 'Azure' });
  t.equal(emu.operationRequestSource, 'Azure', "the emulator's spelling is read too");
  const future = parseWebhookPayload({ id: OP_ID, subscriptionId: SUB_ID, action: 'Migrate' });
  t.equal(future.action, 'Migrate');
});

t.test('our fixtures and request bodies agree with the spec', async (t) => {
  t.same(validateComponent('Subscription', subscription()).errors, []);
  t.same(validateComponent('SaaSOperation', operation()).errors, []);
  t.same(validateComponent('ResolvedSubscription', resolved()).errors, []);
  t.same(validateComponent('SubscriptionPlans', plans()).errors, []);
  // Everything the strict request schemas allow is valid for the spec.
  for (const body of [{ planId: 'gold' }, { quantity: 3 }, { planId: 'gold', quantity: 3 }]) {
    t.ok(Value.Check(SubscriberPlan, body));
    t.same(validateRequestBody('FulfillmentOperations_UpdateSubscription', body).errors, []);
    t.same(validateRequestBody('FulfillmentOperations_ActivateSubscription', body).errors, []);
  }
  for (const status of ['Success', 'Failure']) {
    t.ok(Value.Check(UpdateOperation, { status }));
    t.same(validateRequestBody('SubscriptionOperations_UpdateOperationStatus', { status }).errors, []);
  }
  t.notOk(Value.Check(UpdateOperation, { status: 'Succeeded' }), 'the operation status is not a PATCH value');
  t.notOk(validateRequestBody('SubscriptionOperations_UpdateOperationStatus', { status: 'Succeeded' }).valid);
});

t.test('through the client: a quirky but real-world response is accepted', async (t) => {
  const server = await startScriptedServer([
    {
      status: 200,
      body: {
        ...subscription({ saasSubscriptionStatus: ' Subscribed ', quantity: '20', lastModified: '0001-01-01T00:00:00' }),
        term: { termUnit: 'P4Y', startDate: '2026-01-01T00:00:00Z', endDate: '2030-01-01T00:00:00Z', chargeDuration: null },
        somethingNew: [1, 2, 3],
      },
    },
  ]);
  t.teardown(() => server.close());
  const client = new FulfillmentClient({ baseUrl: server.apiUrl, tokenProvider: new NoTokenProvider(), logger: captureLogger().logger });
  const sub = await client.getSubscription(SUB_ID);
  t.match(sub, { id: SUB_ID, saasSubscriptionStatus: 'Subscribed', quantity: 20, term: { termUnit: 'P4Y' } });
});
