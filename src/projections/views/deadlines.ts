/**
 * Deadlines that lose revenue when missed, from the read models (never the event store) and the
 * credential's health: what `GET /api/deadlines` lists and the deadline warner logs.
 *
 * | kind | open while | deadline | source |
 * |---|---|---|---|
 * | `pending-purchase` | PendingFulfillmentStart, no activation requested | created + 30 days | docs/marketplace.md §5 |
 * | `activation` | PendingFulfillmentStart, activation requested, not `Activated` | created + 30 days | docs/marketplace.md §5, §3.2 |
 * | `acknowledgement` | a ChangePlan/ChangeQuantity notification neither acknowledged nor settled | received + 10 s | docs/marketplace.md §7.2 |
 * | `credential` | 401/403 (or Entra rejecting the token) with no success since; a certificate's `notAfter` | first rejection; `notAfter` | docs/marketplace.md §2.4, §14.3 |
 *
 * Severity: `overdue` once the deadline has passed, `warning` inside the lead time before it, `info`
 * otherwise. Besides: an activation is at least a `warning` once it failed, gave up, or has waited longer
 * than the activation grace; an acknowledgement is a `warning` for the whole of its 10-second window; a
 * rejected credential is a `warning` at the first rejection and `overdue` after `credentialRejections` in a row.
 *
 * `deadlinesAt` is pure (the time comes in as `now`); `readDeadlines` adds the two indexed queries.
 */
import type { CredentialHealthSnapshot } from '../../marketplace/credential-health.js';
import type { ReadModelDb } from '../projection.js';
import { pendingSubscriptions, unacknowledgedOperations } from '../queries.js';
import type { PendingSubscriptionRow, UnacknowledgedOperationRow } from '../queries.js';

/** Microsoft's limit for activating a PendingFulfillmentStart subscription (docs/marketplace.md §5). */
export const PENDING_FULFILLMENT_DAYS = 30;
/** Microsoft's window for answering a ChangePlan/ChangeQuantity notification (docs/marketplace.md §7.2). */
export const ACKNOWLEDGEMENT_WINDOW_MS = 10_000;

const DAY_MS = 86_400_000;

export const DEADLINE_KINDS = ['pending-purchase', 'activation', 'acknowledgement', 'credential'] as const;
export type DeadlineKind = (typeof DEADLINE_KINDS)[number];
export const SEVERITIES = ['info', 'warning', 'overdue'] as const;
export type Severity = (typeof SEVERITIES)[number];

export type DeadlineSettings = {
  /** A pending purchase or activation is a warning this long before its 30 days are up. */
  purchaseLeadMs: number;
  /** An activation not confirmed this long after it was requested is a warning. */
  activationGraceMs: number;
  /** Rejections in a row that make the credential overdue (one is a warning). */
  credentialRejections: number;
  /** A certificate is a warning this long before its `notAfter`. */
  certificateLeadMs: number;
};

export const defaultDeadlineSettings: DeadlineSettings = {
  purchaseLeadMs: 7 * DAY_MS,
  activationGraceMs: 15 * 60_000,
  credentialRejections: 3,
  certificateLeadMs: 30 * DAY_MS,
};

export type ActivationDetails = { requestedAt: string | null; failures: number; lastError: string | null; gaveUp: boolean };
export type OperationDetails = {
  operationId: string;
  action: string;
  source: string | null;
  planId: string | null;
  quantity: number | null;
  receivedAt: string;
  deliveries: number;
};

export type Deadline = {
  /** Stable per item (`<kind>:<id>`): what the warner remembers. */
  key: string;
  kind: DeadlineKind;
  subscriptionId: string | null;
  /** When the clock started: the purchase, the activation request, the first delivery, the first rejection. */
  since: string;
  deadline: string;
  /** Negative once overdue. */
  timeLeftMs: number;
  severity: Severity;
  /** What is wrong, in one line. */
  summary: string;
  /** What to do about it. */
  action: string;
  /** Where the deadline comes from. */
  rule: string;
  activation: ActivationDetails | null;
  operation: OperationDetails | null;
  credential: CredentialHealthSnapshot | null;
};

const iso = (ms: number): string => new Date(ms).toISOString();

function bySeverity(deadlineMs: number, nowMs: number, leadMs: number): Severity {
  if (nowMs >= deadlineMs) return 'overdue';
  return nowMs >= deadlineMs - leadMs ? 'warning' : 'info';
}

const atLeastWarning = (s: Severity): Severity => (s === 'info' ? 'warning' : s);

