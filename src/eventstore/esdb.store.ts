/**
 * The EventStoreDB adapter of the event store port (src/eventstore/eventstore.ts), over `@eventstore/db-client` 6.
 *
 * This is the ONLY file in the project that imports `@eventstore/db-client`: every mapping between the client's
 * types and errors and the port's lives here, so moving to `@kurrent/kurrentdb-client` is a change to one file.
 *
 * Positions. EventStoreDB positions are `{ commit, prepare }` pairs in its transaction log. The port exposes one
 * bigint, and we use the COMMIT position:
 * - Every append made over gRPC is its own implicit transaction, so each event is "commit-alike": its commit and
 *   prepare positions are equal, unique and strictly increasing along $all. Only events written inside legacy
 *   explicit transactions (the old TCP API, which this service never uses) share a commit position.
 * - To resume from a bigint we therefore rebuild `{ commit: p, prepare: p }`. The server reads $all from a position
 *   inclusively and subscribes to $all exclusively; we additionally drop anything at or before `after` ourselves,
 *   so `after` is exclusive everywhere, whatever the call.
 * - The server only accepts positions where a record starts. A checkpoint is always one, but the port allows any
 *   bigint (say `p - 1n`); when the server refuses one as an "invalid position" we find the last event at or before
 *   it by reading $all backwards from the end and start there instead (see boundaryAtOrBefore).
 * - Servers older than 22.6 do not report positions when reading a single stream (the client gives none, or
 *   2^64-1); such events carry `position: -1n`, meaning "unknown". $all reads and subscriptions always have it.
 *
 * The integrity chain (chain-hash.ts): every append carries each event's chainHash, computed from the event it
 * follows. With an expected revision r that is the event at r (remembered from this instance's last append, else
 * read), and the server's check of r makes sure nothing slipped in between. With 'any' or 'stream_exists' we read
 * the stream's last event and append with ITS revision as expected, retrying on a conflict (another instance
 * appended meanwhile): the hash always names the true predecessor, whatever the number of instances.
 *
 * System events (streams starting with `$`, such as `$settings`, `$$<stream>` metadata or `$ce-` links, and event
 * types starting with `$`) are never returned by readAll or subscriptions: they are not ours.
 */
import { randomUUID } from 'node:crypto';
import {
  ANY,
  BACKWARDS,
  CancelledError,
  DISPATCH_TO_SINGLE,
  DeadlineExceededError,
  END,
  EventStoreDBClient,
  FORWARDS,
  NO_STREAM,
  NotLeaderError,
  PINNED,
  PersistentSubscriptionDoesNotExistError,
  PersistentSubscriptionExistsError,
  RETRY,
  ROUND_ROBIN,
  START,
  STREAM_EXISTS,
  StreamNotFoundError,
  TimeoutError,
  UnavailableError,
  WrongExpectedVersionError,
  excludeSystemEvents,
  isCommandError,
  persistentSubscriptionToAllSettingsFromDefaults,
  streamNameFilter,
} from '@eventstore/db-client';
import type {
  AllStreamResolvedEvent,
  AppendExpectedRevision,
  EventData,
  Filter,
  JSONType,
  PersistentAction,
  ReadPosition,
  ResolvedEvent,
  RecordedEvent as EsdbRecordedEvent,
} from '@eventstore/db-client';
import {
  ConcurrencyError,
  StoreError,
  StoreUnavailableError,
} from './eventstore.js';
import { GENESIS_HASH, chainedMetadata, storedChainHash } from './chain-hash.js';
import { jitteredPause, retryOnConflict } from './conflict-retry.js';
import type {
  AppendOptions,
  AppendResult,
  EventMetadata,
  EventStore,
  ExpectedRevision,
  NewEvent,
  ReadAllOptions,
  ReadStreamOptions,
  RecordedEvent,
  StoreSubscription,
  SubscribeOptions,
} from './eventstore.js';

/** The subset of pino's logger we use; pino's `Logger` satisfies it. */
export type EsdbLogger = {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
};

