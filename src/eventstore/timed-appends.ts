/**
 * The store append latency, measured at the port: a decorator over any EventStore (SQLite or EventStoreDB)
 * that times `appendToStream` and reports its outcome to the metrics seam. Everything else is the store's
 * own: the decorator is a Proxy, so adapter-specific members (EventStoreDB's persistent subscriptions) stay
 * reachable and `kind` is unchanged.
 */
import type { AppendOutcome, Metrics } from '../metrics/metrics.js';
import { secondsSince } from '../metrics/metrics.js';
import { ConcurrencyError, StoreUnavailableError } from './eventstore.js';
import type { EventStore } from './eventstore.js';

export function timeAppends<S extends EventStore>(store: S, metrics: Pick<Metrics, 'storeAppend'>): S {
  const timed: EventStore['appendToStream'] = async (streamId, events, options) => {
    const started = performance.now();
    try {
      const result = await store.appendToStream(streamId, events, options);
      metrics.storeAppend('ok', secondsSince(started));
      return result;
    } catch (err) {
      metrics.storeAppend(outcomeOf(err), secondsSince(started));
      throw err;
    }
  };
  return new Proxy(store, {
    get(target, property) {
      if (property === 'appendToStream') return timed;
      const value: unknown = Reflect.get(target, property, target);
      // Methods run on the store itself (its private fields are not the proxy's).
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

function outcomeOf(err: unknown): AppendOutcome {
  if (err instanceof ConcurrencyError) return 'conflict';
  if (err instanceof StoreUnavailableError) return 'unavailable';
  return 'error';
}
