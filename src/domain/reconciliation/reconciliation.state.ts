/** A run's state, folded from its stream; and the counts' arithmetic. */
import { driftKinds } from '../subscription/converge.js';
import type { FoundKind, ReconciliationEvent, RunCounts, RunStatus, RunTrigger } from './reconciliation.events.js';

export const foundKinds: readonly FoundKind[] = [...driftKinds, 'unrecorded'];

export function emptyCounts(): RunCounts {
  const drifts = Object.fromEntries(foundKinds.map((k) => [k, 0])) as Record<FoundKind, number>;
  return { checked: 0, drifted: 0, drifts, repaired: 0, purchasesRecorded: 0, inFlight: 0, unrepairable: 0, errors: 0, calls: 0 };
}

export function addCounts(a: RunCounts, b: RunCounts): RunCounts {
  const drifts = { ...a.drifts };
  for (const k of foundKinds) drifts[k] = (a.drifts[k] ?? 0) + (b.drifts[k] ?? 0);
  return {
    checked: a.checked + b.checked,
    drifted: a.drifted + b.drifted,
    drifts,
    repaired: a.repaired + b.repaired,
    purchasesRecorded: a.purchasesRecorded + b.purchasesRecorded,
    inFlight: a.inFlight + b.inFlight,
    unrepairable: a.unrepairable + b.unrepairable,
    errors: a.errors + b.errors,
    calls: a.calls + b.calls,
  };
}

export type Run = {
  status: RunStatus;
  runId: string;
  trigger: RunTrigger;
  startedAt: string;
  /** The instance running it (or that ran it last). */
  instanceId: string;
  /** Pages checked so far. */
  pages: number;
  /** Where the next page is read from; undefined = the first page (when `pages` is 0) or none left. */
  nextLink?: string;
  /** The last page has been checked: only finishing is left. */
  listed: boolean;
  counts: RunCounts;
  resumes: number;
  lastInterruption?: { at: string; reason: string };
  finishedAt?: string;
  durationMs?: number;
};

export type RunState = { status: 'none' } | Run;

export const initialRunState = (): RunState => ({ status: 'none' });

export function evolveRun(state: RunState, event: ReconciliationEvent): RunState {
  if (event.type === 'ReconciliationStarted') {
    if (state.status !== 'none') return state;
    const d = event.data;
    return {
      status: 'running',
      runId: d.runId,
      trigger: d.trigger,
      startedAt: d.at,
      instanceId: d.instanceId,
      pages: 0,
      listed: false,
      counts: emptyCounts(),
      resumes: 0,
    };
  }
  if (state.status === 'none') return state; // nothing but a start begins a run
  switch (event.type) {
    case 'ReconciliationResumed':
      return { ...state, status: 'running', instanceId: event.data.instanceId, resumes: state.resumes + 1 };
    case 'ReconciliationPageChecked': {
      const { nextLink: _previous, ...rest } = state;
      const d = event.data;
      return { ...rest, pages: d.page, counts: d.counts, listed: d.nextLink === undefined, ...(d.nextLink !== undefined ? { nextLink: d.nextLink } : {}) };
    }
    case 'ReconciliationInterrupted':
      return { ...state, status: 'interrupted', lastInterruption: { at: event.data.at, reason: event.data.reason } };
    case 'ReconciliationFinished':
      return { ...state, status: 'finished', counts: event.data.counts, finishedAt: event.data.at, durationMs: event.data.durationMs };
    default: {
      const _exhaustive: never = event;
      return state;
    }
  }
}
