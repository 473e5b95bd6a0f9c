/**
 * What the reconciliation tests share: the emulator as Microsoft, a real SQLite file, the ledger, the real
 * Fulfillment client, and ways to make Microsoft's record and ours differ: subscriptions recorded as the landing
 * page and the activation would, and changes made at Microsoft *silently* (the emulator's state changed directly:
 * no webhook is ever sent, as when a webhook is dropped or the service was down).
 */
import { join } from 'node:path';
import type { Test } from 'tap';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import { driftOf } from '../../src/domain/subscription/index.js';
import type { DriftKind, KnownSubscription } from '../../src/domain/subscription/index.js';
import { startEmulator } from '../../src/emulator/emulator.js';
import type { Emulator, EmulatorOptions } from '../../src/emulator/emulator.js';
import type { PurchaseInput } from '../../src/emulator/state.js';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { createLogger } from '../../src/logger.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { microsoftRecordOf, Reconciler } from '../../src/processes/reconciliation.process.js';
import type { ReconcilerOptions } from '../../src/processes/reconciliation.process.js';
import { tempDir } from './temp.js';

export const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const now = () => new Date();

export function clientFor(emulator: Emulator): FulfillmentClient {
  return new FulfillmentClient({
    baseUrl: emulator.apiBaseUrl,
    tokenProvider: new StaticTokenProvider('emulator-accepts-any-token'),
    logger,
    retry: { maxAttempts: 4, baseDelayMs: 20, maxElapsedMs: 10_000 },
  });
}

/** Record a subscription Microsoft has as the landing page and the activation would have: in line with Microsoft. */
export async function recordAsLanded(ledger: SubscriptionLedger, client: FulfillmentClient, id: string): Promise<void> {
  const sub = await client.getSubscription(id);
  const { details, status } = microsoftRecordOf(sub);
  await ledger.execute(id, { type: 'RecordPurchase', now: new Date().toISOString(), source: 'landing', subscription: details, microsoftStatus: status }, { actor: 'customer:test' });
}

/** Changes at Microsoft that no webhook reports. */
export function silently(emulator: Emulator) {
  const s = emulator.state;
  return {
    purchase: (input: PurchaseInput): string => s.purchase(input, now()).subscription.id,
    activate: (id: string): void => void s.activate(id, {}, now()),
    changePlan: (id: string, planId: string): void => void s.accept(s.customerChange(id, { planId }, now()).id, now()),
    changeQuantity: (id: string, quantity: number): void => void s.accept(s.customerChange(id, { quantity }, now()).id, now()),
    /** A customer change Microsoft is still waiting to have acknowledged (InProgress). */
    startQuantityChange: (id: string, quantity: number): string => s.customerChange(id, { quantity }, now()).id,
    suspend: (id: string): void => void s.suspend(id, now()),
    reinstate: (id: string): void => void s.accept(s.reinstate(id, now()).id, now()),
    renew: (id: string): void => void s.renew(id, now()),
    unsubscribe: (id: string): void => void s.unsubscribe(id, now()),
    autoRenew: (id: string, on: boolean): void => void s.setAutoRenew(id, on, now()),
  };
}

/** Every subscription Microsoft lists with what still differs in the ledger (an unrecorded one: ['unrecorded']). */
export async function differences(ledger: SubscriptionLedger, client: FulfillmentClient): Promise<Map<string, (DriftKind | 'unrecorded')[]>> {
  const out = new Map<string, (DriftKind | 'unrecorded')[]>();
  for (const sub of await client.listSubscriptions()) {
    const { state } = await ledger.load(sub.id);
    const kinds = state.status === 'Initial' ? (['unrecorded'] as const) : driftOf(state, microsoftRecordOf(sub));
    if (kinds.length) out.set(sub.id, [...kinds]);
  }
  return out;
}

export async function known(ledger: SubscriptionLedger, id: string): Promise<KnownSubscription> {
  const { state } = await ledger.load(id);
  if (state.status === 'Initial') throw new Error(`${id} is not recorded`);
  return state;
}

export type ReconcileWorld = {
  emulator: Emulator;
  client: FulfillmentClient;
  path: string;
  store: EventStore;
  ledger: SubscriptionLedger;
  ms: ReturnType<typeof silently>;
  /** A reconciler on this world's store (or another store on the same file: another instance). */
  reconciler(options?: Partial<ReconcilerOptions>): Reconciler;
  /** Buy at Microsoft, activate, and record it in the ledger: a subscription in line. */
  active(planId?: string, quantity?: number): Promise<string>;
};

export async function reconcileWorld(t: Test, emulatorOptions: EmulatorOptions = {}): Promise<ReconcileWorld> {
  const emulator = await startEmulator({ pageSize: 3, ...emulatorOptions });
  const path = join(tempDir(t, 'reconcile'), 'events.db');
  const store = openSqliteStore({ path, pollIntervalMs: 20 });
  const ledger = new SubscriptionLedger(store);
  const client = clientFor(emulator);
  const ms = silently(emulator);
  const reconcilers: Reconciler[] = [];
  t.teardown(async () => {
    for (const r of reconcilers) await r.close();
    await store.close();
    await emulator.close();
  });
  return {
    emulator,
    client,
    path,
    store,
    ledger,
    ms,
    reconciler(options = {}) {
      const r = new Reconciler({ store, ledger, marketplace: client, logger, maxCallsPerSecond: 500, takeoverAfterMs: 2000, ...options });
      reconcilers.push(r);
      return r;
    },
    async active(planId = 'standard', quantity = 5) {
      const id = ms.purchase({ planId, ...(planId === 'standard' || planId === 'premium' ? { quantity } : {}) });
      ms.activate(id);
      await recordAsLanded(ledger, client, id);
      return id;
    },
  };
}
