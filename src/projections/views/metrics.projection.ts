/**
 * Plan and offer metrics for analysts.
 *
 * - `metrics_subscriptions`: per subscription, the facts the metrics need (plan now and at purchase,
 *   seats, status, activation timings, suspensions, trial outcome).
 * - `metrics_daily`: counters per UTC day, offer, plan and test flag: purchases, activations,
 *   cancellations, suspensions, reinstatements, renewals, plan changes in/out, seats added/removed,
 *   trial starts, conversions and cancellations. A day's plan is the subscription's plan at the event.
 * - Views over them: active subscriptions and seats by plan, time from purchase to activation,
 *   suspensions and reinstatements, free-trial conversions.
 *
 * Counters are only safe if each event is counted once: the facts row keeps the stream revision it
 * reflects, and an event at or before it (a replay) is skipped before any counter moves.
 *
 * Definitions: seats are counted while a subscription is activated and not cancelled (Subscribed or
 * Suspended); a plan without seats counts 0. A free trial *converts* at its first renewal (the paid
 * term starts) and is *cancelled* when the subscription is cancelled before that.
 */
import { subscriptionCategory } from '../../domain/subscription/index.js';
import type { SubscriptionEvent } from '../../domain/subscription/index.js';
import { categoryPrefix, entityIdOf } from '../../eventstore/eventstore.js';
import type { RecordedEvent } from '../../eventstore/eventstore.js';
import type { Projection, ReadModelDb } from '../projection.js';
import { batchesOf, bit, insertRow, isoTime, nullable, same, secondsBetween, subscriptionEventOf, updateRow, utcDay } from './support.js';

const dailyCounters = [
  'purchases',
  'activations',
  'cancellations',
  'suspensions',
  'reinstatements',
  'renewals',
  'plan_changes_in',
  'plan_changes_out',
  'seats_added',
  'seats_removed',
  'trial_starts',
  'trial_conversions',
  'trial_cancellations',
] as const;
type Counter = (typeof dailyCounters)[number];