export type EsdbStoreOptions = {
  logger?: EsdbLogger;
  /** How long ping() waits for the server before declaring it unavailable. Default 5 s. */
  pingTimeoutMs?: number;
  /** How long close() waits for the client's calls to end. Default 5 s. */
  closeTimeoutMs?: number;
};

/** One event delivered by a persistent subscription; settle it with exactly one of ack() or nack(). */
export type PersistentDelivery = {
  event: RecordedEvent;
  /** How many times the server has delivered this event before (0 on the first delivery). */
  retryCount: number;
  ack(): Promise<void>;
  /** Hands the event back: retried (the default) until the group's maxRetryCount, then parked. */
  nack(reason: string): Promise<void>;
};

export interface PersistentSubscriptionHandle extends AsyncIterable<PersistentDelivery> {
  close(): Promise<void>;
}

export type PersistentSubscriptionOptions = {
  /** Only events of streams starting with these prefixes; default all non-system events. */
  streamPrefixes?: readonly string[];
  /**
   * Where a NEW group starts; ignored when the group already exists. Default 'start'. A bigint is a position
   * (a commit position of an event, as the port reports it): the group starts AT it, inclusively.
   */
  startFrom?: 'start' | 'end' | bigint;
  /**
   * How the server spreads a NEW group's events over its consumers. Default 'round-robin' (the server's default).
   * 'pinned' sends the events of one stream to the same consumer while the group's membership is stable.
   */
  consumerStrategy?: 'round-robin' | 'pinned' | 'dispatch-to-single';
  /** How long the server waits for an ack before it retries the event (to another consumer). Default 30 s. */
  messageTimeoutMs?: number;
  /** What nack() asks the server to do. Default 'retry'. */
  nackAction?: 'retry' | 'park' | 'skip';
  /** Deliveries after which the server parks an event. Default 10 (the server's default). */
  maxRetryCount?: number;
  /** How many unacknowledged events the server may have in flight to this consumer. Default 10. */
  bufferSize?: number;
};

/** The EventStoreDB store: the port plus competing consumers, which only EventStoreDB offers. */
export interface EsdbEventStore extends EventStore {
  readonly kind: 'eventstoredb';
  /** Competing consumers over $all: each event goes to one member of the group; the group is created if missing. */
  persistentSubscription(groupName: string, opts?: PersistentSubscriptionOptions): PersistentSubscriptionHandle;
  /** Removes a group (and its server-side cursor); a no-op when it does not exist. */
  deletePersistentSubscription(groupName: string): Promise<void>;
}

const UNKNOWN_POSITION = -1n;
/** What servers before 22.6 send as the position of an event read from a single stream. */
const NO_POSITION = 2n ** 64n - 1n;
/** The stream ping() reads: never written, so the read is one tiny "stream not found" answer. */
const PING_STREAM = 'fulfillment-ledger-ping';

/**
 * Parses the connection string (it does not connect: the client connects on first use, so a store can be opened
 * while the server is still starting; /readyz uses ping() to tell).
 */
export async function openEsdbStore(connectionString: string, opts: EsdbStoreOptions = {}): Promise<EsdbEventStore> {
  const client = parseConnectionString(connectionString);
  opts.logger?.info({ store: 'eventstoredb', connectionName: client.connectionName }, 'EventStoreDB client created');
  return createEsdbStore(client, opts);
}

function parseConnectionString(connectionString: string): EventStoreDBClient {
  try {
    return EventStoreDBClient.connectionString(connectionString);
  } catch (err) {
    const reason = redactPassword(err instanceof Error ? err.message : String(err), connectionString);
    throw new Error(
      `EVENTSTORE_CONNECTION_STRING is malformed: ${reason} (expected something like esdb://localhost:2113?tls=false)`,
      { cause: err },
    );
  }
}

/**
 * The parser quotes the fragment it choked on, which may be (part of) a password: when the string carries
 * credentials, echo neither the password nor any quoted fragment.
 */
function redactPassword(message: string, connectionString: string): string {
  const password = /^[^:/]*:\/\/[^:@/]*:([^@/]+)@/.exec(connectionString)?.[1];
  const withoutPassword = password ? message.split(password).join('***') : message;
  return connectionString.includes('@') ? withoutPassword.replace(/"[^"]*"/g, '"***"') : withoutPassword;
}