type Base = Pick<Deadline, 'key' | 'kind' | 'subscriptionId' | 'since' | 'deadline' | 'timeLeftMs' | 'severity' | 'summary' | 'action' | 'rule'>;
const item = (base: Base, extra: Partial<Pick<Deadline, 'activation' | 'operation' | 'credential'>> = {}): Deadline => ({
  ...base,
  activation: extra.activation ?? null,
  operation: extra.operation ?? null,
  credential: extra.credential ?? null,
});

function pendingItem(r: PendingSubscriptionRow, nowMs: number, s: DeadlineSettings): Deadline {
  const createdMs = Date.parse(r.createdAt);
  const deadlineMs = createdMs + PENDING_FULFILLMENT_DAYS * DAY_MS;
  const base = {
    subscriptionId: r.subscriptionId,
    deadline: iso(deadlineMs),
    timeLeftMs: deadlineMs - nowMs,
    rule: `docs/marketplace.md §5: ${PENDING_FULFILLMENT_DAYS} days from the purchase to activate a PendingFulfillmentStart subscription`,
  };
  const severity = bySeverity(deadlineMs, nowMs, s.purchaseLeadMs);
  const contact = r.email ? ` (${r.email})` : '';
  if (r.activationRequestedAt === null) {
    return item({
      ...base,
      key: `pending-purchase:${r.subscriptionId}`,
      kind: 'pending-purchase',
      since: r.createdAt,
      severity,
      summary: `purchase of ${r.offerId}/${r.planId} not activated: the customer has not submitted the landing page`,
      action:
        `Ask the customer${contact} to open the subscription in the Azure portal or Microsoft 365 admin center and choose "Configure account", ` +
        `or activate it yourself: POST /api/subscriptions/${r.subscriptionId}/activate with the contact. Billing starts only at activation.`,
    });
  }
  const requestedMs = Date.parse(r.activationRequestedAt);
  const stuck = r.activationGaveUp || r.activationFailures > 0 || nowMs - requestedMs >= s.activationGraceMs;
  const failures = r.activationFailures > 0 ? `, ${r.activationFailures} failed attempt(s)${r.activationError ? `, last: ${r.activationError}` : ''}` : '';
  return item(
    {
      ...base,
      key: `activation:${r.subscriptionId}`,
      kind: 'activation',
      since: r.activationRequestedAt,
      severity: stuck ? atLeastWarning(severity) : severity,
      summary: `activation requested at ${r.activationRequestedAt} not confirmed${r.activationGaveUp ? ' (the activation process gave up)' : ''}${failures}`,
      action: r.activationGaveUp
        ? `Fix the cause (the ISV's provisioning endpoint, the Microsoft credential: see the log for subscriptionId ${r.subscriptionId}), then request it again: POST /api/subscriptions/${r.subscriptionId}/activate with the contact.`
        : `The activation process is still trying: check its log lines for subscriptionId ${r.subscriptionId}, the ISV's provisioning endpoint and the Microsoft credential.`,
    },
    { activation: { requestedAt: r.activationRequestedAt, failures: r.activationFailures, lastError: r.activationError, gaveUp: r.activationGaveUp } },
  );
}

function acknowledgementItem(r: UnacknowledgedOperationRow, nowMs: number): Deadline {
  const receivedMs = Date.parse(r.firstReceivedAt);
  const deadlineMs = receivedMs + ACKNOWLEDGEMENT_WINDOW_MS;
  const change = r.action === 'ChangePlan' ? `plan ${r.planId ?? '?'}` : `quantity ${r.quantity ?? '?'}`;
  return item(
    {
      key: `acknowledgement:${r.operationId}`,
      kind: 'acknowledgement',
      subscriptionId: r.subscriptionId,
      since: r.firstReceivedAt,
      deadline: iso(deadlineMs),
      timeLeftMs: deadlineMs - nowMs,
      severity: nowMs >= deadlineMs ? 'overdue' : 'warning',
      summary: `${r.action} to ${change} (operation ${r.operationId}) received at ${r.firstReceivedAt}, not acknowledged`,
      action:
        'Past 10 s Microsoft treats the change as accepted and bills it: make sure it is applied on our side (GET /api/subscriptions/' +
        `${r.subscriptionId ?? '<id>'}) and in the product, and that the notification process runs (GET /api/read/status; the log for operationId ${r.operationId}).`,
      rule: 'docs/marketplace.md §7.2: 10 seconds to accept or refuse a ChangePlan/ChangeQuantity; silence is acceptance',
    },
    {
      operation: {
        operationId: r.operationId,
        action: r.action,
        source: r.source,
        planId: r.planId,
        quantity: r.quantity,
        receivedAt: r.firstReceivedAt,
        deliveries: r.deliveries,
      },
    },
  );
}

