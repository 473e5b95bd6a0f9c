/**
 * The reconciler: lists every subscription Microsoft has (List subscriptions, page by page), compares each with
 * the ledger and brings ours in line — ConvergeOnMicrosoft for a difference, RecordPurchase for a subscription we
 * never saw — with source `reconciliation`, one append per subscription (all of its events or none). The
 * decisions are pure (reconciliation.workflow.ts); this file does the I/O.
 *
 * - One run at a time, across instances: a run is claimed in the index stream (`reconciliations-index`) by an
 *   append at the revision read; the holder renews the claim while it runs. A trigger that finds a live claim is
 *   answered "busy" with the claimed run.
 * - Resumable: each page checked is recorded in the run's stream with Microsoft's link to the next page. A run
 *   that crashed (its claim expired) or was interrupted is resumed by the next trigger from its last recorded
 *   page. The page under way when it stopped is checked again: what it repaired then is found in line.
 * - Polite: every call to Microsoft waits its turn (`maxCallsPerSecond`); the client retries 429s honouring
 *   Retry-After. Before repairing a plan or seats difference it asks Microsoft for the subscription's
 *   outstanding operations: one in progress (a change being acknowledged) leaves the subscription alone this
 *   run ("in flight"), so we never flap against it.
 * - Cost: one read of each listed subscription's own stream; never a scan of the store.
 */
import { ownInitiative } from '../eventstore/provenance.js';
import { randomUUID } from 'node:crypto';
import { detailsFromMicrosoft } from '../application/subscription-details.js';
import { resolveStore } from '../application/subscription-ledger.js';
import type { StoreRef, SubscriptionLedger } from '../application/subscription-ledger.js';
import {
  addCounts,
  claimRun,
  decodeIndexEvent,
  decodeReconciliationEvent,
  DEFAULT_KEEP_RUNS,
  emptyCounts,
  emptyIndex,
  reconciliationDecider,
  reconciliationIndexStream,
  reconciliationStream,
  releaseClaim,
  renewClaim,
} from '../domain/reconciliation/index.js';
import type {
  ClaimDecision,
  IndexedRun,
  IndexUpdate,
  ReconciliationCommand,
  Run,
  RunCounts,
  RunIndex,
  RunStatus,
  RunTrigger,
} from '../domain/reconciliation/index.js';
import { DomainError } from '../domain/errors.js';
import { driftOf } from '../domain/subscription/index.js';
import type { MicrosoftRecord } from '../domain/subscription/index.js';
import { handleCommand, loadAggregate } from '../eventstore/command-handler.js';
import { ConcurrencyError, StoreUnavailableError } from '../eventstore/eventstore.js';
import type { EventStore } from '../eventstore/eventstore.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import {
  MarketplaceBadRequestError,
  MarketplaceForbiddenError,
  MarketplaceNotFoundError,
  MarketplaceUnavailableError,
} from '../marketplace/errors.js';
import type { CallOptions, SubscriptionsPage } from '../marketplace/fulfillment-client.js';
import type { NormalisedOperation, NormalisedSubscription } from '../marketplace/schemas.js';
import { RateLimiter } from './rate-limit.js';
import { newInstanceId } from './runner/lease.js';
import { checkSubscription, countsOf, operationInProgress } from './reconciliation.workflow.js';
import type { SubscriptionOutcome } from './reconciliation.workflow.js';

/** What the reconciler needs of the Fulfillment client. */
export type ReconcilerMarketplace = {
  listSubscriptionsPage(link: string | undefined, options?: CallOptions): Promise<SubscriptionsPage>;
  listOperations(subscriptionId: string, options?: CallOptions): Promise<NormalisedOperation[]>;
};

export type ReconcilerOptions = {
  store: StoreRef;
  ledger: SubscriptionLedger;
  marketplace: ReconcilerMarketplace;
  logger: Logger;
  /** Names this instance in claims and run events. Default `<host>:<pid>:<random>`. */
  instanceId?: string;
  /** Calls to Microsoft per second at most (pages and operation lists). Default 10. */
  maxCallsPerSecond?: number;
  /** A claim not renewed for this long is taken over by the next trigger (the run is resumed). Default 60 s. */
  takeoverAfterMs?: number;
  /** Runs the index lists. Default 50. */
  keepRuns?: number;
  now?: () => number;
  /** Each difference found, by kind and outcome (src/metrics/metrics.ts). */
  metrics?: Pick<Metrics, 'reconciliationDrift'>;
};

