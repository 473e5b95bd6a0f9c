/**
 * What analysts query besides the projections' own tables and views (docs/read-models.md, "For analysts"):
 *
 * - `plan_prices`: the monthly price of each offer/plan (per seat; per subscription for a plan without seats),
 *   rewritten from PLAN_PRICES at every start — the configuration is the source, the table its copy;
 * - `analytics_mrr`: monthly recurring revenue by offer/plan, for the plans that have a price;
 * - `analytics_monthly`: per month and offer/plan: purchases, activations, cancellations (churn), free-trial
 *   conversions and cancellations, seats added and removed;
 * - `analytics_operations`: per month and Microsoft action: operations, how they ended, acknowledgement latency.
 *
 * One SQL text for both targets. SQLite: in the read-model file. PostgreSQL: in the analysts' schema (`public`),
 * over the views of the live generation, recreated after every switch (postgres.generations.ts drops them with
 * the views they read).
 */
import type { PlanPrice } from '../config.js';
import { ddlFor } from './dialect.js';
import type { ReadModelSql } from './readmodel-sql.js';
import type { ReadModelTarget } from './target.js';

export const planPricesSql = `
CREATE TABLE IF NOT EXISTS plan_prices (
  offer_id      TEXT NOT NULL,
  plan_id       TEXT NOT NULL,
  monthly_price REAL NOT NULL,
  currency      TEXT NOT NULL,
  PRIMARY KEY (offer_id, plan_id)
);
`;

export const analystViews: ReadonlyArray<{ name: string; sql: string }> = [
  {
    name: 'analytics_mrr',
    sql: `SELECT a.offer_id, a.plan_id, a.is_test, a.active_subscriptions, a.active_seats, p.monthly_price, p.currency,
    p.monthly_price * CASE WHEN a.active_seats > 0 THEN a.active_seats ELSE a.active_subscriptions END AS mrr
  FROM metrics_active_by_plan a JOIN plan_prices p ON p.offer_id = a.offer_id AND p.plan_id = a.plan_id`,
  },
  {
    name: 'analytics_monthly',
    sql: `SELECT substr(day, 1, 7) AS month, offer_id, plan_id, is_test,
    sum(purchases) AS purchases, sum(activations) AS activations, sum(cancellations) AS cancellations,
    sum(trial_starts) AS trial_starts, sum(trial_conversions) AS trial_conversions, sum(trial_cancellations) AS trial_cancellations,
    sum(seats_added) AS seats_added, sum(seats_removed) AS seats_removed
  FROM metrics_daily GROUP BY substr(day, 1, 7), offer_id, plan_id, is_test`,
  },
  {
    name: 'analytics_operations',
    sql: `SELECT substr(coalesce(first_received_at, submitted_at, requested_at, applied_at, updated_at), 1, 7) AS month, coalesce(action, 'unknown') AS action,
    count(*) AS operations,
    sum(CASE WHEN outcome = 'applied' THEN 1 ELSE 0 END) AS applied,
    sum(CASE WHEN outcome IN ('failed', 'rejected') THEN 1 ELSE 0 END) AS failed_or_rejected,
    sum(CASE WHEN outcome = 'pending' THEN 1 ELSE 0 END) AS pending,
    count(ack_latency_ms) AS acknowledged,
    avg(ack_latency_ms) AS avg_ack_latency_ms,
    max(ack_latency_ms) AS max_ack_latency_ms
  FROM operations GROUP BY substr(coalesce(first_received_at, submitted_at, requested_at, applied_at, updated_at), 1, 7), coalesce(action, 'unknown')`,
  },
];

/** (Re)create the analysts' views where `sql` reads (inside a transaction); `plan_prices` is created when missing. */
export async function createAnalystViews(sql: ReadModelSql): Promise<void> {
  await sql.exec(ddlFor(sql.dialect, planPricesSql));
  for (const v of analystViews) {
    await sql.exec(`DROP VIEW IF EXISTS ${v.name}`);
    await sql.exec(`CREATE VIEW ${v.name} AS ${v.sql}`);
  }
}

/** Rewrite `plan_prices` from the configuration, in one transaction (SQLite: the views too). */
export async function writePlanPrices(target: ReadModelTarget, prices: readonly PlanPrice[]): Promise<void> {
  await target.transaction(async (tx) => {
    if (tx.dialect === 'sqlite') await createAnalystViews(tx);
    else await tx.exec(ddlFor(tx.dialect, planPricesSql));
    await tx.run('DELETE FROM plan_prices');
    for (const p of prices) {
      await tx.run('INSERT INTO plan_prices (offer_id, plan_id, monthly_price, currency) VALUES (@offer, @plan, @price, @currency)', {
        offer: p.offerId,
        plan: p.planId,
        price: p.monthlyPrice,
        currency: p.currency,
      });
    }
  });
}