/** What the store's operations share: the client, the logger, and what this process remembers about the server. */
type EsdbContext = {
  client: EventStoreDBClient;
  log: EsdbLogger | undefined;
  /** The open subscriptions (to $all and persistent): close() closes them. */
  subscriptions: Set<{ close(): Promise<void> }>;
  /** Streams whose `$maxCount` this process has set or found set: stream id → the bound. */
  bounded: Map<string, number>;
  /** The last event this process appended per stream (bounded, oldest dropped first): saves the chain's read. */
  heads: Map<string, ChainBase>;
};

/** Where a chained append starts: the revision of the stream's last event (-1n for none) and its chainHash. */
type ChainBase = { revision: bigint; hash: string };

/** How many streams' heads an instance remembers; beyond it an append reads the event it follows. */
const MAX_REMEMBERED_HEADS = 10_000;
/** Attempts of an append with expected revision 'any' that lost the race against another instance. */
const ANY_APPEND_ATTEMPTS = 10;

function createEsdbStore(client: EventStoreDBClient, opts: EsdbStoreOptions): EsdbEventStore {
  const esdb: EsdbContext = { client, log: opts.logger, subscriptions: new Set(), bounded: new Map(), heads: new Map() };
  const pingTimeoutMs = opts.pingTimeoutMs ?? 5_000;
  const closeTimeoutMs = opts.closeTimeoutMs ?? 5_000;
  return {
    kind: 'eventstoredb',
    appendToStream: (streamId, events, options) => appendToStream(esdb, streamId, events, options),
    readStream: (streamId, options) => readStream(client, streamId, options),
    readLastEvent: (streamId) => readLastEvent(client, streamId),
    readAll: (options) => readAll(client, options),
    subscribeToAll: (options) => subscribeToAll(esdb, options),
    persistentSubscription: (groupName, options) => persistentSubscription(esdb, groupName, options),
    deletePersistentSubscription: (groupName) => deletePersistentSubscription(client, groupName),
    ping: () => ping(client, pingTimeoutMs),
    close: () => close(esdb, closeTimeoutMs),
  };
}

async function appendToStream(
  esdb: EsdbContext,
  streamId: string,
  events: readonly NewEvent[],
  options: AppendOptions = {},
): Promise<AppendResult> {
  const { client } = esdb;
  const expected = options.expectedRevision ?? 'any';
  if (options.keepLast !== undefined) await bound(esdb, streamId, options.keepLast);
  if (events.length === 0) return checkWithoutAppending(client, streamId, expected);
  // Ids fixed once: an append retried below (or by the caller) proposes the same events, which keeps it idempotent.
  const ids = events.map((e) => e.id ?? randomUUID());
  if (expected !== 'any' && expected !== 'stream_exists') return appendChained(esdb, streamId, events, ids, expected, options.keepLast);
  // 'any' and 'stream_exists' do not name the event the chain continues from: read the stream's last event and
  // append with ITS revision as expected, so that no other instance's event can slip in between (the hash would
  // then name the wrong predecessor); a conflict means another instance appended meanwhile: read again, retry.
  return retryOnConflict({ maxAttempts: ANY_APPEND_ATTEMPTS, pauseMs: jitteredPause }, async () => {
    const last = await readLastEvent(client, streamId);
    if (!last && expected === 'stream_exists') throw new ConcurrencyError(streamId, expected, -1n);
    // A retried append whose events are already the stream's last ones: the server's own check for 'any' would
    // have found them; we look at the head, where a retry finds them unless others appended since.
    if (last && last.id === ids[ids.length - 1]) return { nextExpectedRevision: last.revision, position: last.position };
    const base: ChainBase = last ? { revision: last.revision, hash: storedChainHash(last.metadata) ?? GENESIS_HASH } : { revision: -1n, hash: GENESIS_HASH };
    return appendAt(esdb, streamId, events, ids, base, base.revision < 0n ? 'no_stream' : base.revision, options.keepLast);
  });
}