/** How a run ended for the instance that ran it. `lost`: another instance took the run over. */
export type RunOutcome = { runId: string; status: RunStatus | 'lost'; run?: Run; error?: string };

export type TriggerResult =
  | { kind: 'started' | 'resumed'; runId: string; done: Promise<RunOutcome> }
  | { kind: 'busy'; runId: string; instanceId: string; until: string };

/** A run as listed: the index's entry with the progress its stream's last event records. */
export type RunSummary = IndexedRun & { pages?: number; counts?: RunCounts; durationMs?: number };

/** One event of a run, for the operator. */
export type RunHistoryEntry = { type: string; at: string; instanceId: string; page?: number; reason?: string };

export const DEFAULT_MAX_CALLS_PER_SECOND = 10;
export const DEFAULT_TAKEOVER_MS = 60_000;
const ACTOR = 'system:reconciliation';

/** Errors that stop the run (it is interrupted and resumed later) rather than count against one subscription. */
function stopsTheRun(err: unknown, signal: AbortSignal): boolean {
  return (
    signal.aborted ||
    err instanceof StoreUnavailableError ||
    err instanceof MarketplaceUnavailableError ||
    err instanceof MarketplaceForbiddenError
  );
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function microsoftRecordOf(sub: NormalisedSubscription): MicrosoftRecord {
  return { details: detailsFromMicrosoft(sub), status: sub.saasSubscriptionStatus ?? '' };
}

/** Only the kinds that were found: for log lines. */
function nonZero(drifts: RunCounts['drifts']): Record<string, number> {
  return Object.fromEntries(Object.entries(drifts).filter(([, n]) => n > 0));
}

/**
 * The claim of one run in the index stream: renewed every third of `takeoverAfterMs` while the run goes on,
 * released when it ends. Lost when another instance wrote the index meanwhile (it took the run over because
 * this instance did not renew in time): `onLost` stops the run.
 */
class RunClaimKeeper {
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private until: number;
  lost = false;

  constructor(
    private readonly r: { store: () => EventStore; now: () => number; takeoverAfterMs: number; instanceId: string; log: Logger },
    readonly runId: string,
    private index: RunIndex,
    private revision: bigint,
    private readonly onLost: (reason: string) => void,
  ) {
    this.until = r.now() + r.takeoverAfterMs;
  }

  keepAlive(): void {
    this.timer = setInterval(() => void this.renew(), Math.max(10, Math.floor(this.r.takeoverAfterMs / 3)));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  renew(): Promise<void> {
    return this.serial(async () => {
      if (this.lost) return;
      const now = this.r.now();
      const request = { at: iso(now), until: iso(now + this.r.takeoverAfterMs), runId: this.runId, instanceId: this.r.instanceId };
      try {
        await this.write(renewClaim(this.index, request));
        this.until = now + this.r.takeoverAfterMs;
      } catch (err) {
        if (err instanceof ConcurrencyError) return this.lose('another instance wrote the index: the run was taken over');
        this.r.log.warn({ err, runId: this.runId }, 'could not renew the reconciliation claim');
        if (this.r.now() >= this.until) this.lose('the claim could not be renewed in time');
      }
    });
  }

  release(status: 'finished' | 'interrupted'): Promise<void> {
    return this.serial(async () => {
      this.stop();
      if (this.lost) return;
      const last = await this.r.store().readLastEvent(reconciliationIndexStream);
      this.index = indexOf(last);
      this.revision = last?.revision ?? -1n;
      const update = releaseClaim(this.index, { at: iso(this.r.now()), runId: this.runId, instanceId: this.r.instanceId, status });
      if (update) await this.write(update);
    });
  }

  private lose(reason: string): void {
    this.lost = true;
    this.stop();
    this.r.log.warn({ runId: this.runId, reason }, 'reconciliation claim lost: this instance stops the run');
    this.onLost(reason);
  }

  private async write(update: IndexUpdate): Promise<void> {
    this.revision = await writeIndex(this.r.store(), update, this.revision);
    this.index = { runs: update.runs, ...(update.claim ? { claim: update.claim } : {}) };
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const next = this.chain.then(fn);
    this.chain = next.catch(() => undefined);
    return next;
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();

function indexOf(last: { type: string; data: unknown } | undefined): RunIndex {
  const event = decodeIndexEvent(last);
  if (!event) return emptyIndex();
  return { runs: event.data.runs, ...(event.data.claim ? { claim: event.data.claim } : {}) };
}

/** Appends the index's next state at `revision` (-1n: the stream must not exist); returns the new revision. */
async function writeIndex(store: EventStore, update: IndexUpdate, revision: bigint): Promise<bigint> {
  const result = await store.appendToStream(
    reconciliationIndexStream,
    [{ type: 'ReconciliationIndexUpdated', data: update, metadata: { actor: ACTOR, ...ownInitiative() } }],
    { expectedRevision: revision < 0n ? 'no_stream' : revision, keepLast: 1 },
  );
  return result.nextExpectedRevision;
}

export class Reconciler {
  readonly instanceId: string;
  private readonly log: Logger;
  private readonly limiter: RateLimiter;
  private readonly now: () => number;
  private readonly takeoverAfterMs: number;
  private readonly keepRuns: number;
  private current: { runId: string; abort: AbortController; done: Promise<RunOutcome> } | undefined;
  private claiming: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly options: ReconcilerOptions) {
    this.instanceId = options.instanceId ?? newInstanceId();
    this.log = options.logger.child({ component: 'reconciliation' });
    this.now = options.now ?? Date.now;
    this.limiter = new RateLimiter(options.maxCallsPerSecond ?? DEFAULT_MAX_CALLS_PER_SECOND, this.now);
    this.takeoverAfterMs = options.takeoverAfterMs ?? DEFAULT_TAKEOVER_MS;
    this.keepRuns = options.keepRuns ?? DEFAULT_KEEP_RUNS;
  }

  private get store(): EventStore {
    return resolveStore(this.options.store);
  }

  /** The run this instance is running, if any. */
  running(): string | undefined {
    return this.current?.runId;
  }

  /** The index of the last runs and the claim of the one under way. */
  async index(): Promise<RunIndex> {
    return indexOf(await this.store.readLastEvent(reconciliationIndexStream));
  }

  /**
   * Start a run (or resume the unfinished one) unless one is under way anywhere: then `busy` names it. The run
   * goes on in the background; `done` says how it ended (it never rejects).
   */
  trigger(trigger: RunTrigger): Promise<TriggerResult> {
    const attempt = this.claiming.then(() => this.claim(trigger));
    this.claiming = attempt.catch(() => undefined);
    return attempt;
  }

  private async claim(trigger: RunTrigger): Promise<TriggerResult> {
    if (this.closed) throw new StoreUnavailableError('the reconciler is shutting down');
    const mine = this.current;
    for (let attempt = 0; ; attempt++) {
      const last = await this.store.readLastEvent(reconciliationIndexStream);
      const index = indexOf(last);
      const now = this.now();
      const decision = mine
        ? ({ kind: 'busy', claim: index.claim ?? { runId: mine.runId, instanceId: this.instanceId, until: iso(now + this.takeoverAfterMs) } } as const)
        : claimRun(index, { at: iso(now), until: iso(now + this.takeoverAfterMs), instanceId: this.instanceId, newRunId: randomUUID(), trigger, keep: this.keepRuns });
      if (decision.kind === 'busy') return { kind: 'busy', runId: decision.claim.runId, instanceId: decision.claim.instanceId, until: decision.claim.until };
      let revision: bigint;
      try {
        revision = await writeIndex(this.store, decision.update, last?.revision ?? -1n);
      } catch (err) {
        if (err instanceof ConcurrencyError && attempt < 5) continue; // another trigger wrote first: read what it wrote
        throw err;
      }
      const claimed: RunIndex = { runs: decision.update.runs, ...(decision.update.claim ? { claim: decision.update.claim } : {}) };
      return this.begin(decision, trigger, claimed, revision);
    }
  }

  private begin(decision: Exclude<ClaimDecision, { kind: 'busy' }>, trigger: RunTrigger, index: RunIndex, revision: bigint): TriggerResult {
    const abort = new AbortController();
    const log = this.log.child({ runId: decision.runId });
    const keeper = new RunClaimKeeper(
      { store: () => this.store, now: this.now, takeoverAfterMs: this.takeoverAfterMs, instanceId: this.instanceId, log: this.log },
      decision.runId,
      index,
      revision,
      (reason) => abort.abort(new Error(reason)),
    );
    const done = this.execute(decision, trigger, keeper, abort.signal, log).finally(() => {
      keeper.stop();
      if (this.current?.runId === decision.runId) this.current = undefined;
    });
    this.current = { runId: decision.runId, abort, done };
    return { kind: decision.kind === 'start' ? 'started' : 'resumed', runId: decision.runId, done };
  }

  private async execute(
    decision: Exclude<ClaimDecision, { kind: 'busy' }>,
    trigger: RunTrigger,
    keeper: RunClaimKeeper,
    signal: AbortSignal,
    log: Logger,
  ): Promise<RunOutcome> {
    const runId = decision.runId;
    keeper.keepAlive();
    try {
      let run = await this.open(decision, trigger, log);
      if (run.status === 'finished') {
        await keeper.release('finished');
        return { runId, status: 'finished', run };
      }
      run = await this.listAll(run, signal, log);
      run = await this.command(runId, { type: 'FinishRun', now: iso(this.now()), instanceId: this.instanceId });
      await keeper.release('finished');
      const c = run.counts;
      log.info(
        {
          trigger: run.trigger,
          pages: run.pages,
          durationMs: run.durationMs,
          checked: c.checked,
          drifted: c.drifted,
          drifts: nonZero(c.drifts),
          repaired: c.repaired,
          purchasesRecorded: c.purchasesRecorded,
          inFlight: c.inFlight,
          unrepairable: c.unrepairable,
          errors: c.errors,
          calls: c.calls,
        },
        'reconciliation finished',
      );
      return { runId, status: 'finished', run };
    } catch (err) {
      return this.interrupted(runId, keeper, signal, err, log);
    }
  }

  /** The run could not go on: record why and release the claim, so that the next trigger resumes it. */
  private async interrupted(runId: string, keeper: RunClaimKeeper, signal: AbortSignal, err: unknown, log: Logger): Promise<RunOutcome> {
    const reason = signal.aborted ? messageOf(signal.reason) : messageOf(err);
    // Another instance resumed the run (this one was too slow to renew its claim): the run's stream refused us.
    if (keeper.lost || (err instanceof DomainError && err.code === 'run-not-held')) {
      keeper.stop();
      if (!keeper.lost) log.warn({ reason }, 'reconciliation taken over by another instance: this instance stops');
      return { runId, status: 'lost', error: reason };
    }
    try {
      const run = await this.command(runId, { type: 'InterruptRun', now: iso(this.now()), instanceId: this.instanceId, reason });
      await keeper.release('interrupted');
      if (signal.aborted) log.warn({ reason }, 'reconciliation interrupted; the next run resumes it');
      else log.error({ err, reason }, 'reconciliation interrupted; the next run resumes it');
      return { runId, status: 'interrupted', run, error: reason };
    } catch (recordErr) {
      log.error({ err, recordErr, reason }, 'reconciliation interrupted and could not record it; the next run resumes it once its claim expires');
      return { runId, status: 'interrupted', error: reason };
    }
  }

  /** Start the run's stream, or resume it (a claimed run whose stream was never started is started now). */
  private async open(decision: Exclude<ClaimDecision, { kind: 'busy' }>, trigger: RunTrigger, log: Logger): Promise<Run> {
    const at = iso(this.now());
    const start = (): Promise<Run> => this.command(decision.runId, { type: 'StartRun', runId: decision.runId, trigger, now: at, instanceId: this.instanceId });
    if (decision.kind === 'start') {
      log.info({ trigger, instanceId: this.instanceId }, 'reconciliation started');
      return start();
    }
    const { state } = await loadAggregate(this.store, reconciliationStream(decision.runId), reconciliationDecider);
    if (state.status === 'none') return start();
    if (state.status === 'finished') return state;
    log.info({ trigger, instanceId: this.instanceId, fromPage: state.pages + 1, previousInstance: state.instanceId }, 'reconciliation resumed');
    return this.command(decision.runId, { type: 'ResumeRun', trigger, now: at, instanceId: this.instanceId });
  }

  /** Every page from where the run is, each recorded once checked. */
  private async listAll(from: Run, signal: AbortSignal, log: Logger): Promise<Run> {
    let run = from;
    let link = run.pages > 0 ? run.nextLink : undefined;
    let relisted = false;
    while (!run.listed) {
      signal.throwIfAborted();
      let page: SubscriptionsPage;
      try {
        page = await this.call(signal, () => this.options.marketplace.listSubscriptionsPage(link, { signal, correlationId: run.runId }));
      } catch (err) {
        // A continuation link recorded long ago may have expired: list again from the first page, once.
        if (link === undefined || relisted || !(err instanceof MarketplaceBadRequestError || err instanceof MarketplaceNotFoundError)) throw err;
        log.warn({ err, page: run.pages + 1 }, 'the recorded link to the next page no longer works: listing again from the first page');
        link = undefined;
        relisted = true;
        continue;
      }
      const found = addCounts(await this.checkPage(page.subscriptions, run.runId, signal, log), { ...emptyCounts(), calls: 1 });
      run = await this.command(run.runId, {
        type: 'RecordPage',
        now: iso(this.now()),
        instanceId: this.instanceId,
        page: run.pages + 1,
        ...(link !== undefined ? { link } : {}),
        ...(page.nextLink !== undefined ? { nextLink: page.nextLink } : {}),
        found,
      });
      log.debug({ page: run.pages, subscriptions: page.subscriptions.length, next: page.nextLink !== undefined }, 'reconciliation page checked');
      link = page.nextLink;
    }
    return run;
  }

  private async checkPage(subscriptions: readonly NormalisedSubscription[], runId: string, signal: AbortSignal, log: Logger): Promise<RunCounts> {
    let found = emptyCounts();
    for (const sub of subscriptions) {
      signal.throwIfAborted();
      const outcome = await this.checkOne(sub, runId, signal, log);
      for (const kind of outcome.kind === 'purchase-recorded' ? ['unrecorded'] : 'drift' in outcome ? outcome.drift : []) this.options.metrics?.reconciliationDrift(kind, outcome.kind);
      found = addCounts(found, countsOf(outcome));
    }
    return found;
  }

  /** One subscription: compare, and repair in one append. */
  private async checkOne(sub: NormalisedSubscription, runId: string, signal: AbortSignal, log: Logger): Promise<SubscriptionOutcome> {
    const subscriptionId = sub.id;
    const microsoft = microsoftRecordOf(sub);
    const context = { actor: ACTOR, ...ownInitiative(runId) };
    let calls = 0;
    try {
      const { state } = await this.options.ledger.load(subscriptionId);
      const check = checkSubscription(state, microsoft, iso(this.now()));
      switch (check.kind) {
        case 'in-line':
          return { kind: 'in-line', calls };
        case 'unrepairable':
          log.warn({ subscriptionId, kinds: check.drift, status: state.status, microsoftStatus: microsoft.status }, 'reconciliation found a difference nothing may repair');
          return { kind: 'unrepairable', drift: check.drift, calls };
        case 'ours-pending':
          log.info({ subscriptionId, kinds: check.drift, requestId: check.requestId }, 'reconciliation left a subscription alone: a publisher-side change of ours is pending');
          return { kind: 'in-flight', drift: check.drift, calls };
        case 'record-purchase':
          await this.options.ledger.execute(subscriptionId, check.command, context);
          log.warn({ subscriptionId, kinds: ['unrecorded'], microsoftStatus: microsoft.status }, 'reconciliation recorded a purchase the ledger had never seen');
          return { kind: 'purchase-recorded', calls };
        case 'converge': {
          if (check.checkOperations) {
            calls++;
            const operations = await this.call(signal, () => this.options.marketplace.listOperations(subscriptionId, { signal, correlationId: runId }));
            if (operationInProgress(operations)) {
              log.info({ subscriptionId, kinds: check.drift, operations: operations.map((o) => o.id) }, 'reconciliation left a subscription alone: Microsoft has an operation in progress');
              return { kind: 'in-flight', drift: check.drift, calls };
            }
          }
          const result = await this.options.ledger.execute(subscriptionId, check.command, context);
          const remaining = result.state.status === 'Initial' ? check.drift : driftOf(result.state, microsoft);
          if (result.events.length > 0) {
            log.warn({ subscriptionId, kinds: check.drift, events: result.events.map((e) => e.type) }, 'reconciliation repaired a drift');
          }
          if (remaining.length > 0) log.warn({ subscriptionId, kinds: remaining }, 'reconciliation left a difference nothing may repair');
          return { kind: 'converged', drift: check.drift, appended: result.events.length, remaining, calls };
        }
        default: {
          const _exhaustive: never = check;
          return { kind: 'in-line', calls };
        }
      }
    } catch (err) {
      if (stopsTheRun(err, signal)) throw err;
      log.error({ err, subscriptionId }, 'reconciliation could not check a subscription; going on with the next');
      return { kind: 'error', drift: [], calls };
    }
  }

  private async command(runId: string, command: ReconciliationCommand): Promise<Run> {
    const result = await handleCommand(this.store, reconciliationStream(runId), reconciliationDecider, command, {
      metadata: { actor: ACTOR, ...ownInitiative(runId) },
    });
    if (result.state.status === 'none') throw new Error(`run ${runId}: ${command.type} left no run`);
    return result.state;
  }

  private async call<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    await this.limiter.take(signal);
    return fn();
  }

  // ── Reads for the operator API and the CLI ─────────────────────────────────────────────────────

  /** The last runs, newest first, each with the progress its stream's last event records. */
  async list(): Promise<RunSummary[]> {
    const { runs } = await this.index();
    return Promise.all(runs.map((r) => this.summaryOf(r)));
  }

  private async summaryOf(entry: IndexedRun): Promise<RunSummary> {
    const last = await this.store.readLastEvent(reconciliationStream(entry.runId));
    const event = last ? decodeReconciliationEvent(last) : undefined;
    if (!event) return entry;
    switch (event.type) {
      case 'ReconciliationStarted':
        return { ...entry, pages: 0, counts: emptyCounts() };
      case 'ReconciliationResumed':
        return { ...entry, pages: event.data.fromPage - 1, counts: event.data.counts };
      case 'ReconciliationPageChecked':
        return { ...entry, pages: event.data.page, counts: event.data.counts };
      case 'ReconciliationInterrupted':
        return { ...entry, pages: event.data.pages, counts: event.data.counts };
      case 'ReconciliationFinished':
        return { ...entry, pages: event.data.pages, counts: event.data.counts, durationMs: event.data.durationMs };
      default: {
        const _exhaustive: never = event;
        return entry;
      }
    }
  }

  /** One run from its stream (also runs the index no longer lists); undefined when there is none. */
  async get(runId: string): Promise<{ run: Run; history: RunHistoryEntry[] } | undefined> {
    const { state, events } = await loadAggregate(this.store, reconciliationStream(runId), reconciliationDecider);
    if (state.status === 'none') return undefined;
    const history: RunHistoryEntry[] = [];
    for (const stored of events) {
      const e = decodeReconciliationEvent(stored);
      if (!e) continue;
      const d = e.data;
      history.push({
        type: e.type,
        at: d.at,
        instanceId: d.instanceId,
        ...(e.type === 'ReconciliationPageChecked' ? { page: e.data.page } : {}),
        ...(e.type === 'ReconciliationInterrupted' ? { reason: e.data.reason } : {}),
      });
    }
    return { run: state, history };
  }

  /** Stop: a run under way is interrupted (recorded with `reason`, claim released) and resumed by the next trigger. */
  async close(reason = 'the service is shutting down'): Promise<void> {
    this.closed = true;
    const current = this.current;
    if (!current) return;
    current.abort.abort(new Error(reason));
    await current.done;
  }
}
