/**
 * The catch-up runner: subscribe to all events from the process's stored checkpoint, hand each event to the
 * handler, and advance the checkpoint. Right for ONE instance; with several, wrap it in a lease
 * (leased.runner.ts) or use EventStoreDB's competing consumers (persistent.runner.ts). startProcess (start.ts)
 * picks.
 *
 * Failure isolation (key-queues.ts): events are ordered by key (`ProcessHandler.keyOf`, default the stream id);
 * one key's events are handled one at a time and in order, up to `concurrency` keys at once. A failing event
 * holds only its key: it is retried after a backoff (a `RetryLater` until its deadline, another error a bounded
 * number of times, held.ts `afterFailure`) and then PARKED, and the key's later events wait behind it, while every
 * other key goes on. Held keys are saved with the checkpoint (checkpoints.ts), so after a restart retries
 * continue where they were and parked keys stay parked; an operator lists them and asks for a retry through
 * `/api/processes` (src/processes/parked.ts), the request reaching the runner through its `processctl-<name>`
 * stream.
 *
 * Handlers must be idempotent (a crash between handling and checkpointing replays the event, and an event
 * handled out of order past the checkpoint is handed over again after a restart); they re-check recorded state
 * before any outside call.
 */
import type { EventStore, RecordedEvent, StoreSubscription } from '../../eventstore/eventstore.js';
import type { Logger } from '../../logger.js';
import { readCheckpointRecord, saveCheckpoint } from './checkpoints.js';
import { controlStream, decodeRetryRequest, defaultFailurePolicy } from './held.js';
import type { FailurePolicy, HeldKey } from './held.js';
import { KeyQueues } from './key-queues.js';
import type { RestoredKey } from './key-queues.js';
import type { ProcessHandler, RunnerOptions, RunningProcess } from './types.js';

/** Received events neither handled nor held, per unit of concurrency, before the subscription waits. */
const UNSETTLED_PER_SLOT = 64;

export function failurePolicyOf(options: RunnerOptions): FailurePolicy {
  return {
    maxAttempts: Math.max(1, options.maxAttempts ?? defaultFailurePolicy.maxAttempts),
    retryBaseMs: options.retryBaseMs ?? defaultFailurePolicy.retryBaseMs,
    retryMaxMs: options.retryMaxMs ?? defaultFailurePolicy.retryMaxMs,
    retryLaterMaxMs: options.retryLaterMaxMs ?? defaultFailurePolicy.retryLaterMaxMs,
  };
}

