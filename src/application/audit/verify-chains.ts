/**
 * Recomputes the integrity chains of the event log (src/eventstore/chain-hash.ts; docs/audit.md) and names every
 * event that was altered, removed or inserted behind the store's back.
 *
 * - One stream (`streamId`: read with readStream in pages) or every stream (readAll, one pass in global order).
 *   Memory: the events are streamed; what is kept is one small entry per stream seen (its last revision and the
 *   last two hashes, ~200 bytes) and the problems found (at most MAX_LISTED, then only counted).
 * - Each event's chainHash is recomputed from its content and the STORED hash of the event before it, so one
 *   altered event is named alone; the events after it still verify against its (unchanged) stored hash.
 * - A revision missing from a stream is a removed event; an event whose hash matches its content at another
 *   revision was renumbered (events were inserted or removed before it and the rest shifted to hide it).
 * - Events written before the chain existed carry no chainHash: "unchained before revision N", not a problem.
 *   An event without a hash AFTER chained ones is one (inserted, or its hash stripped).
 * - A stream appended with `keepLast` loses its older events by design: its chain starts at the first event kept
 *   (the store records `keepLast` in that event's metadata, inside the hash). Any other stream whose first event
 *   is not revision 0 lost its beginning.
 * - `anchors` (head hashes exported earlier, chainHeads below) catch what the chain alone cannot: the truncation
 *   of a stream's last events, or a rewrite of its whole tail with fresh hashes.
 *
 * The report is JSON-serialisable: revisions as decimal strings.
 */
import { GENESIS_HASH, chainHash, storedChainHash } from '../../eventstore/chain-hash.js';
import type { EventStore, RecordedEvent } from '../../eventstore/eventstore.js';

export type ChainProblemKind = 'altered' | 'removed' | 'inserted' | 'renumbered' | 'unchained' | 'truncated';

export type ChainProblem = {
  streamId: string;
  /** The event's revision (for `removed`: the first missing one; for `truncated`: the anchored revision). */
  revision: string;
  /** The event named; absent when the event is gone (removed, truncated). */
  eventId?: string;
  kind: ChainProblemKind;
  detail: string;
};

/** A stream whose first events were written before the chain: they cannot be checked. */
export type UnchainedStream = { streamId: string; beforeRevision: string };

/** One stream's last event and its hash: what an ISV anchors elsewhere (docs/audit.md). */
export type ChainHead = { streamId: string; revision: string; eventId: string; chainHash: string | null; recordedAt: string };

export type ChainReport = {
  /** No problem found (unchained legacy events are not problems). */
  ok: boolean;
  /** The stream checked, when one was asked for. */
  streamId?: string;
  streams: number;
  events: number;
  /** Events whose chainHash was recomputed and matched. */
  verified: number;
  problems: ChainProblem[];
  /** Problems found in all, also those past the listing limit. */
  problemCount: number;
  unchained: UnchainedStream[];
  unchainedCount: number;
  /** Streams bounded with keepLast whose chain starts after revision 0 (their older events are gone by design). */
  pruned: number;
  /** Anchors given, and how many matched the stored hash. */
  anchors: number;
  anchorsMatched: number;
  startedAt: string;
  finishedAt: string;
};

export type VerifyChainsOptions = {
  streamId?: string;
  /** Called with the number of events checked so far, every PROGRESS_EVERY events and at the end. */
  onProgress?: (done: number) => void;
  /** Head hashes kept elsewhere: each must still be in its stream, at its revision, with its hash. */
  anchors?: readonly Pick<ChainHead, 'streamId' | 'revision' | 'chainHash'>[];
};

/** The most problems (and unchained streams) listed by name; the counts go on. */
export const MAX_LISTED = 10_000;
const PROGRESS_EVERY = 1_000;
const PAGE = 500;

type StreamState = { revision: bigint; hash: string | undefined; before: string | undefined; chained: boolean };

class ChainCheck {
  private readonly streams = new Map<string, StreamState>();
  private readonly anchors = new Map<string, { revision: bigint; hash: string | null; seen: boolean }>();
  readonly report: ChainReport;

