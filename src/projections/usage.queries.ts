/**
 * Finance's questions to the `usage_hours` read model (views/usage.projection.ts): usage per subscription and
 * dimension by hour, day or month — recorded, late, included, submitted, billed (accepted) and rejected — and the
 * usage not settled yet, with how long it has before Microsoft's 24-hour limit.
 */
import type { ReadModelDb } from './projection.js';

export type UsagePeriod = 'hour' | 'day' | 'month';

export type UsageFilter = { period: UsagePeriod; subscriptionId?: string; dimension?: string; from?: string; to?: string };

/** The columns of a summary row (the CSV header too). */
export const USAGE_SUMMARY_COLUMNS = [
  'subscription_id',
  'dimension',
  'period',
  'hours',
  'records',
  'recorded',
  'late_records',
  'late',
  'included',
  'submitted',
  'accepted',
  'rejected',
  'pending',
  'expired',
] as const;

export type UsageSummaryRow = { subscription_id: string; dimension: string; period: string } & Record<
  Exclude<(typeof USAGE_SUMMARY_COLUMNS)[number], 'subscription_id' | 'dimension' | 'period'>,
  number
>;

const periodColumn: Record<UsagePeriod, string> = { hour: 'hour', day: 'day', month: 'month' };

/**
 * `from` and `to` bound the hour (`YYYY-MM-DDTHH`, or any prefix of it: a day, a month), `from` inclusive, `to`
 * exclusive. Rejected: submitted and answered with anything but Accepted (`Expired` included); pending: recorded
 * and not settled yet.
 */
export function usageSummary(db: ReadModelDb, filter: UsageFilter): AsyncIterable<UsageSummaryRow> {
  const col = periodColumn[filter.period];
  const sql = `
    SELECT subscription_id, dimension, ${col} AS period, COUNT(*) AS hours, SUM(records) AS records, ROUND(CAST(SUM(recorded) AS NUMERIC), 6) AS recorded,
      SUM(late_records) AS late_records, ROUND(CAST(SUM(late) AS NUMERIC), 6) AS late, ROUND(CAST(COALESCE(SUM(included), 0) AS NUMERIC), 6) AS included,
      ROUND(CAST(COALESCE(SUM(submitted), 0) AS NUMERIC), 6) AS submitted,
      ROUND(CAST(COALESCE(SUM(CASE WHEN outcome = 'Accepted' THEN billed END), 0) AS NUMERIC), 6) AS accepted,
      ROUND(CAST(COALESCE(SUM(CASE WHEN status = 'settled' AND outcome NOT IN ('Accepted', 'Included') THEN COALESCE(submitted, closed_quantity) END), 0) AS NUMERIC), 6) AS rejected,
      ROUND(CAST(COALESCE(SUM(CASE WHEN status <> 'settled' THEN recorded END), 0) AS NUMERIC), 6) AS pending,
      ROUND(CAST(COALESCE(SUM(CASE WHEN outcome = 'Expired' THEN COALESCE(submitted, closed_quantity) END), 0) AS NUMERIC), 6) AS expired
    FROM usage_hours
    WHERE (CAST(@subscription_id AS TEXT) IS NULL OR subscription_id = @subscription_id) AND (CAST(@dimension AS TEXT) IS NULL OR dimension = @dimension)
      AND (CAST(@from AS TEXT) IS NULL OR hour >= @from) AND (CAST(@to AS TEXT) IS NULL OR hour < @to)
    GROUP BY subscription_id, dimension, ${col}
    ORDER BY ${col}, subscription_id, dimension`;
  return db.iterate(sql, {
    subscription_id: filter.subscriptionId ?? null,
    dimension: filter.dimension ?? null,
    from: filter.from ?? null,
    to: filter.to ?? null,
  }) as AsyncIterable<UsageSummaryRow>;
}

export type UnsettledUsage = {
  subscriptionId: string;
  dimension: string;
  hour: string;
  status: string;
  recorded: number;
  expiresAt: string | null;
  aboutToExpire: boolean;
};

/** Usage not settled yet, the closest to its limit first. */
export async function unsettledUsage(db: ReadModelDb, now: Date, warningMs: number, limit = 500): Promise<UnsettledUsage[]> {
  const rows = (await db.all(
    `SELECT subscription_id, dimension, hour, status, recorded, expires_at FROM usage_hours WHERE status <> 'settled' ORDER BY expires_at LIMIT @limit`,
    { limit },
  )) as Array<{ subscription_id: string; dimension: string; hour: string; status: string; recorded: number; expires_at: string | null }>;
  const warnFrom = now.getTime() + warningMs;
  return rows.map((r) => ({
    subscriptionId: r.subscription_id,
    dimension: r.dimension,
    hour: r.hour,
    status: r.status,
    recorded: r.recorded,
    expiresAt: r.expires_at,
    aboutToExpire: r.expires_at !== null && Date.parse(r.expires_at) <= warnFrom,
  }));
}
