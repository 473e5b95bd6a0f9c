/**
 * Metered usage for finance: `usage_hours`, one row per subscription, dimension and clock hour, from the `usage-`
 * streams (docs/read-models.md, "Usage").
 *
 * A row follows the hour: `open` (records coming in), `closed` (totals frozen), `submitted` (sent to Microsoft,
 * no answer recorded yet), `settled` (Microsoft's answer, or `Included`/`Expired` decided here). It holds what was
 * recorded, what arrived late (kept apart, never billed), the included quantity subtracted, what was submitted
 * and what Microsoft bills (`billed`). Each row stores the global position of the last event it reflects; an
 * event at or before it (a replay) changes nothing.
 */
import { decodeUsageHourEvent, expiresAtMs, usageCategory } from '../../domain/metering/index.js';
import type { UsageHourEvent } from '../../domain/metering/index.js';
import { categoryPrefix } from '../../eventstore/eventstore.js';
import type { RecordedEvent } from '../../eventstore/eventstore.js';
import type { Projection, ReadModelDb } from '../projection.js';

const schemaSql = `
CREATE TABLE IF NOT EXISTS usage_hours (
  subscription_id      TEXT NOT NULL,
  dimension            TEXT NOT NULL,
  hour                 TEXT NOT NULL,
  day                  TEXT NOT NULL,
  month                TEXT NOT NULL,
  status               TEXT NOT NULL,
  recorded             REAL NOT NULL DEFAULT 0,
  records              INTEGER NOT NULL DEFAULT 0,
  late                 REAL NOT NULL DEFAULT 0,
  late_records         INTEGER NOT NULL DEFAULT 0,
  closed_quantity      REAL,
  included             REAL,
  submitted            REAL,
  billed               REAL,
  outcome              TEXT,
  via                  TEXT,
  usage_event_id       TEXT,
  effective_start_time TEXT,
  expires_at           TEXT,
  submitted_at         TEXT,
  settled_at           TEXT,
  detail               TEXT,
  position             INTEGER NOT NULL,
  PRIMARY KEY (subscription_id, dimension, hour)
);
CREATE INDEX IF NOT EXISTS usage_hours_by_hour ON usage_hours (hour);
CREATE INDEX IF NOT EXISTS usage_hours_unsettled ON usage_hours (status, expires_at) WHERE status <> 'settled';
`;

const newer = 'WHERE usage_hours.position < excluded.position';

function key(e: { subscriptionId: string; hour: string }, dimension: string, position: bigint) {
  return { subscription_id: e.subscriptionId, dimension, hour: e.hour, day: e.hour.slice(0, 10), month: e.hour.slice(0, 7), position };
}

const iso = (ms: number): string => new Date(ms).toISOString();

async function apply(db: ReadModelDb, event: UsageHourEvent, position: bigint): Promise<void> {
  switch (event.type) {
    case 'UsageRecorded':
    case 'LateUsageRecorded': {
      const d = event.data;
      const late = event.type === 'LateUsageRecorded';
      await db.run(
        `INSERT INTO usage_hours (subscription_id, dimension, hour, day, month, status, recorded, records, late, late_records, expires_at, position)
         VALUES (@subscription_id, @dimension, @hour, @day, @month, 'open', @recorded, @records, @late, @late_records, @expires_at, @position)
         ON CONFLICT (subscription_id, dimension, hour) DO UPDATE SET
           recorded = usage_hours.recorded + excluded.recorded, records = usage_hours.records + excluded.records,
           late = usage_hours.late + excluded.late, late_records = usage_hours.late_records + excluded.late_records,
           expires_at = CASE WHEN usage_hours.status = 'open' AND excluded.expires_at > COALESCE(usage_hours.expires_at, '')
             THEN excluded.expires_at ELSE usage_hours.expires_at END,
           position = excluded.position ${newer}`,
        {
        ...key(d, d.dimension, position),
        recorded: late ? 0 : d.quantity,
        records: late ? 0 : 1,
        late: late ? d.quantity : 0,
        late_records: late ? 1 : 0,
        expires_at: late ? null : iso(expiresAtMs(d.effectiveTime)),
        },
      );
      return;
    }
    case 'UsageHourClosed':
      for (const line of event.data.lines) {
        await db.run(
          `INSERT INTO usage_hours (subscription_id, dimension, hour, day, month, status, closed_quantity, effective_start_time, expires_at, position)
           VALUES (@subscription_id, @dimension, @hour, @day, @month, 'closed', @quantity, @effective_start_time, @expires_at, @position)
           ON CONFLICT (subscription_id, dimension, hour) DO UPDATE SET status = 'closed', closed_quantity = excluded.closed_quantity,
             effective_start_time = excluded.effective_start_time, expires_at = excluded.expires_at, position = excluded.position ${newer}`,
          { ...key(event.data, line.dimension, position), quantity: line.quantity, effective_start_time: line.effectiveStartTime, expires_at: iso(expiresAtMs(line.effectiveStartTime)) },
        );
      }
      return;
    case 'UsageSubmitted': {
      const d = event.data;
      await db.run(
        `UPDATE usage_hours SET status = 'submitted', included = @included, submitted = @quantity, submitted_at = @at, position = @position
         WHERE subscription_id = @subscription_id AND dimension = @dimension AND hour = @hour AND position < @position`,
        { ...key(d, d.dimension, position), included: d.included, quantity: d.quantity, at: d.at },
      );
      return;
    }
    case 'UsageSettled': {
      const d = event.data;
      await db.run(
        `UPDATE usage_hours SET status = 'settled', outcome = @status, billed = @billed, via = @via, usage_event_id = @usage_event_id, settled_at = @at,
           detail = @detail, included = COALESCE(included, CASE WHEN @status = 'Included' THEN closed_quantity END), position = @position
         WHERE subscription_id = @subscription_id AND dimension = @dimension AND hour = @hour AND position < @position`,
        { ...key(d, d.dimension, position), status: d.status, billed: d.billed, via: d.via, usage_event_id: d.usageEventId ?? null, at: d.at, detail: d.detail ?? null },
      );
      return;
    }
    default: {
      const _exhaustive: never = event;
      return _exhaustive;
    }
  }
}

export const usageProjection: Projection = {
  name: 'usage',
  version: 1,
  description: 'Metered usage per subscription, dimension and hour: recorded, late, included, submitted, billed',
  schemaSql,
  tables: ['usage_hours'],
  views: [],
  streamPrefixes: [categoryPrefix(usageCategory)],
  handles: new Set(['UsageRecorded', 'LateUsageRecorded', 'UsageHourClosed', 'UsageSubmitted', 'UsageSettled']),
  async apply(db: ReadModelDb, recorded: RecordedEvent): Promise<void> {
    const event = decodeUsageHourEvent(recorded);
    if (event) await apply(db, event, recorded.position);
  },
};