/** An append with expected revision `no_stream` or r: the chain continues from the event at r. */
async function appendChained(
  esdb: EsdbContext,
  streamId: string,
  events: readonly NewEvent[],
  ids: readonly string[],
  expected: 'no_stream' | bigint,
  keepLast: number | undefined,
): Promise<AppendResult> {
  let base: ChainBase = { revision: -1n, hash: GENESIS_HASH };
  if (typeof expected === 'bigint') {
    const remembered = esdb.heads.get(streamId);
    if (remembered?.revision === expected) base = remembered;
    else {
      // Not the stream's last event? The append then fails (a conflict) or is an idempotent repeat: either way
      // nothing is written with this hash, so the event at `expected` is all we need.
      const [at] = await readStream(esdb.client, streamId, { fromRevision: expected, maxCount: 1 });
      base = { revision: expected, hash: (at?.revision === expected ? storedChainHash(at.metadata) : undefined) ?? GENESIS_HASH };
    }
  }
  return appendAt(esdb, streamId, events, ids, base, expected, keepLast);
}

async function appendAt(
  esdb: EsdbContext,
  streamId: string,
  events: readonly NewEvent[],
  ids: readonly string[],
  base: ChainBase,
  expected: 'no_stream' | bigint,
  keepLast: number | undefined,
): Promise<AppendResult> {
  const { client, log } = esdb;
  let previous = base.hash;
  const data = events.map((event, i) => {
    const id = ids[i] as string;
    const metadata = chainedMetadata(previous, { id, streamId, revision: base.revision + 1n + BigInt(i), type: event.type, data: event.data, metadata: event.metadata }, keepLast);
    previous = metadata.chainHash as string;
    return toEventData(event, id, metadata);
  });
  try {
    const result = await client.appendToStream(streamId, data, { expectedRevision: toEsdbExpected(expected) });
    if (!result.position) log?.warn({ streamId }, 'EventStoreDB did not report the position of an append');
    // Remembered only when these events were certainly written now: ids of our own making cannot be a repeat (a
    // repeat of caller-given ids is answered without writing, and its content, hence hash, may differ from what is stored).
    const fresh = events.every((e) => e.id === undefined);
    remember(esdb, streamId, fresh ? { revision: result.nextExpectedRevision, hash: previous } : undefined, base.revision + BigInt(events.length));
    return {
      nextExpectedRevision: result.nextExpectedRevision,
      position: result.position?.commit ?? UNKNOWN_POSITION,
    };
  } catch (err) {
    throw mapError(err, { streamId, expected });
  }
}

/** Remembers the head only when the append wrote our events at the revisions the hashes were computed for. */
function remember({ heads }: EsdbContext, streamId: string, head: ChainBase | undefined, ours: bigint): void {
  heads.delete(streamId);
  if (!head || head.revision !== ours) return;
  if (heads.size >= MAX_REMEMBERED_HEADS) {
    const oldest = heads.keys().next();
    if (!oldest.done) heads.delete(oldest.value);
  }
  heads.set(streamId, head);
}

/**
 * A bounded stream is a stream with `$maxCount` metadata: the server hides the older events from stream reads at
 * once and drops them at the next scavenge. Set before the first bounded append of this process (read first, so a
 * restart does not add a metadata event each time), remembered afterwards.
 */
async function bound({ client, bounded }: EsdbContext, streamId: string, keepLast: number): Promise<void> {
  if (!Number.isInteger(keepLast) || keepLast < 1) {
    throw new StoreError(`stream ${streamId}: keepLast must be a whole number of at least 1, not ${keepLast}`);
  }
  if (bounded.get(streamId) === keepLast) return;
  try {
    const { metadata } = await client.getStreamMetadata(streamId);
    if (metadata?.maxCount !== keepLast) await client.setStreamMetadata(streamId, { ...metadata, maxCount: keepLast });
  } catch (err) {
    throw mapError(err, { streamId });
  }
  bounded.set(streamId, keepLast);
}

/**
 * An empty append only checks the expectation. We do it ourselves: for a missing stream the client reports revision
 * 0 instead of -1. Like the SQLite store, the position is the last one in the store.
 */
