/**
 * The `Provisioner` that asks the ISV's application to provision a customer: a signed
 * `provisioning.requested` POST to PROVISIONING_WEBHOOK_URL that must be answered 2xx within the
 * timeout. Anything else throws a ProvisioningError (with the answer's Retry-After, if any): the activation
 * process records the failure and tries again later with backoff; the notification process retries the notification (and Microsoft's
 * 10-second window runs out if the ISV is slower than that, so answer fast).
 *
 * The idempotency key is derived from what is being provisioned (subscription, reason, plan, seats,
 * the Microsoft operation or the activation request behind it): a retry of the same request carries
 * the same key, a later change a new one.
 */
import type { KnownSubscription } from '../domain/subscription/index.js';
import type { Logger } from '../logger.js';
import { ProvisioningError, immediateProvisioner } from '../application/provisioner.js';
import type { Provisioner, ProvisioningReason } from '../application/provisioner.js';
import { deterministicId } from './ids.js';
import { INTEGRATION_EVENT_VERSION, subscriptionSnapshot } from './outbound-event.js';
import type { SubscriptionSnapshot } from './outbound-event.js';
import type { IntegrationConfig } from '../config.js';
import { createWebhookSender } from './webhook-sender.js';
import type { WebhookSender, WebhookSenderOptions } from './webhook-sender.js';

export const PROVISIONING_REQUESTED = 'provisioning.requested';

export type ProvisioningRequest = {
  id: string;
  type: typeof PROVISIONING_REQUESTED;
  version: typeof INTEGRATION_EVENT_VERSION;
  subscriptionId: string;
  reason: ProvisioningReason;
  /** ISO-8601 UTC time of this request (the same on a retry of it is not promised; the id is). */
  occurredAt: string;
  subscription: SubscriptionSnapshot;
};

export { ProvisioningError } from '../application/provisioner.js';

export function provisioningKey(s: KnownSubscription, reason: ProvisioningReason): string {
  const cause = reason === 'activation' ? (s.activation.requestedAt ?? s.activatedAt ?? s.purchasedAt) : (s.appliedOperations.at(-1) ?? '');
  return deterministicId('provisioning', s.subscriptionId, reason, s.planId, String(s.quantity ?? ''), cause);
}

export type HttpProvisionerOptions = {
  url: string;
  secrets: readonly string[];
  timeoutMs: number;
  logger: Logger;
  now?: () => Date;
  fetch?: WebhookSenderOptions['fetch'];
  sender?: WebhookSender;
};

export function createHttpProvisioner(options: HttpProvisionerOptions): Provisioner {
  const log = options.logger.child({ component: 'provisioning' });
  const now = options.now ?? (() => new Date());
  const sender =
    options.sender ??
    createWebhookSender({
      url: options.url,
      secrets: options.secrets,
      timeoutMs: options.timeoutMs,
      now: () => now().getTime(),
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
  const attempts = new Map<string, number>();

  return {
    async provision(subscription, reason) {
      const request: ProvisioningRequest = {
        id: provisioningKey(subscription, reason),
        type: PROVISIONING_REQUESTED,
        version: INTEGRATION_EVENT_VERSION,
        subscriptionId: subscription.subscriptionId,
        reason,
        occurredAt: now().toISOString(),
        subscription: subscriptionSnapshot(subscription),
      };
      const attempt = (attempts.get(request.id) ?? 0) + 1;
      attempts.set(request.id, attempt);
      const result = await sender.send({ idempotencyKey: request.id, type: request.type, body: JSON.stringify(request) }, attempt);
      const fields = { subscriptionId: request.subscriptionId, reason, idempotencyKey: request.id, attempt, durationMs: result.durationMs };
      if (result.ok) {
        attempts.delete(request.id);
        log.info({ ...fields, status: result.status }, 'the ISV provisioned the subscription');
        return;
      }
      if (attempts.size > 10_000) attempts.clear(); // a bound, not a ledger: the attempt number is informative only
      log.warn({ ...fields, status: result.status, error: result.error }, 'the ISV did not acknowledge the provisioning request');
      throw new ProvisioningError(`provisioning in the ISV's application failed: ${result.error}`, result.status, result.timedOut, result.retryAfterMs);
    },
  };
}

/** The provisioner the settings call for: the ISV's webhook, or (no URL configured) immediate success. */
export function provisionerFor(settings: IntegrationConfig | undefined, logger: Logger): Provisioner {
  if (!settings) return immediateProvisioner;
  return createHttpProvisioner({ url: settings.url, secrets: settings.secrets, timeoutMs: settings.timeoutMs, logger });
}
