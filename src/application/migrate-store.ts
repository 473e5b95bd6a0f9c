/**
 * `migrate --to <EventStoreDB>` (issue 12): every event of the embedded store copied into EventStoreDB, stream by
 * stream in global order, with its id, type, data and metadata verbatim; the target store writes the chainHash
 * itself, which equals the source's wherever the stream keeps its revisions.
 *
 * Resumable: after each page the global position of the last event copied is saved in a checkpoint file (written
 * atomically). A re-run starts after it; the first time it meets a stream it reads what the target already holds of
 * it, so an event copied after the last saved checkpoint (an interruption between the append and the save) is
 * recognised by its id and not copied twice, and each append carries the expected revision of the target stream,
 * so nothing is skipped or interleaved: a target stream written by anyone else fails the copy with a clear error.
 *
 * Revisions: a stream is copied from its first event, so a target stream's revisions are the source's. Streams the
 * embedded store keeps bounded (`keepLast`: process checkpoints) have lost their oldest events; they are copied from
 * their first event kept, numbered from 0 in the target, and the verification reports them as renumbered.
 *
 * Verified at the end: both stores read in global order side by side (memory bounded), every event compared (stream,
 * id, type, data, metadata, revision, and the chainHash the target wrote against the source's) and counted per
 * stream; then the target's integrity chains are recomputed (verifyChains).
 */
import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import type { EventStore, ExpectedRevision, RecordedEvent } from '../eventstore/eventstore.js';
import { readJsonFile, writeJsonFileAtomically } from '../json-file.js';
import { verifyChains } from './audit/verify-chains.js';
import type { ChainReport } from './audit/verify-chains.js';

const CheckpointSchema = Type.Object({ target: Type.String(), position: Type.String({ pattern: '^[0-9]+$' }), copied: Type.Integer({ minimum: 0 }), at: Type.String() });
const checkpointCheck = Compile(CheckpointSchema);
export type MigrateCheckpoint = { target: string; position: string; copied: number; at: string };

export function readCheckpoint(path: string): MigrateCheckpoint | undefined {
  const value = readJsonFile(path);
  if (value === undefined) return undefined;
  if (!checkpointCheck.Check(value)) throw new Error(`${path} is not a migration checkpoint (delete it to start again)`);
  return value;
}

function saveCheckpoint(path: string, checkpoint: MigrateCheckpoint): void {
  writeJsonFileAtomically(path, checkpoint);
}

export type MigrateOptions = {
  source: EventStore;
  target: EventStore;
  /** Names the target in the checkpoint (the connection string without its credentials): a checkpoint of another target is refused. */
  targetName: string;
  checkpointPath: string;
  /** Events per page (one checkpoint save per page); default 500. */
  pageSize?: number;
  /** Total events to copy (for progress), if known. */
  onProgress?: (copied: number) => void;
  signal?: AbortSignal;
};

/**
 * `copied`: events of the source now in the target through this migration (all runs); `appended`: appended by this
 * run; `skipped`: found already in the target past the checkpoint (an earlier run appended them, then stopped).
 */
export type MigrateResult = { copied: number; appended: number; skipped: number; resumedAfter?: string; position?: string };

type StreamCursor = { next: bigint; known?: Set<string> };

async function cursorFor(target: EventStore, streamId: string): Promise<StreamCursor> {
  const existing = await target.readStream(streamId);
  if (existing.length === 0) return { next: 0n };
  const last = existing[existing.length - 1] as RecordedEvent;
  return { next: last.revision + 1n, known: new Set(existing.map((e) => e.id)) };
}

function expectedFor(cursor: StreamCursor): ExpectedRevision {
  return cursor.next === 0n ? 'no_stream' : cursor.next - 1n;
}

/** Copies every event after the checkpoint; see the file's comment. */
export async function migrateEvents(options: MigrateOptions): Promise<MigrateResult> {
  const { source, target } = options;
  const checkpoint = readCheckpoint(options.checkpointPath);
  if (checkpoint && checkpoint.target !== options.targetName) {
    throw new Error(`${options.checkpointPath} is the checkpoint of a migration to ${checkpoint.target}, not ${options.targetName}: delete it to start again`);
  }
  const pageSize = options.pageSize ?? 500;
  const cursors = new Map<string, StreamCursor>();
  let after = checkpoint ? BigInt(checkpoint.position) : undefined;
  let copied = checkpoint?.copied ?? 0;
  let skipped = 0;
  let appended = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    const page: RecordedEvent[] = [];
    for await (const e of source.readAll({ ...(after !== undefined ? { after } : {}), maxCount: pageSize })) page.push(e);
    if (page.length === 0) break;
    for (const e of page) {
      options.signal?.throwIfAborted();
      let cursor = cursors.get(e.streamId);
      if (!cursor) {
        cursor = await cursorFor(target, e.streamId);
        cursors.set(e.streamId, cursor);
      }
      if (cursor.known?.has(e.id)) {
        skipped++;
        copied++;
        continue;
      }
      cursor.known = undefined; // events come in order: once one is new, the rest of the stream is too
      await target.appendToStream(e.streamId, [{ id: e.id, type: e.type, data: e.data, metadata: e.metadata }], { expectedRevision: expectedFor(cursor) });
      cursor.next++;
      copied++;
      appended++;
    }
    after = (page[page.length - 1] as RecordedEvent).position;
    saveCheckpoint(options.checkpointPath, { target: options.targetName, position: after.toString(), copied, at: new Date().toISOString() });
    options.onProgress?.(copied);
    if (page.length < pageSize) break;
  }
  return { copied, appended, skipped, ...(checkpoint ? { resumedAfter: checkpoint.position } : {}), ...(after !== undefined ? { position: after.toString() } : {}) };
}

