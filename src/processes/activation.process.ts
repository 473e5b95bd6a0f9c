/**
 * Activation: ActivationRequested → provision in the ISV's product → Microsoft `activate` with the
 * plan and seats → confirm with Get subscription → Activated.
 *
 * Crash-safe without repeating what was done: before calling Microsoft it asks Microsoft where the
 * subscription is (Subscribed already → just record it; Unsubscribed → stop), so a process killed
 * after Microsoft accepted the activation but before we recorded it confirms on restart instead of
 * activating again. Transient failures are retried with backoff and recorded as ActivationFailed;
 * after `maxAttempts` the last one is final and an operator has to look.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import { subscriptionCategory } from '../domain/subscription/index.js';
import type { KnownSubscription } from '../domain/subscription/index.js';
import type { RecordedEvent } from '../eventstore/eventstore.js';
import type { FulfillmentClient } from '../marketplace/fulfillment-client.js';
import { MarketplaceError, MarketplaceUnavailableError } from '../marketplace/errors.js';
import type { Logger } from '../logger.js';
import type { Provisioner } from '../application/provisioner.js';
import type { ProcessHandler } from './runner/types.js';

export type ActivationOptions = {
  ledger: SubscriptionLedger;
  marketplace: FulfillmentClient;
  provisioner: Provisioner;
  logger: Logger;
  maxAttempts?: number;
  backoffMs?: number;
  /** How long to wait for Microsoft to report Subscribed after an accepted activate. */
  confirmTimeoutMs?: number;
  now?: () => Date;
};

const prefix = `${subscriptionCategory}-`;
const actor = 'system:activation';

type Outcome = { done: true } | { done: false; reason: string; transient: boolean };

export function activationProcess(options: ActivationOptions): ProcessHandler {
  const { ledger, marketplace, provisioner } = options;
  const log = options.logger.child({ process: 'activation' });
  const maxAttempts = options.maxAttempts ?? 5;
  const backoffMs = options.backoffMs ?? 1000;
  const confirmTimeoutMs = options.confirmTimeoutMs ?? 30_000;
  const now = () => (options.now?.() ?? new Date()).toISOString();

  const confirm = async (id: string, correlationId: string, causationId: string, planId?: string, quantity?: number) => {
    const sub = await marketplace.getSubscription(id, { correlationId });
    await ledger.execute(
      id,
      {
        type: 'ConfirmActivation',
        now: now(),
        source: 'process',
        ...(planId ? { planId } : {}),
        ...(quantity !== undefined ? { quantity } : {}),
        ...(sub.term ? { term: { ...(sub.term.termUnit ? { termUnit: sub.term.termUnit } : {}), ...(sub.term.startDate ? { startDate: sub.term.startDate } : {}), ...(sub.term.endDate ? { endDate: sub.term.endDate } : {}) } } : {}),
      },
      { actor, correlationId, causationId },
    );
  };

  /** One attempt; every step re-checks what is already done. */
  const attempt = async (s: KnownSubscription, event: RecordedEvent): Promise<Outcome> => {
    const id = s.subscriptionId;
    const correlationId = event.metadata.correlationId ?? event.id;
    const planId = s.activation.planId ?? s.planId;
    const quantity = s.activation.quantity ?? s.quantity;
    try {
      await provisioner.provision(s, 'activation');
      const at = await marketplace.getSubscription(id, { correlationId });
      const status = at.saasSubscriptionStatus;
      if (status === 'Unsubscribed') return { done: false, reason: 'the subscription is Unsubscribed at Microsoft; it cannot be activated', transient: false };
      if (status !== 'Subscribed' && status !== 'Suspended') {
        await marketplace.activateSubscription(id, { planId, ...(quantity !== undefined ? { quantity } : {}) }, { correlationId });
        log.info({ subscriptionId: id, planId, quantity, correlationId }, 'Microsoft accepted the activation');
        if (!(await waitForSubscribed(id, correlationId))) {
          return { done: false, reason: `Microsoft accepted the activation but did not report Subscribed within ${confirmTimeoutMs} ms`, transient: true };
        }
      } else {
        log.info({ subscriptionId: id, status }, 'already active at Microsoft: recording it without activating again');
      }
      await confirm(id, correlationId, event.id, planId, quantity);
      return { done: true };
    } catch (err) {
      const transient = err instanceof MarketplaceUnavailableError || !(err instanceof MarketplaceError);
      return { done: false, reason: (err as Error).message, transient };
    }
  };

  const waitForSubscribed = async (id: string, correlationId: string): Promise<boolean> => {
    const deadline = Date.now() + confirmTimeoutMs;
    for (let wait = 250; ; wait = Math.min(wait * 2, 5000)) {
      const sub = await marketplace.getSubscription(id, { correlationId });
      if (sub.saasSubscriptionStatus === 'Subscribed' || sub.saasSubscriptionStatus === 'Suspended') return true;
      if (Date.now() + wait > deadline) return false;
      await sleep(wait);
    }
  };

  return {
    name: 'activation',
    streamPrefixes: [prefix],
    async handle(event) {
      if (event.type !== 'ActivationRequested' && !(event.type === 'Activated' && (event.data as { autoActivated?: boolean }).autoActivated)) return;
      const id = event.streamId.slice(prefix.length);
      const first = (await ledger.load(id)).state;
      if (first.status === 'Initial') return;
      if (event.type === 'Activated') {
        // Auto-activated at purchase: Microsoft needs nothing from us; the product needs the customer.
        await provisioner.provision(first, 'activation');
        return;
      }
      for (let n = 1; n <= maxAttempts; n++) {
        const { state } = await ledger.load(id);
        if (state.status !== 'PendingFulfillmentStart') return; // activated (or cancelled) meanwhile
        if (state.activation.gaveUp || state.activation.requestedAt !== (event.data as { at?: string }).at) return; // superseded
        const outcome = await attempt(state, event);
        if (outcome.done) return;
        const final = !outcome.transient || n === maxAttempts;
        log.warn({ subscriptionId: id, attempt: n, final, reason: outcome.reason }, 'activation attempt failed');
        await ledger.execute(id, { type: 'RecordActivationFailure', now: now(), source: 'process', reason: outcome.reason, final }, { actor, causationId: event.id });
        if (final) return;
        await sleep(backoffMs * 2 ** (n - 1));
      }
    },
  };
}
