/**
 * The activation process manager: the executor of the pure workflow in activation.workflow.ts (which says what
 * each step is and why). This file only does the I/O a step names (the ledger, the ISV's provisioner, Microsoft's
 * Get subscription and activate, the wait for Subscribed) and turns what happened into the workflow's next input.
 * A run makes one attempt: a transient failure is recorded and the run ends by throwing RetryLater, so the runner
 * tries the event again after the backoff without holding up other subscriptions (no sleeping between attempts here).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import { subscriptionCategory } from '../domain/subscription/index.js';
import { categoryPrefix, entityIdOf } from '../eventstore/eventstore.js';
import type { FulfillmentClient } from '../marketplace/fulfillment-client.js';
import {
  MarketplaceBadRequestError,
  MarketplaceConflictError,
  MarketplaceNotFoundError,
} from '../marketplace/errors.js';
import type { Logger } from '../logger.js';
import { ProvisioningError } from '../application/provisioner.js';
import type { Provisioner } from '../application/provisioner.js';
import { RetryLater } from './runner/types.js';
import type { ProcessHandler } from './runner/types.js';
import { activationTrigger, activationWorkflow, defaultActivationPolicy } from './activation.workflow.js';
import type { ActivationInput, ActivationPolicy, ActivationState, ActivationStep, ActivationTrigger } from './activation.workflow.js';

export type ActivationOptions = Partial<ActivationPolicy> & {
  ledger: SubscriptionLedger;
  /** The two calls activation makes to Microsoft. */
  marketplace: Pick<FulfillmentClient, 'getSubscription' | 'activateSubscription'>;
  provisioner: Provisioner;
  logger: Logger;
  /** The clock: stamped on the commands, and what the deadline, the backoff and the wait for Subscribed count by. */
  now?: () => Date;
};

/** Microsoft said no, and asking again will not change it: 400, 404 (unknown or Unsubscribed), 409. */
function isFinalFailure(err: unknown): boolean {
  return err instanceof MarketplaceBadRequestError || err instanceof MarketplaceNotFoundError || err instanceof MarketplaceConflictError;
}

const actor = 'system:activation';

export function activationProcess(options: ActivationOptions): ProcessHandler {
  const { ledger, marketplace, provisioner } = options;
  const log = options.logger.child({ component: 'activation-process', process: 'activation' });
  const workflow = activationWorkflow({
    backoffMs: options.backoffMs ?? defaultActivationPolicy.backoffMs,
    maxBackoffMs: options.maxBackoffMs ?? defaultActivationPolicy.maxBackoffMs,
    deadlineMs: options.deadlineMs ?? defaultActivationPolicy.deadlineMs,
    confirmTimeoutMs: options.confirmTimeoutMs ?? defaultActivationPolicy.confirmTimeoutMs,
  });
  const clock = (): Date => options.now?.() ?? new Date();
  const now = () => clock().toISOString();
  const nowMs = () => clock().getTime();

  /** Does what the step names; resolves to what happened. */
  async function perform(id: string, trigger: ActivationTrigger, step: Exclude<ActivationStep, { kind: 'done' }>): Promise<ActivationInput> {
    const { correlationId } = trigger;
    switch (step.kind) {
      case 'load':
        return { type: 'SubscriptionLoaded', subscription: (await ledger.load(id)).state, atMs: nowMs() };
      case 'provision':
        await provisioner.provision(step.subscription, 'activation');
        return { type: 'Provisioned' };
      case 'get-subscription': {
        if (step.alreadyActive) {
          log.info({ subscriptionId: id, status: step.alreadyActive }, 'already active at Microsoft: recording it without activating again');
        }
        const sub = await marketplace.getSubscription(id, { correlationId });
        return { type: 'MicrosoftAnswered', purpose: step.purpose, status: sub.saasSubscriptionStatus, term: sub.term, atMs: nowMs() };
      }
      case 'activate': {
        const { planId, quantity } = step;
        await marketplace.activateSubscription(id, { planId, ...(quantity !== undefined ? { quantity } : {}) }, { correlationId });
        log.info({ subscriptionId: id, planId, quantity, correlationId }, 'Microsoft accepted the activation');
        return { type: 'ActivationAccepted', atMs: nowMs() };
      }
      case 'await-subscribed': {
        if (step.afterMs > 0) await sleep(step.afterMs);
        const sub = await marketplace.getSubscription(id, { correlationId });
        return { type: 'MicrosoftAnswered', purpose: 'await', status: sub.saasSubscriptionStatus, term: sub.term, atMs: nowMs() };
      }
      case 'confirm':
        await ledger.execute(id, { ...step.command, now: now() }, { actor, correlationId, causationId: trigger.eventId });
        return { type: 'ActivationConfirmed' };
      case 'record-failure': {
        const { reason, final, retryAt } = step.command;
        log.warn({ subscriptionId: id, attempt: step.attempt, final, reason, ...(retryAt ? { retryAt } : {}) }, 'activation attempt failed');
        await ledger.execute(id, { ...step.command, now: now() }, { actor, correlationId, causationId: trigger.eventId });
        return { type: 'FailureRecorded', final, ...(step.retry ? { retry: step.retry } : {}) };
      }
      case 'retry-later':
        throw new RetryLater(`activation of ${id}: ${step.reason}`, { afterMs: step.afterMs, until: step.until });
      default: {
        const _exhaustive: never = step;
        return _exhaustive;
      }
    }
  }

  /** A failed step of an attempt as the workflow's input; other failures end the run (the runner retries it). */
  async function attempt(id: string, state: ActivationState, trigger: ActivationTrigger, step: Exclude<ActivationStep, { kind: 'done' }>): Promise<ActivationInput> {
    if (!workflow.failsTheAttempt(step, state)) return perform(id, trigger, step);
    try {
      return await perform(id, trigger, step);
    } catch (err) {
      const retryAfterMs = err instanceof ProvisioningError ? err.retryAfterMs : undefined;
      return {
        type: 'AttemptFailed',
        reason: err instanceof Error ? err.message : String(err),
        transient: !isFinalFailure(err),
        atMs: nowMs(),
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      };
    }
  }

  return {
    name: 'activation',
    streamPrefixes: [categoryPrefix(subscriptionCategory)],
    async handle(event) {
      const trigger = activationTrigger(event);
      if (!trigger) return;
      const id = entityIdOf(event.streamId);
      let state = workflow.initialState();
      let input: ActivationInput = { type: 'Triggered', trigger };
      for (;;) {
        const step = workflow.decide(input, state);
        state = workflow.evolve(state, input);
        if (step.kind === 'done') return;
        input = await attempt(id, state, trigger, step);
      }
    },
  };
}
