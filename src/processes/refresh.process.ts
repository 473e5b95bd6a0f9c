/**
 * Executes refresh.workflow.ts: for each subscription event that asks for it, List operations (is anything still
 * open at Microsoft?), Get subscription, and ConvergeOnMicrosoft with source `process`; each event it records
 * carries what Microsoft reported. Keyed by subscription (the stream), so one subscription's refreshes stay in
 * order and a failing one holds only itself. Microsoft not answering → RetryLater; a subscription Microsoft does
 * not know → logged and left to reconciliation (never retried for ever).
 */
import { causedBy } from '../eventstore/provenance.js';
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import { detailsFromMicrosoft } from '../application/subscription-details.js';
import { decodeSubscriptionEvent, driftOf, subscriptionCategory } from '../domain/subscription/index.js';
import { categoryPrefix, entityIdOf } from '../eventstore/eventstore.js';
import type { Logger } from '../logger.js';
import { MarketplaceNotFoundError, MarketplaceUnavailableError } from '../marketplace/errors.js';
import type { FulfillmentClient } from '../marketplace/fulfillment-client.js';
import { afterOperations, defaultRefreshPatienceMs, isOpen, mayWantRefresh, wantsRefresh } from './refresh.workflow.js';
import { RetryLater } from './runner/types.js';
import type { ProcessHandler } from './runner/types.js';

export type RefreshOptions = {
  ledger: SubscriptionLedger;
  marketplace: FulfillmentClient;
  logger: Logger;
  /** How long after a change the refresh waits for Microsoft's open operations (default 1 h). */
  patienceMs?: number;
  /** Pause before looking again while an operation is open (default 2 s). */
  waitMs?: number;
  now?: () => Date;
};

const actor = 'system:refresh';

export function refreshProcess(options: RefreshOptions): ProcessHandler {
  const log = options.logger.child({ component: 'refresh-process', process: 'refresh' });
  const now = () => (options.now?.() ?? new Date()).toISOString();
  const patienceMs = options.patienceMs ?? defaultRefreshPatienceMs;
  return {
    name: 'refresh',
    streamPrefixes: [categoryPrefix(subscriptionCategory)],
    async handle(recorded) {
      const event = decodeSubscriptionEvent(recorded);
      if (!event || !mayWantRefresh(event)) return; // most events: no stream read at all
      const subscriptionId = entityIdOf(recorded.streamId);
      const { ledger, marketplace } = options;
      const { state } = await ledger.load(subscriptionId);
      if (!wantsRefresh(event, state)) return;
      const call = { correlationId: recorded.metadata.correlationId ?? recorded.id };
      try {
        const open = (await marketplace.listOperations(subscriptionId, call)).filter((o) => isOpen(o.status));
        const decision = afterOperations(open, event.data.at, now(), patienceMs);
        if (decision.type === 'Wait') {
          throw new RetryLater(`refresh of ${subscriptionId} after ${event.type}: ${decision.reason}`, {
            afterMs: options.waitMs ?? 2000,
            until: new Date(decision.untilMs).toISOString(),
          });
        }
        if (decision.type === 'LeaveToReconciliation') {
          log.warn({ subscriptionId, after: event.type, reason: decision.reason }, 'not refreshed from Microsoft; left to reconciliation');
          return;
        }
        const sub = await marketplace.getSubscription(subscriptionId, call);
        const microsoft = { details: detailsFromMicrosoft(sub), status: sub.saasSubscriptionStatus ?? state.status };
        const kinds = driftOf(state, microsoft);
        if (kinds.length === 0) return;
        const result = await ledger.execute(subscriptionId, { type: 'ConvergeOnMicrosoft', now: now(), source: 'process', microsoft }, {
          actor,
          ...causedBy(recorded),
        });
        log.info({ subscriptionId, after: event.type, kinds, events: result.events.map((e) => e.type) }, "refreshed what Microsoft owns");
      } catch (err) {
        if (err instanceof MarketplaceNotFoundError) {
          log.warn({ subscriptionId, after: event.type, detail: err.message }, 'Microsoft does not know this subscription; left to reconciliation');
          return;
        }
        if (err instanceof MarketplaceUnavailableError) throw new RetryLater(`refresh of ${subscriptionId}: Microsoft is not answering`, { cause: err });
        throw err;
      }
    },
  };
}
