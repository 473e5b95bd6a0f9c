/**
 * `subscriptions`: one row per SaaS subscription, as it stands now.
 *
 * The row is derived from the domain's own `evolve` (src/domain/subscription), so the read model can
 * never disagree with the aggregate about status, plan, seats or a pending change; the folded state
 * is kept beside it in `subscriptions_state` (with the counters the domain does not need). Guard: a row
 * reflects its stream up to `stream_revision`; an event at or before it is a replay and changes nothing.
 *
 * Because the stored state was folded by the domain's `evolve`, bump `version` not only when this file
 * changes what it writes but also when src/domain/subscription/subscription.state.ts changes what the
 * state holds: the rows are then rebuilt with the new fold instead of continuing from an old one.
 */
import { evolve, initialState, subscriptionCategory, subscriptionEventTypes } from '../../domain/subscription/index.js';
import type { KnownSubscription, SubscriptionEvent, SubscriptionState } from '../../domain/subscription/index.js';
import { categoryPrefix, entityIdOf } from '../../eventstore/eventstore.js';
import type { RecordedEvent } from '../../eventstore/eventstore.js';
import type { Projection, ReadModelDb } from '../projection.js';
import { batchesOf, bit, insertRow, isoTime, nullable, same, subscriptionEventOf, updateRow } from './support.js';

const schemaSql = `
CREATE TABLE IF NOT EXISTS subscriptions (
  subscription_id             TEXT PRIMARY KEY,
  name                        TEXT,
  publisher_id                TEXT,
  offer_id                    TEXT NOT NULL,
  plan_id                     TEXT NOT NULL,
  quantity                    INTEGER,
  status                      TEXT NOT NULL,
  auto_renew                  INTEGER NOT NULL,
  is_free_trial               INTEGER NOT NULL,
  is_test                     INTEGER NOT NULL,
  is_csp                      INTEGER NOT NULL,
  sandbox_type                TEXT,
  session_mode                TEXT,
  allowed_customer_operations TEXT NOT NULL,
  term_unit                   TEXT,
  term_start                  TEXT,
  term_end                    TEXT,
  purchaser_email             TEXT COLLATE NOCASE,
  purchaser_tenant_id         TEXT COLLATE NOCASE,
  purchaser_object_id         TEXT,
  beneficiary_email           TEXT COLLATE NOCASE,
  beneficiary_tenant_id       TEXT COLLATE NOCASE,
  beneficiary_object_id       TEXT,
  contact_email               TEXT COLLATE NOCASE,
  contact_name                TEXT,
  contact_company             TEXT,
  contact_phone               TEXT,
  created_at                  TEXT NOT NULL,
  microsoft_created           TEXT,
  purchased_at                TEXT NOT NULL,
  activation_requested_at     TEXT,
  activated_at                TEXT,
  auto_activated              INTEGER NOT NULL,
  activation_failures         INTEGER NOT NULL,
  activation_error            TEXT,
  activation_attempts         INTEGER NOT NULL,
  activation_next_attempt_at  TEXT,
  activation_gave_up          INTEGER NOT NULL,
  suspended_at                TEXT,
  suspensions                 INTEGER NOT NULL,
  reinstated_at               TEXT,
  reinstatements              INTEGER NOT NULL,
  renewed_at                  TEXT,
  renewals                    INTEGER NOT NULL,
  cancelled_at                TEXT,
  cancel_reason               TEXT,
  cancel_source               TEXT,
  pending_change              TEXT,
  pending_request_id          TEXT,
  pending_operation_id        TEXT,
  last_operation_id           TEXT,
  last_operation_event        TEXT,
  last_operation_at           TEXT,
  last_event_type             TEXT NOT NULL,
  updated_at                  TEXT NOT NULL,
  stream_revision             INTEGER NOT NULL,
  position                    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_by_status ON subscriptions (status, created_at);
CREATE INDEX IF NOT EXISTS subscriptions_by_plan ON subscriptions (offer_id, plan_id);
CREATE INDEX IF NOT EXISTS subscriptions_by_created ON subscriptions (created_at);
CREATE INDEX IF NOT EXISTS subscriptions_by_activated ON subscriptions (activated_at);
CREATE INDEX IF NOT EXISTS subscriptions_by_purchaser_tenant ON subscriptions (purchaser_tenant_id);
CREATE INDEX IF NOT EXISTS subscriptions_by_beneficiary_tenant ON subscriptions (beneficiary_tenant_id);
CREATE INDEX IF NOT EXISTS subscriptions_by_purchaser_email ON subscriptions (purchaser_email);
CREATE INDEX IF NOT EXISTS subscriptions_by_beneficiary_email ON subscriptions (beneficiary_email);
CREATE INDEX IF NOT EXISTS subscriptions_by_contact_email ON subscriptions (contact_email);
CREATE TABLE IF NOT EXISTS subscriptions_state (
  subscription_id TEXT PRIMARY KEY,
  stream_revision INTEGER NOT NULL,
  state           TEXT NOT NULL
);
`;

