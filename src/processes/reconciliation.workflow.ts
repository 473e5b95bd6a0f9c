/**
 * The reconciler's decisions, pure (reconciliation.process.ts does the I/O):
 *
 * - `checkSubscription`: one subscription as Microsoft lists it against our state → nothing to do, record the
 *   purchase, converge (after asking Microsoft whether an operation is in progress, when the plan or the seats
 *   differ), or a difference nothing may repair;
 * - `tally`: what one subscription's outcome adds to the page's counts;
 * - `nextScheduled`: when the schedule runs next, from the index of runs.
 */
import { convergeEvents, driftOf } from '../domain/subscription/index.js';
import type { DriftKind, MicrosoftRecord, SubscriptionCommand, SubscriptionState } from '../domain/subscription/index.js';
import { claimIsLive, emptyCounts, foundKinds, unfinishedRun } from '../domain/reconciliation/index.js';
import type { FoundKind, RunCounts, RunIndex } from '../domain/reconciliation/index.js';
import { isFinalOperationStatus } from '../marketplace/schemas.js';

type RecordPurchase = Extract<SubscriptionCommand, { type: 'RecordPurchase' }>;
type Converge = Extract<SubscriptionCommand, { type: 'ConvergeOnMicrosoft' }>;

export type SubscriptionCheck =
  | { kind: 'in-line' }
  | { kind: 'record-purchase'; command: RecordPurchase }
  /** `checkOperations`: the plan or the seats would change; Microsoft may be in the middle of changing them. */
  | { kind: 'converge'; drift: DriftKind[]; command: Converge; checkOperations: boolean }
  /**
   * A plan or seats change of ours (publisher-side) is pending here: the publisher-changes service settles it by
   * Microsoft's operation id when Microsoft confirms; converging first would leave the request pending forever.
   */
  | { kind: 'ours-pending'; drift: DriftKind[]; requestId: string }
  | { kind: 'unrepairable'; drift: DriftKind[] };

export function checkSubscription(state: SubscriptionState, microsoft: MicrosoftRecord, now: string): SubscriptionCheck {
  const source = 'reconciliation' as const;
  if (state.status === 'Initial') {
    return { kind: 'record-purchase', command: { type: 'RecordPurchase', now, source, subscription: microsoft.details, microsoftStatus: microsoft.status } };
  }
  const drift = driftOf(state, microsoft);
  if (drift.length === 0) return { kind: 'in-line' };
  const events = convergeEvents(state, microsoft, { now, source });
  if (events.length === 0) return { kind: 'unrepairable', drift };
  const checkOperations = events.some((e) => e.type === 'PlanChanged' || e.type === 'QuantityChanged');
  const pending = state.pendingChange;
  if (checkOperations && pending && pending.kind !== 'cancel') return { kind: 'ours-pending', drift, requestId: pending.requestId };
  return { kind: 'converge', drift, command: { type: 'ConvergeOnMicrosoft', now, source, microsoft }, checkOperations };
}

/** Microsoft's outstanding operations include one not yet final (NotStarted, InProgress, or a status we do not know). */
export function operationInProgress(operations: readonly { status?: string | undefined }[]): boolean {
  return operations.some((op) => !isFinalOperationStatus(op.status));
}

/** What became of one subscription. `remaining`: the kinds still different after converging (unrepairable). */
export type SubscriptionOutcome =
  | { kind: 'in-line'; calls: number }
  | { kind: 'purchase-recorded'; calls: number }
  | { kind: 'converged'; drift: DriftKind[]; appended: number; remaining: DriftKind[]; calls: number }
  | { kind: 'in-flight'; drift: DriftKind[]; calls: number }
  | { kind: 'unrepairable'; drift: DriftKind[]; calls: number }
  | { kind: 'error'; drift: FoundKind[]; calls: number };

function driftsOf(kinds: readonly FoundKind[]): Record<FoundKind, number> {
  const drifts = emptyCounts().drifts;
  for (const k of foundKinds) drifts[k] = kinds.includes(k) ? 1 : 0;
  return drifts;
}

/** The counts of one subscription's outcome (add them up with addCounts). */
export function countsOf(outcome: SubscriptionOutcome): RunCounts {
  const c = emptyCounts();
  c.checked = 1;
  c.calls = outcome.calls;
  switch (outcome.kind) {
    case 'in-line':
      return c;
    case 'purchase-recorded':
      return { ...c, drifted: 1, drifts: driftsOf(['unrecorded']), purchasesRecorded: 1 };
    case 'converged':
      return {
        ...c,
        drifted: 1,
        drifts: driftsOf(outcome.drift),
        repaired: outcome.appended > 0 ? 1 : 0,
        unrepairable: outcome.remaining.length > 0 ? 1 : 0,
      };
    case 'in-flight':
      return { ...c, drifted: 1, drifts: driftsOf(outcome.drift), inFlight: 1 };
    case 'unrepairable':
      return { ...c, drifted: 1, drifts: driftsOf(outcome.drift), unrepairable: 1 };
    case 'error':
      return { ...c, drifted: outcome.drift.length > 0 ? 1 : 0, drifts: driftsOf(outcome.drift), errors: 1 };
    default: {
      const _exhaustive: never = outcome;
      return c;
    }
  }
}

export type ScheduleDecision = { kind: 'run' } | { kind: 'wait'; ms: number };

/**
 * When the schedule should trigger next. `since` is when this schedule started (the first run of a store that
 * has none is one interval after it). A live claim: wait for it to end or expire. An unfinished run: resume it
 * (at once when its instance vanished, `retryMs` after an interruption). Else one interval after the last start.
 */
export function nextScheduled(index: RunIndex, at: { now: number; since: number; intervalMs: number; retryMs: number }): ScheduleDecision {
  const { now, since, intervalMs, retryMs } = at;
  const nowIso = new Date(now).toISOString();
  const waitUntil = (t: number): ScheduleDecision => (t <= now ? { kind: 'run' } : { kind: 'wait', ms: Math.min(t - now, intervalMs) });
  if (index.claim && claimIsLive(index, nowIso)) return { kind: 'wait', ms: Math.min(Math.max(Date.parse(index.claim.until) - now, 1), intervalMs) };
  const unfinished = unfinishedRun(index);
  if (unfinished) return unfinished.status === 'running' ? { kind: 'run' } : waitUntil(Date.parse(unfinished.at) + retryMs);
  const last = index.runs[0];
  return waitUntil((last ? Date.parse(last.startedAt) : since) + intervalMs);
}