async function checkWithoutAppending(
  client: EventStoreDBClient,
  streamId: string,
  expected: ExpectedRevision,
): Promise<AppendResult> {
  const current = await lastRevision(client, streamId);
  const ok =
    expected === 'any' ||
    (expected === 'no_stream' && current < 0n) ||
    (expected === 'stream_exists' && current >= 0n) ||
    expected === current;
  if (!ok) throw new ConcurrencyError(streamId, expected, current);
  return { nextExpectedRevision: current, position: await lastPosition(client) };
}

/** The revision of the stream's last event, -1n when there is none. */
async function lastRevision(client: EventStoreDBClient, streamId: string): Promise<bigint> {
  return (await readLastEvent(client, streamId))?.revision ?? -1n;
}

async function lastPosition(client: EventStoreDBClient): Promise<bigint> {
  const read = client.readAll({ direction: BACKWARDS, fromPosition: END, maxCount: 1 });
  try {
    for await (const resolved of read as AsyncIterable<AllStreamResolvedEvent>) {
      if (resolved.event) return resolved.event.position.commit;
    }
    return UNKNOWN_POSITION;
  } catch (err) {
    throw mapError(err, {});
  } finally {
    await read.cancel().catch(() => undefined);
  }
}

async function readLastEvent(client: EventStoreDBClient, streamId: string): Promise<RecordedEvent | undefined> {
  const read = client.readStream(streamId, { direction: BACKWARDS, fromRevision: END, maxCount: 1 });
  try {
    for await (const resolved of read as AsyncIterable<ResolvedEvent>) {
      const event = fromResolved(resolved);
      if (event) return event;
    }
    return undefined;
  } catch (err) {
    if (err instanceof StreamNotFoundError) return undefined;
    throw mapError(err, { streamId });
  } finally {
    await read.cancel().catch(() => undefined);
  }
}

async function readStream(
  client: EventStoreDBClient,
  streamId: string,
  options: ReadStreamOptions = {},
): Promise<RecordedEvent[]> {
  if (options.maxCount === 0) return [];
  const events: RecordedEvent[] = [];
  try {
    const read = client.readStream(streamId, {
      direction: FORWARDS,
      fromRevision: options.fromRevision ?? START,
      ...(options.maxCount === undefined ? {} : { maxCount: options.maxCount }),
    });
    for await (const resolved of read as AsyncIterable<ResolvedEvent>) {
      const event = fromResolved(resolved);
      if (event) events.push(event);
    }
    return events;
  } catch (err) {
    // The client reports a missing stream while iterating, not when the read is made.
    if (err instanceof StreamNotFoundError) return [];
    throw mapError(err, { streamId });
  }
}

async function* readAll(client: EventStoreDBClient, options: ReadAllOptions = {}): AsyncGenerator<RecordedEvent> {
  const { after, maxCount, streamPrefixes } = options;
  if (maxCount === 0) return;
  let fromPosition = startFor(after);
  let delivered = 0;
  for (let retried = false; ; retried = true) {
    // The client's readAll has no server-side filter, so we filter here and stop once we have maxCount events.
    const read = client.readAll({ direction: FORWARDS, fromPosition });
    let received = false;
    try {
      for await (const resolved of read as AsyncIterable<AllStreamResolvedEvent>) {
        received = true;
        const event = fromResolved(resolved);
        if (!event || !isOurs(event, after, streamPrefixes)) continue;
        yield event;
        if (maxCount !== undefined && ++delivered >= maxCount) return;
      }
      return;
    } catch (err) {
      if (after === undefined || received || retried || !isInvalidPosition(err)) throw mapError(err, {});
      fromPosition = await boundaryAtOrBefore(client, after);
    } finally {
      // Stops the server from sending the rest of $all when the caller stops early.
      await read.cancel().catch(() => undefined);
    }
  }
}

