/**
 * The life of one Microsoft notification (one `notification-<operation id>` stream), folded from its events:
 * nothing yet → received (one delivery or more) → processed; or a delivery kept as unreadable.
 * An acknowledgement (PATCH Success) may be recorded while it is received, before it is processed.
 * A processed notification whose outcome is reopenable (`unverified`: Microsoft did not confirm it) is
 * received again by its next delivery, and processed again; any other outcome stands for good.
 */
import { isReopenable } from './notification.events.js';
import type { NotificationEvent, NotificationOutcome, NotificationPayload } from './notification.events.js';

/** The delivery that started the notification's life: its latencies are measured from it. */
export type FirstDelivery = { deliveryId: string; receivedAt: string };

export type Acknowledgement = { status: 'Success' | 'Failure'; at: string; note?: string };

export type NotificationState =
  | { status: 'Initial' }
  /** A body that could not be read as a notification: kept for people to look at, never acted on. */
  | { status: 'Unreadable'; deliveries: number; reason: string }
  | {
      status: 'Received';
      notification: NotificationPayload;
      first: FirstDelivery;
      deliveries: number;
      acknowledged?: Acknowledgement;
      /** The outcome a later delivery reopened (the last one), when this is not the first processing. */
      reopened?: { outcome: NotificationOutcome; detail: string };
    }
  | {
      status: 'Processed';
      /** Absent only for a history that records an outcome without its delivery (never written by us). */
      notification?: NotificationPayload;
      first?: FirstDelivery;
      deliveries: number;
      acknowledged?: Acknowledgement;
      outcome: NotificationOutcome;
      detail: string;
    };

export type NotificationStatus = NotificationState['status'];

export const initialState = (): NotificationState => ({ status: 'Initial' });

function acknowledgement(data: Extract<NotificationEvent, { type: 'OperationAcknowledged' }>['data']): Acknowledgement {
  return { status: data.status, at: data.at, ...(data.note !== undefined ? { note: data.note } : {}) };
}

export function evolve(state: NotificationState, event: NotificationEvent): NotificationState {
  switch (event.type) {
    case 'NotificationReceived': {
      const d = event.data;
      if (state.status === 'Initial') {
        if (!d.payload) return { status: 'Unreadable', deliveries: 1, reason: d.unreadable ?? 'not a notification' };
        return { status: 'Received', notification: d.payload, first: { deliveryId: d.deliveryId, receivedAt: d.receivedAt }, deliveries: 1 };
      }
      if (state.status === 'Processed' && isReopenable(state.outcome)) {
        const notification = state.notification ?? d.payload;
        if (notification) {
          return {
            status: 'Received',
            notification,
            first: state.first ?? { deliveryId: d.deliveryId, receivedAt: d.receivedAt },
            deliveries: state.deliveries + 1,
            ...(state.acknowledged ? { acknowledged: state.acknowledged } : {}),
            reopened: { outcome: state.outcome, detail: state.detail },
          };
        }
      }
      return { ...state, deliveries: state.deliveries + 1 };
    }
    case 'OperationAcknowledged':
      if (state.status !== 'Received' && state.status !== 'Processed') return state;
      return { ...state, acknowledged: acknowledgement(event.data) };
    case 'NotificationProcessed': {
      const { outcome, detail } = event.data;
      if (state.status === 'Received') {
        const { reopened: _reopened, ...received } = state;
        return { ...received, status: 'Processed', outcome, detail };
      }
      if (state.status === 'Processed') return state; // the first outcome stands
      return { status: 'Processed', deliveries: state.status === 'Unreadable' ? state.deliveries : 0, outcome, detail };
    }
    default: {
      const _exhaustive: never = event;
      return state;
    }
  }
}
