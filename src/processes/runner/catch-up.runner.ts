/**
 * The catch-up runner: subscribe to all events from the process's stored checkpoint, hand each event to the
 * handler in order, and advance the checkpoint. Right for ONE instance; with several, wrap it in a lease
 * (leased.runner.ts) or use EventStoreDB's competing consumers (persistent.runner.ts). startProcess (start.ts)
 * picks.
 *
 * Handlers must be idempotent (a crash between handling and checkpointing replays the event); they re-check
 * recorded state before any outside call. A handler that throws is retried with backoff on the same event, so
 * nothing is skipped.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { EventStore, RecordedEvent, StoreSubscription } from '../../eventstore/eventstore.js';
import { readCheckpoint, saveCheckpoint } from './checkpoints.js';
import type { Logger } from '../../logger.js';
import type { ProcessHandler, RunnerOptions, RunningProcess } from './types.js';

export function startCatchUpProcess(
  store: EventStore,
  handler: ProcessHandler,
  logger: Logger,
  options: RunnerOptions & { instanceId: string },
): RunningProcess {
  const log = logger.child({ process: handler.name, instanceId: options.instanceId });
  const every = options.checkpointEvery ?? 50;
  const afterMs = options.checkpointAfterMs ?? 1000;
  let stopped = false;
  let crashed = false;
  let subscription: StoreSubscription | undefined;
  let handled: bigint | undefined;
  let saved: bigint | undefined;
  let unsaved = 0;
  let timer: NodeJS.Timeout | undefined;
  const waiters: Array<{ target: bigint; resolve: () => void }> = [];
  const stopSignal = new AbortController();

  const persist = async () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (handled === undefined || handled === saved) return;
    const position = handled;
    try {
      await saveCheckpoint(store, handler.name, position);
      saved = position;
      unsaved = 0;
    } catch (err) {
      log.warn({ err, position: position.toString() }, 'could not save checkpoint; events since the last one will be replayed');
    }
  };

  const settleWaiters = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i] as { target: bigint; resolve: () => void };
      if (handled !== undefined && handled >= w.target) {
        waiters.splice(i, 1);
        w.resolve();
      }
    }
  };

  const handleWithRetry = async (event: RecordedEvent) => {
    for (let attempt = 1; !stopped; attempt++) {
      try {
        await handler.handle(event);
        return;
      } catch (err) {
        const delay = Math.min(options.retryMaxMs ?? 30_000, (options.retryBaseMs ?? 200) * 2 ** Math.min(attempt - 1, 10));
        log.error(
          { err, attempt, retryInMs: delay, eventType: event.type, streamId: event.streamId, position: event.position.toString() },
          'handler failed; retrying the same event',
        );
        await sleep(delay, undefined, { signal: stopSignal.signal }).catch(() => undefined);
      }
    }
  };

  const loop = (async () => {
    const from = await readCheckpoint(store, handler.name);
    handled = from;
    saved = from;
    if (stopped) return;
    log.info({ from: from?.toString() ?? 'start', mode: 'catch-up' }, 'process started');
    subscription = store.subscribeToAll({ ...(from !== undefined ? { after: from } : {}), streamPrefixes: handler.streamPrefixes });
    if (stopped) await subscription.close();
    for await (const event of subscription) {
      await handleWithRetry(event);
      if (stopped) break;
      handled = event.position;
      unsaved++;
      settleWaiters();
      if (unsaved >= every) await persist();
      else timer ??= setTimeout(() => void persist(), afterMs);
    }
  })().catch((err: unknown) => {
    crashed = true;
    log.fatal({ err }, 'process stopped unexpectedly');
  });

  const lastPosition = async (): Promise<bigint> => {
    let last = 0n;
    for await (const e of store.readAll({ after: handled ?? 0n, streamPrefixes: handler.streamPrefixes })) last = e.position;
    return last;
  };

  return {
    name: handler.name,
    mode: 'catch-up',
    instanceId: options.instanceId,
    active: () => !stopped && !crashed,
    async idle() {
      const target = await lastPosition();
      if (target === 0n || (handled !== undefined && handled >= target)) return;
      await new Promise<void>((resolve) => waiters.push({ target, resolve }));
    },
    async stop() {
      stopped = true;
      stopSignal.abort();
      await subscription?.close();
      await loop;
      await persist();
      for (const w of waiters.splice(0)) w.resolve();
    },
  };
}
