/**
 * The event log as an auditor takes it away (issue 12): JSON Lines (one event per line) or CSV, streamed event
 * by event (memory bounded whatever the store's size), every event exactly as stored, nothing added but `links`.
 *
 * Which events:
 * - everything (global order);
 * - one subscription: its stream, and the raw Microsoft notifications behind its changes — the
 *   `notification-<operation id>` streams of the operation ids its events carry — merged in global order;
 * - a time range (`from` ≤ recordedAt < `to`, either end optional), alone or with a subscription.
 *
 * `links` (on subscription events caused by a Microsoft operation): the notification stream of that operation,
 * where the raw webhook body (`NotificationReceived.data.body`, verbatim) and our acknowledgement are recorded.
 * A reader joins on it, or on `metadata.causationId` (the notification event that caused the change).
 */
import { notificationStream } from '../domain/notification/index.js';
import { subscriptionCategory, subscriptionStream } from '../domain/subscription/index.js';
import type { EventMetadata, EventStore, RecordedEvent } from '../eventstore/eventstore.js';
import { categoryPrefix } from '../eventstore/eventstore.js';
import { parseJson } from '../json.js';

export type ExportFilter = { subscriptionId?: string; fromMs?: number; toMs?: number };

export type ExportRecord = {
  position: string;
  recordedAt: string;
  streamId: string;
  revision: string;
  eventId: string;
  type: string;
  data: unknown;
  metadata: EventMetadata;
  links?: { notificationStream: string };
};

const subscriptionPrefix = categoryPrefix(subscriptionCategory);

function operationIdOf(data: unknown): string | undefined {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined;
  const op = (data as Record<string, unknown>).operationId;
  return typeof op === 'string' && op.length > 0 ? op : undefined;
}

export function toExportRecord(e: RecordedEvent): ExportRecord {
  const op = e.streamId.startsWith(subscriptionPrefix) ? operationIdOf(e.data) : undefined;
  return {
    position: e.position.toString(),
    recordedAt: e.recordedAt,
    streamId: e.streamId,
    revision: e.revision.toString(),
    eventId: e.id,
    type: e.type,
    data: e.data,
    metadata: e.metadata,
    ...(op ? { links: { notificationStream: notificationStream(op) } } : {}),
  };
}

function inRange(e: RecordedEvent, f: ExportFilter): boolean {
  if (f.fromMs === undefined && f.toMs === undefined) return true;
  const t = Date.parse(e.recordedAt);
  return (f.fromMs === undefined || t >= f.fromMs) && (f.toMs === undefined || t < f.toMs);
}

/** One subscription's stream and the notification streams its events point at, in global order. */
async function subscriptionEvents(store: EventStore, subscriptionId: string): Promise<RecordedEvent[]> {
  const own = await store.readStream(subscriptionStream(subscriptionId));
  const ops = [...new Set(own.map((e) => operationIdOf(e.data)).filter((op): op is string => op !== undefined))];
  const notifications = (await Promise.all(ops.map((op) => store.readStream(notificationStream(op))))).flat();
  const byId = new Map<string, RecordedEvent>();
  for (const e of [...own, ...notifications]) byId.set(e.id, e);
  return [...byId.values()].sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0));
}

/** The events the filter selects, one at a time. */
export async function* exportEvents(store: EventStore, filter: ExportFilter = {}): AsyncGenerator<ExportRecord> {
  if (filter.subscriptionId !== undefined) {
    for (const e of await subscriptionEvents(store, filter.subscriptionId)) if (inRange(e, filter)) yield toExportRecord(e);
    return;
  }
  for await (const e of store.readAll()) if (inRange(e, filter)) yield toExportRecord(e);
}

export type ExportFormat = 'jsonl' | 'csv';

export const csvColumns = ['position', 'recordedAt', 'streamId', 'revision', 'eventId', 'type', 'data', 'metadata', 'notificationStream'] as const;

/** RFC 4180 field: quoted when it holds a comma, a quote or a line break. JSON columns are JSON text. */
function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

export function csvHeader(): string {
  return `${csvColumns.join(',')}\r\n`;
}

export function formatRecord(r: ExportRecord, format: ExportFormat): string {
  if (format === 'jsonl') return `${JSON.stringify(r)}\n`;
  const values = [r.position, r.recordedAt, r.streamId, r.revision, r.eventId, r.type, JSON.stringify(r.data), JSON.stringify(r.metadata), r.links?.notificationStream ?? ''];
  return `${values.map(csvField).join(',')}\r\n`;
}

/** The export as text chunks (header first for CSV), pulled as the consumer reads. */
export async function* exportText(store: EventStore, filter: ExportFilter, format: ExportFormat, onEvent?: () => void): AsyncGenerator<string> {
  if (format === 'csv') yield csvHeader();
  for await (const r of exportEvents(store, filter)) {
    onEvent?.();
    yield formatRecord(r, format);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One JSON Lines line read back (for checks and audits of an export); throws on a line that is not a record. */
export function parseJsonlRecord(line: string): ExportRecord {
  const v = parseJson(line);
  if (!isObject(v)) throw new Error('not an export record');
  const s = (k: string): string => {
    const x = v[k];
    if (typeof x !== 'string') throw new Error(`export record without ${k}`);
    return x;
  };
  const metadata = v.metadata;
  if (!isObject(metadata)) throw new Error('export record without metadata');
  const links = isObject(v.links) && typeof v.links.notificationStream === 'string' ? { links: { notificationStream: v.links.notificationStream } } : {};
  return { position: s('position'), recordedAt: s('recordedAt'), streamId: s('streamId'), revision: s('revision'), eventId: s('eventId'), type: s('type'), data: v.data, metadata, ...links };
}

/** CSV text split into rows of fields (RFC 4180: quoted fields may hold commas, quotes and line breaks). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  const endField = () => {
    row.push(field);
    field = '';
  };
  while (i < text.length) {
    const c = text[i] as string;
    const next = text[i + 1];
    i++;
    if (quoted) {
      if (c !== '"') field += c;
      else if (next === '"') {
        field += '"';
        i++;
      } else quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === ',') endField();
    else if (c === '\r' && next === '\n') {
      endField();
      rows.push(row);
      row = [];
      i++;
    } else field += c;
  }
  if (field !== '' || row.length > 0) {
    endField();
    rows.push(row);
  }
  return rows;
}

/** A CSV row (not the header) read back as a record. */
export function csvRowRecord(row: readonly string[]): ExportRecord {
  const [position, recordedAt, streamId, revision, eventId, type, data, metadata, link] = row;
  if (metadata === undefined || position === undefined || recordedAt === undefined || streamId === undefined || revision === undefined || eventId === undefined || type === undefined || data === undefined) {
    throw new Error(`a CSV row of ${row.length} fields, ${csvColumns.length} expected`);
  }
  const meta = parseJson(metadata);
  if (!isObject(meta)) throw new Error('metadata is not an object');
  return { position, recordedAt, streamId, revision, eventId, type, data: parseJson(data), metadata: meta, ...(link ? { links: { notificationStream: link } } : {}) };
}
