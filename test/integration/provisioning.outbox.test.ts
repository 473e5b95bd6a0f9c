/**
 * The pure parts: the outbox fold (a replayed schedule is ignored, the head blocks, dead letters
 * retried or skipped), the next step, backoff with jitter, and the integration type names.
 */
import t from 'tap';
import { backoffDelay, evolveOutbox, initialOutbox, nextStep } from '../../src/integration/outbox.js';
import type { OutboxEvent, OutboxState } from '../../src/integration/outbox.js';
import { integrationEventTypes, integrationTypeOf, toIntegrationEvent } from '../../src/integration/outbound-event.js';
import type { IntegrationEvent } from '../../src/integration/outbound-event.js';
import { subscriptionEventTypes } from '../../src/domain/subscription/index.js';

const sub = 'sub-1';
const ev = (sequence: number): IntegrationEvent => ({
  id: `e${sequence}`,
  type: 'subscription.suspended',
  version: 1,
  subscriptionId: sub,
  sequence,
  occurredAt: '2026-05-01T00:00:00Z',
  data: {},
});
const scheduled = (sequence: number): OutboxEvent => ({ type: 'DeliveryScheduled', data: { eventId: `e${sequence}`, sequence, at: 'x', event: ev(sequence) } });
const fold = (events: OutboxEvent[], from: OutboxState = initialOutbox(sub)) => events.reduce(evolveOutbox, from);

t.test('scheduling: in sequence order, once', async (t) => {
  const s = fold([scheduled(0), scheduled(1), scheduled(1), scheduled(0), scheduled(2)]);
  t.same(s.pending.map((p) => p.event.sequence), [0, 1, 2]);
  t.equal(s.lastScheduled, 2);
  const delivered = fold([{ type: 'Delivered', data: { eventId: 'e0', attempt: 1, at: 'x', status: 200, durationMs: 3 } }, scheduled(0)], s);
  t.same(delivered.pending.map((p) => p.event.sequence), [1, 2], 'a delivered event scheduled again (a replay) stays delivered');
  t.equal(delivered.delivered, 1);
  t.equal(delivered.lastDeliveredSequence, 0);
});

t.test('failures, dead letter, retry, skip', async (t) => {
  let s = fold([scheduled(0), scheduled(1)]);
  t.same(nextStep(s, 0), { kind: 'deliver', entry: s.pending[0], attempt: 1 });
  s = fold([{ type: 'DeliveryFailed', data: { eventId: 'e0', attempt: 1, at: 'x', error: 'boom', status: 503, nextAttemptAt: '2026-05-01T00:00:10.000Z' } }], s);
  const due = Date.parse('2026-05-01T00:00:10.000Z');
  t.match(nextStep(s, due - 1), { kind: 'wait', untilMs: due });
  t.match(nextStep(s, due - 1000, due - 500), { kind: 'wait', untilMs: due - 500 }, 'an early wake moves the wait forward');
  t.match(nextStep(s, due), { kind: 'deliver', attempt: 2 });
  s = fold([{ type: 'DeadLettered', data: { eventId: 'e0', attempts: 2, at: 'y', error: 'boom again' } }], s);
  t.match(nextStep(s, due * 2), { kind: 'blocked', entry: { attempts: 2, lastError: 'boom again', lastStatus: 503, deadLetteredAt: 'y' } });
  t.notOk(s.pending[0]?.nextAttemptAt, 'a dead letter waits for nobody’s timer');
  const retried = fold([{ type: 'DeadLetterRetried', data: { eventId: 'e0', at: 'z', actor: 'operator:a' } }], s);
  t.match(nextStep(retried, 0), { kind: 'deliver', attempt: 1 }, 'a retry starts a new round at once');
  t.same(fold([{ type: 'DeadLetterRetried', data: { eventId: 'e0', at: 'z', actor: 'operator:a' } }], retried), retried, 'retrying what is not dead-lettered changes nothing');
  const skipped = fold([{ type: 'DeadLetterSkipped', data: { eventId: 'e0', at: 'z', actor: 'operator:a' } }], s);
  t.same(skipped.pending.map((p) => p.event.id), ['e1']);
  t.equal(skipped.skipped, 1);
  t.equal(fold([{ type: 'DeadLetterSkipped', data: { eventId: 'nope', at: 'z', actor: 'operator:a' } }], s), s, 'unknown ids change nothing');
  t.same(nextStep(initialOutbox(sub), 0), { kind: 'idle' });
});

t.test('backoff: exponential, capped, jittered within [d/2, d], Retry-After honoured up to the cap', async (t) => {
  const at = (attempt: number, random: number, retryAfterMs?: number) =>
    backoffDelay(attempt, { baseMs: 1000, maxMs: 60_000, random: () => random, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
  t.same([1, 2, 3, 4].map((n) => at(n, 1)), [1000, 2000, 4000, 8000]);
  t.same([1, 2, 3, 4].map((n) => at(n, 0)), [500, 1000, 2000, 4000]);
  t.equal(at(30, 1), 60_000, 'capped');
  t.equal(at(1000, 1), 60_000, 'no overflow');
  t.equal(at(1, 0, 20_000), 20_000, 'Retry-After longer than the backoff wins');
  t.equal(at(1, 0, 10 * 60_000), 60_000, 'but not beyond the cap');
});

t.test('integration type names', async (t) => {
  for (const type of subscriptionEventTypes) t.match(integrationTypeOf(type), /^subscription\.[a-z_]+$/, type);
  t.equal(Object.keys(integrationEventTypes).length, subscriptionEventTypes.length, 'every ledger event type has a name');
  t.equal(integrationTypeOf('SeatsTrued'), 'subscription.seats_trued', 'a type added later gets a mechanical name');
  const unknown = toIntegrationEvent(
    { id: 'x', streamId: `subscription-${sub}`, revision: 4n, position: 9n, type: 'SeatsTrued', data: { at: '2026-05-01T00:00:00Z', secret: 'kept out' }, metadata: {}, recordedAt: 'r' },
    sub,
    { status: 'Initial' },
  );
  t.same(unknown, { id: 'x', type: 'subscription.seats_trued', version: 1, subscriptionId: sub, sequence: 4, occurredAt: '2026-05-01T00:00:00Z', data: {} }, 'its data stays out until the contract lists it');
});
