/**
 * Metered billing at volume: 1,000,000 usage records ingested, then aggregated and submitted.
 *
 *   npm run bench:metering                 # RECORDS=1000000 by default; RECORDS=20000 for a quick run
 *
 * Ingest: the usage intake (src/application/usage-intake.ts) as POST /api/usage calls it — each record validated
 * (subscription Subscribed, dimension a meter of its plan, quantity, 24-hour window) and appended as one event —
 * on a real SQLite file, in requests of 1000 records (one subscription, two hours, two dimensions). HTTP parsing
 * is not in the figure. The plan's meters come from the cache (MeterCatalogue, warmed by one call per plan).
 * Aggregation: the metering process (src/processes/metering.process.ts) run by the process runner over every
 * event, closing and submitting each subscription-hour to the emulator over real HTTP (batches of ≤ 25), then the
 * finance read model (usage projection) rebuilt from the same events. The bench checks that Microsoft ends with
 * exactly one event per subscription, dimension and hour, with the sum that was recorded.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeterCatalogue } from '../src/application/meter-catalogue.js';
import { SubscriptionLedger } from '../src/application/subscription-ledger.js';
import { UsageIntake } from '../src/application/usage-intake.js';
import type { UsageInput } from '../src/application/usage-intake.js';
import { UsageLedger } from '../src/application/usage-ledger.js';
import { detailsFromMicrosoft } from '../src/application/subscription-details.js';
import { startEmulator } from '../src/emulator/emulator.js';
import { openSqliteStore } from '../src/eventstore/sqlite.store.js';
import { createLogger } from '../src/logger.js';
import { FulfillmentClient } from '../src/marketplace/fulfillment-client.js';
import { MeteringClient } from '../src/marketplace/metering-client.js';
import { StaticTokenProvider } from '../src/marketplace/token-provider.js';
import { meteringProcess } from '../src/processes/metering.process.js';
import { startProcess } from '../src/processes/runner/start.js';
import { rebuildProjections } from '../src/projections/index.js';
import { usageProjection } from '../src/projections/views/index.js';
import { meteredCatalogue } from '../test/support/metering-world.js';
import { writeResult } from './support/results.js';

const RECORDS = Number(process.env.RECORDS ?? 1_000_000);
const SUBSCRIPTIONS = 100;
const HOURS = 20;
const DIMENSIONS = ['api-calls', 'gb'];
const PER_REQUEST = 1000;
const HOUR_MS = 3_600_000;
const MiB = 1024 * 1024;

let peakRss = process.memoryUsage().rss;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 100);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-metering-'));
  const logger = createLogger(process.env.BENCH_LOG_LEVEL ?? 'silent');
  const emulator = await startEmulator({ catalogue: meteredCatalogue });
  const store = openSqliteStore({ path: join(dir, 'events.db') });
  try {
    const client = new FulfillmentClient({ baseUrl: emulator.apiBaseUrl, tokenProvider: new StaticTokenProvider('bench'), logger });
    const ledger = new SubscriptionLedger(store);
    const usage = new UsageLedger(store);
    const now = new Date();
    const subs = emulator.state.purchaseMany({ planId: 'basic' }, SUBSCRIPTIONS, 'Subscribed', now);
    for (const sub of subs) {
      const details = detailsFromMicrosoft(await client.getSubscription(sub.id));
      const at = now.toISOString();
      await ledger.execute(sub.id, { type: 'RecordPurchase', now: at, source: 'landing', subscription: details, microsoftStatus: 'PendingFulfillmentStart' }, { actor: 'bench' });
      await ledger.execute(sub.id, { type: 'RequestActivation', now: at, source: 'landing', contact: { email: 'bench@contoso.example' } }, { actor: 'bench' });
      await ledger.execute(sub.id, { type: 'ConfirmActivation', now: at, source: 'process' }, { actor: 'bench' });
    }
    const meters = new MeterCatalogue({ marketplace: client, ttlMs: 3_600_000 });
    const intake = new UsageIntake({ subscriptions: ledger, usage, meters });

    // Records: subscription-hours in turn, the two dimensions interleaved, one quantity per record.
    const perSubHour = Math.max(2, Math.floor(RECORDS / (SUBSCRIPTIONS * HOURS)));
    const hourStart = (h: number) => Math.floor(now.getTime() / HOUR_MS) * HOUR_MS - (h + 2) * HOUR_MS; // hours 2..21 ago: closed, within 24 h
    const expected = new Map<string, number>();
    let batch: UsageInput[] = [];
    let total = 0;
    let requests = 0;
    const rssBefore = process.memoryUsage().rss;
    const started = performance.now();
    for (let s = 0; s < SUBSCRIPTIONS && total < RECORDS; s++) {
      const subscriptionId = subs[s]?.id ?? '';
      for (let h = 0; h < HOURS && total < RECORDS; h++) {
        for (let i = 0; i < perSubHour && total < RECORDS; i++) {
          const dimension = DIMENSIONS[i % DIMENSIONS.length] ?? 'api-calls';
          const quantity = (i % 7) + 1;
          const effectiveTime = new Date(hourStart(h) + Math.floor((i / perSubHour) * HOUR_MS)).toISOString();
          batch.push({ subscriptionId, dimension, quantity, effectiveTime, idempotencyKey: `${s}-${h}-${i}` });
          const key = `${subscriptionId}|${dimension}|${effectiveTime.slice(0, 13)}`;
          expected.set(key, (expected.get(key) ?? 0) + quantity);
          total++;
          if (batch.length === PER_REQUEST) {
            await record(intake, batch);
            requests++;
            batch = [];
          }
        }
      }
    }
    if (batch.length > 0) {
      await record(intake, batch);
      requests++;
    }
    const ingestMs = performance.now() - started;
    const ingestPeak = peakRss;
    console.log(`ingested ${total} records in ${requests} requests: ${Math.round(ingestMs)} ms, ${Math.round(total / (ingestMs / 1000))} records/s, peak RSS ${Math.round(ingestPeak / MiB)} MiB`);

    // Aggregation and submission: the metering process over every event, against the emulator.
    const metering = meteringProcess({ usage, subscriptions: ledger, metering: new MeteringClient(client), included: new Map(), submitDelayMs: 0, expiryWarningMs: 4 * HOUR_MS, logger });
    const aggStarted = performance.now();
    const running = startProcess(store, metering, logger, { mode: 'catch-up', concurrency: 8 });
    await running.idle();
    await running.stop();
    const aggMs = performance.now() - aggStarted;
    const accepted = emulator.meter.accepted();
    const billed = new Map(accepted.map((u) => [`${u.resourceId}|${u.dimension}|${u.effectiveStartTime.slice(0, 13)}`, u.quantity]));
    const wrong = [...expected].filter(([k, v]) => billed.get(k) !== v).length;
    if (accepted.length !== expected.size || wrong > 0) throw new Error(`Microsoft billed ${accepted.length} events for ${expected.size} hours, ${wrong} with the wrong sum`);
    console.log(`aggregated and submitted ${expected.size} subscription-dimension-hours in ${Math.round(aggMs)} ms; Microsoft holds exactly one event per hour with the right sum`);

    const rebuilt = await rebuildProjections({ store, logger, projections: [usageProjection], path: join(dir, 'readmodels.db') });
    console.log(`finance read model rebuilt: ${rebuilt.events} events in ${Math.round(rebuilt.ms)} ms (${rebuilt.eventsPerSecond} events/s); peak RSS ${Math.round(peakRss / MiB)} MiB`);

    const file = writeResult({
      bench: 'metering',
      command: `RECORDS=${RECORDS} npm run bench:metering`,
      figures: [
        { name: `usage intake, ${total} records in requests of ${PER_REQUEST} (validated, one event each, SQLite file)`, value: Math.round(total / (ingestMs / 1000)), unit: 'records/s' },
        { name: 'usage intake: wall time', value: Math.round(ingestMs / 100) / 10, unit: 's' },
        { name: 'peak RSS during the intake', value: Math.round(ingestPeak / MiB), unit: 'MiB', note: `${Math.round(rssBefore / MiB)} MiB before` },
        {
          name: `aggregation and submission: ${expected.size} subscription-dimension-hours from ${total} records (process runner, emulator over HTTP)`,
          value: Math.round(aggMs / 100) / 10,
          unit: 's',
          note: `${Math.round(total / (aggMs / 1000))} records/s through the process; exactly one accepted event per hour with the recorded sum`,
        },
        { name: `finance read model (usage projection) rebuilt from ${rebuilt.events} events`, value: rebuilt.eventsPerSecond, unit: 'events/s' },
        { name: 'peak RSS over the whole run', value: Math.round(peakRss / MiB), unit: 'MiB' },
      ],
      details: { records: total, requests, subscriptions: SUBSCRIPTIONS, hours: HOURS, dimensions: DIMENSIONS.length, perRequest: PER_REQUEST, ingestMs, aggregationMs: aggMs, rebuild: rebuilt },
    });
    console.log(`wrote ${file}`);
  } finally {
    clearInterval(sampler);
    await store.close();
    await emulator.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function record(intake: UsageIntake, batch: UsageInput[]): Promise<void> {
  const results = await intake.record(batch, 'bench');
  const refused = results.find((r) => r.outcome !== 'recorded');
  if (refused) throw new Error(`a record was not recorded: ${JSON.stringify(refused)}`);
}

await main();
