/**
 * `PublisherChanges.resumeAll()` at startup reads the subscriptions with a pending publisher-side change
 * from the subscriptions read model (once the projections are live), not from a scan of every subscription
 * event; without a read model it still scans the store, and both resume the same changes.
 */
import { join } from 'node:path';
import t from 'tap';
import { purchaseDetails } from '../support/purchase-details.js';
import type { Test } from 'tap';
import { PublisherChanges } from '../../src/application/publisher-changes.js';
import type { PublisherChangeClient } from '../../src/application/publisher-changes.js';
import { SubscriptionLedger } from '../../src/application/subscription-ledger.js';
import type { EventStore } from '../../src/eventstore/eventstore.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { createLogger } from '../../src/logger.js';
import type { AcceptedOperation } from '../../src/marketplace/fulfillment-client.js';
import type { OperationPollOptions, OperationPollResult } from '../../src/marketplace/operation-poller.js';
import type { NormalisedOperation, NormalisedSubscription } from '../../src/marketplace/schemas.js';
import { pendingChangeSource, startProjections } from '../../src/projections/index.js';
import { tempDir } from '../support/temp.js';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const ids = {
  intent: '10000000-0000-4000-8000-000000000001',
  submitted: '10000000-0000-4000-8000-000000000002',
  settled: '10000000-0000-4000-8000-000000000003',
  untouched: '10000000-0000-4000-8000-000000000004',
};
const OP = '20000000-0000-4000-8000-000000000002';

const details = (subscriptionId: string) => purchaseDetails(subscriptionId);

/** Microsoft for a resume: nothing outstanding, the subscription as bought; operations never finish. */
class QuietMicrosoft implements PublisherChangeClient {
  looked: string[] = [];
  followed: string[] = [];
  changePlan(): Promise<AcceptedOperation> {
    throw new Error('never re-sent');
  }
  changeQuantity(): Promise<AcceptedOperation> {
    throw new Error('never re-sent');
  }
  deleteSubscription(): Promise<AcceptedOperation> {
    throw new Error('never re-sent');
  }
  followOperation(accepted: AcceptedOperation, options: OperationPollOptions = {}): Promise<OperationPollResult> {
    this.followed.push(accepted.operationId ?? '');
    return new Promise((_resolve, reject) => options.signal?.addEventListener('abort', () => reject(options.signal?.reason), { once: true }));
  }
  async listOperations(id: string): Promise<NormalisedOperation[]> {
    this.looked.push(id);
    return [];
  }
  async getSubscription(id: string): Promise<NormalisedSubscription> {
    return { id, planId: 'standard', quantity: 5, saasSubscriptionStatus: 'Subscribed' } as NormalisedSubscription;
  }
  url(path: string): URL {
    return new URL(path, 'https://marketplaceapi.example/api/');
  }
}

/** The store, counting the whole-store reads (`readAll`) made through it. */
function countingStore(store: EventStore): { store: EventStore; readAlls: () => number } {
  let readAlls = 0;
  const counted: EventStore = {
    kind: store.kind,
    appendToStream: (s, e, o) => store.appendToStream(s, e, o),
    readStream: (s, o) => store.readStream(s, o),
    readLastEvent: (s) => store.readLastEvent(s),
    readAll: (o) => {
      readAlls++;
      return store.readAll(o);
    },
    subscribeToAll: (o) => store.subscribeToAll(o),
    ping: () => store.ping(),
    close: () => store.close(),
  };
  return { store: counted, readAlls: () => readAlls };
}

/** A store with the four subscriptions, as a restart finds it: two changes pending, one settled, one never changed. */
async function history(t: Test) {
  const dir = tempDir(t, 'resume');
  const raw = openSqliteStore({ path: join(dir, 'events.db') });
  t.teardown(() => raw.close());
  const ledger = new SubscriptionLedger(raw);
  const at = '2026-03-02T10:00:00.000Z';
  const ctx = { actor: 'operator:api' };
  for (const id of Object.values(ids)) {
    await ledger.execute(id, { type: 'RecordPurchase', subscription: details(id), microsoftStatus: 'Subscribed', now: at, source: 'landing' }, { actor: 'customer:buyer@contoso.example' });
  }
  await ledger.execute(ids.intent, { type: 'RequestPlanChange', requestId: 'req-1', planId: 'premium', now: at, source: 'operator' }, ctx);
  await ledger.execute(ids.submitted, { type: 'RequestQuantityChange', requestId: 'req-2', quantity: 9, now: at, source: 'operator' }, ctx);
  await ledger.execute(ids.submitted, { type: 'RecordChangeSubmitted', requestId: 'req-2', operationId: OP, now: at, source: 'process' }, ctx);
  await ledger.execute(ids.settled, { type: 'RequestQuantityChange', requestId: 'req-3', quantity: 2, now: at, source: 'operator' }, ctx);
  await ledger.execute(ids.settled, { type: 'RecordChangeRequestFailure', requestId: 'req-3', status: '400', reason: 'no', now: at, source: 'process' }, ctx);
  return { dir, raw };
}

