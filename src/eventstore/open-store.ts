import type { StoreConfig } from '../config.js';
import type { EventStore } from './eventstore.js';
import { openSqliteStore } from './sqlite.store.js';
import type { Logger } from '../logger.js';

/** Open the configured store. The EventStoreDB client is loaded only when it is selected. */
export async function openStore(config: StoreConfig, logger: Logger): Promise<EventStore> {
  if (config.kind === 'sqlite') {
    const store = openSqliteStore({
      path: config.path,
      pollIntervalMs: config.pollIntervalMs,
      busyWaitMs: config.busyWaitMs,
      writeProbeIntervalMs: config.writeProbeIntervalMs,
      checkpointIntervalMs: config.checkpointIntervalMs,
      logger: logger.child({ component: 'eventstore' }),
    });
    logger.info({ store: 'sqlite', path: config.path }, 'event store open (embedded SQLite)');
    return store;
  }
  const { openEsdbStore } = await import('./esdb.store.js');
  const store = await openEsdbStore(config.connectionString, { logger });
  logger.info({ store: 'eventstoredb' }, 'event store open (EventStoreDB)');
  return store;
}
