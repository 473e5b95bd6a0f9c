/**
 * THE PLUG-IN POINT of the integrity chain in `verify` (issue 12 part A): `checkChains` is the one function the
 * command calls for the `chains` section of its report. Until part A's `verifyChains(store, { streamId, onProgress })`
 * is merged, it checks nothing and says so (`status: 'unavailable'`); it never pretends to have checked.
 *
 * At merge: import part A's verifyChains and return `{ status: report.ok ? 'ok' : 'failed', report }` from here.
 */
import type { EventStore } from '../eventstore/eventstore.js';

export type ChainSection =
  | { status: 'unavailable'; reason: string }
  | { status: 'ok' | 'failed'; report: unknown };

export type ChainCheckOptions = { streamId?: string; onProgress?: (done: number, total?: number) => void };

export async function checkChains(_store: EventStore, _options: ChainCheckOptions): Promise<ChainSection> {
  return { status: 'unavailable', reason: 'the integrity chain check (issue 12 part A, verifyChains) is not part of this build' };
}