function resumer(t: Test, store: EventStore) {
  const microsoft = new QuietMicrosoft();
  const publisherChanges = new PublisherChanges({ ledger: new SubscriptionLedger(store), client: microsoft, logger, recheckDelayMs: 10 });
  t.teardown(() => publisherChanges.close());
  return { microsoft, publisherChanges };
}

const outcomes = (results: { subscriptionId: string; outcome: string }[]) => Object.fromEntries(results.map((r) => [r.subscriptionId, r.outcome]));

t.test('resumeAll reads the pending changes from the read model once it is live, never the whole store', async (t) => {
  const { dir, raw } = await history(t);
  const { store, readAlls } = countingStore(raw);
  // As at a start: the projections begin catching up and resumeAll is called at once. The projections read the
  // store uncounted (their catch-up reads it whole, by design); what is counted is what resumeAll reads.
  const running = startProjections({ store: raw, path: join(dir, 'readmodels.db'), logger });
  t.teardown(() => running.stop());
  const { microsoft, publisherChanges } = resumer(t, store);

  const results = await publisherChanges.resumeAll(pendingChangeSource(running));
  t.same(outcomes(results), { [ids.intent]: 'failed', [ids.submitted]: 'following' }, 'only the two pending changes are looked at');
  t.equal(readAlls(), 0, 'no readAll: the store was not scanned');
  t.same(microsoft.looked, [ids.intent], 'Microsoft is asked about the change whose submission is unknown');
  t.same(microsoft.followed, [OP], 'the submitted one is followed again');

  await running.waitForPosition((await raw.readLastEvent(`subscription-${ids.intent}`))?.position ?? 0n);
  const again = await publisherChanges.resumeAll(pendingChangeSource(running));
  t.same(outcomes(again), { [ids.submitted]: 'following' }, 'the failed one left the read model of pending changes');
  t.equal(readAlls(), 0);
});

t.test('without a read model (or one that cannot answer) resumeAll scans the store and resumes the same changes', async (t) => {
  const { raw } = await history(t);
  const { store, readAlls } = countingStore(raw);
  const { publisherChanges } = resumer(t, store);
  const results = await publisherChanges.resumeAll(pendingChangeSource(undefined));
  t.equal(readAlls(), 1, 'one scan of the subscription streams');
  t.same(
    outcomes(results.filter((r) => r.outcome !== 'nothing-pending')),
    { [ids.intent]: 'failed', [ids.submitted]: 'following' },
  );
  t.notOk(results.some((r) => r.subscriptionId === ids.untouched), 'a subscription never changed is not a candidate');
});

t.test('a runner that stops before it is live: the source answers undefined and the store is scanned', async (t) => {
  const { dir, raw } = await history(t);
  const { store, readAlls } = countingStore(raw);
  const running = startProjections({ store: raw, path: join(dir, 'readmodels.db'), logger }); // uncounted: the count is resumeAll's
  await running.stop();
  const { publisherChanges } = resumer(t, store);
  const results = await publisherChanges.resumeAll(pendingChangeSource(running));
  t.equal(readAlls(), 1);
  t.equal(outcomes(results)[ids.submitted], 'following');
});

t.test('read models that never become live: after the wait the store is scanned, so pending changes are still followed', async (t) => {
  const { dir, raw } = await history(t);
  const { store, readAlls } = countingStore(raw);
  const running = startProjections({ store: raw, path: join(dir, 'readmodels.db'), logger }); // uncounted: the count is resumeAll's
  t.teardown(() => running.stop());
  // A runner that is never live (stuck, failing): whenLive never resolves.
  const stuck = { ...running, whenLive: () => new Promise<void>(() => undefined) };
  const { publisherChanges } = resumer(t, store);
  const results = await publisherChanges.resumeAll(pendingChangeSource(stuck, 50));
  t.equal(readAlls(), 1, 'fell back to one scan');
  t.equal(outcomes(results)[ids.submitted], 'following', 'and the pending change is followed');
});