function subscribeToAll(esdb: EsdbContext, options: SubscribeOptions = {}): StoreSubscription {
  const { client, log, subscriptions } = esdb;
  const { after, streamPrefixes } = options;
  const filter = serverFilter(streamPrefixes);
  const open = (fromPosition: ReadPosition) => client.subscribeToAll({ fromPosition, filter });
  let current = open(startFor(after));
  let closed = false;
  const handle: StoreSubscription = {
    async close() {
      if (closed) return;
      closed = true;
      subscriptions.delete(handle);
      await current.unsubscribe().catch(() => undefined);
      // Cancelling the gRPC call does not end the client's stream: destroy it so a pending `for await` returns.
      current.destroy();
    },
    async *[Symbol.asyncIterator]() {
      try {
        for (let retried = false; ; retried = true) {
          let received = false;
          try {
            for await (const resolved of current as AsyncIterable<AllStreamResolvedEvent>) {
              received = true;
              const event = fromResolved(resolved);
              if (event && isOurs(event, after, streamPrefixes)) yield event;
            }
            if (closed) return;
            throw new StoreUnavailableError('EventStoreDB ended the subscription to $all');
          } catch (err) {
            if (closed) return; // "premature close" after close() is how a closed subscription ends
            if (after !== undefined && !received && !retried && isInvalidPosition(err)) {
              const from = await boundaryAtOrBefore(client, after);
              if (closed) return;
              current = open(from);
              continue;
            }
            log?.warn({ err }, 'EventStoreDB subscription to $all failed');
            throw err instanceof StoreError ? err : mapError(err, {});
          }
        }
      } finally {
        await handle.close();
      }
    },
  };
  subscriptions.add(handle);
  return handle;
}

/**
 * The position of the last event at or before `after`, found by reading $all backwards from the end: a position
 * the server accepts, with nothing of ours between it and `after`. Needed when `after` is not where an event
 * starts (the server then refuses it as an "invalid position"); costs a read of the events after `after`.
 */
async function boundaryAtOrBefore(client: EventStoreDBClient, after: bigint): Promise<ReadPosition> {
  const read = client.readAll({ direction: BACKWARDS, fromPosition: END });
  try {
    for await (const resolved of read as AsyncIterable<AllStreamResolvedEvent>) {
      const position = resolved.event?.position;
      if (position && position.commit <= after) return position;
    }
    return START;
  } catch (err) {
    throw mapError(err, {});
  } finally {
    await read.cancel().catch(() => undefined);
  }
}

function persistentSubscription(
  { client, log, subscriptions }: EsdbContext,
  groupName: string,
  psOpts: PersistentSubscriptionOptions = {},
): PersistentSubscriptionHandle {
  const handle = openPersistentSubscription(client, groupName, psOpts, log, () => subscriptions.delete(handle));
  subscriptions.add(handle);
  return handle;
}

async function deletePersistentSubscription(client: EventStoreDBClient, groupName: string): Promise<void> {
  try {
    await client.deletePersistentSubscriptionToAll(groupName);
  } catch (err) {
    if (!(err instanceof PersistentSubscriptionDoesNotExistError)) throw mapError(err, {});
  }
}

async function ping(client: EventStoreDBClient, pingTimeoutMs: number): Promise<void> {
  const read = client.readStream(PING_STREAM, { maxCount: 1 });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new StoreUnavailableError(`EventStoreDB did not answer within ${pingTimeoutMs} ms`)),
      pingTimeoutMs,
    );
  });
  const drain = (async () => {
    for await (const _ of read as AsyncIterable<ResolvedEvent>) void _;
  })();
  try {
    await Promise.race([drain, timeout]);
  } catch (err) {
    if (err instanceof StreamNotFoundError) return; // the server answered: that is all a ping needs
    if (err instanceof StoreError) throw err;
    throw toUnavailable(err) ?? new StoreUnavailableError(`EventStoreDB ping failed: ${describe(err)}`, { cause: err });
  } finally {
    clearTimeout(timer);
    drain.catch(() => undefined);
    await read.cancel().catch(() => undefined);
  }
}

/**
 * dispose() cancels the client's open calls and waits for each to finish; a call the client lost track of would
 * make it wait forever, and shutdown must not hang on that, so the wait is bounded.
 */