  constructor(streamId: string | undefined, anchors: VerifyChainsOptions['anchors']) {
    this.report = {
      ok: true,
      ...(streamId !== undefined ? { streamId } : {}),
      streams: 0,
      events: 0,
      verified: 0,
      problems: [],
      problemCount: 0,
      unchained: [],
      unchainedCount: 0,
      pruned: 0,
      anchors: 0,
      anchorsMatched: 0,
      startedAt: new Date().toISOString(),
      finishedAt: '',
    };
    for (const a of anchors ?? []) {
      if (streamId !== undefined && a.streamId !== streamId) continue;
      this.anchors.set(a.streamId, { revision: BigInt(a.revision), hash: a.chainHash, seen: false });
    }
    this.report.anchors = this.anchors.size;
  }

  private problem(p: ChainProblem): void {
    this.report.ok = false;
    this.report.problemCount++;
    if (this.report.problems.length < MAX_LISTED) this.report.problems.push(p);
  }

  private named(e: RecordedEvent, kind: ChainProblemKind, detail: string): void {
    this.problem({ streamId: e.streamId, revision: e.revision.toString(), eventId: e.id, kind, detail });
  }

  check(e: RecordedEvent): void {
    this.report.events++;
    const stored = storedChainHash(e.metadata);
    const state = this.streams.get(e.streamId);
    if (!state) this.first(e, stored);
    else this.next(e, stored, state);
    this.anchored(e, stored);
  }

  private first(e: RecordedEvent, stored: string | undefined): void {
    this.report.streams++;
    this.streams.set(e.streamId, { revision: e.revision, hash: stored, before: undefined, chained: stored !== undefined });
    if (stored === undefined) return; // written before the chain: listed when the chain starts, or at the end
    if (e.revision === 0n) {
      this.link(e, stored, GENESIS_HASH, undefined);
      return;
    }
    if (typeof e.metadata.keepLast === 'number') {
      this.report.pruned++; // a bounded stream: the chain starts at its first kept event, whose link cannot be checked
      return;
    }
    this.problem({
      streamId: e.streamId,
      revision: '0',
      kind: 'removed',
      detail: `the stream starts at revision ${e.revision} (event ${e.id}): revisions 0 to ${e.revision - 1n} are missing`,
    });
  }

  private next(e: RecordedEvent, stored: string | undefined, state: StreamState): void {
    const previous = state.revision;
    if (e.revision <= previous) {
      this.named(e, 'inserted', `revision ${e.revision} comes after revision ${previous} in the stream: a second event at a revision already seen, or out of order`);
      return;
    }
    const gap = e.revision > previous + 1n;
    if (gap) {
      const first = previous + 1n;
      const last = e.revision - 1n;
      this.problem({
        streamId: e.streamId,
        revision: first.toString(),
        kind: 'removed',
        detail: first === last ? `revision ${first} is missing (removed); the next event is ${e.id}` : `revisions ${first} to ${last} are missing (removed); the next event is ${e.id}`,
      });
    }
    const previousHash = state.hash;
    const beforePrevious = state.before;
    state.before = gap ? undefined : previousHash;
    state.revision = e.revision;
    state.hash = stored;
    if (stored === undefined) {
      if (state.chained) this.named(e, 'unchained', 'no chainHash, although events before it in the stream have one: inserted, or its hash was removed');
      return;
    }
    if (!state.chained) {
      state.chained = true;
      this.listUnchained(e.streamId, e.revision);
    }
    // After a gap the predecessor is gone: the link cannot be checked (the removal is reported above).
    if (gap) return;
    this.link(e, stored, previousHash ?? GENESIS_HASH, beforePrevious);
  }