/** What the row needs beyond the domain state. */
type Extras = {
  suspensions: number;
  lastSuspendedAt?: string;
  reinstatements: number;
  reinstatedAt?: string;
  renewals: number;
  cancelReason?: string;
  cancelSource?: string;
  lastOperation?: { id: string; event: string; at: string };
  lastEventType: string;
  updatedAt: string;
};

type Folded = { state: SubscriptionState; extras: Extras };

function extrasAfter(extras: Extras | undefined, event: SubscriptionEvent): Extras {
  const e: Extras = extras ? { ...extras } : { suspensions: 0, reinstatements: 0, renewals: 0, lastEventType: event.type, updatedAt: event.data.at };
  e.lastEventType = event.type;
  e.updatedAt = event.data.at;
  if (event.data.operationId) e.lastOperation = { id: event.data.operationId, event: event.type, at: event.data.at };
  switch (event.type) {
    case 'Suspended':
      e.suspensions += 1;
      e.lastSuspendedAt = event.data.at;
      break;
    case 'Reinstated':
      e.reinstatements += 1;
      e.reinstatedAt = event.data.at;
      break;
    case 'Renewed':
      e.renewals += 1;
      break;
    case 'Unsubscribed':
      if (event.data.reason !== undefined) e.cancelReason = event.data.reason;
      e.cancelSource = event.data.source;
      break;
    default:
      break;
  }
  return e;
}

function pendingChange(s: KnownSubscription): string | null {
  const p = s.pendingChange;
  if (!p) return null;
  return p.kind === 'plan' ? `plan:${p.planId}` : p.kind === 'quantity' ? `quantity:${p.quantity}` : 'cancel';
}

function rowOf(s: KnownSubscription, x: Extras, revision: bigint, position: bigint): Record<string, unknown> {
  const ops = s.allowedCustomerOperations;
  const microsoftCreated = isoTime(s.created);
  return {
    subscription_id: s.subscriptionId,
    name: s.name,
    publisher_id: nullable(s.publisherId),
    offer_id: s.offerId,
    plan_id: s.planId,
    quantity: nullable(s.quantity),
    status: s.status,
    auto_renew: bit(s.autoRenew),
    is_free_trial: bit(s.isFreeTrial),
    is_test: bit(s.isTest),
    is_csp: bit(ops.length === 1 && ops[0] === 'Read'),
    sandbox_type: nullable(s.sandboxType),
    session_mode: nullable(s.sessionMode),
    allowed_customer_operations: ops.join(','),
    term_unit: nullable(s.term.termUnit),
    term_start: nullable(s.term.startDate),
    term_end: nullable(s.term.endDate),
    purchaser_email: nullable(s.purchaser.emailId),
    purchaser_tenant_id: nullable(s.purchaser.tenantId),
    purchaser_object_id: nullable(s.purchaser.objectId),
    beneficiary_email: nullable(s.beneficiary.emailId),
    beneficiary_tenant_id: nullable(s.beneficiary.tenantId),
    beneficiary_object_id: nullable(s.beneficiary.objectId),
    contact_email: nullable(s.contact?.email),
    contact_name: nullable(s.contact?.name),
    contact_company: nullable(s.contact?.company),
    contact_phone: nullable(s.contact?.phone),
    created_at: microsoftCreated ?? s.purchasedAt,
    microsoft_created: nullable(s.created),
    purchased_at: s.purchasedAt,
    activation_requested_at: nullable(s.activation.requestedAt),
    activated_at: nullable(s.activatedAt),
    auto_activated: bit(s.autoActivated),
    activation_failures: s.activation.failures,
    activation_error: nullable(s.activation.lastError),
    activation_attempts: s.activation.attempts,
    activation_next_attempt_at: nullable(s.activation.nextAttemptAt),
    activation_gave_up: bit(s.activation.gaveUp),
    suspended_at: nullable(x.lastSuspendedAt),
    suspensions: x.suspensions,
    reinstated_at: nullable(x.reinstatedAt),
    reinstatements: x.reinstatements,
    renewed_at: nullable(s.lastRenewedAt),
    renewals: x.renewals,
    cancelled_at: nullable(s.unsubscribedAt),
    cancel_reason: nullable(x.cancelReason),
    cancel_source: nullable(x.cancelSource),
    pending_change: pendingChange(s),
    pending_request_id: nullable(s.pendingChange?.requestId),
    pending_operation_id: nullable(s.pendingChange?.operationId),
    last_operation_id: nullable(x.lastOperation?.id),
    last_operation_event: nullable(x.lastOperation?.event),
    last_operation_at: nullable(x.lastOperation?.at),
    last_event_type: x.lastEventType,
    updated_at: x.updatedAt,
    stream_revision: revision,
    position,
  };
}

