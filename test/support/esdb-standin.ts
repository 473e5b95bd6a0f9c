/**
 * EventStoreDB STAND-IN for tests. It is NOT EventStoreDB and not a server to run anything on.
 *
 * It is a small in-memory gRPC service on 127.0.0.1 (random port) that speaks just enough of EventStoreDB's
 * client protocol for the REAL `@eventstore/db-client` to talk to it over real gRPC and HTTP/2, so the adapter
 * (src/eventstore/esdb.store.ts) is exercised end to end without Docker. It is built from the protocol definitions
 * that ship inside `@eventstore/db-client` (generated/*_pb.js): this file imports only those, never the client
 * itself, which stays confined to the adapter.
 *
 * What it implements, following the server's observable behaviour:
 * - ServerFeatures.GetSupportedMethods: the client asks once per connection and picks its append call from it.
 * - Streams.BatchAppend (what current servers offer and the client then always uses) and Streams.Append (what it
 *   uses with servers older than 21.10; `batchAppend: false`): expected revision checks (any / no_stream /
 *   stream_exists / exact revision) answered in each call's own way, which the client turns into
 *   WrongExpectedVersionError, and idempotent retries (the same event ids at the same place succeed again
 *   without writing twice).
 * - Streams.Read of one stream (forwards/backwards, from a revision, count) with the in-band `stream_not_found`
 *   answer, hiding all but the last `$maxCount` events of a stream whose metadata (`$$<stream>`) sets one;
 *   of $all (forwards from a position, inclusive as the server is; backwards); catch-up subscriptions to
 *   $all and to a stream (confirmation, history strictly after the position, `caught_up`, then live events), with
 *   the stream-name and event-type filters (prefixes or regex).
 * - PersistentSubscriptions.Create, Read and Delete for $all: one group cursor shared by its consumers, buffer
 *   size, ack, nack (retry / park / skip, park after maxRetryCount).
 * Not implemented (the client gets UNIMPLEMENTED): Delete, Tombstone, gossip, projections, users,
 * checkpoints in filtered subscriptions, links, ACLs, scavenging. Single-node connection strings never gossip.
 *
 * Positions mimic a transaction log: each event's commit == prepare position is the byte offset where it would
 * start, so positions grow strictly with gaps. The log starts with a few system events (`$settings`, `$stats-…`)
 * like a fresh database has, so callers must filter them as they would for the real thing.
 */
import { randomUUID } from 'node:crypto';
import { Metadata, Server, ServerCredentials, status } from '@grpc/grpc-js';
import type {
  ServerDuplexStream,
  ServerReadableStream,
  ServerWritableStream,
  ServiceError,
  sendUnaryData,
} from '@grpc/grpc-js';
import { StreamsService } from '@eventstore/db-client/generated/streams_grpc_pb.js';
import { ServerFeaturesService } from '@eventstore/db-client/generated/serverfeatures_grpc_pb.js';
import { PersistentSubscriptionsService } from '@eventstore/db-client/generated/persistent_grpc_pb.js';
import streamsPb from '@eventstore/db-client/generated/streams_pb.js';
import sharedPb from '@eventstore/db-client/generated/shared_pb.js';
import featuresPb from '@eventstore/db-client/generated/serverfeatures_pb.js';
import persistentPb from '@eventstore/db-client/generated/persistent_pb.js';
import statusPb from '@eventstore/db-client/generated/status_pb.js';
import type {
  AppendReq,
  AppendResp,
  BatchAppendReq,
  BatchAppendResp,
  ReadReq,
  ReadResp,
} from '@eventstore/db-client/generated/streams_pb.js';
import type { SupportedMethods } from '@eventstore/db-client/generated/serverfeatures_pb.js';
import type {
  CreateReq as PsCreateReq,
  CreateResp as PsCreateResp,
  DeleteReq as PsDeleteReq,
  DeleteResp as PsDeleteResp,
  ReadReq as PsReadReq,
  ReadResp as PsReadResp,
} from '@eventstore/db-client/generated/persistent_pb.js';
import type { Empty } from '@eventstore/db-client/generated/shared_pb.js';

export type StandInEvent = {
  id: string;
  streamId: string;
  revision: bigint;
  /** commit == prepare, as for every event written over gRPC. */
  position: bigint;
  type: string;
  contentType: string;
  data: Uint8Array;
  customMetadata: Uint8Array;
  /** .NET ticks (100 ns) since the Unix epoch, as the server sends `created`. */
  createdTicks: bigint;
};

export type EsdbStandIn = {
  /** e.g. `esdb://127.0.0.1:PORT?tls=false` */
  readonly connectionString: string;
  readonly port: number;
  /** Every event in the stand-in's log, system events included, in $all order. */
  readonly events: readonly StandInEvent[];
  /** The settings a persistent subscription group on $all was created with; undefined when it does not exist. */
  persistentGroup(name: string): PersistentGroupInfo | undefined;
  /** Writes straight into the log, bypassing gRPC (e.g. to add system events a test must not see). */
  appendDirect(streamId: string, events: readonly { type: string; data: unknown }[]): void;
  /** Stops at once, cutting open calls, like a server that went away. */
  stop(): Promise<void>;
};

export type PersistentGroupInfo = {
  consumerStrategy: 'DispatchToSingle' | 'RoundRobin' | 'Pinned';
  resolveLinks: boolean;
  maxRetryCount: number;
  messageTimeoutMs: number;
  /** Stream-name prefixes of the group's filter; empty without one. */
  streamPrefixes: string[];
  /** Where the group started: 'start', 'end', or the position it was created at. */
  startFrom: 'start' | 'end' | bigint;
  consumers: number;
  parked: number;
};

