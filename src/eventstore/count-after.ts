/**
 * How many events of some streams lie after a global position, counted up to a cap: what a subscriber
 * (a process manager, a projection) has yet to see. Positions are not counts (on EventStoreDB they are
 * byte offsets), so the events are read and counted; the cap keeps a scrape cheap when far behind.
 */
import type { EventStore } from './eventstore.js';

export const COUNT_CAP = 10_000;

export async function countEventsAfter(store: EventStore, after: bigint | undefined, streamPrefixes: readonly string[], cap = COUNT_CAP): Promise<number> {
  let n = 0;
  for await (const _event of store.readAll({ ...(after !== undefined ? { after } : {}), streamPrefixes, maxCount: cap })) {
    if (++n >= cap) break;
  }
  return n;
}