const schemaSql = `
CREATE TABLE IF NOT EXISTS metrics_subscriptions (
  subscription_id           TEXT PRIMARY KEY,
  offer_id                  TEXT NOT NULL,
  plan_id                   TEXT NOT NULL,
  purchased_plan_id         TEXT NOT NULL,
  quantity                  INTEGER,
  status                    TEXT NOT NULL,
  is_test                   INTEGER NOT NULL,
  auto_activated            INTEGER NOT NULL,
  started_as_free_trial     INTEGER NOT NULL,
  trial_outcome             TEXT,
  trial_ended_at            TEXT,
  created_at                TEXT NOT NULL,
  activation_requested_at   TEXT,
  activated_at              TEXT,
  purchase_to_activation_s  REAL,
  request_to_activation_s   REAL,
  suspended_at              TEXT,
  suspensions               INTEGER NOT NULL,
  reinstatements            INTEGER NOT NULL,
  renewals                  INTEGER NOT NULL,
  plan_changes              INTEGER NOT NULL,
  cancelled_at              TEXT,
  cancelled_while_suspended INTEGER NOT NULL,
  stream_revision           INTEGER NOT NULL,
  position                  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_subscriptions_by_plan ON metrics_subscriptions (offer_id, plan_id, status);
CREATE TABLE IF NOT EXISTS metrics_daily (
  day      TEXT NOT NULL,
  offer_id TEXT NOT NULL,
  plan_id  TEXT NOT NULL,
  is_test  INTEGER NOT NULL,
${dailyCounters.map((c) => `  ${c} INTEGER NOT NULL DEFAULT 0`).join(',\n')},
  PRIMARY KEY (day, offer_id, plan_id, is_test)
) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS metrics_active_by_plan AS
  SELECT offer_id, plan_id, is_test,
    sum(CASE WHEN status = 'Subscribed' THEN 1 ELSE 0 END) AS active_subscriptions,
    sum(CASE WHEN status = 'Subscribed' THEN coalesce(quantity, 0) ELSE 0 END) AS active_seats,
    sum(CASE WHEN status = 'Suspended' THEN 1 ELSE 0 END) AS suspended_subscriptions,
    sum(CASE WHEN status = 'Suspended' THEN coalesce(quantity, 0) ELSE 0 END) AS suspended_seats,
    sum(CASE WHEN status = 'PendingFulfillmentStart' THEN 1 ELSE 0 END) AS pending_subscriptions,
    sum(CASE WHEN status = 'Unsubscribed' THEN 1 ELSE 0 END) AS cancelled_subscriptions
  FROM metrics_subscriptions GROUP BY offer_id, plan_id, is_test;
CREATE VIEW IF NOT EXISTS metrics_activation_time AS
  SELECT offer_id, purchased_plan_id AS plan_id, is_test,
    count(*) AS activations,
    avg(purchase_to_activation_s) AS avg_seconds,
    min(purchase_to_activation_s) AS min_seconds,
    max(purchase_to_activation_s) AS max_seconds,
    avg(request_to_activation_s) AS avg_seconds_from_request
  FROM metrics_subscriptions WHERE activated_at IS NOT NULL AND auto_activated = 0
  GROUP BY offer_id, purchased_plan_id, is_test;
CREATE VIEW IF NOT EXISTS metrics_suspensions AS
  SELECT offer_id, plan_id, is_test,
    sum(suspensions) AS suspensions,
    sum(reinstatements) AS reinstatements,
    sum(CASE WHEN status = 'Suspended' THEN 1 ELSE 0 END) AS currently_suspended,
    sum(cancelled_while_suspended) AS cancelled_while_suspended
  FROM metrics_subscriptions GROUP BY offer_id, plan_id, is_test;
CREATE VIEW IF NOT EXISTS metrics_free_trials AS
  SELECT offer_id, purchased_plan_id AS plan_id, is_test,
    count(*) AS trials,
    sum(CASE WHEN trial_outcome = 'in-trial' THEN 1 ELSE 0 END) AS in_trial,
    sum(CASE WHEN trial_outcome = 'converted' THEN 1 ELSE 0 END) AS converted,
    sum(CASE WHEN trial_outcome = 'cancelled' THEN 1 ELSE 0 END) AS cancelled,
    CASE WHEN sum(CASE WHEN trial_outcome IN ('converted', 'cancelled') THEN 1 ELSE 0 END) > 0
      THEN round(1.0 * sum(CASE WHEN trial_outcome = 'converted' THEN 1 ELSE 0 END) / sum(CASE WHEN trial_outcome IN ('converted', 'cancelled') THEN 1 ELSE 0 END), 4) END AS conversion_rate
  FROM metrics_subscriptions WHERE started_as_free_trial = 1
  GROUP BY offer_id, purchased_plan_id, is_test;
`;

type Facts = {
  subscription_id: string;
  offer_id: string;
  plan_id: string;
  quantity: number | null;
  status: string;
  is_test: number;
  trial_outcome: string | null;
  created_at: string;
  activation_requested_at: string | null;
  suspensions: number;
  reinstatements: number;
  renewals: number;
  plan_changes: number;
  stream_revision: number | bigint;
};

/** A subscription's facts row as a batch holds it: as the file had it, and as it is now. */
type FactsEntry = { readonly before: Record<string, unknown> | undefined; facts: (Facts & Record<string, unknown>) | undefined; changed: boolean };
type DailyKey = { day: string; offerId: string; planId: string; isTest: number };

/**
 * The rows a batch touched: each facts row read once, changed in memory and written once; the day counters
 * summed in memory and added to their rows once per key by `flush`.
 */
class MetricsBatch {
  private readonly facts = new Map<string, FactsEntry>();
  private readonly daily = new Map<string, DailyKey & { counts: Partial<Record<Counter, number>> }>();
  constructor(private readonly db: ReadModelDb) {}

  async entry(subscriptionId: string): Promise<FactsEntry> {
    let entry = this.facts.get(subscriptionId);
    if (entry) return entry;
    const row = (await this.db.get('SELECT * FROM metrics_subscriptions WHERE subscription_id = @subscriptionId', { subscriptionId })) as
      | (Facts & Record<string, unknown>)
      | undefined;
    entry = this.facts.get(subscriptionId) ?? { before: row ? { ...row } : undefined, facts: row, changed: false };
    this.facts.set(subscriptionId, entry);
    return entry;
  }

  set(entry: FactsEntry, values: Record<string, unknown>): void {
    if (!entry.facts) return;
    Object.assign(entry.facts, values);
    entry.changed = true;
  }