  /**
   * Recomputes the event's hash from its content and the stored hash before it. When that fails, two cheap
   * guesses tell a renumbered event (content intact, revision shifted by one) from an altered one.
   */
  private link(e: RecordedEvent, stored: string, previous: string, beforePrevious: string | undefined): void {
    const content = { id: e.id, streamId: e.streamId, type: e.type, data: e.data, metadata: e.metadata };
    const at = (prev: string, revision: bigint): boolean => chainHash(prev, { ...content, revision }) === stored;
    if (at(previous, e.revision)) {
      this.report.verified++;
      return;
    }
    const up = e.revision - 1n;
    if (at(previous, up) || (beforePrevious !== undefined && at(beforePrevious, up))) {
      this.named(e, 'renumbered', `its hash matches its content at revision ${up}: it was moved up by one, an event was inserted before it`);
      return;
    }
    if (at(previous, e.revision + 1n)) {
      this.named(e, 'renumbered', `its hash matches its content at revision ${e.revision + 1n}: it was moved down by one, an event before it was removed`);
      return;
    }
    this.named(e, 'altered', "its chainHash does not match its content and the previous event's hash: its data, type or metadata was changed, it was inserted here, or the event before it was rewritten");
  }

  private listUnchained(streamId: string, revision: bigint): void {
    this.report.unchainedCount++;
    if (this.report.unchained.length < MAX_LISTED) this.report.unchained.push({ streamId, beforeRevision: revision.toString() });
  }

  private anchored(e: RecordedEvent, stored: string | undefined): void {
    const anchor = this.anchors.get(e.streamId);
    if (!anchor || anchor.revision !== e.revision) return;
    anchor.seen = true;
    if ((stored ?? null) === anchor.hash) this.report.anchorsMatched++;
    else this.named(e, 'altered', `the anchored hash of revision ${e.revision} is ${anchor.hash ?? 'none'}, the stored one ${stored ?? 'none'}: the stream was rewritten from here or earlier`);
  }

  finish(): ChainReport {
    for (const [streamId, state] of this.streams) {
      if (!state.chained) this.listUnchained(streamId, state.revision + 1n);
    }
    for (const [streamId, anchor] of this.anchors) {
      if (anchor.seen) continue;
      const last = this.streams.get(streamId)?.revision;
      this.problem({
        streamId,
        revision: anchor.revision.toString(),
        kind: 'truncated',
        detail: last === undefined ? `the anchored revision ${anchor.revision} is gone: the stream has no events` : `the anchored revision ${anchor.revision} is gone: the stream now ends at revision ${last}`,
      });
    }
    this.report.finishedAt = new Date().toISOString();
    return this.report;
  }
}

async function* streamEvents(store: EventStore, streamId: string): AsyncGenerator<RecordedEvent> {
  for (let from = 0n; ; ) {
    const page = await store.readStream(streamId, { fromRevision: from, maxCount: PAGE });
    yield* page;
    const last = page[page.length - 1];
    if (!last || page.length < PAGE) return;
    from = last.revision + 1n;
  }
}

/** Checks the chain of one stream (`streamId`) or of every stream in the store; see the file comment. */
export async function verifyChains(store: EventStore, options: VerifyChainsOptions = {}): Promise<ChainReport> {
  const check = new ChainCheck(options.streamId, options.anchors);
  const events = options.streamId !== undefined ? streamEvents(store, options.streamId) : store.readAll();
  for await (const e of events) {
    check.check(e);
    if (check.report.events % PROGRESS_EVERY === 0) options.onProgress?.(check.report.events);
  }
  options.onProgress?.(check.report.events);
  return check.finish();
}

/**
 * The last event of every stream (or of the streams starting with one of `streamPrefixes`) with its chainHash:
 * what an ISV exports periodically to storage nobody here can rewrite, and passes back as `anchors` (docs/audit.md).
 * One pass over readAll; memory grows with the number of streams, not events.
 */
export async function chainHeads(store: EventStore, options: { streamPrefixes?: readonly string[] } = {}): Promise<ChainHead[]> {
  const heads = new Map<string, ChainHead>();
  for await (const e of store.readAll(options.streamPrefixes ? { streamPrefixes: options.streamPrefixes } : {})) {
    heads.set(e.streamId, { streamId: e.streamId, revision: e.revision.toString(), eventId: e.id, chainHash: storedChainHash(e.metadata) ?? null, recordedAt: e.recordedAt });
  }
  return [...heads.values()].sort((a, b) => (a.streamId < b.streamId ? -1 : a.streamId > b.streamId ? 1 : 0));
}
