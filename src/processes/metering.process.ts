/**
 * The metering process: after each hour closes, the subscription's usage for it is summed per dimension and sent
 * to Microsoft (metering.workflow.ts decides; this file does the I/O). For each `usage-` stream (one subscription,
 * one hour), once `METERING_SUBMIT_DELAY_MS` after the hour:
 *
 *   CloseHour (totals frozen; later records are late) → included quantities applied (allowance stream) →
 *   UsageSubmitted per dimension, recorded BEFORE the call → batchUsageEvent (≤ 25 a call) → UsageSettled per item.
 *
 * A crash after the call and before UsageSettled leaves UsageSubmitted without an answer: the event that was being
 * handled is handled again after the restart, the same quantities are sent again, and Microsoft's `Duplicate`
 * (carrying the event it accepted the first time) settles them: one billed event, a settled record.
 * Keyed by subscription, so one subscription's hours go in order and a failing one holds only itself. Microsoft not
 * answering (429/5xx after the client's retries, a rejected credential) → RetryLater with backoff until the usage's
 * 24-hour limit; within METERING_EXPIRY_WARNING_MS of it each attempt logs a warning; past it the hour settles
 * locally as `Expired` (not billed, reported).
 */
import { causedBy } from '../eventstore/provenance.js';
import type { Provenance } from '../eventstore/provenance.js';
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import type { UsageLedger } from '../application/usage-ledger.js';
import { awaitingAnswer, decodeUsageHourEvent, earliestExpiryMs, hourStartMs, isSettled, monthOf, usageCategory } from '../domain/metering/index.js';
import type { SettlementAnswer, UsageHourState } from '../domain/metering/index.js';
import { categoryPrefix, entityIdOf } from '../eventstore/eventstore.js';
import type { EventMetadata, RecordedEvent } from '../eventstore/eventstore.js';
import type { Logger } from '../logger.js';
import { MarketplaceBadRequestError, MarketplaceError } from '../marketplace/errors.js';
import { MAX_USAGE_BATCH } from '../marketplace/metering-client.js';
import type { MeteringClient } from '../marketplace/metering-client.js';
import { answersOf, chunks, expiry, submissionDue, usageEventOf } from './metering.workflow.js';
import { RetryLater } from './runner/types.js';
import type { ProcessHandler } from './runner/types.js';

export type MeteringOptions = {
  usage: UsageLedger;
  subscriptions: Pick<SubscriptionLedger, 'load'>;
  metering: Pick<MeteringClient, 'postBatchUsageEvent'>;
  /** Included quantity per dimension per UTC month (METERING_INCLUDED). */
  included: ReadonlyMap<string, number>;
  submitDelayMs: number;
  expiryWarningMs: number;
  logger: Logger;
  now?: () => Date;
};

export const METERING_PROCESS_NAME = 'metering';
const actor = 'system:metering';
const MEMO_LIMIT = 50_000;

/** The subscription a `usage-<subscriptionId>.<hour>` stream belongs to. */
export const subscriptionOfUsageStream = (streamId: string): string => entityIdOf(streamId).split('.')[0] ?? streamId;