function credentialItems(c: CredentialHealthSnapshot, nowMs: number, s: DeadlineSettings): Deadline[] {
  const out: Deadline[] = [];
  if (c.consecutiveRejections > 0 && c.failingSince) {
    const last = c.lastFailure ? ` (last: ${c.lastFailure.call}, ${c.lastFailure.message})` : '';
    out.push(
      item(
        {
          key: 'credential:rejected',
          kind: 'credential',
          subscriptionId: null,
          since: c.failingSince,
          deadline: c.failingSince,
          timeLeftMs: Date.parse(c.failingSince) - nowMs,
          severity: c.consecutiveRejections >= s.credentialRejections ? 'overdue' : 'warning',
          summary: `Microsoft rejected the ${c.kind} credential ${c.consecutiveRejections} time(s) in a row since ${c.failingSince}, no success since${last}`,
          action:
            'No call to Microsoft works: activations, acknowledgements and changes stop. Check MARKETPLACE_TENANT_ID and MARKETPLACE_CLIENT_ID against ' +
            "Partner Center's Technical configuration, and whether the client secret or certificate has expired (create a new one and restart).",
          rule: 'docs/marketplace.md §2.4, §14.3: an expired secret or a wrong app makes every call answer 401/403',
        },
        { credential: c },
      ),
    );
  }
  if (c.certificate) {
    const deadlineMs = Date.parse(c.certificate.notAfter);
    out.push(
      item(
        {
          key: `credential:certificate:${c.certificate.thumbprintSha256}`,
          kind: 'credential',
          subscriptionId: null,
          since: c.certificate.notBefore,
          deadline: c.certificate.notAfter,
          timeLeftMs: deadlineMs - nowMs,
          severity: bySeverity(deadlineMs, nowMs, s.certificateLeadMs),
          summary: `client certificate ${c.certificate.subject} (SHA-256 ${c.certificate.thumbprintSha256}) expires at ${c.certificate.notAfter}`,
          action:
            'Upload a new certificate to the app registration (Certificates & secrets), point MARKETPLACE_CLIENT_CERTIFICATE_PATH at it and restart before it expires.',
          rule: 'docs/marketplace.md §2.4: once the credential expires every call answers 401/403',
        },
        { credential: c },
      ),
    );
  }
  return out;
}

const rank: Record<Severity, number> = { overdue: 0, warning: 1, info: 2 };

export type DeadlineSources = {
  pending: readonly PendingSubscriptionRow[];
  unacknowledged: readonly UnacknowledgedOperationRow[];
  credential?: CredentialHealthSnapshot;
};

/** Every open deadline at `now`, the most urgent first (overdue, warning, info; then by deadline). Pure. */
export function deadlinesAt(sources: DeadlineSources, now: Date, settings: DeadlineSettings = defaultDeadlineSettings): Deadline[] {
  const nowMs = now.getTime();
  const items = [
    ...sources.pending.map((r) => pendingItem(r, nowMs, settings)),
    ...sources.unacknowledged.map((r) => acknowledgementItem(r, nowMs)),
    ...(sources.credential ? credentialItems(sources.credential, nowMs, settings) : []),
  ];
  return items.sort((a, b) => rank[a.severity] - rank[b.severity] || a.deadline.localeCompare(b.deadline) || a.key.localeCompare(b.key));
}

/** The open deadlines at `now`, from the read models and the credential's health. */
export async function readDeadlines(
  db: ReadModelDb,
  credential: CredentialHealthSnapshot | undefined,
  now: Date,
  settings: DeadlineSettings = defaultDeadlineSettings,
): Promise<Deadline[]> {
  const [pending, unacknowledged] = [await pendingSubscriptions(db), await unacknowledgedOperations(db)];
  return deadlinesAt({ pending, unacknowledged, ...(credential ? { credential } : {}) }, now, settings);
}

/** `5d 3h`, `2h 05m`, `4m 10s`, `12s`; `overdue by …` when negative. */
export function formatTimeLeft(ms: number): string {
  const abs = Math.abs(ms);
  const s = Math.floor(abs / 1000);
  const [d, h, m, sec] = [Math.floor(s / 86_400), Math.floor((s % 86_400) / 3600), Math.floor((s % 3600) / 60), s % 60];
  const pad = (v: number) => String(v).padStart(2, '0');
  const text = d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${pad(m)}m` : m > 0 ? `${m}m ${pad(sec)}s` : `${sec}s`;
  return ms < 0 ? `overdue by ${text}` : text;
}
