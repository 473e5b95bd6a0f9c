/**
 * Checkpoints of subscribers (process managers, projections that keep their own), stored as events in a
 * `checkpoint-<name>` stream so that they live in whichever store is configured.
 *
 * Only the last event matters: a save appends one `CheckpointStored` event and bounds the stream to it
 * (`keepLast: 1`, see the EventStore port), and a read takes the last event alone. A store written before the
 * bound existed may hold a long checkpoint stream: the read still takes its last event, and the next save
 * trims the rest.
 *
 * `CheckpointStored {position, held?}`: every event at or before `position` is handled, or listed in `held`
 * (held.ts: the keys whose events wait, why, and until when). The two are written together, in one event, so the
 * position never moves past an event that is neither handled nor recorded as held.
 */
import { ownInitiative } from '../../eventstore/provenance.js';
import { streamName } from '../../eventstore/eventstore.js';
import type { EventStore } from '../../eventstore/eventstore.js';
import { decodeHeld } from './held.js';
import type { HeldKey } from './held.js';

export const checkpointStream = (name: string): string => streamName('checkpoint', name);

export type CheckpointRecord = {
  position: bigint;
  held: HeldKey[];
  /** Set when the stored `held` list could not be read (it is then taken as empty). */
  problem?: string;
  /** When the record was saved. */
  savedAt: string;
};

export async function readCheckpoint(store: EventStore, name: string): Promise<bigint | undefined> {
  return (await readCheckpointRecord(store, name))?.position;
}

/** The last checkpoint with what it holds; undefined when none was saved. */
export async function readCheckpointRecord(store: EventStore, name: string): Promise<CheckpointRecord | undefined> {
  const last = await store.readLastEvent(checkpointStream(name));
  if (!last) return undefined;
  const position = positionOf(last.data);
  if (position === undefined) return undefined;
  const held = decodeHeld(heldOf(last.data));
  return 'held' in held
    ? { position: BigInt(position), held: held.held, savedAt: last.recordedAt }
    : { position: BigInt(position), held: [], problem: held.problem, savedAt: last.recordedAt };
}

export async function saveCheckpoint(store: EventStore, name: string, position: bigint, held: readonly HeldKey[] = []): Promise<void> {
  await store.appendToStream(
    checkpointStream(name),
    [
      {
        type: 'CheckpointStored',
        data: { position: position.toString(), ...(held.length > 0 ? { held } : {}) },
        metadata: { actor: `system:${name}`, ...ownInitiative() },
      },
    ],
    { keepLast: 1 },
  );
}

/** `CheckpointStored.data.position`: a bigint written as a decimal string. */
function positionOf(data: unknown): string | undefined {
  if (typeof data !== 'object' || data === null || !('position' in data)) return undefined;
  return typeof data.position === 'string' && /^[0-9]+$/.test(data.position) ? data.position : undefined;
}

function heldOf(data: unknown): unknown {
  return typeof data === 'object' && data !== null && 'held' in data ? data.held : undefined;
}
