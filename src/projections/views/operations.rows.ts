/**
 * The `operations` rows of a batch (operations.projection.ts): each row read once, changed in memory event by
 * event with the rules of an upsert, and written once by `flush` (only its changed columns, so the indexes on
 * the others are left alone).
 *
 * The rules are those of `INSERT … ON CONFLICT (operation_id) DO UPDATE SET … WHERE excluded.position >
 * operations.position`: a row met for the first time is the event's values (NULL where it says nothing); a known
 * row takes the event's changes only when the event is after the last one it reflects, so a replay changes nothing.
 */
import type { ReadModelDb } from '../projection.js';
import { RequestRows } from './change-requests.table.js';
import { insertRow, same, updateRow } from './support.js';

export type OperationRow = {
  operation_id: string;
  subscription_id: string | null;
  action: string | null;
  source: string | null;
  microsoft_status: string | null;
  plan_id: string | null;
  quantity: number | null;
  request_id: string | null;
  requested_at: string | null;
  submitted_at: string | null;
  first_received_at: string | null;
  last_received_at: string | null;
  deliveries: number;
  acknowledged_at: string | null;
  ack_status: string | null;
  ack_latency_ms: number | null;
  ack_note: string | null;
  processed_at: string | null;
  notification_outcome: string | null;
  outcome: string;
  outcome_detail: string | null;
  subscription_events: string | null;
  applied_event: string | null;
  applied_at: string | null;
  updated_at: string;
  position: number | bigint;
};

/** What an event inserts: the columns it names (the others are NULL); `outcome`, `deliveries`, `updated_at` and `position` always. */
export type Inserted = Partial<OperationRow> & Pick<OperationRow, 'deliveries' | 'outcome' | 'updated_at' | 'position'>;

const empty: Omit<OperationRow, 'operation_id' | 'deliveries' | 'outcome' | 'updated_at' | 'position'> = {
  subscription_id: null,
  action: null,
  source: null,
  microsoft_status: null,
  plan_id: null,
  quantity: null,
  request_id: null,
  requested_at: null,
  submitted_at: null,
  first_received_at: null,
  last_received_at: null,
  acknowledged_at: null,
  ack_status: null,
  ack_latency_ms: null,
  ack_note: null,
  processed_at: null,
  notification_outcome: null,
  outcome_detail: null,
  subscription_events: null,
  applied_event: null,
  applied_at: null,
};

const finalStatuses: ReadonlySet<string | null> = new Set(['Succeeded', 'Failed', 'Conflict']);

/** `microsoft_status` from a weaker source (the notification, an inference): only where none is final yet. */
export function unlessFinal(current: string | null, value: string | null): string | null {
  return finalStatuses.has(current) ? current : (value ?? current);
}

/** `microsoft_status` read back from Microsoft: replaces anything, but a final status only with a final one. */
export function readBack(current: string | null, value: string | null): string | null {
  if (value === null) return current;
  return finalStatuses.has(current) && !finalStatuses.has(value) ? current : value;
}

type Entry = { readonly before: OperationRow | undefined; row: OperationRow | undefined; changed: boolean };

export class OperationsBatch {
  private readonly rows = new Map<string, Entry>();
  /** The change requests this batch read and wrote (change-requests.table.ts). */
  readonly requests: RequestRows;
  constructor(private readonly db: ReadModelDb) {
    this.requests = new RequestRows(db);
  }

  private async entry(operationId: string): Promise<Entry> {
    let entry = this.rows.get(operationId);
    if (entry) return entry;
    const row = (await this.db.get('SELECT * FROM operations WHERE operation_id = @operationId', { operationId })) as OperationRow | undefined;
    entry = this.rows.get(operationId) ?? { before: row, row: row ? { ...row } : undefined, changed: false };
    this.rows.set(operationId, entry);
    return entry;
  }

  /** The row as it stands in this batch, if the operation has one. */
  async row(operationId: string): Promise<Readonly<OperationRow> | undefined> {
    return (await this.entry(operationId)).row;
  }

  /** The row of an operation this batch has read already (an upsert did), synchronously; undefined when it has none. */
  loaded(operationId: string): Readonly<OperationRow> | undefined {
    return this.rows.get(operationId)?.row;
  }

  /** An upsert: `inserted` for a new row, else `update(row, inserted)`'s columns when the event is after the row's. */
  async upsert(
    operationId: string,
    inserted: Inserted,
    update: (row: Readonly<OperationRow>, excluded: Readonly<OperationRow>) => Partial<OperationRow>,
  ): Promise<void> {
    const entry = await this.entry(operationId);
    const excluded: OperationRow = { ...empty, ...inserted, operation_id: operationId };
    if (!entry.row) entry.row = excluded;
    else if (excluded.position > entry.row.position) entry.row = { ...entry.row, ...update(entry.row, excluded), updated_at: excluded.updated_at, position: excluded.position };
    else return;
    entry.changed = true;
  }

  async flush(): Promise<void> {
    for (const [operationId, { before, row, changed }] of this.rows) {
      if (!changed || !row) continue;
      if (!before) {
        await insertRow(this.db, 'operations', row);
        continue;
      }
      const columns: Record<string, unknown> = {};
      for (const [column, value] of Object.entries(row)) if (!same(value, before[column as keyof OperationRow])) columns[column] = value;
      await updateRow(this.db, 'operations', 'operation_id', operationId, columns);
    }
    this.rows.clear();
    this.requests.clear();
  }
}
