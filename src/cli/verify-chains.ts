/**
 * The integrity-chain half of `verify`: the event log's chains recomputed (src/application/audit/verify-chains.ts,
 * docs/audit.md) for one stream or every stream. `failed` when any event was altered, removed, inserted or
 * renumbered (events written before the chain existed are listed as unchained, not as failures).
 */
import { verifyChains } from '../application/audit/verify-chains.js';
import type { ChainReport } from '../application/audit/verify-chains.js';
import type { EventStore } from '../eventstore/eventstore.js';

export type ChainSection = { status: 'ok' | 'failed'; report: ChainReport };

export type ChainCheckOptions = { streamId?: string; onProgress?: (done: number, total?: number) => void };

export async function checkChains(store: EventStore, options: ChainCheckOptions): Promise<ChainSection> {
  const report = await verifyChains(store, {
    ...(options.streamId !== undefined ? { streamId: options.streamId } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  return { status: report.ok ? 'ok' : 'failed', report };
}