  bump(day: string, offerId: string, planId: string, isTest: number, counts: Partial<Record<Counter, number>>): void {
    const key = `${day}\u0000${offerId}\u0000${planId}\u0000${isTest}`;
    let sums = this.daily.get(key);
    if (!sums) this.daily.set(key, (sums = { day, offerId, planId, isTest, counts: {} }));
    for (const [counter, n] of Object.entries(counts) as [Counter, number][]) sums.counts[counter] = (sums.counts[counter] ?? 0) + n;
  }

  async flush(): Promise<void> {
    for (const [subscriptionId, entry] of this.facts) {
      const { facts, before } = entry;
      if (!entry.changed || !facts) continue;
      if (!before) {
        await insertRow(this.db, 'metrics_subscriptions', facts);
        continue;
      }
      const changed: Record<string, unknown> = {};
      for (const [column, value] of Object.entries(facts)) if (!same(value, before[column])) changed[column] = value;
      await updateRow(this.db, 'metrics_subscriptions', 'subscription_id', subscriptionId, changed);
    }
    for (const { day, offerId, planId, isTest, counts } of this.daily.values()) await addToDay(this.db, day, offerId, planId, isTest, counts);
    this.facts.clear();
    this.daily.clear();
  }
}

/** Adds the counts (those that are not 0) to the day's row, creating it at the first. */
async function addToDay(db: ReadModelDb, day: string, offerId: string, planId: string, isTest: number, counts: Partial<Record<Counter, number>>): Promise<void> {
  const entries = Object.entries(counts).filter(([, n]) => n !== 0) as [Counter, number][];
  if (entries.length === 0) return;
  const columns = entries.map(([c]) => c);
  const sql =
    `INSERT INTO metrics_daily (day, offer_id, plan_id, is_test, ${columns.join(', ')}) VALUES (@day, @offer, @plan, @test, ${columns.map((c) => `@${c}`).join(', ')}) ` +
    `ON CONFLICT (day, offer_id, plan_id, is_test) DO UPDATE SET ${columns.map((c) => `${c} = metrics_daily.${c} + excluded.${c}`).join(', ')}`;
  await db.run(sql, { day, offer: offerId, plan: planId, test: isTest, ...Object.fromEntries(entries) });
}

/** Seats count while activated and not cancelled. */
const counted = (status: string): boolean => status === 'Subscribed' || status === 'Suspended';

/** The first event of a subscription: its facts row, and the purchase counted on the day it was created. */
function purchased(batch: MetricsBatch, event: Extract<SubscriptionEvent, { type: 'Purchased' }>, entry: FactsEntry, subscriptionId: string, recorded: RecordedEvent): void {
  const facts = entry.facts;
  const at = event.data.at;
  const position = recorded.position;
  const revision = recorded.revision;
  if (facts) {
    if (BigInt(facts.stream_revision) < revision) batch.set(entry, { stream_revision: revision, position });
    return;
  }
  const d = event.data;
  const createdAt = isoTime(d.created) ?? at;
  entry.facts = {
    subscription_id: subscriptionId,
    offer_id: d.offerId,
    plan_id: d.planId,
    purchased_plan_id: d.planId,
    quantity: nullable(d.quantity),
    status: 'PendingFulfillmentStart',
    is_test: bit(d.isTest),
    auto_activated: 0,
    started_as_free_trial: bit(d.isFreeTrial),
    trial_outcome: d.isFreeTrial ? 'in-trial' : null,
    trial_ended_at: null,
    created_at: createdAt,
    activation_requested_at: null,
    activated_at: null,
    purchase_to_activation_s: null,
    request_to_activation_s: null,
    suspended_at: null,
    suspensions: 0,
    reinstatements: 0,
    renewals: 0,
    plan_changes: 0,
    cancelled_at: null,
    cancelled_while_suspended: 0,
    stream_revision: revision,
    position,
  };
  entry.changed = true;
  batch.bump(utcDay(createdAt), d.offerId, d.planId, bit(d.isTest), { purchases: 1, trial_starts: d.isFreeTrial ? 1 : 0 });
}

