/**
 * The event store port. Every adapter (embedded SQLite, EventStoreDB) implements exactly this,
 * and one contract test suite (test/eventstore/contract.ts) runs against each.
 *
 * Revisions and positions are bigint, as in EventStoreDB; serialise them as strings.
 * - A stream revision is the 0-based index of an event in its stream.
 * - A global position orders every event in the store; positions grow strictly but need not be contiguous.
 */

/** What the caller expects the stream to look like before the append. */
export type ExpectedRevision =
  | 'no_stream' // the stream must not exist
  | 'any' // no check
  | 'stream_exists' // the stream must have at least one event
  | bigint; // the revision of the stream's last event

/**
 * Metadata every event may carry. Adapters store it verbatim (unknown keys are kept), adding `chainHash` (and
 * `keepLast` on bounded appends): the integrity chain, chain-hash.ts. The meaning of correlationId and causationId
 * is in provenance.ts; docs/audit.md.
 */
export type EventMetadata = {
  /** Who caused it: 'operator:<authenticated name>', 'microsoft', 'customer:<email or object id>', 'system:<process>'. */
  actor?: string;
  /** The unit of work the event belongs to, a GUID (provenance.ts). */
  correlationId?: string;
  /** The id of the event or inbound message that directly caused this one (provenance.ts). */
  causationId?: string;
  /** Written by the store: SHA-256 over the event's canonical content and the previous event's chainHash (chain-hash.ts). */
  chainHash?: string;
  [key: string]: unknown;
};

export type NewEvent = {
  /** A UUID. Deterministic ids make retried appends idempotent (same ids at the same place → no duplicate). */
  id?: string;
  type: string;
  data: unknown;
  metadata?: EventMetadata;
};

export type RecordedEvent = {
  id: string;
  streamId: string;
  revision: bigint;
  position: bigint;
  type: string;
  data: unknown;
  metadata: EventMetadata;
  /** ISO-8601 time the store recorded the event. */
  recordedAt: string;
};

export type AppendResult = {
  /** Revision of the last event now in the stream. */
  nextExpectedRevision: bigint;
  /** Global position of the last event appended. */
  position: bigint;
};

export type AppendOptions = {
  expectedRevision?: ExpectedRevision;
  /**
   * Bound the stream to its last `keepLast` events (at least 1): older events may go, the revisions of those kept
   * do not change, and the next append continues the numbering. For streams where only the latest event matters
   * (process checkpoints): pass it on every append to such a stream. Readers must not rely on the older events
   * being gone either (EventStoreDB hides them from stream reads at once but keeps them in $all until a scavenge),
   * only on the last `keepLast` being there.
   * - SQLite: the older events of the stream are deleted in the same transaction as the append.
   * - EventStoreDB: the stream's `$maxCount` metadata is set to `keepLast` (once per stream and process, and only
   *   when it differs), before the append.
   */
  keepLast?: number;
};

export type ReadStreamOptions = {
  /** First revision to return (inclusive). Default 0. */
  fromRevision?: bigint;
  maxCount?: number;
};

export type ReadAllOptions = {
  /** Return events strictly after this position. Default: from the very start. */
  after?: bigint;
  maxCount?: number;
  /** Only events of streams whose id starts with one of these prefixes (e.g. 'subscription-'). */
  streamPrefixes?: readonly string[];
};

export type SubscribeOptions = {
  /** Resume strictly after this position (a stored checkpoint); omit to start at the beginning. */
  after?: bigint;
  streamPrefixes?: readonly string[];
};

/** A catch-up subscription: iterate it with `for await`; `close()` ends the iteration. */
export interface StoreSubscription extends AsyncIterable<RecordedEvent> {
  close(): Promise<void>;
}

export interface EventStore {
  readonly kind: 'sqlite' | 'eventstoredb';
  appendToStream(streamId: string, events: readonly NewEvent[], options?: AppendOptions): Promise<AppendResult>;
  /** The stream's events in order; an empty array when the stream does not exist. */
  readStream(streamId: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>;
  /** The stream's last event (one backwards read, whatever the stream's length); undefined when it has none. */
  readLastEvent(streamId: string): Promise<RecordedEvent | undefined>;
  /** Events across all streams in global order. */
  readAll(options?: ReadAllOptions): AsyncIterable<RecordedEvent>;
  /** Catch up from `after`, then deliver new events as they are appended, in order, each once. */
  subscribeToAll(options?: SubscribeOptions): StoreSubscription;
  /** Cheap liveness probe used by /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export class StoreError extends Error {
  override name = 'StoreError';
}

/** The stream was not at the revision the caller expected. */
export class ConcurrencyError extends StoreError {
  override name = 'ConcurrencyError';
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedRevision,
    /** The stream's actual revision, -1n when it does not exist, undefined when the adapter can't tell. */
    readonly actual: bigint | undefined,
  ) {
    super(
      `stream ${streamId}: expected revision ${describeExpected(expected)}, but it is ${
        actual === undefined ? 'unknown' : actual < 0n ? 'absent' : `at ${actual}`
      }`,
    );
  }
}

/** The store cannot be reached or used right now; callers answer 503 / retry later. */
export class StoreUnavailableError extends StoreError {
  override name = 'StoreUnavailableError';
}

export function describeExpected(expected: ExpectedRevision): string {
  return typeof expected === 'bigint' ? expected.toString() : expected;
}

// Stream naming lives with the domain (src/domain/streams.ts), whose streams follow it; re-exported here for the
// infrastructure that names its own streams (checkpoints, leases, outboxes).
export { categoryPrefix, entityIdOf, streamCategory, streamName } from '../domain/streams.js';
