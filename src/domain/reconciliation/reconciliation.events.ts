/**
 * A reconciliation run, recorded as events in its own stream `reconciliation-<run id>`:
 *
 *   ReconciliationStarted      {runId, at, trigger, instanceId}        a run begins (schedule, API or CLI)
 *   ReconciliationResumed      {at, trigger, instanceId, fromPage, counts}
 *                                                                      an unfinished run goes on after a crash or stop
 *   ReconciliationPageChecked  {at, page, link?, nextLink?, found, counts}
 *                                                                      one page of List subscriptions checked: where it
 *                                                                      was read, where the next one is, what it found
 *                                                                      and the run's counts so far (the resume point)
 *   ReconciliationInterrupted  {at, reason, counts}                    stopped before the last page (resumable)
 *   ReconciliationFinished     {at, pages, counts, durationMs}         every page checked
 *
 * And one bounded stream, `reconciliations-index`, whose last event alone matters (appended with `keepLast: 1`):
 *
 *   ReconciliationIndexUpdated {at, change, runs, claim?}              the last runs, newest first, and the claim of the
 *                                                                      run under way (who, until when)
 *
 * Every write to the index is an append at the revision its writer read: of two instances that want to start a
 * run at once, exactly one succeeds; the other reads the claim and answers "busy".
 */
import { streamName } from '../streams.js';
import type { DriftKind } from '../subscription/converge.js';

export const reconciliationCategory = 'reconciliation';
export const reconciliationStream = (runId: string): string => streamName(reconciliationCategory, runId);
export const reconciliationIndexStream = streamName('reconciliations', 'index');

/** What started a run. */
export type RunTrigger = 'schedule' | 'api' | 'cli';
export const runTriggers: readonly RunTrigger[] = ['schedule', 'api', 'cli'];

/** A difference between Microsoft's record and ours: a drift kind, or `unrecorded` (a subscription we never saw). */
export type FoundKind = DriftKind | 'unrecorded';

/** What a run found and did: for one page, or summed over the run so far. */
export type RunCounts = {
  /** Subscriptions Microsoft listed and we compared with the ledger. */
  checked: number;
  /** Subscriptions that differed in anything, including those we had never recorded. */
  drifted: number;
  /** Differences by kind: a subscription that differs in plan and term counts once under each. */
  drifts: Record<FoundKind, number>;
  /** Subscriptions brought in line (ConvergeOnMicrosoft appended events). */
  repaired: number;
  /** Subscriptions Microsoft has that we never saw, recorded (RecordPurchase). */
  purchasesRecorded: number;
  /** Left alone this run: their plan or quantity differed while Microsoft had an operation in progress. */
  inFlight: number;
  /** Subscriptions with a difference nothing may repair (e.g. Unsubscribed here, active at Microsoft). */
  unrepairable: number;
  /** Subscriptions whose check failed (logged); the run went on with the next. */
  errors: number;
  /** Calls made to Microsoft: pages listed and operations listed (the client's retries not counted). */
  calls: number;
};

export type RunStatus = 'running' | 'interrupted' | 'finished';

export type ReconciliationStarted = {
  type: 'ReconciliationStarted';
  data: { runId: string; at: string; trigger: RunTrigger; instanceId: string };
};

export type ReconciliationResumed = {
  type: 'ReconciliationResumed';
  data: {
    at: string;
    trigger: RunTrigger;
    instanceId: string;
    /** The first page this instance checks. */
    fromPage: number;
    /** The run's counts so far (from its pages checked before). */
    counts: RunCounts;
  };
};

export type ReconciliationPageChecked = {
  type: 'ReconciliationPageChecked';
  data: {
    at: string;
    instanceId: string;
    /** 1 for the first page checked. */
    page: number;
    /** The link the page was read from; absent for the first page of the listing. */
    link?: string;
    /** Microsoft's link to the next page (with its continuation token); absent on the last page. */
    nextLink?: string;
    /** What this page found. */
    found: RunCounts;
    /** The run's counts including this page. */
    counts: RunCounts;
  };
};

export type ReconciliationInterrupted = {
  type: 'ReconciliationInterrupted';
  data: { at: string; instanceId: string; reason: string; pages: number; counts: RunCounts };
};

export type ReconciliationFinished = {
  type: 'ReconciliationFinished';
  data: { at: string; instanceId: string; pages: number; counts: RunCounts; /** From start to finish, resumes included. */ durationMs: number };
};

export type ReconciliationEvent =
  | ReconciliationStarted
  | ReconciliationResumed
  | ReconciliationPageChecked
  | ReconciliationInterrupted
  | ReconciliationFinished;

export type ReconciliationEventType = ReconciliationEvent['type'];

/** One run as the index lists it. */
export type IndexedRun = {
  runId: string;
  trigger: RunTrigger;
  startedAt: string;
  status: RunStatus;
  /** When its status last changed. */
  at: string;
};

/** The run under way: the instance running it vouches for it until `until` (it renews while it runs). */
export type RunClaim = { runId: string; instanceId: string; until: string };

export type ReconciliationIndexUpdated = {
  type: 'ReconciliationIndexUpdated';
  data: {
    at: string;
    change: 'started' | 'resumed' | 'renewed' | 'finished' | 'interrupted';
    /** The last runs, newest first (bounded). */
    runs: IndexedRun[];
    claim?: RunClaim;
  };
};
