/**
 * The reconciliation schedule: every `intervalMs` (RECONCILE_INTERVAL_MINUTES), on every instance, decided from
 * the index in the store (reconciliation.workflow.ts `nextScheduled`), so that instances do not each run hourly:
 * whichever claims first runs, the others see the run and wait one interval after its start. An unfinished
 * run is resumed: at once when its instance vanished (its claim expired), `retryMs` after an interruption.
 */
import type { Logger } from '../logger.js';
import { nextScheduled } from './reconciliation.workflow.js';
import type { Reconciler } from './reconciliation.process.js';

export type ReconciliationSchedule = {
  /** No further triggers. A run under way goes on: close the reconciler to interrupt it. */
  stop(): void;
};

export type ScheduleOptions = {
  reconciler: Pick<Reconciler, 'index' | 'trigger'>;
  intervalMs: number;
  logger: Logger;
  /** After an interruption (Microsoft or the store unavailable, a shutdown): resume this much later. Default min(interval, 60 s). */
  retryMs?: number;
  now?: () => number;
};

const MIN_WAIT_MS = 250;

export function scheduleReconciliation(options: ScheduleOptions): ReconciliationSchedule {
  const { reconciler, intervalMs } = options;
  const now = options.now ?? Date.now;
  const retryMs = options.retryMs ?? Math.min(intervalMs, 60_000);
  const log = options.logger.child({ component: 'reconciliation-schedule' });
  const since = now();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const tick = async (): Promise<void> => {
    let waitMs = Math.min(intervalMs, 30_000);
    try {
      const decision = nextScheduled(await reconciler.index(), { now: now(), since, intervalMs, retryMs });
      if (decision.kind === 'run' && !stopped) {
        const result = await reconciler.trigger('schedule');
        if (result.kind !== 'busy') await result.done;
        waitMs = MIN_WAIT_MS; // decide again from what the run left in the index
      } else if (decision.kind === 'wait') {
        waitMs = decision.ms;
      }
    } catch (err) {
      if (!stopped) log.warn({ err }, 'could not check the reconciliation schedule; trying again later');
    }
    if (!stopped) {
      timer = setTimeout(() => void tick(), Math.max(MIN_WAIT_MS, waitMs));
      timer.unref();
    }
  };

  log.info({ intervalMs }, 'reconciliation scheduled');
  timer = setTimeout(() => void tick(), 0);
  timer.unref();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
