/**
 * Checkpoints of subscribers (process managers, projections that keep their own), stored as events in
 * a `checkpoint-<name>` stream so that they live in whichever store is configured. Only the last
 * event matters; readers take it.
 */
import type { EventStore } from '../../eventstore/eventstore.js';

export const checkpointStream = (name: string): string => `checkpoint-${name}`;

export async function readCheckpoint(store: EventStore, name: string): Promise<bigint | undefined> {
  const stream = checkpointStream(name);
  // Read from the last known revision to the end: the stream only grows, and its last event wins.
  const events = await store.readStream(stream);
  const last = events[events.length - 1];
  if (!last) return undefined;
  const position = (last.data as { position?: string }).position;
  return position === undefined ? undefined : BigInt(position);
}

export async function saveCheckpoint(store: EventStore, name: string, position: bigint): Promise<void> {
  await store.appendToStream(checkpointStream(name), [
    { type: 'CheckpointStored', data: { position: position.toString() }, metadata: { actor: `system:${name}` } },
  ]);
}
