/**
 * The read model of pending publisher-side changes, for `PublisherChanges.resumeAll()` at startup: the
 * subscriptions projection's rows with a `pending_change`, instead of a scan of every subscription event.
 *
 * Correct only once the projection has applied every event written before the restart, so the source
 * first waits for the runner to be live (caught up with the store). It answers undefined (resumeAll then
 * scans the store) when the subscriptions projection does not run here (not among the projections, or
 * superseded by another process's version), the runner stopped before it was live, or it is not live within
 * `waitMs` (read models stuck or failing must not keep pending changes from being followed).
 */
import type { PendingChangeSource } from '../application/publisher-changes.js';
import { subscriptionsWithPendingChange } from './queries.js';
import type { RunningProjections } from './runner.js';

const SUBSCRIPTIONS = 'subscriptions';

export function pendingChangeSource(running: RunningProjections | undefined, waitMs = 60_000): PendingChangeSource {
  return async () => {
    if (!running) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), waitMs);
    });
    const live = await Promise.race([running.whenLive().then(() => 'live' as const), gaveUp]);
    clearTimeout(timer);
    if (live === 'timeout') return undefined;
    const state = running.status().find((s) => s.name === SUBSCRIPTIONS)?.state;
    if (state !== 'live') return undefined;
    return subscriptionsWithPendingChange(running.target.read);
  };
}
