/** The metering process's pure decisions: when an hour is due, how Microsoft's per-item answers settle, expiry. */
import t from 'tap';
import { answersOf, chunks, expiry, submissionDue } from '../../src/processes/metering.workflow.js';

const submitted = (dimension: string, quantity: number) => ({
  subscriptionId: 's', hour: '2026-12-01T08', at: 'x', dimension, planId: 'basic', recorded: quantity, included: 0, quantity, effectiveStartTime: '2026-12-01T08:30:00.000Z',
});

t.test('an hour is due its delay after it ends', async (t) => {
  const end = Date.parse('2026-12-01T09:00:00.000Z');
  t.same(submissionDue('2026-12-01T08', end + 299_999, 300_000), { due: false, inMs: 1 });
  t.same(submissionDue('2026-12-01T08', end + 300_000, 300_000), { due: true });
});

t.test('each item settles its dimension; a duplicate settles as the event Microsoft accepted first', async (t) => {
  const answers = answersOf(
    [submitted('api', 6), submitted('gb', 2), submitted('seats', 1)],
    [
      { status: 'Accepted', usageEventId: 'e1', quantity: 6 },
      { status: 'Duplicate', error: { additionalInfo: { acceptedMessage: { usageEventId: 'e0', quantity: 2, status: 'Duplicate' } }, code: 'Conflict' } },
      { status: 'ResourceNotActive', error: { message: 'Suspended', code: 'ResourceNotActive' } },
    ],
  );
  t.match(answers, [
    { dimension: 'api', status: 'Accepted', billed: 6, via: 'answer', usageEventId: 'e1' },
    { dimension: 'gb', status: 'Accepted', billed: 2, via: 'duplicate', usageEventId: 'e0' },
    { dimension: 'seats', status: 'ResourceNotActive', billed: 0, via: 'answer', detail: 'Suspended' },
  ]);
});

t.test('expiry and batches', async (t) => {
  t.equal(expiry(1000, 999, 100), 'about-to-expire');
  t.equal(expiry(1000, 899, 100), 'ok');
  t.equal(expiry(1000, 1000, 100), 'expired');
  t.equal(expiry(undefined, 1000, 100), 'ok');
  t.same(chunks([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
});