export type MigrationDifference = { streamId: string; eventId?: string; revision?: string; problem: string };

export type MigrationReport = {
  ok: boolean;
  events: number;
  streams: number;
  /** Streams the source keeps bounded, copied from their first event kept and numbered from 0 in the target. */
  renumbered: string[];
  differences: MigrationDifference[];
  /** Per stream: events in the source and in the target (only the streams that differ, to keep it short). */
  counts: Array<{ streamId: string; source: number; target: number }>;
  /** The target's integrity chains recomputed (docs/audit.md). */
  chains: ChainReport;
};

const json = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));

/**
 * One event of each store. The target store writes each event's chainHash itself (src/eventstore/chain-hash.ts), from
 * the same content, revision and previous hash: in a stream copied from revision 0 it must therefore equal the
 * source's, which checks that the whole chain came across. A renumbered (bounded) stream's chain starts afresh at
 * revision 0 in the target, and an event written before the chain existed has none in the source: their metadata is
 * compared without it.
 */
function compareEvent(a: RecordedEvent, b: RecordedEvent, renumbered: boolean): string | undefined {
  if (a.streamId !== b.streamId) return `in ${b.streamId} in the target`;
  if (a.id !== b.id) return `event ${b.id} in the target at this place`;
  if (a.type !== b.type) return `type ${b.type} in the target`;
  if (json(a.data) !== json(b.data)) return 'data differs';
  const { chainHash: sourceHash, ...sourceMetadata } = a.metadata;
  const { chainHash: targetHash, ...targetMetadata } = b.metadata;
  if (json(sourceMetadata) !== json(targetMetadata)) return 'metadata differs';
  if (!renumbered && sourceHash !== undefined && sourceHash !== targetHash) return "chainHash differs: the target's chain is not the source's";
  return undefined;
}

/** Both stores in global order, side by side: every event equal, counted per stream. */
export async function verifyMigration(source: EventStore, target: EventStore, maxListed = 50): Promise<MigrationReport> {
  const differences: MigrationDifference[] = [];
  const perStream = new Map<string, { source: number; target: number; first?: bigint; offset?: bigint }>();
  const note = (d: MigrationDifference) => void (differences.length < maxListed && differences.push(d));
  const renumbered: string[] = [];
  const a = source.readAll()[Symbol.asyncIterator]();
  const b = target.readAll()[Symbol.asyncIterator]();
  let events = 0;
  let failed = false;
  for (;;) {
    const [x, y] = await Promise.all([a.next(), b.next()]);
    if (x.done && y.done) break;
    if (!x.done) {
      events++;
      const s = perStream.get(x.value.streamId) ?? { source: 0, target: 0 };
      if (s.source === 0 && x.value.revision !== 0n) renumbered.push(x.value.streamId);
      s.offset ??= x.value.revision;
      s.source++;
      perStream.set(x.value.streamId, s);
    }
    if (!y.done) {
      const s = perStream.get(y.value.streamId) ?? { source: 0, target: 0 };
      s.target++;
      perStream.set(y.value.streamId, s);
    }
    if (x.done || y.done) {
      failed = true;
      const e = (x.done ? y.value : x.value) as RecordedEvent;
      note({ streamId: e.streamId, eventId: e.id, revision: e.revision.toString(), problem: x.done ? 'in the target only' : 'not in the target' });
      continue;
    }
    const offset = perStream.get(x.value.streamId)?.offset ?? 0n;
    const problem = compareEvent(x.value, y.value, offset !== 0n);
    const revisionProblem = problem === undefined && x.value.revision - offset !== y.value.revision ? `revision ${y.value.revision} in the target, ${x.value.revision - offset} expected` : undefined;
    if (problem ?? revisionProblem) {
      failed = true;
      note({ streamId: x.value.streamId, eventId: x.value.id, revision: x.value.revision.toString(), problem: (problem ?? revisionProblem) as string });
    }
  }
  const counts = [...perStream].filter(([, c]) => c.source !== c.target).map(([streamId, c]) => ({ streamId, source: c.source, target: c.target }));
  const chains = await verifyChains(target);
  return { ok: !failed && counts.length === 0 && chains.ok, events, streams: perStream.size, renumbered, differences, counts, chains };
}
