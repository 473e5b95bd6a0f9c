/**
 * The rules of one Microsoft notification, pure. Commands:
 * - `ReceiveDelivery`: every authenticated delivery is recorded verbatim, first or repeated, readable or not.
 * - `RefuseChange`: the first delivery of a customer-side plan or quantity change that the ISV's policy
 *   refuses is recorded together with its outcome, so that nothing can act on the delivery alone.
 * - `AcknowledgeOperation`: Microsoft answered our PATCH (once per operation).
 * - `RecordOutcome`: what processing made of it (applied, no-change, ignored, failed, unverified), with
 *   Microsoft's status of the operation as last known; the first one stands, unless a later delivery
 *   reopened an unverified one (notification.state.ts).
 */
import { evaluateChange } from '../change-policy.js';
import type { ChangePolicyConfig } from '../change-policy.js';
import type { Decider } from '../decider.js';
import { DomainError } from '../errors.js';
import { isAcknowledgeable } from './notification.events.js';
import type { NotificationEvent, NotificationOutcome, NotificationPayload, NotificationProcessed, NotificationReceived } from './notification.events.js';
import { evolve, initialState } from './notification.state.js';
import type { NotificationState } from './notification.state.js';

/** One HTTP delivery as it arrived (never the bearer token itself). */
export type Delivery = {
  deliveryId: string;
  receivedAt: string;
  body: string;
  headers: Record<string, string>;
  caller?: { tokenVersion: string; issuer: string; caller: string; tenantId: string };
};

/** What the edge made of a body: a notification, or why it is not one. */
export type NotificationReading = { readable: true; notification: NotificationPayload } | { readable: false; reason: string };

export type NotificationCommand =
  | { type: 'ReceiveDelivery'; delivery: Delivery; reading: NotificationReading }
  | { type: 'RefuseChange'; delivery: Delivery; notification: NotificationPayload; reason: string; subscriptionEvents: readonly string[]; now: string }
  | { type: 'AcknowledgeOperation'; status: 'Success' | 'Failure'; note?: string; now: string }
  | {
      type: 'RecordOutcome';
      outcome: Exclude<NotificationOutcome, 'rejected'>;
      detail: string;
      subscriptionEvents: readonly string[];
      operationStatus?: string;
      now: string;
    };

export type NotificationCommandType = NotificationCommand['type'];

/** A customer-side plan or quantity change: the kind of notification the ISV's policy may refuse. */
export function isRefusable(notification: NotificationPayload): boolean {
  return isAcknowledgeable(notification.action) && notification.operationRequestSource !== 'Partner';
}

/**
 * Why the policy refuses this delivery, if it does: only a first delivery of a customer-side change is
 * judged (a repeat is answered as the first one was).
 */
export function policyRefusal(state: NotificationState, notification: NotificationPayload, policy: ChangePolicyConfig): string | undefined {
  if (state.status !== 'Initial' || !isRefusable(notification)) return undefined;
  const decision = evaluateChange(policy, {
    action: notification.action,
    ...(notification.planId ? { planId: notification.planId } : {}),
    ...(notification.quantity !== undefined ? { quantity: notification.quantity } : {}),
  });
  return decision.accept ? undefined : decision.reason;
}

function received(delivery: Delivery, reading: NotificationReading): NotificationReceived {
  const n = reading.readable ? reading.notification : undefined;
  return {
    type: 'NotificationReceived',
    data: {
      deliveryId: delivery.deliveryId,
      receivedAt: delivery.receivedAt,
      ...(n ? { operationId: n.id, subscriptionId: n.subscriptionId, action: n.action } : {}),
      body: delivery.body,
      headers: delivery.headers,
      ...(delivery.caller ? { caller: delivery.caller } : {}),
      ...(reading.readable ? { payload: reading.notification } : { unreadable: reading.reason }),
    },
  };
}

function processed(
  notification: NotificationPayload,
  outcome: NotificationOutcome,
  detail: string,
  subscriptionEvents: readonly string[],
  at: string,
  operationStatus?: string,
): NotificationProcessed {
  return {
    type: 'NotificationProcessed',
    data: {
      operationId: notification.id,
      subscriptionId: notification.subscriptionId,
      action: notification.action,
      outcome,
      detail,
      subscriptionEvents: [...subscriptionEvents],
      ...(operationStatus !== undefined ? { operationStatus } : {}),
      at,
    },
  };
}

export function decide(command: NotificationCommand, state: NotificationState): NotificationEvent[] {
  switch (command.type) {
    case 'ReceiveDelivery': {
      const { reading } = command;
      if (reading.readable) {
        const known = state.status === 'Received' || state.status === 'Processed' ? state.notification : undefined;
        if (state.status === 'Unreadable' || (known && known.id !== reading.notification.id)) {
          throw new DomainError('notification-mismatch', `ReceiveDelivery: operation ${reading.notification.id} does not belong to this stream`, 400);
        }
      } else if (state.status === 'Received' || state.status === 'Processed') {
        throw new DomainError('notification-mismatch', 'ReceiveDelivery: an unreadable body is kept in a stream of its own', 400);
      }
      return [received(command.delivery, reading)];
    }
    case 'RefuseChange': {
      const n = command.notification;
      if (state.status !== 'Initial') {
        throw new DomainError('already-received', `RefuseChange: operation ${n.id} was received before (${state.status}); a repeat is answered as the first delivery was`);
      }
      if (!isRefusable(n)) {
        throw new DomainError('not-refusable', `RefuseChange: a ${n.action} from ${n.operationRequestSource ?? 'an unknown source'} is not a customer-side plan or quantity change`);
      }
      return [received(command.delivery, { readable: true, notification: n }), processed(n, 'rejected', command.reason, command.subscriptionEvents, command.now)];
    }
    case 'AcknowledgeOperation': {
      if (state.status === 'Initial' || state.status === 'Unreadable') {
        throw new DomainError('not-received', `AcknowledgeOperation: no readable notification here (${state.status})`);
      }
      if (state.status === 'Processed') throw new DomainError('already-processed', `AcknowledgeOperation: the notification is processed (${state.outcome})`);
      if (state.acknowledged) return [];
      const n = state.notification;
      return [
        {
          type: 'OperationAcknowledged',
          data: {
            operationId: n.id,
            subscriptionId: n.subscriptionId,
            status: command.status,
            at: command.now,
            latencyMs: Date.parse(command.now) - Date.parse(state.first.receivedAt),
            ...(command.note !== undefined ? { note: command.note } : {}),
          },
        },
      ];
    }
    case 'RecordOutcome': {
      if (state.status === 'Initial' || state.status === 'Unreadable') {
        throw new DomainError('not-received', `RecordOutcome: no readable notification here (${state.status})`);
      }
      if (state.status === 'Processed') return [];
      return [processed(state.notification, command.outcome, command.detail, command.subscriptionEvents, command.now, command.operationStatus)];
    }
    default: {
      const _exhaustive: never = command;
      throw new DomainError('unknown-command', `unknown command ${JSON.stringify(_exhaustive)}`, 400);
    }
  }
}

export const notificationDecider: Decider<NotificationCommand, NotificationState, NotificationEvent> = { decide, evolve, initialState };
