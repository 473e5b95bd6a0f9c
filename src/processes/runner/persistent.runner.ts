/**
 * The EventStoreDB runner: every instance of the service joins the same persistent subscription group (named after
 * the process) on $all, and the SERVER hands each event to one member of the group. Whatever the number of
 * instances, an event is handled by one of them; the server keeps the group's position, so no checkpoint stream
 * is needed.
 *
 * - Ack after the handler succeeded. On failure, wait a backoff that grows with the event's retry count, then
 *   nack with `retry`: the server hands it out again (perhaps to another instance) and PARKS it once its retry
 *   count reaches `maxRetryCount`. Parked events wait for an operator (EventStoreDB UI → Persistent
 *   Subscriptions → the group → Replay parked messages). The wait happens before the nack, so a failing event is
 *   not bounced through all its retries in a few milliseconds while Microsoft is down.
 * - An instance that dies (or loses its connection) mid-event never acks it: the server gives its unacknowledged
 *   events to the remaining members at once. `messageTimeoutMs` only matters for a member that is alive but stuck;
 *   it is long (10 min) because an activation legitimately takes minutes (retries with backoff, waiting for
 *   Microsoft to report Subscribed), and retrying a slow-but-working event elsewhere is exactly the double call we
 *   are avoiding.
 * - If the group's connection fails, the runner reconnects with backoff.
 *
 * Failure isolation: the catch-up runner's per-key queues (key-queues.ts) are not used here. The server's retry and
 * park ARE the isolation: a nacked event goes back to the group and the member handles its next delivery
 * meanwhile, so one failing event does not stop the others (but while this member waits out the backoff before a
 * nack, its next deliveries wait; `bufferSize` and the other members keep the group going). `ProcessHandler.keyOf`
 * is not used: ordering is by stream id (below). A `RetryLater` waits at least its `afterMs` before the nack; its
 * `until` is not enforced, the group's `maxRetryCount` parks it. Parked events are in EventStoreDB, not in
 * `/api/processes/parked`.
 *
 * Consumer strategy: `Pinned`. The server hashes the event's stream id to pick the member, so all events of one
 * stream (one SaaS subscription, one Microsoft operation) go to the same instance and, as the runner handles its
 * deliveries one at a time, in order — while the group's membership is stable. RoundRobin would spread one
 * subscription's events over instances and handle them concurrently and out of order. DispatchToSingle fills one
 * member's buffer, then the next: no ordering either. A single active consumer (EventStoreDB has none built in;
 * the lease mode is that) would keep a global order but leave the other instances idle and add a lease to the
 * failover path. Pinned's order is per stream and best-effort: when a member joins or leaves, the server moves
 * streams between members and retries what the leaver had in flight, and a nacked event comes back after later
 * ones. The handlers are written for that: they re-read the subscription's state (and Microsoft's) before any
 * outside call, dedupe by operation id, and record what they did as events, so a repeat or a late event is a
 * no-op rather than a second Microsoft call. (`PinnedByCorrelation` would pin by the correlation id, which is
 * per request, not per subscription, and the v6 client cannot create it.)
 *
 * Migrating from the catch-up runner: a NEW group starts at the process's `checkpoint-<name>` position when there
 * is one (the event at that position is handed over once more; handlers are idempotent), otherwise at the
 * beginning of $all. Settings of an EXISTING group are not changed by the service; update or recreate the group
 * to change them (see docs/several-instances.md).
 */
import { subscriptionOf } from './log-ids.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { readCheckpoint } from './checkpoints.js';
import type { EventStore } from '../../eventstore/eventstore.js';
import type { EsdbEventStore, PersistentDelivery, PersistentSubscriptionHandle } from '../../eventstore/esdb.store.js';
import type { Logger } from '../../logger.js';
import { RetryLater } from './types.js';
import type { PersistentRunnerOptions, ProcessHandler, RunnerOptions, RunningProcess } from './types.js';

export type { PersistentRunnerOptions } from './types.js';


/** The EventStoreDB store offers competing consumers; other stores (and wrappers) do not. */
export function hasPersistentSubscriptions(store: EventStore): store is EsdbEventStore {
  return store.kind === 'eventstoredb' && typeof (store as Partial<EsdbEventStore>).persistentSubscription === 'function';
}

