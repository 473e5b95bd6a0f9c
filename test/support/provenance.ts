/** The events (of the streams with these prefixes, or all) that lack correlationId or causationId (docs/audit.md). */
import type { EventStore } from '../../src/eventstore/eventstore.js';

export async function missingProvenance(store: EventStore, streamPrefixes?: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for await (const e of store.readAll(streamPrefixes ? { streamPrefixes } : {})) {
    const { correlationId, causationId } = e.metadata;
    if (typeof correlationId !== 'string' || !correlationId || typeof causationId !== 'string' || !causationId) {
      missing.push(`${e.streamId} ${e.revision} ${e.type} ${JSON.stringify(e.metadata)}`);
    }
  }
  return missing;
}
