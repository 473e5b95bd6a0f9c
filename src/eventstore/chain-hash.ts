/**
 * The integrity chain over each stream's events (docs/audit.md).
 *
 * Every event the store appends gets `metadata.chainHash`:
 *
 *     chainHash = hex(SHA-256( previousHash + "\n" + canonicalJson(content) ))
 *     content   = { id, streamId, revision (decimal string), type, data, metadata without chainHash }
 *
 * - `previousHash` is the chainHash of the event before it in the same stream; GENESIS_HASH (64 zeros) for the
 *   first event of a stream, and for the first chained event after events written before the chain existed (they
 *   carry no chainHash: verification reports them as "unchained before revision N").
 * - `canonicalJson` is JSON with object keys sorted (by UTF-16 code units), no whitespace, numbers and strings as
 *   JSON.stringify writes them, and properties whose value is undefined left out, as JSON.stringify does: the
 *   serialisation of RFC 8785 (JCS) for the values we store. The same value read back from either store (after a
 *   JSON round trip) gives the same text, so anyone can recompute a hash from an export.
 * - The store computes it at append time, inside the append (SQLite: in the write transaction, reading only the
 *   previous event's hash; EventStoreDB: from the event at the expected revision, appended with that revision as
 *   expected). A chainHash given by the caller is replaced.
 *
 * This module is pure (node:crypto only): the stores and the verifier (src/application/audit) share it.
 */
import { createHash } from 'node:crypto';
import type { EventMetadata } from './eventstore.js';

/** The "previous hash" of a stream's first chained event. */
export const GENESIS_HASH = '0'.repeat(64);

/** What a chain hash covers: an event as stored, minus its position and time (which the store assigns). */
export type ChainContent = {
  id: string;
  streamId: string;
  revision: bigint;
  type: string;
  data: unknown;
  metadata: EventMetadata | undefined;
};

/** Deeper than this is taken for a cycle (JSON.stringify would overflow the stack on one). */
const MAX_DEPTH = 1000;

/** JSON with sorted keys and no whitespace; throws on values JSON cannot hold (bigint, cycles). */
export function canonicalJson(value: unknown): string {
  return write(value, 0) ?? 'null';
}

function write(value: unknown, depth: number): string | undefined {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    case 'bigint':
      throw new TypeError('canonicalJson: a bigint is not JSON (serialise it as a string)');
    default:
      break;
  }
  if (value === null) return 'null';
  if (depth > MAX_DEPTH) throw new TypeError('canonicalJson: a cyclic (or too deeply nested) value is not JSON');
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += `${i > 0 ? ',' : ''}${write(value[i], depth + 1) ?? 'null'}`;
    return `${out}]`;
  }
  const obj = value as Record<string, unknown>;
  if ('toJSON' in obj && typeof obj.toJSON === 'function') return write((obj.toJSON as () => unknown)(), depth + 1);
  let out = '{';
  for (const key of Object.keys(obj).sort()) {
    const text = write(obj[key], depth + 1);
    if (text !== undefined) out += `${out.length > 1 ? ',' : ''}${JSON.stringify(key)}:${text}`;
  }
  return `${out}}`;
}

/** The metadata a hash covers: everything but chainHash itself. */
export function hashedMetadata(metadata: EventMetadata | undefined): EventMetadata {
  const { chainHash: _ignored, ...rest } = metadata ?? {};
  return rest;
}

/** The chainHash of an event whose predecessor in the stream has `previousHash` (GENESIS_HASH for the first). */
export function chainHash(previousHash: string, content: ChainContent): string {
  const canonical = canonicalJson({
    id: content.id,
    streamId: content.streamId,
    revision: content.revision.toString(),
    type: content.type,
    data: content.data ?? null,
    metadata: hashedMetadata(content.metadata),
  });
  return createHash('sha256').update(previousHash).update('\n').update(canonical).digest('hex');
}

/** A stored chainHash, or undefined when the event carries none (written before the chain, or stripped). */
export function storedChainHash(metadata: EventMetadata | undefined): string | undefined {
  const hash = metadata?.chainHash;
  return typeof hash === 'string' && /^[0-9a-f]{64}$/.test(hash) ? hash : undefined;
}

/**
 * The metadata the store writes for one event: the caller's (its chainHash dropped), `keepLast` when the append
 * bounds its stream (so the verifier knows the stream's older events may be gone), and the new chainHash.
 */
export function chainedMetadata(
  previousHash: string,
  event: { id: string; streamId: string; revision: bigint; type: string; data: unknown; metadata: EventMetadata | undefined },
  keepLast: number | undefined,
): EventMetadata {
  const metadata: EventMetadata = { ...hashedMetadata(event.metadata), ...(keepLast !== undefined ? { keepLast } : {}) };
  return { ...metadata, chainHash: chainHash(previousHash, { ...event, metadata }) };
}