/**
 * The fold as it reads back from its JSON: keys whose value is undefined removed, everywhere in it. The next
 * `evolve` then sees what it would see after a write and a read of the state (a key set again goes to the end),
 * so the state written after many events in memory is the very text written event by event.
 */
function asStored<T>(value: T): T {
  if (Array.isArray(value)) {
    for (const item of value) asStored(item);
  } else if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (record[key] === undefined) delete record[key];
      else asStored(record[key]);
    }
  }
  return value;
}

/** One subscription as a batch holds it: what the file had, and the fold so far. */
type Entry = {
  /** The row as the file holds it (from the stored fold), when it has one. */
  readonly before: Record<string, unknown> | undefined;
  folded: Folded | undefined;
  revision: bigint;
  position: bigint;
  changed: boolean;
};

/** The subscriptions a batch touched: each stored fold read once, evolved in memory, and written once by `flush`. */
class SubscriptionsBatch {
  private readonly entries = new Map<string, Entry>();
  constructor(private readonly db: ReadModelDb) {}

  async apply(recorded: RecordedEvent): Promise<void> {
    const event = subscriptionEventOf(recorded);
    if (!event) return;
    const entry = await this.entry(entityIdOf(recorded.streamId));
    if (entry.revision >= recorded.revision) return; // a replay: already reflected
    const folded = { state: evolve(entry.folded?.state ?? initialState(), event), extras: extrasAfter(entry.folded?.extras, event) };
    entry.folded = asStored(folded);
    entry.revision = recorded.revision;
    entry.position = recorded.position;
    entry.changed = true;
  }

  private async entry(subscriptionId: string): Promise<Entry> {
    let entry = this.entries.get(subscriptionId);
    if (entry) return entry;
    const stored = (await this.db.get('SELECT stream_revision, state FROM subscriptions_state WHERE subscription_id = @subscriptionId', { subscriptionId })) as
      | { stream_revision: number; state: string }
      | undefined;
    const raced = this.entries.get(subscriptionId);
    if (raced) return raced;
    const folded = stored ? (JSON.parse(stored.state) as Folded) : undefined;
    const before = folded && folded.state.status !== 'Initial' ? rowOf(folded.state, folded.extras, 0n, 0n) : undefined;
    entry = { before, folded, revision: stored ? BigInt(stored.stream_revision) : -1n, position: 0n, changed: false };
    this.entries.set(subscriptionId, entry);
    return entry;
  }

  async flush(): Promise<void> {
    for (const [subscriptionId, entry] of this.entries) {
      const { folded } = entry;
      if (!entry.changed || !folded) continue;
      await this.db.run(
        `INSERT INTO subscriptions_state (subscription_id, stream_revision, state) VALUES (@subscriptionId, @revision, @state)
         ON CONFLICT (subscription_id) DO UPDATE SET stream_revision = excluded.stream_revision, state = excluded.state`,
        { subscriptionId, revision: entry.revision, state: JSON.stringify(folded) },
      );
      if (folded.state.status === 'Initial') continue; // a stream that did not start with a purchase: nothing to show
      const row = rowOf(folded.state, folded.extras, entry.revision, entry.position);
      if (!entry.before) {
        await insertRow(this.db, 'subscriptions', row, 'ON CONFLICT (subscription_id) DO NOTHING');
        continue;
      }
      // Write only the columns that changed, so that indexes on the others are left alone.
      const changed: Record<string, unknown> = {};
      for (const [column, value] of Object.entries(row)) if (!same(value, entry.before[column])) changed[column] = value;
      await updateRow(this.db, 'subscriptions', 'subscription_id', subscriptionId, changed);
    }
    this.entries.clear();
  }
}

const batches = batchesOf((db) => new SubscriptionsBatch(db));

export const subscriptionsProjection: Projection = {
  name: 'subscriptions',
  // 2: the folded state says `planTimeStamp`/`quantityTimeStamp` (Microsoft's time) where it said `planChangedAt`/`quantityChangedAt`.
  // 3: the activation's attempts of the current request and when the next is due (activation_attempts, activation_next_attempt_at).
  version: 3,
  description: 'One row per SaaS subscription: status, offer, plan, seats, term, flags, parties, contact, lifecycle times, last operation',
  schemaSql,
  tables: ['subscriptions', 'subscriptions_state'],
  views: [],
  streamPrefixes: [categoryPrefix(subscriptionCategory)],
  handles: new Set<string>(subscriptionEventTypes),
  apply: (db, event) => batches.use(db, (batch) => batch.apply(event)),
  beginBatch: (db) => batches.begin(db),
};
