/** Provenance, state diffs and times as `history` and `state --at` read them (src/application/audit-history.ts). */
import t from 'tap';
import { diff, historyOf, parseInstant, provenanceOf } from '../../src/application/audit-history.js';
import type { RecordedEvent } from '../../src/eventstore/eventstore.js';

t.test('the source of an event, from its data and its actor', async (t) => {
  t.same(provenanceOf({ data: { source: 'webhook', operationId: 'op-1' }, metadata: { actor: 'microsoft' } }), { kind: 'webhook', operationId: 'op-1', notificationStream: 'notification-op-1' });
  t.same(provenanceOf({ data: { source: 'operator' }, metadata: { actor: 'operator:dana' } }), { kind: 'operator', operator: 'dana' });
  t.same(provenanceOf({ data: { source: 'landing' }, metadata: { actor: 'customer:ada@fabrikam.example' } }), { kind: 'landing', customer: 'ada@fabrikam.example' });
  t.same(provenanceOf({ data: { source: 'reconciliation', operationId: 'op-2' }, metadata: { actor: 'system:reconciliation' } }), { kind: 'reconciliation', operationId: 'op-2', process: 'reconciliation' });
  t.same(provenanceOf({ data: { source: 'process' }, metadata: { actor: 'system:activation' } }), { kind: 'process', process: 'activation' });
  t.same(provenanceOf({ data: {}, metadata: { actor: 'operator:sam' } }), { kind: 'operator', operator: 'sam' }, 'no declared source: from the actor');
  t.same(provenanceOf({ data: { source: 'elsewhere' }, metadata: {} }), { kind: 'unknown' }, 'neither: unknown, never a guess');
});

t.test('what changed: the fields that differ, nested paths, arrays whole', async (t) => {
  t.same(diff({ a: 1, b: { c: 2, d: 3 }, e: [1] }, { a: 1, b: { c: 5, d: 3 }, e: [1, 2], f: 'x' }), [
    { path: 'b.c', before: 2, after: 5 },
    { path: 'e', before: [1], after: [1, 2] },
    { path: 'f', after: 'x' },
  ]);
  t.same(diff({ a: 1 }, { a: 1 }), []);
  t.same(diff({ status: 'Initial' }, { status: 'Suspended', suspendedAt: 't' }), [{ path: 'status', before: 'Initial', after: 'Suspended' }, { path: 'suspendedAt', after: 't' }]);
});

t.test('a repeated event changes nothing; events of other types leave the state', async (t) => {
  const at = '2026-03-01T10:00:00.000Z';
  const purchased = { subscriptionId: 's1', name: 'n', offerId: 'o', planId: 'p', quantity: 1, purchaser: {}, beneficiary: {}, term: {}, autoRenew: true, isFreeTrial: false, isTest: false, allowedCustomerOperations: [], at, source: 'landing', microsoftStatus: 'PendingFulfillmentStart' };
  const e = (revision: number, type: string, data: unknown): RecordedEvent => ({ id: `e${revision}`, streamId: 'subscription-s1', revision: BigInt(revision), position: BigInt(revision + 1), type, data, metadata: { actor: 'microsoft' }, recordedAt: at });
  const { entries, state } = historyOf('s1', [e(0, 'Purchased', purchased), e(1, 'Suspended', { at, source: 'webhook', operationId: 'op' }), e(2, 'Suspended', { at, source: 'webhook', operationId: 'op' }), e(3, 'SomethingElse', {})]);
  t.equal(state.status, 'Suspended');
  t.ok((entries[0]?.changes.length ?? 0) > 5, 'the purchase sets the fields');
  t.same(entries[1]?.changes.map((c) => c.path), ['appliedOperations', 'status', 'suspendedAt']);
  t.same(entries[2]?.changes, [], 'a repeat: nothing');
  t.same(entries[3]?.changes, [], 'not a subscription event: nothing');
});

t.test('times: ISO-8601 with a date, a time and a zone', async (t) => {
  t.equal(parseInstant('2026-03-01T10:00:00Z'), Date.UTC(2026, 2, 1, 10));
  t.equal(parseInstant('2026-03-01T11:00:00.5+01:00'), Date.UTC(2026, 2, 1, 10, 0, 0, 500));
  t.equal(parseInstant('2026-03-01T10:00Z'), Date.UTC(2026, 2, 1, 10));
  for (const bad of ['2026-03-01', '2026-03-01T10:00:00', 'yesterday', '2026-02-30T99:00:00Z', '']) t.equal(parseInstant(bad), undefined, JSON.stringify(bad));
});
