/**
 * The subscription an event is about, for the runners' log lines: the id of a `subscription-…` or `outbox-…`
 * stream, else a `subscriptionId` the event carries at the top of its data or in its payload (notifications).
 */
import { entityIdOf, streamCategory } from '../../eventstore/eventstore.js';
import type { RecordedEvent } from '../../eventstore/eventstore.js';

const BY_STREAM = new Set(['subscription', 'outbox']);

export function subscriptionOf(event: Pick<RecordedEvent, 'streamId' | 'data'>): { subscriptionId?: string } {
  if (BY_STREAM.has(streamCategory(event.streamId))) return { subscriptionId: entityIdOf(event.streamId) };
  const id = stringAt(event.data, 'subscriptionId') ?? stringAt(objectAt(event.data, 'payload'), 'subscriptionId');
  return id ? { subscriptionId: id } : {};
}

function objectAt(value: unknown, key: string): unknown {
  if (typeof value !== 'object' || value === null) return undefined;
  const v: unknown = Reflect.get(value, key);
  return v;
}

function stringAt(value: unknown, key: string): string | undefined {
  const v = objectAt(value, key);
  return typeof v === 'string' && v !== '' ? v : undefined;
}
