/**
 * The index of runs and the claim, pure: who may run now, and what the index says next. The index is one event
 * (the last of `reconciliations-index`): the last runs, newest first, and the claim of the run under way. Time
 * arrives as ISO strings; comparing them is not reading a clock.
 *
 * - No claim, or a claim whose `until` has passed (its instance crashed, or is stuck): a trigger may run. It
 *   resumes the newest run if that one did not finish (crashed, interrupted), else starts a new one.
 * - A live claim: the trigger is answered "busy" with the claimed run.
 * - The holder renews its claim while it runs, and releases it when the run finishes or is interrupted.
 */
import { DomainError } from '../errors.js';
import type { IndexedRun, ReconciliationIndexUpdated, RunClaim, RunStatus, RunTrigger } from './reconciliation.events.js';

export type RunIndex = { runs: IndexedRun[]; claim?: RunClaim };
export type IndexUpdate = ReconciliationIndexUpdated['data'];

export const emptyIndex = (): RunIndex => ({ runs: [] });

/** How many runs the index lists. */
export const DEFAULT_KEEP_RUNS = 50;

export function claimIsLive(index: RunIndex, at: string): boolean {
  return index.claim !== undefined && Date.parse(index.claim.until) > Date.parse(at);
}

/** The newest run, when it did not finish: the one a trigger resumes. */
export function unfinishedRun(index: RunIndex): IndexedRun | undefined {
  const newest = index.runs[0];
  return newest && newest.status !== 'finished' ? newest : undefined;
}

export type ClaimDecision =
  | { kind: 'busy'; claim: RunClaim }
  | { kind: 'start'; runId: string; update: IndexUpdate }
  | { kind: 'resume'; runId: string; trigger: RunTrigger; update: IndexUpdate };

export function claimRun(
  index: RunIndex,
  request: { at: string; until: string; instanceId: string; newRunId: string; trigger: RunTrigger; keep?: number },
): ClaimDecision {
  const { at, until, instanceId } = request;
  if (index.claim && claimIsLive(index, at)) return { kind: 'busy', claim: index.claim };
  const unfinished = unfinishedRun(index);
  if (unfinished) {
    const runs = index.runs.map((r) => (r.runId === unfinished.runId ? { ...r, status: 'running' as const, at } : r));
    return {
      kind: 'resume',
      runId: unfinished.runId,
      trigger: request.trigger,
      update: { at, change: 'resumed', runs, claim: { runId: unfinished.runId, instanceId, until } },
    };
  }
  const run: IndexedRun = { runId: request.newRunId, trigger: request.trigger, startedAt: at, status: 'running', at };
  const runs = [run, ...index.runs].slice(0, Math.max(1, request.keep ?? DEFAULT_KEEP_RUNS));
  return { kind: 'start', runId: run.runId, update: { at, change: 'started', runs, claim: { runId: run.runId, instanceId, until } } };
}

function holds(index: RunIndex, runId: string, instanceId: string): boolean {
  return index.claim?.runId === runId && index.claim.instanceId === instanceId;
}

/** The holder vouches for its run until `until`. A claim another instance took over is lost: a DomainError. */
export function renewClaim(index: RunIndex, request: { at: string; until: string; runId: string; instanceId: string }): IndexUpdate {
  if (!holds(index, request.runId, request.instanceId)) {
    throw new DomainError(
      'claim-lost',
      `run ${request.runId}: the claim is ${index.claim ? `run ${index.claim.runId} on ${index.claim.instanceId}` : 'released'}, not this instance's`,
    );
  }
  return { at: request.at, change: 'renewed', runs: index.runs, claim: { runId: request.runId, instanceId: request.instanceId, until: request.until } };
}

/** The run finished or was interrupted: the claim goes; undefined when this instance does not hold it (nothing to write). */
export function releaseClaim(
  index: RunIndex,
  request: { at: string; runId: string; instanceId: string; status: Exclude<RunStatus, 'running'> },
): IndexUpdate | undefined {
  if (!holds(index, request.runId, request.instanceId)) return undefined;
  const runs = index.runs.map((r) => (r.runId === request.runId ? { ...r, status: request.status, at: request.at } : r));
  return { at: request.at, change: request.status, runs };
}
