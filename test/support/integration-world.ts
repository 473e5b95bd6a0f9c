/**
 * A SQLite file, the ledger, the integration process run by the process runner, and a receiver for
 * the ISV on 127.0.0.1 — plus the assertions the provisioning tests share.
 */
import type { Test } from 'tap';
import { join } from 'node:path';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import type { SubscriptionDetails } from '../../src/domain/subscription/index.js';
import { subscriptionStream } from '../../src/domain/subscription/index.js';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import type { IntegrationEvent } from '../../src/integration/outbound-event.js';
import { loadIntegrationConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startIntegrationEvents } from '../../src/processes/integration-events.process.js';
import type { RunningIntegrationEvents } from '../../src/processes/integration-events.process.js';
import { startReceiver } from './isv-receiver.js';
import type { Receiver } from './isv-receiver.js';
import { tempDir } from './temp.js';
import { waitFor } from './wait.js';

export const SECRET = 'test-signing-secret-0123456789abcdef';
export const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

export function purchase(subscriptionId: string, overrides: Partial<SubscriptionDetails> = {}): SubscriptionDetails {
  return {
    subscriptionId,
    name: `Contoso ${subscriptionId.slice(0, 4)}`,
    offerId: 'fulfillment-ledger',
    planId: 'silver',
    quantity: 5,
    purchaser: { emailId: 'buyer@contoso.example', tenantId: 'a1b2c3d4-2222-4e5f-8a9b-0c1d2e3f4a5b' },
    beneficiary: { emailId: 'user@contoso.example', tenantId: 'a1b2c3d4-2222-4e5f-8a9b-0c1d2e3f4a5b' },
    term: { termUnit: 'P1M' },
    autoRenew: true,
    isFreeTrial: false,
    isTest: false,
    allowedCustomerOperations: ['Read', 'Update', 'Delete'],
    ...overrides,
  };
}

export const now = () => new Date().toISOString();
export const as = { actor: 'test' };

/** Purchase → activation requested → activated → plan changed → seats changed → suspended → reinstated: 7 events. */
export async function lifecycle(ledger: SubscriptionLedger, id: string): Promise<void> {
  await ledger.execute(id, { type: 'RecordPurchase', now: now(), source: 'landing', subscription: purchase(id), microsoftStatus: 'PendingFulfillmentStart' }, as);
  await ledger.execute(id, { type: 'RequestActivation', now: now(), source: 'landing', contact: { email: 'it@contoso.example', name: 'Dana' } }, as);
  await ledger.execute(id, { type: 'ConfirmActivation', now: now(), source: 'process' }, as);
  await ledger.execute(id, { type: 'ApplyPlanChange', now: now(), source: 'webhook', operationId: `${id}-op1`, planId: 'gold' }, as);
  await ledger.execute(id, { type: 'ApplyQuantityChange', now: now(), source: 'webhook', operationId: `${id}-op2`, quantity: 9 }, as);
  await ledger.execute(id, { type: 'Suspend', now: now(), source: 'webhook', operationId: `${id}-op3` }, as);
  await ledger.execute(id, { type: 'Reinstate', now: now(), source: 'webhook', operationId: `${id}-op4` }, as);
}

export type World = {
  path: string;
  store: EventStore;
  ledger: SubscriptionLedger;
  receiver: Receiver;
  integration: RunningIntegrationEvents;
  /** Stop the integration and close the store, then open both again on the same file. */
  restart(): Promise<void>;
};

export async function world(t: Test, options: { maxAttempts?: number; backoffMaxMs?: number } = {}): Promise<World> {
  const path = join(tempDir(t, 'integration'), 'events.db');
  const receiver = await startReceiver(t, SECRET);
  const settings = loadIntegrationConfig({
    PROVISIONING_WEBHOOK_URL: receiver.url,
    PROVISIONING_WEBHOOK_SECRET: SECRET,
    PROVISIONING_TIMEOUT_MS: '5000',
    INTEGRATION_MAX_ATTEMPTS: String(options.maxAttempts ?? 1000),
  });
  const open = (store: EventStore) =>
    startIntegrationEvents({
      store,
      settings,
      logger,
      runner: { retryBaseMs: 20, retryMaxMs: 200, checkpointAfterMs: 50 },
      delivery: { backoffBaseMs: 40, backoffMaxMs: options.backoffMaxMs ?? 300 },
    });
  const store = openSqliteStore({ path, pollIntervalMs: 20 });
  const w: World = {
    path,
    store,
    ledger: new SubscriptionLedger(() => w.store),
    receiver,
    integration: open(store),
    async restart() {
      await w.integration.stop();
      await w.store.close();
      w.store = openSqliteStore({ path, pollIntervalMs: 20 });
      w.integration = open(w.store);
    },
  };
  t.teardown(async () => {
    await w.integration.stop();
    await w.store.close();
  });
  return w;
}

/** The ids of a subscription's events in stream order: what the receiver must process, in that order. */
export async function expectedIds(store: EventStore, id: string): Promise<string[]> {
  return (await store.readStream(subscriptionStream(id))).map((e) => e.id);
}

/** The integration events (not provisioning requests) the receiver processed for a subscription, in processing order. */
export function processedFor(receiver: Receiver, id: string): IntegrationEvent[] {
  return receiver.processed.filter((r) => r.json.subscriptionId === id && r.type !== 'provisioning.requested').map((r) => r.json as unknown as IntegrationEvent);
}

export async function allProcessed(w: Pick<World, 'store' | 'receiver'>, ids: string[], timeoutMs = 15_000): Promise<void> {
  const expected = new Map<string, string[]>();
  for (const id of ids) expected.set(id, await expectedIds(w.store, id));
  const total = [...expected.values()].reduce((n, e) => n + e.length, 0);
  await waitFor(`${total} integration events processed`, () => ids.every((id) => processedFor(w.receiver, id).length === expected.get(id)?.length), timeoutMs);
}

/** Every key acknowledged exactly once; every request signed correctly; per subscription, exactly its stream in order. */
export async function assertExactlyOnceInOrder(t: Test, w: Pick<World, 'store' | 'receiver'>, ids: string[]): Promise<void> {
  const acks = w.receiver.acknowledgements();
  const repeated = [...acks].filter(([, n]) => n !== 1);
  t.same(repeated, [], 'every idempotency key acknowledged exactly once');
  t.ok(w.receiver.receipts.every((r) => r.verified), `all ${w.receiver.receipts.length} requests carried a valid signature`);
  for (const id of ids) {
    const got = processedFor(w.receiver, id);
    t.same(got.map((e) => e.id), await expectedIds(w.store, id), `${id.slice(0, 8)}: every event, in stream order`);
    t.same(got.map((e) => e.sequence), got.map((_, i) => i), `${id.slice(0, 8)}: sequences 0…${got.length - 1}`);
  }
}
