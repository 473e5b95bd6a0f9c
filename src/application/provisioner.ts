/**
 * The ISV's own product, as the processes see it. Provisioning is idempotent on the subscription id:
 * it may be asked twice for the same thing after a crash and must then do nothing new.
 * The default provisions at once (the local sandbox); the outbound, signed integration webhook to
 * PROVISIONING_WEBHOOK_URL is the next layer's job.
 */
import type { KnownSubscription } from '../domain/subscription/index.js';

export type ProvisioningReason = 'activation' | 'plan-change' | 'quantity-change';

export interface Provisioner {
  provision(subscription: KnownSubscription, reason: ProvisioningReason): Promise<void>;
}

/**
 * The ISV's product did not acknowledge a provisioning request (an error status, no answer in time, a refused
 * connection). Always worth asking again (docs/integration-events.md: every failure is retried); `retryAfterMs`
 * is the product's own `Retry-After`, when it sent one.
 */
export class ProvisioningError extends Error {
  override name = 'ProvisioningError';
  constructor(
    message: string,
    readonly status?: number,
    readonly timedOut = false,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export const immediateProvisioner: Provisioner = {
  async provision() {
    // Nothing to call: the local sandbox has no product to set up.
  },
};