export function startPersistentProcess(
  store: EsdbEventStore,
  handler: ProcessHandler,
  logger: Logger,
  options: RunnerOptions & { instanceId: string },
): RunningProcess {
  const { instanceId } = options;
  const settings = options.persistent ?? {};
  const group = settings.group ?? handler.name;
  const maxRetryCount = settings.maxRetryCount ?? 10;
  const log = logger.child({ component: 'process-runner', process: handler.name, group, instanceId });
  const stopSignal = new AbortController();
  let stopped = false;
  let subscribed = false;
  let subscription: PersistentSubscriptionHandle | undefined;
  let current: Promise<void> | undefined;
  // For idle(): what this instance has settled, and when it last had anything to do.
  let settledUpTo = 0n;
  let lastActivity = Date.now();
  const waiters = new Set<() => void>();

  const backoff = (retryCount: number) =>
    Math.min(options.retryMaxMs ?? 30_000, (options.retryBaseMs ?? 200) * 2 ** Math.min(retryCount, 10));

  const settle = (delivery: PersistentDelivery): Promise<void> =>
    settleDelivery(delivery, { handler, maxRetryCount, backoff, log, stopSignal: stopSignal.signal, noteSettled });

  const noteSettled = (position: bigint) => {
    if (position > settledUpTo) settledUpTo = position;
    lastActivity = Date.now();
    for (const wake of waiters) wake();
  };

  const loop = (async () => {
    for (let failures = 0; !stopped; ) {
      try {
        const checkpoint = await readCheckpoint(store, handler.name);
        if (stopped) return;
        subscription = store.persistentSubscription(group, {
          streamPrefixes: handler.streamPrefixes,
          startFrom: checkpoint ?? 'start',
          consumerStrategy: 'pinned',
          maxRetryCount,
          messageTimeoutMs: settings.messageTimeoutMs ?? 10 * 60_000,
          bufferSize: settings.bufferSize ?? 10,
        });
        subscribed = true;
        lastActivity = Date.now();
        log.info({ mode: 'persistent', consumerStrategy: 'pinned' }, 'process joined its persistent subscription group');
        for await (const delivery of subscription) {
          failures = 0;
          if (stopped) break; // unsettled deliveries go back to the group when the connection closes
          lastActivity = Date.now();
          current = settle(delivery);
          await current;
          current = undefined;
        }
        if (!stopped) throw new Error('the persistent subscription ended');
      } catch (err) {
        if (stopped) return;
        failures++;
        const delay = Math.min(30_000, (settings.reconnectMs ?? 500) * 2 ** Math.min(failures - 1, 10));
        log.warn({ err, retryInMs: delay }, 'persistent subscription failed; reconnecting');
        await subscription?.close().catch(() => undefined);
        await sleep(delay, undefined, { signal: stopSignal.signal }).catch(() => undefined);
      } finally {
        subscribed = false;
      }
    }
  })();

  const lastPosition = async (): Promise<bigint> => {
    let last = 0n;
    for await (const e of store.readAll({ after: settledUpTo, streamPrefixes: handler.streamPrefixes })) last = e.position;
    return last;
  };

  return {
    name: handler.name,
    mode: 'persistent',
    instanceId,
    active: () => subscribed && !stopped,
    /**
     * Best effort: other instances of the group may be handling the events. Resolves when this instance has settled
     * every event up to the last one that existed when called, or when it has had nothing in flight and nothing new
     * for `quietMs` (the group had nothing more for it).
     */
    async idle(quietMs = 300) {
      const target = await lastPosition();
      for (;;) {
        if (stopped || target === 0n || settledUpTo >= target) return;
        if (subscribed && !current && Date.now() - lastActivity >= quietMs) return;
        await new Promise<void>((resolve) => {
          const wake = () => {
            clearTimeout(timer);
            waiters.delete(wake);
            resolve();
          };
          const timer = setTimeout(wake, quietMs);
          waiters.add(wake);
        });
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      stopSignal.abort();
      await current; // finish (and ack) the event in hand
      await subscription?.close();
      await loop;
      for (const wake of waiters) wake();
    },
  };
}

type Settling = {
  handler: ProcessHandler;
  maxRetryCount: number;
  backoff: (retryCount: number) => number;
  log: Logger;
  stopSignal: AbortSignal;
  noteSettled: (position: bigint) => void;
};

/** Handles one delivery: ack on success; on failure wait the backoff, then nack (the server parks it after the last retry). */
async function settleDelivery(delivery: PersistentDelivery, s: Settling): Promise<void> {
  const { event, retryCount } = delivery;
  const where = { eventType: event.type, streamId: event.streamId, ...subscriptionOf(event), position: event.position.toString(), retryCount };
  try {
    await s.handler.handle(event);
  } catch (err) {
    const last = retryCount >= s.maxRetryCount;
    // A RetryLater asks for at least its `afterMs`; its `until` is not enforced here: the server's maxRetryCount bounds it.
    const delay = last ? 0 : Math.max(s.backoff(retryCount), err instanceof RetryLater ? (err.options.afterMs ?? 0) : 0);
    if (last) s.log.error({ err, ...where }, 'handler failed on the last retry: the server parks the event for an operator to replay');
    else if (err instanceof RetryLater) s.log.warn({ err, ...where, retryInMs: delay, until: err.options.until }, 'handler cannot handle the event now (RetryLater); it goes back to the group after a backoff');
    else s.log.error({ err, ...where, retryInMs: delay }, 'handler failed; the event goes back to the group after a backoff');
    await sleep(delay, undefined, { signal: s.stopSignal }).catch(() => undefined);
    await delivery.nack(describe(err)).catch((nackErr: unknown) =>
      s.log.warn({ err: nackErr, ...where }, 'nack failed; the server hands the event out again when this connection ends'),
    );
    if (last) s.noteSettled(event.position);
    return;
  }
  try {
    await delivery.ack();
  } catch (err) {
    // The work is done and recorded; the server will hand the event out again and the handler will see that.
    s.log.warn({ err, ...where }, 'ack failed; the event will be delivered again and found already handled');
  }
  s.noteSettled(event.position);
}

function describe(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 500);
}