async function close({ client, log, subscriptions }: EsdbContext, closeTimeoutMs: number): Promise<void> {
  await Promise.allSettled([...subscriptions].map((s) => s.close()));
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), closeTimeoutMs);
    timer.unref();
  });
  const outcome = await Promise.race([client.dispose().then(() => 'disposed' as const), gaveUp]);
  clearTimeout(timer);
  if (outcome === 'timeout') log?.warn({ closeTimeoutMs }, 'EventStoreDB client did not close in time; moving on');
  else log?.info({ store: 'eventstoredb' }, 'EventStoreDB client disposed');
}

function openPersistentSubscription(
  client: EventStoreDBClient,
  groupName: string,
  opts: PersistentSubscriptionOptions,
  log: EsdbLogger | undefined,
  onClose: () => void,
): PersistentSubscriptionHandle {
  const nackAction: PersistentAction = opts.nackAction ?? RETRY;
  type Connection = ReturnType<EventStoreDBClient['subscribeToPersistentSubscriptionToAll']>;
  let connection: Connection | undefined;
  let closed = false;

  async function ensureGroup(): Promise<void> {
    try {
      await client.createPersistentSubscriptionToAll(
        groupName,
        persistentSubscriptionToAllSettingsFromDefaults({
          startFrom:
            typeof opts.startFrom === 'bigint'
              ? { commit: opts.startFrom, prepare: opts.startFrom }
              : opts.startFrom === 'end'
                ? END
                : START,
          // Links are not ours to follow: every event we consume is in the stream it was written to.
          resolveLinkTos: false,
          consumerStrategyName: consumerStrategyName(opts.consumerStrategy),
          ...(opts.maxRetryCount === undefined ? {} : { maxRetryCount: opts.maxRetryCount }),
          ...(opts.messageTimeoutMs === undefined ? {} : { messageTimeout: opts.messageTimeoutMs }),
        }),
        { filter: serverFilter(opts.streamPrefixes) },
      );
      log?.info({ groupName, consumerStrategy: opts.consumerStrategy ?? 'round-robin' }, 'persistent subscription group created');
    } catch (err) {
      // Every instance tries to create the group at start-up; all but the first find it there.
      if (!(err instanceof PersistentSubscriptionExistsError)) throw err;
    }
  }

  const handle: PersistentSubscriptionHandle = {
    async close() {
      if (closed) return;
      closed = true;
      onClose();
      if (connection) {
        await connection.unsubscribe().catch(() => undefined);
        connection.destroy();
      }
    },
    async *[Symbol.asyncIterator]() {
      try {
        await ensureGroup();
        if (closed) return;
        const sub = client.subscribeToPersistentSubscriptionToAll(groupName, { bufferSize: opts.bufferSize ?? 10 });
        connection = sub;
        for await (const resolved of sub) {
          const event = fromResolved(resolved);
          if (!event || !isOurs(event, undefined, opts.streamPrefixes)) {
            // Not for us (a system event, or a link whose target is gone): settle it so it is not redelivered.
            await sub.ack(resolved);
            continue;
          }
          yield {
            event,
            retryCount: resolved.retryCount,
            ack: () => sub.ack(resolved).catch((err: unknown) => Promise.reject(mapError(err, {}))),
            nack: (reason: string) =>
              sub.nack(nackAction, reason, resolved).catch((err: unknown) => Promise.reject(mapError(err, {}))),
          };
        }
      } catch (err) {
        if (closed) return;
        log?.warn({ err, groupName }, 'EventStoreDB persistent subscription failed');
        throw mapError(err, {});
      } finally {
        await handle.close();
      }
    },
  };
  return handle;
}

function consumerStrategyName(strategy: PersistentSubscriptionOptions['consumerStrategy']): string {
  switch (strategy) {
    case 'pinned':
      return PINNED;
    case 'dispatch-to-single':
      return DISPATCH_TO_SINGLE;
    default:
      return ROUND_ROBIN;
  }
}

function toEsdbExpected(expected: ExpectedRevision): AppendExpectedRevision {
  switch (expected) {
    case 'no_stream':
      return NO_STREAM;
    case 'any':
      return ANY;
    case 'stream_exists':
      return STREAM_EXISTS;
    default:
      return expected;
  }
}