export function meteringProcess(options: MeteringOptions): ProcessHandler {
  const log = options.logger.child({ process: METERING_PROCESS_NAME });
  const nowMs = (): number => (options.now?.() ?? new Date()).getTime();
  /** streamId → the revision up to which every event of the stream is settled: later events of it need no read. */
  const settledUpTo = new Map<string, bigint>();
  const remember = (streamId: string, revision: bigint | undefined): void => {
    if (revision === undefined) return;
    settledUpTo.delete(streamId);
    settledUpTo.set(streamId, revision);
    if (settledUpTo.size > MEMO_LIMIT) for (const k of [...settledUpTo.keys()].slice(0, MEMO_LIMIT / 10)) settledUpTo.delete(k);
  };

  async function submit(subscriptionId: string, hour: string, state: UsageHourState, meta: EventMetadata): Promise<UsageHourState> {
    const at = new Date(nowMs()).toISOString();
    const toSubmit = [...state.dimensions.values()].filter((d) => d.closed && !d.submitted && !d.settled);
    if (toSubmit.length === 0) return state;
    const sub = await options.subscriptions.load(subscriptionId);
    const planId = sub.state.status === 'Initial' ? '' : sub.state.planId;
    const lines = toSubmit.flatMap((d) => {
      const perMonth = options.included.get(d.dimension) ?? 0;
      return d.closed && perMonth > 0 ? [{ dimension: d.dimension, recorded: d.closed.quantity, includedPerMonth: perMonth }] : [];
    });
    const included = new Map<string, number>();
    if (lines.length > 0) {
      const applied = await options.usage.applyIncluded({ type: 'ApplyIncluded', subscriptionId, month: monthOf(hour), hour, lines, now: at }, meta);
      for (const l of lines) included.set(l.dimension, applied.state.applied.get(`${hour}|${l.dimension}`)?.applied ?? 0);
    }
    return (await options.usage.executeHour(subscriptionId, hour, { type: 'SubmitUsage', planId, included, now: at }, meta)).state;
  }

  /** Microsoft's answers for every submitted, unanswered dimension; RetryLater while it does not answer. */
  async function call(subscriptionId: string, hour: string, state: UsageHourState, meta: Provenance & EventMetadata): Promise<SettlementAnswer[]> {
    const { correlationId } = meta;
    const waiting = awaitingAnswer(state);
    const answers: SettlementAnswer[] = [];
    try {
      for (const batch of chunks(waiting, MAX_USAGE_BATCH)) {
        const items = await options.metering.postBatchUsageEvent(batch.map(usageEventOf), { correlationId });
        answers.push(...answersOf(batch, items));
      }
      return answers;
    } catch (err) {
      if (!(err instanceof MarketplaceError)) throw err;
      const answered = new Set(answers.map((a) => a.dimension));
      const rest = waiting.filter((w) => !answered.has(w.dimension));
      if (err instanceof MarketplaceBadRequestError) {
        return [...answers, ...rest.map((w): SettlementAnswer => ({ dimension: w.dimension, status: 'BadArgument', billed: 0, via: 'answer', detail: err.message.slice(0, 300) }))];
      }
      const limit = earliestExpiryMs(state);
      const now = nowMs();
      const fields = { subscriptionId, hour, dimensions: rest.map((w) => w.dimension), reason: err.message.slice(0, 300) };
      switch (expiry(limit, now, options.expiryWarningMs)) {
        case 'expired':
          log.error(fields, 'usage expired: Microsoft did not take it within 24 hours; not billed');
          return [...answers, ...rest.map((w): SettlementAnswer => ({ dimension: w.dimension, status: 'Expired', billed: 0, via: 'local', detail: 'Microsoft did not answer before its 24-hour limit' }))];
        case 'about-to-expire':
          log.warn({ ...fields, expiresAt: new Date(limit ?? now).toISOString() }, 'usage about to expire: Microsoft is not taking it');
          break;
        default:
          log.warn(fields, 'usage not submitted yet: Microsoft is not answering');
      }
      if (answers.length > 0) await options.usage.executeHour(subscriptionId, hour, { type: 'SettleUsage', answers, now: new Date(now).toISOString() }, meta);
      throw new RetryLater(`usage of ${subscriptionId} for ${hour}: Microsoft is not answering`, { until: new Date(limit ?? now).toISOString(), cause: err });
    }
  }

  async function settleHour(recorded: RecordedEvent, subscriptionId: string, hour: string): Promise<void> {
    const meta = { actor, ...causedBy(recorded) };
    let { state } = await options.usage.loadHour(subscriptionId, hour);
    if (!state.closed) state = (await options.usage.executeHour(subscriptionId, hour, { type: 'CloseHour', subscriptionId, hour, now: new Date(nowMs()).toISOString() }, meta)).state;
    state = await submit(subscriptionId, hour, state, meta);
    if (awaitingAnswer(state).length > 0) {
      const answers = await call(subscriptionId, hour, state, meta);
      const result = await options.usage.executeHour(subscriptionId, hour, { type: 'SettleUsage', answers, now: new Date(nowMs()).toISOString() }, meta);
      state = result.state;
      const summary = answers.map((a) => ({ dimension: a.dimension, status: a.status, billed: a.billed, via: a.via }));
      log.info({ subscriptionId, hour, answers: summary }, 'usage hour settled with Microsoft');
    }
    if (isSettled(state)) remember(recorded.streamId, (await options.usage.loadHour(subscriptionId, hour)).revision);
  }

  return {
    name: METERING_PROCESS_NAME,
    streamPrefixes: [categoryPrefix(usageCategory)],
    keyOf: (event) => subscriptionOfUsageStream(event.streamId),
    async handle(recorded) {
      if (recorded.type !== 'UsageRecorded') return; // the process's own events, and late records: nothing to send
      const done = settledUpTo.get(recorded.streamId);
      if (done !== undefined && recorded.revision <= done) return;
      const event = decodeUsageHourEvent(recorded);
      if (event?.type !== 'UsageRecorded') return;
      const { subscriptionId, hour } = event.data;
      const due = submissionDue(hour, nowMs(), options.submitDelayMs);
      if (!due.due) {
        throw new RetryLater(`usage of ${subscriptionId} for ${hour}: the hour has not closed yet`, {
          afterMs: due.inMs,
          until: new Date(hourStartMs(hour) + 26 * 3_600_000).toISOString(),
        });
      }
      await settleHour(recorded, subscriptionId, hour);
    },
  };
}
