/**
 * The read model of pending publisher-side changes, for `PublisherChanges.resumeAll()` at startup: the
 * subscriptions projection's rows with a `pending_change`, instead of a scan of every subscription event.
 *
 * Correct only once the projection has applied every event written before the restart, so the source
 * first waits for the runner to be live (caught up with the store). It answers undefined (resumeAll then
 * scans the store) when the subscriptions projection does not run here (not among the projections, or
 * superseded by another process's version) or the runner stopped before it was live.
 */
import type { PendingChangeSource } from '../application/publisher-changes.js';
import { subscriptionsWithPendingChange } from './queries.js';
import type { RunningProjections } from './runner.js';

const SUBSCRIPTIONS = 'subscriptions';

export function pendingChangeSource(running: RunningProjections | undefined): PendingChangeSource {
  return async () => {
    if (!running) return undefined;
    await running.whenLive();
    const state = running.status().find((s) => s.name === SUBSCRIPTIONS)?.state;
    if (state !== 'live') return undefined;
    return subscriptionsWithPendingChange(running.db);
  };
}
