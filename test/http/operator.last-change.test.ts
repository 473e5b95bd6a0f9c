/**
 * The operator API's `lastChange`: the domain's change-request fold (latestChangeRequest) as LastChangeView.
 * `submitted` is still `pending` on the API; the view carries exactly the schema's fields.
 */
import t from 'tap';
import { lastChangeOf } from '../../src/http/operator.routes.js';

const at = (minute: number): string => `2026-05-01T12:${String(minute).padStart(2, '0')}:00.000Z`;
const stored = (type: string, minute: number, data: Record<string, unknown>) => ({ type, data: { at: at(minute), source: 'operator', ...data } });

const planRequested = stored('PlanChangeRequested', 0, { requestId: 'req-1', planId: 'gold', previousPlanId: 'silver' });

t.test('pending until settled, submitted or not', async (t) => {
  t.equal(lastChangeOf([]), undefined, 'no request, no lastChange');
  t.strictSame(lastChangeOf([planRequested]), { kind: 'plan', requestId: 'req-1', requestedAt: at(0), outcome: 'pending', planId: 'gold' });
  t.strictSame(
    lastChangeOf([planRequested, { type: 'SomethingElse', data: {} }, stored('ChangeSubmitted', 1, { requestId: 'req-1', operationId: 'op-1' })]),
    { kind: 'plan', requestId: 'req-1', requestedAt: at(0), outcome: 'pending', planId: 'gold', operationId: 'op-1' },
    'submitted is pending on the API; other event types are skipped',
  );
});

t.test('applied, failed, abandoned', async (t) => {
  t.strictSame(
    lastChangeOf([
      stored('QuantityChangeRequested', 0, { requestId: 'req-1', quantity: 9, previousQuantity: 5 }),
      stored('ChangeSubmitted', 1, { requestId: 'req-1', operationId: 'op-1' }),
      stored('QuantityChanged', 2, { source: 'webhook', operationId: 'op-1', quantity: 9, previousQuantity: 5 }),
    ]),
    { kind: 'quantity', requestId: 'req-1', requestedAt: at(0), outcome: 'applied', quantity: 9, operationId: 'op-1', settledAt: at(2) },
  );
  t.strictSame(
    lastChangeOf([
      stored('CancellationRequested', 0, { requestId: 'req-1', reason: 'asked by phone' }),
      stored('ChangeRequestFailed', 1, { requestId: 'req-1', status: '409', reason: 'locked' }),
    ]),
    { kind: 'cancel', requestId: 'req-1', requestedAt: at(0), outcome: 'failed', reason: 'asked by phone', settledAt: at(1), failure: { status: '409', reason: 'locked' } },
  );
  t.strictSame(
    lastChangeOf([planRequested, stored('ChangeSubmitted', 1, { requestId: 'req-1', operationId: 'op-1' }), stored('Unsubscribed', 2, { source: 'webhook', operationId: 'op-azure' })]),
    { kind: 'plan', requestId: 'req-1', requestedAt: at(0), outcome: 'abandoned', planId: 'gold', operationId: 'op-1', settledAt: at(2) },
  );
});

t.test("Microsoft's notification applied the change before its 202 was recorded: applied, as the read model says", async (t) => {
  // lastChangeOf used to leave this request pending forever (its PlanChanged came before the operation id was known);
  // the domain state settles it at ChangeSubmitted, and the change_requests row says applied.
  t.strictSame(
    lastChangeOf([
      planRequested,
      stored('PlanChanged', 1, { source: 'webhook', operationId: 'op-x', planId: 'gold', previousPlanId: 'silver', requestSource: 'Partner' }),
      stored('ChangeSubmitted', 2, { requestId: 'req-1', operationId: 'op-x' }),
    ]),
    { kind: 'plan', requestId: 'req-1', requestedAt: at(0), outcome: 'applied', planId: 'gold', operationId: 'op-x', settledAt: at(1) },
  );
});
