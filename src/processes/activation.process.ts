/**
 * The activation process manager: the executor of the pure workflow in activation.workflow.ts (which says what
 * each step is and why). This file only does the I/O a step names (the ledger, the ISV's provisioner, Microsoft's
 * Get subscription and activate, the pauses) and turns what happened into the workflow's next input.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import { subscriptionCategory } from '../domain/subscription/index.js';
import { categoryPrefix, entityIdOf } from '../eventstore/eventstore.js';
import type { FulfillmentClient } from '../marketplace/fulfillment-client.js';
import { MarketplaceError, MarketplaceUnavailableError } from '../marketplace/errors.js';
import type { Logger } from '../logger.js';
import type { Provisioner } from '../application/provisioner.js';
import type { ProcessHandler } from './runner/types.js';
import { activationTrigger, activationWorkflow, defaultActivationPolicy } from './activation.workflow.js';
import type { ActivationInput, ActivationState, ActivationStep, ActivationTrigger } from './activation.workflow.js';

export type ActivationOptions = {
  ledger: SubscriptionLedger;
  /** The two calls activation makes to Microsoft. */
  marketplace: Pick<FulfillmentClient, 'getSubscription' | 'activateSubscription'>;
  provisioner: Provisioner;
  logger: Logger;
  /** Default 5. */
  maxAttempts?: number;
  /** Default 1000 ms, doubling after each failed attempt. */
  backoffMs?: number;
  /** How long to wait for Microsoft to report Subscribed after an accepted activate. Default 30 s. */
  confirmTimeoutMs?: number;
  /** The time stamped on the commands. */
  now?: () => Date;
};

const actor = 'system:activation';

export function activationProcess(options: ActivationOptions): ProcessHandler {
  const { ledger, marketplace, provisioner } = options;
  const log = options.logger.child({ process: 'activation' });
  const workflow = activationWorkflow({
    maxAttempts: options.maxAttempts ?? defaultActivationPolicy.maxAttempts,
    backoffMs: options.backoffMs ?? defaultActivationPolicy.backoffMs,
    confirmTimeoutMs: options.confirmTimeoutMs ?? defaultActivationPolicy.confirmTimeoutMs,
  });
  const now = () => (options.now?.() ?? new Date()).toISOString();

  /** Does what the step names; resolves to what happened. */
  async function perform(id: string, trigger: ActivationTrigger, step: Exclude<ActivationStep, { kind: 'done' }>): Promise<ActivationInput> {
    const { correlationId } = trigger;
    switch (step.kind) {
      case 'load':
        return { type: 'SubscriptionLoaded', subscription: (await ledger.load(id)).state };
      case 'provision':
        await provisioner.provision(step.subscription, 'activation');
        return { type: 'Provisioned' };
      case 'get-subscription': {
        if (step.alreadyActive) {
          log.info({ subscriptionId: id, status: step.alreadyActive }, 'already active at Microsoft: recording it without activating again');
        }
        const sub = await marketplace.getSubscription(id, { correlationId });
        return { type: 'MicrosoftAnswered', purpose: step.purpose, status: sub.saasSubscriptionStatus, term: sub.term, atMs: Date.now() };
      }
      case 'activate': {
        const { planId, quantity } = step;
        await marketplace.activateSubscription(id, { planId, ...(quantity !== undefined ? { quantity } : {}) }, { correlationId });
        log.info({ subscriptionId: id, planId, quantity, correlationId }, 'Microsoft accepted the activation');
        return { type: 'ActivationAccepted', atMs: Date.now() };
      }
      case 'await-subscribed': {
        if (step.afterMs > 0) await sleep(step.afterMs);
        const sub = await marketplace.getSubscription(id, { correlationId });
        return { type: 'MicrosoftAnswered', purpose: 'await', status: sub.saasSubscriptionStatus, term: sub.term, atMs: Date.now() };
      }
      case 'confirm':
        await ledger.execute(id, { ...step.command, now: now() }, { actor, correlationId, causationId: trigger.eventId });
        return { type: 'ActivationConfirmed' };
      case 'record-failure': {
        const { reason, final } = step.command;
        log.warn({ subscriptionId: id, attempt: step.attempt, final, reason }, 'activation attempt failed');
        await ledger.execute(id, { ...step.command, now: now() }, { actor, causationId: trigger.eventId });
        return { type: 'FailureRecorded', final };
      }
      case 'back-off':
        await sleep(step.ms);
        return { type: 'BackedOff' };
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
      const transient = err instanceof MarketplaceUnavailableError || !(err instanceof MarketplaceError);
      return { type: 'AttemptFailed', reason: err instanceof Error ? err.message : String(err), transient };
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
