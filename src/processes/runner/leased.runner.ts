/**
 * The lease runner: several instances of the service may share one store (two `npm start` on one SQLite file),
 * but only the instance holding the process's lease (lease.ts) runs it. While it holds the lease it runs the
 * ordinary catch-up runner from the shared checkpoint; when it loses the lease it stops that runner (the
 * in-flight event is finished, the checkpoint saved); when it gets the lease back it starts a fresh one from the
 * checkpoint. An instance taking over therefore continues where the last checkpoint is: events handled after it
 * are handed to the handler again, which re-checks recorded state and does not repeat a completed outside call.
 */
import type { EventStore } from '../../eventstore/eventstore.js';
import type { Logger } from '../../logger.js';
import { startCatchUpProcess } from './catch-up.runner.js';
import { ProcessLease } from './lease.js';
import type { ProcessHandler, RunnerOptions, RunningProcess } from './types.js';

export type LeasedProcess = RunningProcess & {
  /** The lease itself (tests, diagnostics). */
  readonly lease: ProcessLease;
};

export function startLeasedProcess(
  store: EventStore,
  handler: ProcessHandler,
  logger: Logger,
  options: RunnerOptions & { instanceId: string },
): LeasedProcess {
  const { instanceId } = options;
  const log = logger.child({ component: 'process-runner', process: handler.name, instanceId });
  let stopped = false;
  let inner: RunningProcess | undefined;
  // Starting and stopping the inner runner happen one after the other, never overlapping.
  let transition: Promise<void> = Promise.resolve();
  const enqueue = (step: () => Promise<void> | void) => {
    transition = transition.then(step).catch((err: unknown) => log.error({ err }, 'lease runner transition failed'));
    return transition;
  };

  const lease = new ProcessLease(
    store,
    handler.name,
    instanceId,
    logger,
    {
      acquired: () =>
        void enqueue(() => {
          if (stopped || inner || !lease.isHeld()) return;
          log.info({ mode: 'lease' }, 'this instance holds the lease: running the process');
          inner = startCatchUpProcess(store, handler, logger, { ...options, instanceId });
        }),
      lost: () =>
        void enqueue(async () => {
          const running = inner;
          inner = undefined;
          await running?.stop();
        }),
    },
    options.lease,
  );
  lease.start();

  // A runner whose subscription failed (the store went away for a moment) is restarted while we hold the lease:
  // holding it and doing nothing would stall the process on every instance.
  const watchdog = setInterval(() => {
    const running = inner;
    if (stopped || !running || running.active() || !lease.isHeld()) return;
    void enqueue(async () => {
      if (inner !== running) return;
      log.warn({}, 'the process runner stopped unexpectedly; restarting it from the checkpoint');
      inner = undefined;
      await running.stop();
      if (!stopped && lease.isHeld()) inner = startCatchUpProcess(store, handler, logger, { ...options, instanceId });
    });
  }, Math.max(options.lease?.pollMs ?? 1000, 1000));
  watchdog.unref();

  return {
    name: handler.name,
    mode: 'lease',
    instanceId,
    lease,
    active: () => !stopped && lease.isHeld() && inner !== undefined && inner.active(),
    /** Resolves when this instance is idle: it holds the lease and has handled everything, or it does not hold it. */
    async idle() {
      await lease.settled();
      await transition;
      await inner?.idle();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(watchdog);
      // Keep answering requests while the in-flight event finishes, so nobody takes over under our feet.
      lease.beginClose();
      await enqueue(async () => {
        const running = inner;
        inner = undefined;
        await running?.stop();
      });
      await lease.close();
    },
  };
}