async function applyTo(batch: MetricsBatch, recorded: RecordedEvent): Promise<void> {
  const event = subscriptionEventOf(recorded);
  if (!event) return;
  const subscriptionId = entityIdOf(recorded.streamId);
  const entry = await batch.entry(subscriptionId);
  const facts = entry.facts;
  const at = event.data.at;
  const day = utcDay(at);
  const position = recorded.position;
  const revision = recorded.revision;

  if (event.type === 'Purchased') return purchased(batch, event, entry, subscriptionId, recorded);
  if (!facts || BigInt(facts.stream_revision) >= revision) return; // unknown subscription, or a replay
  const { offer_id: offer, plan_id: plan, is_test: test } = facts;
  const seats = facts.quantity ?? 0;
  const set: Record<string, unknown> = { stream_revision: revision, position };

  switch (event.type) {
    case 'ActivationRequested':
      set.activation_requested_at = at;
      break;
    case 'Activated': {
      if (facts.status !== 'PendingFulfillmentStart') break; // the domain does not emit it twice; be safe
      const quantity = event.data.quantity ?? facts.quantity;
      Object.assign(set, {
        status: 'Subscribed',
        plan_id: event.data.planId,
        quantity: nullable(quantity ?? undefined),
        auto_activated: bit(event.data.autoActivated),
        activated_at: at,
        purchase_to_activation_s: nullable(secondsBetween(facts.created_at, at)),
        request_to_activation_s: nullable(secondsBetween(facts.activation_requested_at ?? undefined, at)),
      });
      batch.bump(day, offer, event.data.planId, test, { activations: 1, seats_added: quantity ?? 0 });
      break;
    }
    case 'PlanChanged': {
      const to = event.data.planId;
      if (to === plan) break;
      Object.assign(set, { plan_id: to, plan_changes: facts.plan_changes + 1 });
      const moved = counted(facts.status) ? seats : 0;
      batch.bump(day, offer, plan, test, { plan_changes_out: 1, seats_removed: moved });
      batch.bump(day, offer, to, test, { plan_changes_in: 1, seats_added: moved });
      break;
    }
    case 'QuantityChanged': {
      const delta = event.data.quantity - seats;
      set.quantity = event.data.quantity;
      if (counted(facts.status)) batch.bump(day, offer, plan, test, delta > 0 ? { seats_added: delta } : { seats_removed: -delta });
      break;
    }
    case 'Suspended':
      Object.assign(set, { status: 'Suspended', suspended_at: at, suspensions: facts.suspensions + 1 });
      batch.bump(day, offer, plan, test, { suspensions: 1 });
      break;
    case 'Reinstated':
      Object.assign(set, { status: 'Subscribed', reinstatements: facts.reinstatements + 1 });
      batch.bump(day, offer, plan, test, { reinstatements: 1 });
      break;
    case 'Renewed': {
      set.renewals = facts.renewals + 1;
      const converts = facts.trial_outcome === 'in-trial';
      if (converts) Object.assign(set, { trial_outcome: 'converted', trial_ended_at: at });
      batch.bump(day, offer, plan, test, { renewals: 1, trial_conversions: converts ? 1 : 0 });
      break;
    }
    case 'Unsubscribed': {
      if (facts.status === 'Unsubscribed') break;
      const endsTrial = facts.trial_outcome === 'in-trial';
      Object.assign(set, {
        status: 'Unsubscribed',
        cancelled_at: at,
        cancelled_while_suspended: bit(facts.status === 'Suspended'),
        ...(endsTrial ? { trial_outcome: 'cancelled', trial_ended_at: at } : {}),
      });
      batch.bump(day, offer, plan, test, {
        cancellations: 1,
        seats_removed: counted(facts.status) ? seats : 0,
        trial_cancellations: endsTrial ? 1 : 0,
      });
      break;
    }
    default:
      break; // requests, submissions, failures, policy refusals: no metric moves
  }
  batch.set(entry, set);
}

const batches = batchesOf((db) => new MetricsBatch(db));


export const metricsProjection: Projection = {
  name: 'metrics',
  version: 1,
  description: 'Plan and offer metrics: active subscriptions and seats, activations and cancellations per day, time to activation, suspensions, free-trial conversions',
  schemaSql,
  tables: ['metrics_subscriptions', 'metrics_daily'],
  views: ['metrics_active_by_plan', 'metrics_activation_time', 'metrics_suspensions', 'metrics_free_trials'],
  streamPrefixes: [categoryPrefix(subscriptionCategory)],
  handles: new Set(['Purchased', 'ActivationRequested', 'Activated', 'PlanChanged', 'QuantityChanged', 'Suspended', 'Reinstated', 'Renewed', 'Unsubscribed']),
  apply: (db, event) => batches.use(db, (batch) => applyTo(batch, event)),
  beginBatch: (db) => batches.begin(db),
};
