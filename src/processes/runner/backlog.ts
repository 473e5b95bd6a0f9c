/**
 * A process manager's backlog: the events of its streams after its stored checkpoint (checkpoints.ts), which
 * the catch-up and lease modes save every few events or about a second. The persistent mode (EventStoreDB)
 * keeps its position on the server, so it has no backlog here.
 */
import { countEventsAfter } from '../../eventstore/count-after.js';
import type { EventStore } from '../../eventstore/eventstore.js';
import { readCheckpoint } from './checkpoints.js';
import type { ProcessHandler, RunningProcess } from './types.js';

export type BacklogSource = { handler: Pick<ProcessHandler, 'name' | 'streamPrefixes'>; process: Pick<RunningProcess, 'mode'> };

export async function backlogOf(store: EventStore, sources: readonly BacklogSource[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const { handler, process } of sources) {
    if (process.mode === 'persistent') continue;
    out.set(handler.name, await countEventsAfter(store, await readCheckpoint(store, handler.name), handler.streamPrefixes));
  }
  return out;
}
