/**
 * For the deadline tests over the running service's parts: a SQLite event store in a temp dir, the
 * subscription ledger writing real commands to it, notifications recorded through their decider, and
 * the real projection runner keeping a read-model file up to date.
 */
import { purchaseDetails } from './purchase-details.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import { notificationDecider, notificationStream } from '../../src/domain/notification/index.js';
import type { NotificationCommand, NotificationPayload, NotificationState } from '../../src/domain/notification/index.js';
import type { SubscriptionCommand, SubscriptionDetails } from '../../src/domain/subscription/index.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { Logger } from '../../src/logger.js';
import { startProjections } from '../../src/projections/index.js';
import type { RunningProjections } from '../../src/projections/runner.js';

export const T0 = Date.parse('2026-03-01T09:00:00.000Z');
export const DAY = 86_400_000;
export const at = (ms: number): string => new Date(T0 + ms).toISOString();

export function purchased(subscriptionId: string, created = at(0)): SubscriptionDetails {
  return purchaseDetails(subscriptionId, { term: { termUnit: 'P1M' }, isTest: false, sandboxType: 'None', created });
}

export type DeadlinesWorld = {
  runner: RunningProjections;
  /** Runs a command on `subscription-<id>` and waits until the read models have applied it. */
  subscription(id: string, command: SubscriptionCommand): Promise<void>;
  /** Records a notification command on `notification-<operation id>` and waits for the read models. */
  notification(operationId: string, command: NotificationCommand): Promise<void>;
  /** A ChangePlan/ChangeQuantity delivery as the webhook records it. */
  deliver(n: NotificationPayload, receivedMs: number): Promise<void>;
};

export async function deadlinesWorld(t: Test, logger: Logger): Promise<DeadlinesWorld> {
  const dir = mkdtempSync(join(tmpdir(), 'deadlines-'));
  const store = openSqliteStore({ path: join(dir, 'events.db'), pollIntervalMs: 20 });
  const runner = startProjections({ store, path: join(dir, 'readmodels.db'), logger });
  // One teardown, in order: nothing may still poll the files when they are removed.
  t.teardown(async () => {
    await runner.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const ledger = new SubscriptionLedger(() => store);
  const notifications = new Map<string, NotificationState>();
  const settle = async (position: bigint | undefined) => {
    if (position !== undefined) await runner.waitForPosition(position);
  };
  const world: DeadlinesWorld = {
    runner,
    async subscription(id, command) {
      const result = await ledger.execute(id, command, { actor: 'test' });
      await settle(result.position);
    },
    async notification(operationId, command) {
      const state = notifications.get(operationId) ?? notificationDecider.initialState();
      const events = notificationDecider.decide(command, state);
      notifications.set(operationId, events.reduce(notificationDecider.evolve, state));
      if (events.length === 0) return;
      const appended = await store.appendToStream(notificationStream(operationId), events.map((e) => ({ type: e.type, data: e.data, metadata: { actor: 'test' } })));
      await settle(appended.position);
    },
    deliver(n, receivedMs) {
      return world.notification(n.id, {
        type: 'ReceiveDelivery',
        delivery: { deliveryId: `d-${n.id}-${receivedMs}`, receivedAt: at(receivedMs), body: JSON.stringify(n), headers: {} },
        reading: { readable: true, notification: n },
      });
    },
  };
  await runner.idle();
  return world;
}
