/**
 * Checkpoints of subscribers (process managers, projections that keep their own), stored as events in a
 * `checkpoint-<name>` stream so that they live in whichever store is configured.
 *
 * Only the last event matters: a save appends one `CheckpointStored` event and bounds the stream to it
 * (`keepLast: 1`, see the EventStore port), and a read takes the last event alone. A store written before the
 * bound existed may hold a long checkpoint stream: the read still takes its last event, and the next save
 * trims the rest.
 */
import { streamName } from '../../eventstore/eventstore.js';
import type { EventStore } from '../../eventstore/eventstore.js';

export const checkpointStream = (name: string): string => streamName('checkpoint', name);

export async function readCheckpoint(store: EventStore, name: string): Promise<bigint | undefined> {
  const last = await store.readLastEvent(checkpointStream(name));
  const position = positionOf(last?.data);
  return position === undefined ? undefined : BigInt(position);
}

export async function saveCheckpoint(store: EventStore, name: string, position: bigint): Promise<void> {
  await store.appendToStream(
    checkpointStream(name),
    [{ type: 'CheckpointStored', data: { position: position.toString() }, metadata: { actor: `system:${name}` } }],
    { keepLast: 1 },
  );
}

/** `CheckpointStored.data.position`: a bigint written as a decimal string. */
function positionOf(data: unknown): string | undefined {
  if (typeof data !== 'object' || data === null || !('position' in data)) return undefined;
  return typeof data.position === 'string' ? data.position : undefined;
}