export type EsdbStandInOptions = {
  /** Start with a few system events in $all, as a fresh EventStoreDB has. Default true. */
  seedSystemEvents?: boolean;
  /**
   * Offer Streams.BatchAppend, as servers since 21.10 do; the client then appends through it. Default true.
   * Turn it off to exercise the plain Streams.Append path the client uses with older servers.
   */
  batchAppend?: boolean;
};

const VERSION = '23.10.0 (fulfillment-ledger test stand-in)';
const ReadDirection = { Forwards: 0, Backwards: 1 } as const;
const NackAction = { Unknown: 0, Park: 1, Retry: 2, Skip: 3, Stop: 4 } as const;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const utf8 = new TextEncoder();

export async function startEsdbStandIn(opts: EsdbStandInOptions = {}): Promise<EsdbStandIn> {
  const log = new InMemoryLog();
  if (opts.seedSystemEvents ?? true) {
    log.writeDirect('$settings', [{ type: '$settings', data: { $userStreamAcl: { $r: '$all' } } }]);
    log.writeDirect('$stats-127.0.0.1:2113', [{ type: '$statsCollected', data: { proc: { cpu: 0 } } }]);
  }
  const persistent = new PersistentGroups(log);
  const server = new Server();
  const batchAppend = opts.batchAppend ?? true;
  server.addService(ServerFeaturesService, {
    getSupportedMethods: (_call: { request: Empty }, callback: sendUnaryData<SupportedMethods>) =>
      supportedMethods(batchAppend, callback),
  });
  server.addService(StreamsService, {
    read: (call: ServerWritableStream<ReadReq, ReadResp>) => handleRead(log, call),
    append: (call: ServerReadableStream<AppendReq, AppendResp>, callback: sendUnaryData<AppendResp>) =>
      handleAppend(log, call, callback),
    ...(batchAppend
      ? { batchAppend: (call: ServerDuplexStream<BatchAppendReq, BatchAppendResp>) => handleBatchAppend(log, call) }
      : {}),
  });
  server.addService(PersistentSubscriptionsService, {
    create: (call: { request: PsCreateReq }, callback: sendUnaryData<PsCreateResp>) =>
      persistent.create(call.request, callback),
    read: (call: ServerDuplexStream<PsReadReq, PsReadResp>) => persistent.connect(call),
    delete: (call: { request: PsDeleteReq }, callback: sendUnaryData<PsDeleteResp>) =>
      persistent.delete(call.request, callback),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    connectionString: `esdb://127.0.0.1:${port}?tls=false`,
    port,
    get events() {
      return log.all;
    },
    persistentGroup: (name) => persistent.info(name),
    appendDirect: (streamId, events) => void log.writeDirect(streamId, events),
    async stop() {
      log.closeAll();
      server.forceShutdown();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The log

type Listener = (event: StandInEvent) => void;

class InMemoryLog {
  readonly all: StandInEvent[] = [];
  private readonly streams = new Map<string, StandInEvent[]>();
  private readonly listeners = new Set<Listener>();
  private readonly closers = new Set<() => void>();
  private readonly positions = new Set<bigint>();
  /** A fresh database does not start at 0 either. */
  private nextPosition = 1024n;

  stream(streamId: string): StandInEvent[] | undefined {
    return this.streams.get(streamId);
  }

  write(streamId: string, proposed: readonly Omit<StandInEvent, 'streamId' | 'revision' | 'position'>[]): StandInEvent[] {
    const stream = this.streams.get(streamId) ?? [];
    this.streams.set(streamId, stream);
    const written = proposed.map((p) => {
      const event: StandInEvent = { ...p, streamId, revision: BigInt(stream.length), position: this.nextPosition };
      // Roughly the size of the record, so positions have gaps as in a real transaction log.
      this.nextPosition += 100n + BigInt(p.data.length + p.customMetadata.length + streamId.length + p.type.length);
      stream.push(event);
      this.all.push(event);
      this.positions.add(event.position);
      return event;
    });
    for (const event of written) for (const listener of this.listeners) listener(event);
    return written;
  }

  /**
   * The first revision of the stream that reads return: the server hides all but the last `$maxCount` events of a
   * stream whose metadata (the last `$metadata` event in `$$<stream>`) sets one, until a scavenge removes them.
   * $all keeps them, as it does before a scavenge.
   */
  firstKept(streamId: string): number {
    const length = this.streams.get(streamId)?.length ?? 0;
    const metadata = this.streams.get(`$$${streamId}`)?.at(-1);
    if (!metadata) return 0;
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(metadata.data));
    } catch {
      return 0;
    }
    const maxCount = typeof parsed === 'object' && parsed !== null && '$maxCount' in parsed ? parsed.$maxCount : undefined;
    return typeof maxCount === 'number' && maxCount >= 0 ? Math.max(0, length - maxCount) : 0;
  }

  writeDirect(streamId: string, events: readonly { type: string; data: unknown }[]): StandInEvent[] {
    return this.write(
      streamId,
      events.map((e) => ({
        id: randomUUID(),
        type: e.type,
        contentType: 'application/json',
        data: utf8.encode(JSON.stringify(e.data)),
        customMetadata: new Uint8Array(),
        createdTicks: nowTicks(),
      })),
    );
  }

  /**
   * Whether reading $all may start at this position: where a record starts, before the first or past the last.
   * The server refuses anything else (it would land in the middle of a record).
   */
  isReadablePosition(position: bigint): boolean {
    const first = this.all[0]?.position ?? this.nextPosition;
    return position <= first || position >= this.nextPosition || this.positions.has(position);
  }

  listen(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Registers something to end when the stand-in stops (open subscriptions). */
  onClose(close: () => void): () => void {
    this.closers.add(close);
    return () => this.closers.delete(close);
  }

  closeAll(): void {
    for (const close of this.closers) close();
    this.closers.clear();
    this.listeners.clear();
  }
}

function nowTicks(): bigint {
  return BigInt(Date.now()) * 10_000n;
}

// ---------------------------------------------------------------------------------------------------------------
// ServerFeatures

function supportedMethods(batchAppend: boolean, callback: sendUnaryData<SupportedMethods>): void {
  const method = (serviceName: string, methodName: string, features: string[] = []) => {
    const m = new featuresPb.SupportedMethod();
    m.setServiceName(serviceName);
    m.setMethodName(methodName);
    m.setFeaturesList(features);
    return m;
  };
  const reply = new featuresPb.SupportedMethods();
  reply.setEventStoreServerVersion(VERSION);
  reply.setMethodsList([
    method('event_store.client.streams.streams', 'read', ['position']),
    method('event_store.client.streams.streams', 'append'),
    ...(batchAppend ? [method('event_store.client.streams.streams', 'batchappend')] : []),
    method('event_store.client.persistent_subscriptions.persistentsubscriptions', 'create', ['stream', 'all']),
    method('event_store.client.persistent_subscriptions.persistentsubscriptions', 'read', ['stream', 'all']),
    method('event_store.client.persistent_subscriptions.persistentsubscriptions', 'delete', ['stream', 'all']),
    method('event_store.client.server_features.serverfeatures', 'getsupportedmethods'),
  ]);
  callback(null, reply);
}

// ---------------------------------------------------------------------------------------------------------------
// Streams.Append and Streams.BatchAppend: one core, two wire formats

type Expected = { kind: 'any' } | { kind: 'no_stream' } | { kind: 'stream_exists' } | { kind: 'revision'; revision: bigint };

type AppendOutcome =
  | { ok: true; revision: bigint | undefined; last: StandInEvent | undefined }
  | { ok: false; expected: Expected; current: bigint | undefined };

/** The proposed-message shape both append calls share. */
type Proposed = {
  getId(): InstanceType<typeof sharedPb.UUID> | undefined;
  getMetadataMap(): { get(key: string): string | undefined };
  getData_asU8(): Uint8Array;
  getCustomMetadata_asU8(): Uint8Array;
};

function appendCore(log: InMemoryLog, streamId: string, expected: Expected, proposed: readonly Proposed[]): AppendOutcome {
  const events = proposed.map(toProposedEvent);
  const stream = log.stream(streamId) ?? [];
  const current = stream.length === 0 ? undefined : BigInt(stream.length - 1);

  const replayed = idempotentReplay(stream, expected, events);
  if (replayed) return { ok: true, revision: replayed.at(-1)?.revision, last: replayed.at(-1) };

  if (!satisfies(expected, current)) return { ok: false, expected, current };
  const written = log.write(streamId, events);
  return { ok: true, revision: written.at(-1)?.revision ?? current, last: written.at(-1) ?? stream.at(-1) };
}

function satisfies(expected: Expected, current: bigint | undefined): boolean {
  switch (expected.kind) {
    case 'any':
      return true;
    case 'no_stream':
      return current === undefined;
    case 'stream_exists':
      return current !== undefined;
    case 'revision':
      return current === expected.revision;
  }
}

/**
 * The server's idempotency: when the proposed ids are already in the stream right where this append would have put
 * them, the append "succeeds" again without writing. Returns those events, or undefined when it is a new write.
 */
function idempotentReplay(
  stream: readonly StandInEvent[],
  expected: Expected,
  events: readonly { id: string }[],
): StandInEvent[] | undefined {
  if (events.length === 0) return undefined;
  let start: number;
  if (expected.kind === 'revision') start = Number(expected.revision) + 1;
  else if (expected.kind === 'no_stream') start = 0;
  else start = stream.findIndex((e) => e.id === events[0]!.id);
  if (start < 0 || start + events.length > stream.length) return undefined;
  const existing = stream.slice(start, start + events.length);
  return existing.every((e, i) => e.id === events[i]!.id) ? existing : undefined;
}

function toProposedEvent(message: Proposed): Omit<StandInEvent, 'streamId' | 'revision' | 'position'> {
  const id = message.getId()?.getString() ?? '';
  if (!UUID_RE.test(id)) throw grpcError(status.INVALID_ARGUMENT, `event id is not a UUID: ${id}`);
  const metadata = message.getMetadataMap();
  const type = metadata.get('type');
  if (!type) throw grpcError(status.INVALID_ARGUMENT, 'required metadata property "type" is missing', 'missing-required-metadata-property');
  return {
    id,
    type,
    contentType: metadata.get('content-type') ?? 'application/octet-stream',
    data: message.getData_asU8(),
    customMetadata: message.getCustomMetadata_asU8(),
    createdTicks: nowTicks(),
  };
}

// --- Streams.Append: one call per append; a conflict is an in-band `wrong_expected_version` answer.

function handleAppend(
  log: InMemoryLog,
  call: ServerReadableStream<AppendReq, AppendResp>,
  callback: sendUnaryData<AppendResp>,
): void {
  let options: AppendReq.Options | undefined;
  const proposed: AppendReq.ProposedMessage[] = [];
  call.on('data', (req: AppendReq) => {
    if (req.hasOptions()) options = req.getOptions();
    else if (req.hasProposedMessage()) proposed.push(req.getProposedMessage()!);
  });
  call.on('error', () => undefined); // the client went away; nothing to answer
  call.on('end', () => {
    try {
      if (!options?.hasStreamIdentifier()) throw grpcError(status.INVALID_ARGUMENT, 'append without options');
      const outcome = appendCore(log, streamName(options.getStreamIdentifier()!), appendExpected(options), proposed);
      callback(null, outcome.ok ? appendSuccess(outcome.revision, outcome.last) : appendConflict(outcome.expected, outcome.current));
    } catch (err) {
      callback(err as ServiceError);
    }
  });
}

function appendExpected(options: AppendReq.Options): Expected {
  if (options.hasRevision()) return { kind: 'revision', revision: BigInt(options.getRevision()) };
  if (options.hasNoStream()) return { kind: 'no_stream' };
  if (options.hasStreamExists()) return { kind: 'stream_exists' };
  return { kind: 'any' };
}

function appendSuccess(revision: bigint | undefined, last: StandInEvent | undefined): AppendResp {
  const ok = new streamsPb.AppendResp.Success();
  if (revision === undefined) ok.setNoStream(new sharedPb.Empty());
  else ok.setCurrentRevision(revision.toString());
  if (last) {
    const position = new streamsPb.AppendResp.Position();
    position.setCommitPosition(last.position.toString());
    position.setPreparePosition(last.position.toString());
    ok.setPosition(position);
  } else {
    ok.setNoPosition(new sharedPb.Empty());
  }
  const resp = new streamsPb.AppendResp();
  resp.setSuccess(ok);
  return resp;
}

function appendConflict(expected: Expected, current: bigint | undefined): AppendResp {
  const wrong = new streamsPb.AppendResp.WrongExpectedVersion();
  if (current === undefined) wrong.setCurrentNoStream(new sharedPb.Empty());
  else wrong.setCurrentRevision(current.toString());
  switch (expected.kind) {
    case 'any':
      wrong.setExpectedAny(new sharedPb.Empty());
      break;
    case 'no_stream':
      wrong.setExpectedNoStream(new sharedPb.Empty());
      break;
    case 'stream_exists':
      wrong.setExpectedStreamExists(new sharedPb.Empty());
      break;
    case 'revision':
      wrong.setExpectedRevision(expected.revision.toString());
      break;
  }
  const resp = new streamsPb.AppendResp();
  resp.setWrongExpectedVersion(wrong);
  return resp;
}

// --- Streams.BatchAppend: what servers since 21.10 offer and the client then always uses. One long-lived duplex
// call carries many appends, each a run of requests with one correlation id ending in `is_final`; a conflict comes
// back as a google.rpc.Status whose details pack an event_store.client.WrongExpectedVersion.

function handleBatchAppend(log: InMemoryLog, call: ServerDuplexStream<BatchAppendReq, BatchAppendResp>): void {
  const pending = new Map<string, { options?: BatchAppendReq.Options; messages: BatchAppendReq.ProposedMessage[] }>();
  call.on('data', (req: BatchAppendReq) => {
    const correlationId = req.getCorrelationId();
    const key = correlationId?.getString() ?? '';
    const batch = pending.get(key) ?? { messages: [] };
    pending.set(key, batch);
    if (req.hasOptions()) batch.options = req.getOptions();
    batch.messages.push(...req.getProposedMessagesList());
    if (!req.getIsFinal()) return;
    pending.delete(key);
    try {
      if (!correlationId || !batch.options?.hasStreamIdentifier()) {
        throw grpcError(status.INVALID_ARGUMENT, 'batch append without correlation id or options');
      }
      call.write(batchAppendResult(log, correlationId, batch.options, batch.messages));
    } catch (err) {
      fail(call, err as ServiceError);
    }
  });
  const stopClose = log.onClose(() => fail(call, grpcError(status.UNAVAILABLE, 'stand-in stopped')));
  call.on('end', () => call.end());
  call.on('error', () => undefined);
  call.on('close', stopClose);
}

function batchAppendResult(
  log: InMemoryLog,
  correlationId: InstanceType<typeof sharedPb.UUID>,
  options: BatchAppendReq.Options,
  messages: readonly BatchAppendReq.ProposedMessage[],
): BatchAppendResp {
  const identifier = options.getStreamIdentifier()!;
  const expected = batchExpected(options);
  const outcome = appendCore(log, streamName(identifier), expected, messages);
  const resp = new streamsPb.BatchAppendResp();
  resp.setCorrelationId(correlationId);
  resp.setStreamIdentifier(identifier);
  if (outcome.ok) {
    const ok = new streamsPb.BatchAppendResp.Success();
    if (outcome.revision === undefined) ok.setNoStream(new sharedPb.Empty());
    else ok.setCurrentRevision(outcome.revision.toString());
    if (outcome.last) {
      const position = new sharedPb.AllStreamPosition();
      position.setCommitPosition(outcome.last.position.toString());
      position.setPreparePosition(outcome.last.position.toString());
      ok.setPosition(position);
    } else {
      ok.setNoPosition(new sharedPb.Empty());
    }
    resp.setSuccess(ok);
    return resp;
  }
  const wrong = new sharedPb.WrongExpectedVersion();
  if (outcome.current === undefined) wrong.setCurrentNoStream(new sharedPb.Empty());
  else wrong.setCurrentStreamRevision(outcome.current.toString());
  if (expected.kind === 'revision') wrong.setExpectedStreamPosition(expected.revision.toString());
  else if (expected.kind === 'no_stream') wrong.setExpectedNoStream(new sharedPb.Empty());
  else if (expected.kind === 'stream_exists') wrong.setExpectedStreamExists(new sharedPb.Empty());
  else wrong.setExpectedAny(new sharedPb.Empty());
  resp.setError(
    rpcStatus(status.FAILED_PRECONDITION, 'wrong expected version', 'event_store.client.WrongExpectedVersion', wrong.serializeBinary()),
  );
  return resp;
}

function batchExpected(options: BatchAppendReq.Options): Expected {
  if (options.hasStreamPosition()) return { kind: 'revision', revision: BigInt(options.getStreamPosition()) };
  if (options.hasNoStream()) return { kind: 'no_stream' };
  if (options.hasStreamExists()) return { kind: 'stream_exists' };
  return { kind: 'any' };
}

/**
 * A google.rpc.Status with a packed detail. The generated code does not export google.protobuf.Any (it lives in
 * google-protobuf, which is the client's dependency, not ours), so we encode the three fields by hand and let the
 * generated Status parse them: field 1 code (varint), 2 message (string), 3 details (Any: 1 type_url, 2 value).
 */
function rpcStatus(code: number, message: string, typeName: string, detail: Uint8Array): InstanceType<typeof statusPb.Status> {
  const any = Buffer.concat([lengthDelimited(1, utf8.encode(`type.googleapis.com/${typeName}`)), lengthDelimited(2, detail)]);
  const bytes = Buffer.concat([Buffer.from([(1 << 3) | 0, ...varint(code)]), lengthDelimited(2, utf8.encode(message)), lengthDelimited(3, any)]);
  return statusPb.Status.deserializeBinary(bytes);
}

function lengthDelimited(field: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([(field << 3) | 2, ...varint(bytes.length)]), bytes]);
}

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Streams.Read: stream and $all reads, catch-up subscriptions

type Predicate = (event: StandInEvent) => boolean;

function handleRead(log: InMemoryLog, call: ServerWritableStream<ReadReq, ReadResp>): void {
  const options = call.request.getOptions();
  if (!options) return fail(call, grpcError(status.INVALID_ARGUMENT, 'read without options'));
  let filter: Predicate;
  try {
    filter = filterOf(options);
  } catch (err) {
    return fail(call, err as ServiceError);
  }
  if (options.hasSubscription()) return subscribe(log, call, options, filter);
  if (options.hasAll() && !readablePosition(log, options.getAll()!)) return fail(call, invalidPosition());

  const count = options.hasCount() ? Number(BigInt(options.getCount())) : Number.MAX_SAFE_INTEGER;
  const backwards = options.getReadDirection() === ReadDirection.Backwards;
  if (options.hasStream()) {
    const streamOptions = options.getStream()!;
    const streamId = streamName(streamOptions.getStreamIdentifier()!);
    const stream = log.stream(streamId);
    if (!stream) return notFound(call, streamOptions.getStreamIdentifier()!);
    const events = sliceStream(stream, streamOptions, backwards, count, log.firstKept(streamId));
    for (const event of events) call.write(readEvent(event, false));
  } else {
    const events = sliceAll(log.all, options.getAll()!, backwards).filter(filter).slice(0, count);
    for (const event of events) call.write(readEvent(event, true));
  }
  call.end();
}

/** `first`: the first revision a read may return (events before it are hidden by the stream's `$maxCount`). */
function sliceStream(
  stream: readonly StandInEvent[],
  options: ReadReq.Options.StreamOptions,
  backwards: boolean,
  count: number,
  first: number,
): StandInEvent[] {
  const revision = options.hasRevision() ? Number(BigInt(options.getRevision())) : undefined;
  if (!backwards) {
    const from = Math.max(first, revision ?? (options.hasEnd() ? stream.length : 0));
    return stream.slice(from, from + count);
  }
  const from = options.hasStart() ? first : Math.min(revision ?? stream.length - 1, stream.length - 1);
  if (from < first) return [];
  return stream.slice(Math.max(first, from - count + 1), from + 1).reverse();
}

function sliceAll(all: readonly StandInEvent[], options: ReadReq.Options.AllOptions, backwards: boolean): StandInEvent[] {
  if (!backwards) {
    if (options.hasEnd()) return [];
    if (options.hasStart()) return [...all];
    // Reading $all forwards from a position includes the event at that position, as the server does.
    const from = BigInt(options.getPosition()!.getCommitPosition());
    return all.filter((e) => e.position >= from);
  }
  if (options.hasStart()) return [];
  const before = options.hasEnd() ? undefined : BigInt(options.getPosition()!.getCommitPosition());
  return all.filter((e) => before === undefined || e.position < before).reverse();
}

function subscribe(
  log: InMemoryLog,
  call: ServerWritableStream<ReadReq, ReadResp>,
  options: ReadReq.Options,
  filter: Predicate,
): void {
  const confirmation = new streamsPb.ReadResp.SubscriptionConfirmation();
  confirmation.setSubscriptionId(randomUUID());
  const confirm = new streamsPb.ReadResp();
  confirm.setConfirmation(confirmation);
  call.write(confirm);
  // Like the server: confirm first, then fail the catch-up when the start position is not where a record starts.
  if (options.hasAll() && !readablePosition(log, options.getAll()!)) return fail(call, invalidPosition());
  const { history, live } = subscriptionScope(log, options);
  const isAll = options.hasAll();
  // History and the live hook-up happen in the same tick, so no append can fall between them.
  for (const event of history.filter(filter)) call.write(readEvent(event, isAll));
  const caughtUp = new streamsPb.ReadResp();
  caughtUp.setCaughtUp(new streamsPb.ReadResp.CaughtUp());
  call.write(caughtUp);
  const unlisten = log.listen((event) => {
    if (live(event) && filter(event)) call.write(readEvent(event, isAll));
  });
  const stopClose = log.onClose(() => fail(call, grpcError(status.UNAVAILABLE, 'stand-in stopped')));
  const end = () => {
    unlisten();
    stopClose();
  };
  call.on('cancelled', end);
  call.on('close', end);
  call.on('error', end);
}

/** What a subscription replays (strictly after its start, as the server does) and which new events it takes. */
function subscriptionScope(log: InMemoryLog, options: ReadReq.Options): { history: StandInEvent[]; live: Predicate } {
  if (options.hasAll()) {
    const all = options.getAll()!;
    if (all.hasEnd()) return { history: [], live: () => true };
    const after = all.hasStart() ? undefined : BigInt(all.getPosition()!.getCommitPosition());
    return { history: log.all.filter((e) => after === undefined || e.position > after), live: () => true };
  }
  const streamOptions = options.getStream()!;
  const streamId = streamName(streamOptions.getStreamIdentifier()!);
  const live: Predicate = (e) => e.streamId === streamId;
  const stream = log.stream(streamId) ?? [];
  if (streamOptions.hasEnd()) return { history: [], live };
  const after = streamOptions.hasStart() ? -1n : BigInt(streamOptions.getRevision());
  return { history: stream.filter((e) => e.revision > after), live };
}

/** Stream-name or event-type filter of a $all read, by prefixes or by regex. */
function filterOf(options: ReadReq.Options): Predicate {
  if (!options.hasFilter()) return () => true;
  const filter = options.getFilter()!;
  const byStream = filter.hasStreamIdentifier();
  const expression = byStream ? filter.getStreamIdentifier()! : filter.getEventType();
  if (!expression) return () => true;
  const field = (e: StandInEvent) => (byStream ? e.streamId : e.type);
  const prefixes = expression.getPrefixList();
  if (prefixes.length > 0) return (e) => prefixes.some((p) => field(e).startsWith(p));
  let regex: RegExp;
  try {
    regex = new RegExp(expression.getRegex());
  } catch {
    throw grpcError(status.INVALID_ARGUMENT, `invalid filter regex: ${expression.getRegex()}`);
  }
  return (e) => regex.test(field(e));
}

function readEvent(event: StandInEvent, fromAll: boolean): ReadResp {
  const readEventMsg = new streamsPb.ReadResp.ReadEvent();
  readEventMsg.setEvent(recordedEvent(new streamsPb.ReadResp.ReadEvent.RecordedEvent(), event));
  if (fromAll) readEventMsg.setCommitPosition(event.position.toString());
  else readEventMsg.setNoPosition(new sharedPb.Empty());
  const resp = new streamsPb.ReadResp();
  resp.setEvent(readEventMsg);
  return resp;
}

/** Fills either protocol's RecordedEvent message (streams and persistent subscriptions share the shape). */
function recordedEvent<
  R extends {
    setId(v: InstanceType<typeof sharedPb.UUID>): R;
    setStreamIdentifier(v: InstanceType<typeof sharedPb.StreamIdentifier>): R;
    setStreamRevision(v: string): R;
    setCommitPosition(v: string): R;
    setPreparePosition(v: string): R;
    setData(v: Uint8Array): R;
    setCustomMetadata(v: Uint8Array): R;
    getMetadataMap(): { set(k: string, v: string): unknown };
  },
>(message: R, event: StandInEvent): R {
  const id = new sharedPb.UUID();
  id.setString(event.id);
  const identifier = new sharedPb.StreamIdentifier();
  identifier.setStreamName(utf8.encode(event.streamId));
  message
    .setId(id)
    .setStreamIdentifier(identifier)
    .setStreamRevision(event.revision.toString())
    .setCommitPosition(event.position.toString())
    .setPreparePosition(event.position.toString())
    .setData(event.data)
    .setCustomMetadata(event.customMetadata);
  const metadata = message.getMetadataMap();
  metadata.set('type', event.type);
  metadata.set('content-type', event.contentType);
  metadata.set('created', event.createdTicks.toString());
  return message;
}

function readablePosition(log: InMemoryLog, options: ReadReq.Options.AllOptions): boolean {
  return !options.hasPosition() || log.isReadablePosition(BigInt(options.getPosition()!.getCommitPosition()));
}

/** What the server answers for a position in the middle of a record. */
function invalidPosition(): ServiceError {
  return grpcError(status.INVALID_ARGUMENT, 'Trying to read from an invalid position.');
}

function notFound(call: ServerWritableStream<ReadReq, ReadResp>, identifier: InstanceType<typeof sharedPb.StreamIdentifier>): void {
  const notFoundMsg = new streamsPb.ReadResp.StreamNotFound();
  notFoundMsg.setStreamIdentifier(identifier);
  const resp = new streamsPb.ReadResp();
  resp.setStreamNotFound(notFoundMsg);
  call.write(resp);
  call.end();
}

// ---------------------------------------------------------------------------------------------------------------
// Persistent subscriptions to $all

type Consumer = {
  call: ServerDuplexStream<PsReadReq, PsReadResp>;
  bufferSize: number;
  inFlight: Map<string, Delivery>;
};
type Delivery = { event: StandInEvent; retryCount: number };

type Group = {
  info: Omit<PersistentGroupInfo, 'consumers' | 'parked'>;
  filter: Predicate;
  maxRetryCount: number;
  /** Index into the log of the next event the group has not yet dispatched. */
  cursor: number;
  /** Events waiting for a consumer with room: retries first, then the log from `cursor`. */
  retries: Delivery[];
  consumers: Consumer[];
  nextConsumer: number;
  parked: Delivery[];
};

class PersistentGroups {
  private readonly groups = new Map<string, Group>();

  constructor(private readonly log: InMemoryLog) {
    log.listen(() => {
      for (const group of this.groups.values()) this.dispatch(group);
    });
  }

  create(request: PsCreateReq, callback: sendUnaryData<PsCreateResp>): void {
    const options = request.getOptions();
    const name = options?.getGroupName() ?? '';
    const all = options?.getAll();
    if (!options || !all) return callback(grpcError(status.UNIMPLEMENTED, 'the stand-in only has persistent subscriptions to $all'));
    if (this.groups.has(name)) {
      return callback(grpcError(status.ALREADY_EXISTS, `subscription group ${name} on $all exists`, 'persistent-subscription-exists', { 'subscription-group': name, 'stream-name': '$all' }));
    }
    const settings = options.getSettings();
    const cursor = all.hasEnd()
      ? this.log.all.length
      : all.hasPosition()
        ? this.log.all.findIndex((e) => e.position >= BigInt(all.getPosition()!.getCommitPosition()))
        : 0;
    const strategies = ['DispatchToSingle', 'RoundRobin', 'Pinned'] as const;
    this.groups.set(name, {
      info: {
        consumerStrategy: strategies[settings?.getNamedConsumerStrategy() ?? 1] ?? 'RoundRobin',
        resolveLinks: settings?.getResolveLinks() ?? false,
        maxRetryCount: settings?.getMaxRetryCount() ?? 10,
        messageTimeoutMs: settings?.getMessageTimeoutMs() ?? 30_000,
        streamPrefixes: all.getFilter()?.getStreamIdentifier()?.getPrefixList() ?? [],
        startFrom: all.hasEnd() ? 'end' : all.hasPosition() ? BigInt(all.getPosition()!.getCommitPosition()) : 'start',
      },
      filter: all.hasFilter() ? persistentFilter(all.getFilter()!) : () => true,
      maxRetryCount: settings?.getMaxRetryCount() ?? 10,
      cursor: cursor < 0 ? this.log.all.length : cursor,
      retries: [],
      consumers: [],
      nextConsumer: 0,
      parked: [],
    });
    callback(null, new persistentPb.CreateResp());
  }

  info(name: string): PersistentGroupInfo | undefined {
    const group = this.groups.get(name);
    return group && { ...group.info, consumers: group.consumers.length, parked: group.parked.length };
  }

  delete(request: PsDeleteReq, callback: sendUnaryData<PsDeleteResp>): void {
    const name = request.getOptions()?.getGroupName() ?? '';
    const group = this.groups.get(name);
    if (!group) {
      return callback(grpcError(status.NOT_FOUND, `subscription group ${name} on $all does not exist`, 'persistent-subscription-does-not-exist', { 'subscription-group': name, 'stream-name': '$all' }));
    }
    this.groups.delete(name);
    // Its consumers are dropped, as the server drops them.
    for (const consumer of group.consumers) fail(consumer.call, grpcError(status.CANCELLED, `subscription group ${name} was deleted`, 'persistent-subscription-dropped'));
    callback(null, new persistentPb.DeleteResp());
  }

  connect(call: ServerDuplexStream<PsReadReq, PsReadResp>): void {
    let consumer: Consumer | undefined;
    let group: Group | undefined;
    call.on('data', (req: PsReadReq) => {
      if (req.hasOptions()) {
        const options = req.getOptions()!;
        const name = options.getGroupName();
        group = this.groups.get(name);
        if (!group) {
          return fail(call, grpcError(status.NOT_FOUND, `subscription group ${name} on $all does not exist`, 'persistent-subscription-does-not-exist', { 'subscription-group': name, 'stream-name': '$all' }));
        }
        consumer = { call, bufferSize: Math.max(1, options.getBufferSize()), inFlight: new Map() };
        group.consumers.push(consumer);
        const confirmation = new persistentPb.ReadResp.SubscriptionConfirmation();
        confirmation.setSubscriptionId(`$all::${name}`);
        const resp = new persistentPb.ReadResp();
        resp.setSubscriptionConfirmation(confirmation);
        call.write(resp);
        this.dispatch(group);
      } else if (consumer && group && req.hasAck()) {
        for (const id of req.getAck()!.getIdsList()) consumer.inFlight.delete(uuidOf(id));
        this.dispatch(group);
      } else if (consumer && group && req.hasNack()) {
        const nack = req.getNack()!;
        for (const id of nack.getIdsList()) this.settleNack(group, consumer, uuidOf(id), nack.getAction());
        this.dispatch(group);
      }
    });
    const leave = () => {
      if (!group || !consumer) return;
      group.consumers = group.consumers.filter((c) => c !== consumer);
      // What the consumer held goes back to the group, as when a real consumer disconnects.
      group.retries.unshift(...consumer.inFlight.values());
      consumer.inFlight.clear();
      const g = group;
      consumer = undefined;
      this.dispatch(g);
    };
    const stopClose = this.log.onClose(() => fail(call, grpcError(status.UNAVAILABLE, 'stand-in stopped')));
    call.on('end', () => {
      leave();
      call.end();
    });
    call.on('cancelled', leave);
    call.on('error', leave);
    call.on('close', () => {
      leave();
      stopClose();
    });
  }

  private settleNack(group: Group, consumer: Consumer, id: string, action: number): void {
    const delivery = consumer.inFlight.get(id);
    if (!delivery) return;
    consumer.inFlight.delete(id);
    if (action === NackAction.Skip) return;
    if (action === NackAction.Park || delivery.retryCount >= group.maxRetryCount) group.parked.push(delivery);
    else group.retries.push({ event: delivery.event, retryCount: delivery.retryCount + 1 });
  }

  /** Hands out waiting events round-robin to consumers that have room in their buffer. */
  private dispatch(group: Group): void {
    if (group.info.consumerStrategy === 'Pinned') return this.dispatchPinned(group);
    for (;;) {
      const consumer = this.consumerWithRoom(group);
      if (!consumer) return;
      const delivery = group.retries.shift() ?? this.nextFromLog(group);
      if (!delivery) return;
      consumer.inFlight.set(delivery.event.id, delivery);
      consumer.call.write(persistentEvent(delivery));
    }
  }

  /**
   * Pinned, as the server does it in spirit: each stream hashes to one consumer, so one stream's events go to one
   * consumer while membership is stable; an event whose consumer has no room waits (later events of other streams
   * go on). The server keeps sticky bucket assignments; a plain modulo is enough for a test double.
   */
  private dispatchPinned(group: Group): void {
    if (group.consumers.length === 0) return;
    for (let delivery = this.nextFromLog(group); delivery; delivery = this.nextFromLog(group)) group.retries.push(delivery);
    group.retries = group.retries.filter((delivery) => {
      const consumer = group.consumers[hashOf(delivery.event.streamId) % group.consumers.length]!;
      if (consumer.inFlight.size >= consumer.bufferSize) return true;
      consumer.inFlight.set(delivery.event.id, delivery);
      consumer.call.write(persistentEvent(delivery));
      return false;
    });
  }

  private consumerWithRoom(group: Group): Consumer | undefined {
    for (let i = 0; i < group.consumers.length; i++) {
      const consumer = group.consumers[(group.nextConsumer + i) % group.consumers.length]!;
      if (consumer.inFlight.size < consumer.bufferSize) {
        group.nextConsumer = (group.nextConsumer + i + 1) % group.consumers.length;
        return consumer;
      }
    }
    return undefined;
  }

  private nextFromLog(group: Group): Delivery | undefined {
    while (group.cursor < this.log.all.length) {
      const event = this.log.all[group.cursor++]!;
      if (group.filter(event)) return { event, retryCount: 0 };
    }
    return undefined;
  }
}

function persistentFilter(filter: PsCreateReq.AllOptions.FilterOptions): Predicate {
  const byStream = filter.hasStreamIdentifier();
  const expression = byStream ? filter.getStreamIdentifier() : filter.getEventType();
  if (!expression) return () => true;
  const field = (e: StandInEvent) => (byStream ? e.streamId : e.type);
  const prefixes = expression.getPrefixList();
  if (prefixes.length > 0) return (e) => prefixes.some((p) => field(e).startsWith(p));
  const regex = new RegExp(expression.getRegex());
  return (e) => regex.test(field(e));
}

function persistentEvent(delivery: Delivery): PsReadResp {
  const message = new persistentPb.ReadResp.ReadEvent();
  message.setEvent(recordedEvent(new persistentPb.ReadResp.ReadEvent.RecordedEvent(), delivery.event));
  message.setCommitPosition(delivery.event.position.toString());
  message.setRetryCount(delivery.retryCount);
  const resp = new persistentPb.ReadResp();
  resp.setEvent(message);
  return resp;
}

function hashOf(text: string): number {
  let hash = 2166136261;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 16777619) >>> 0;
  return hash;
}

function uuidOf(id: InstanceType<typeof sharedPb.UUID>): string {
  return id.getString();
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

function streamName(identifier: InstanceType<typeof sharedPb.StreamIdentifier>): string {
  return Buffer.from(identifier.getStreamName_asU8()).toString('utf8');
}

/**
 * A gRPC error as the server sends it: the client picks the specific error class from the `exception` trailer
 * (e.g. `persistent-subscription-exists`) and falls back to the status code.
 */
function grpcError(code: status, details: string, exception?: string, extra: Record<string, string> = {}): ServiceError {
  const metadata = new Metadata();
  if (exception) metadata.set('exception', exception);
  for (const [key, value] of Object.entries(extra)) metadata.set(key, value);
  return Object.assign(new Error(details), { code, details, metadata });
}

function fail(call: { emit(event: 'error', err: ServiceError): unknown }, err: ServiceError): void {
  call.emit('error', err);
}