export function startCatchUpProcess(
  store: EventStore,
  handler: ProcessHandler,
  logger: Logger,
  options: RunnerOptions & { instanceId: string },
): RunningProcess {
  const log = logger.child({ component: 'process-runner', process: handler.name, instanceId: options.instanceId });
  const every = options.checkpointEvery ?? 50;
  const afterMs = options.checkpointAfterMs ?? 1000;
  const concurrency = Math.max(1, options.concurrency ?? handler.concurrency ?? 4);
  const control = controlStream(handler.name);
  let stopped = false;
  let crashed = false;
  let subscription: StoreSubscription | undefined;
  let queues: KeyQueues | undefined;
  const saver = checkpointSaver(store, handler.name, log, { every, afterMs, queues: () => queues });
  const waiters: Array<{ target: bigint; resolve: () => void }> = [];

  const settleWaiters = () => {
    const at = queues?.watermark;
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i] as { target: bigint; resolve: () => void };
      if (at !== undefined && at >= w.target) {
        waiters.splice(i, 1);
        w.resolve();
      }
    }
  };

  const advanced = () => {
    settleWaiters();
    saver.advanced();
  };

  const applyControl = (event: RecordedEvent) => {
    const request = decodeRetryRequest(event);
    if (!request) log.warn({ eventType: event.type, position: event.position.toString() }, 'unknown or malformed operator request ignored');
    else if (!queues?.retry(request.key, request.actor)) {
      log.info({ key: request.key, actor: request.actor }, 'operator retry for a key that is not held (handled meanwhile, or retried already): nothing to do');
    }
    queues?.skip(event.position);
  };

  const loop = (async () => {
    const record = await readCheckpointRecord(store, handler.name);
    if (record?.problem) log.error({ problem: record.problem }, 'the held keys in the checkpoint could not be read; starting without them');
    const q = new KeyQueues(record?.position, {
      handler,
      policy: failurePolicyOf(options),
      concurrency,
      maxUnsettled: concurrency * UNSETTLED_PER_SLOT,
      log,
      changed: saver.changed,
      advanced,
    });
    queues = q;
    const restored = await readHeld(store, record?.held ?? [], log);
    if (stopped) return;
    q.restore(restored, Date.now());
    settleWaiters();
    const from = record?.position;
    log.info(
      { from: from?.toString() ?? 'start', heldKeys: restored.length, mode: 'catch-up', concurrency },
      restored.length > 0 ? 'process started; resuming held keys' : 'process started',
    );
    subscription = store.subscribeToAll({ ...(from !== undefined ? { after: from } : {}), streamPrefixes: [...handler.streamPrefixes, control] });
    if (stopped) await subscription.close();
    for await (const event of subscription) {
      if (stopped) break;
      if (event.streamId === control) applyControl(event);
      else if (handler.streamPrefixes.some((p) => event.streamId.startsWith(p))) q.add(event);
      else q.skip(event.position); // another process's control stream that shares the prefix
      await q.room();
    }
  })().catch((err: unknown) => {
    crashed = true;
    void queues?.stop();
    log.fatal({ err }, 'process stopped unexpectedly');
  });

  const lastPosition = async (): Promise<bigint> => {
    let last = 0n;
    const after = queues?.watermark ?? 0n;
    for await (const e of store.readAll({ after, streamPrefixes: [...handler.streamPrefixes, control] })) last = e.position;
    return last;
  };

  return {
    name: handler.name,
    mode: 'catch-up',
    instanceId: options.instanceId,
    active: () => !stopped && !crashed,
    async idle() {
      const target = await lastPosition();
      const at = queues?.watermark;
      if (target === 0n || (at !== undefined && at >= target)) return;
      await new Promise<void>((resolve) => waiters.push({ target, resolve }));
    },
    async stop() {
      stopped = true;
      const draining = queues?.stop();
      await subscription?.close();
      await loop;
      await draining;
      await queues?.stop(); // created after stop() was called
      await saver.close();
      for (const w of waiters.splice(0)) w.resolve();
    },
  };
}

/** The held keys' events, read back by reference; an event no longer in the store is dropped (and said so). */
async function readHeld(store: EventStore, held: readonly HeldKey[], log: Logger): Promise<RestoredKey[]> {
  const out: RestoredKey[] = [];
  for (const entry of held) {
    const events: RecordedEvent[] = [];
    for (const ref of entry.events) {
      const [event] = await store.readStream(ref.streamId, { fromRevision: BigInt(ref.revision), maxCount: 1 });
      if (event && event.revision === BigInt(ref.revision)) events.push(event);
      else log.warn({ key: entry.key, ...ref }, 'a held event is no longer in the store; it is dropped');
    }
    if (events.length > 0) out.push({ key: entry.key, events, ...(entry.failure ? { failure: entry.failure } : {}) });
  }
  return out;
}

/**
 * When to save the checkpoint: every change of what it would say (the watermark, the held keys) bumps a version;
 * a save happens after `every` watermark moves, `afterMs` after the first unsaved change, or at once for an
 * urgent change (an event parked, a retry requested). One save at a time, in order.
 */
function checkpointSaver(
  store: EventStore,
  name: string,
  log: Logger,
  o: { every: number; afterMs: number; queues: () => KeyQueues | undefined },
): { changed(urgent: boolean): void; advanced(): void; close(): Promise<void> } {
  let version = 0;
  let savedVersion = 0;
  let unsaved = 0;
  let saving: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;

  const saveNow = async () => {
    clearTimeout(timer);
    timer = undefined;
    const queues = o.queues();
    const position = queues?.watermark;
    if (!queues || position === undefined || version === savedVersion) return;
    const wrote = version;
    const held = queues.snapshot();
    unsaved = 0;
    try {
      await saveCheckpoint(store, name, position, held);
      savedVersion = wrote;
    } catch (err) {
      log.warn({ err, position: position.toString(), heldKeys: held.length }, 'could not save checkpoint; events since the last one will be replayed');
    }
  };
  const persist = (): Promise<void> => (saving = saving.then(saveNow));
  const changed = (urgent: boolean) => {
    version++;
    if (urgent) void persist();
    else timer ??= setTimeout(() => void persist(), o.afterMs);
  };
  return {
    changed,
    advanced() {
      changed(false);
      if (++unsaved >= o.every) void persist();
    },
    async close() {
      await persist();
      clearTimeout(timer);
    },
  };
}