/** See the header: a port position is a commit position, and commit == prepare for every event we write. */
function startFor(after: bigint | undefined): ReadPosition {
  return after === undefined || after < 0n ? START : { commit: after, prepare: after };
}

/** The server's answer to a position that is not the start of a record: INVALID_ARGUMENT, "invalid position". */
function isInvalidPosition(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 3 && /invalid position/i.test(describe(err));
}

function toEventData(event: NewEvent, id: string, metadata: EventMetadata): EventData {
  return {
    id,
    contentType: 'application/json',
    type: event.type,
    // The client JSON-serialises whatever it is given; its JSONType is narrower than what JSON.stringify takes.
    data: (event.data ?? null) as JSONType,
    metadata,
  };
}

/** Server-side filter for subscriptions: our prefixes, or at least no system events. */
function serverFilter(streamPrefixes: readonly string[] | undefined): Filter {
  return streamPrefixes && streamPrefixes.length > 0
    ? streamNameFilter({ prefixes: [...streamPrefixes] })
    : excludeSystemEvents();
}

function isOurs(event: RecordedEvent, after: bigint | undefined, streamPrefixes: readonly string[] | undefined): boolean {
  if (event.streamId.startsWith('$') || event.type.startsWith('$')) return false;
  if (after !== undefined && event.position <= after) return false;
  if (streamPrefixes && streamPrefixes.length > 0) return streamPrefixes.some((p) => event.streamId.startsWith(p));
  return true;
}

/** `undefined` for a link whose target event no longer exists. */
function fromResolved(resolved: ResolvedEvent | AllStreamResolvedEvent): RecordedEvent | undefined {
  const event = resolved.event;
  if (!event) return undefined;
  return fromEsdbEvent(event, resolved.commitPosition);
}

function fromEsdbEvent(event: EsdbRecordedEvent, commitPosition: bigint | undefined): RecordedEvent {
  const commit = event.position?.commit ?? commitPosition;
  return {
    id: event.id,
    streamId: event.streamId,
    revision: event.revision,
    position: commit === undefined || commit === NO_POSITION ? UNKNOWN_POSITION : commit,
    type: event.type,
    data: event.data,
    metadata: toMetadata(event.metadata),
    recordedAt: event.created.toISOString(),
  };
}

/** Metadata written by others may be absent, binary or not an object: we only surface JSON objects. */
function toMetadata(metadata: unknown): EventMetadata {
  if (metadata && typeof metadata === 'object' && !Array.isArray(metadata) && !(metadata instanceof Uint8Array)) {
    return metadata as EventMetadata;
  }
  return {};
}

/** Translates the client's errors into the port's; anything that is not a client error is a bug and passes through. */
function mapError(err: unknown, ctx: { streamId?: string; expected?: ExpectedRevision }): unknown {
  if (err instanceof WrongExpectedVersionError) {
    const actual = err.actualVersion;
    return new ConcurrencyError(
      ctx.streamId ?? err.streamName,
      ctx.expected ?? 'any',
      typeof actual === 'bigint' ? actual : actual === 'no_stream' ? -1n : undefined,
    );
  }
  const unavailable = toUnavailable(err);
  if (unavailable) return unavailable;
  if (err instanceof Error && isCommandError(err)) return new StoreError(`EventStoreDB: ${describe(err)}`, { cause: err });
  return err;
}

function toUnavailable(err: unknown): StoreUnavailableError | undefined {
  const transient =
    err instanceof UnavailableError ||
    err instanceof DeadlineExceededError ||
    err instanceof TimeoutError ||
    err instanceof NotLeaderError ||
    err instanceof CancelledError || // the server cancelled the call, e.g. while shutting down
    isGrpcUnavailable(err);
  return transient ? new StoreUnavailableError(`EventStoreDB unavailable: ${describe(err)}`, { cause: err }) : undefined;
}

/** Errors that reach us before the client wraps them (e.g. while it discovers or opens a channel). */
function isGrpcUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 14 /* UNAVAILABLE */ || code === 4 /* DEADLINE_EXCEEDED */ || code === 'ECONNREFUSED';
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
