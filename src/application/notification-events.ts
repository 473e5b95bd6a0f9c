/**
 * Microsoft's notifications between the wire, the store and the domain:
 * - `readNotification(body)`: the one reading of a webhook body (JSON, the tolerant schema, GUID ids) into
 *   the domain's NotificationPayload; the webhook does it at receipt and stores the result beside the body.
 * - `decodeNotificationEvent(recorded)`: a recorded event as a notification event, checked (no casts). A
 *   delivery recorded before the payload was stored has its body read here, the only place that does so.
 */
import { parseJson } from '../json.js';
import Type from 'typebox';
import { Compile } from 'typebox/compile';
import type { NotificationEvent, NotificationPayload, NotificationReading } from '../domain/notification/index.js';
import { TermSchema } from '../domain/subscription/index.js';
import type { RecordedEvent } from '../eventstore/eventstore.js';
import { isGuid, parseWebhookPayload } from '../marketplace/schemas.js';
import type { NormalisedWebhookPayload } from '../marketplace/schemas.js';
import { termFromMicrosoft } from './subscription-details.js';

/** Microsoft's payload, normalised by the marketplace schemas, in the domain's words. */
export function notificationPayloadOf(p: NormalisedWebhookPayload): NotificationPayload {
  return {
    id: p.id,
    subscriptionId: p.subscriptionId,
    action: p.action,
    ...(typeof p.activityId === 'string' ? { activityId: p.activityId } : {}),
    ...(typeof p.publisherId === 'string' ? { publisherId: p.publisherId } : {}),
    ...(typeof p.offerId === 'string' ? { offerId: p.offerId } : {}),
    ...(typeof p.planId === 'string' ? { planId: p.planId } : {}),
    ...(p.quantity !== undefined ? { quantity: p.quantity } : {}),
    ...(typeof p.timeStamp === 'string' ? { timeStamp: p.timeStamp } : {}),
    ...(p.status !== undefined ? { status: p.status } : {}),
    ...(p.operationRequestSource !== undefined ? { operationRequestSource: p.operationRequestSource } : {}),
    ...(p.subscription?.term ? { term: termFromMicrosoft(p.subscription.term) } : {}),
  };
}

/** JSON and the tolerant webhook schema; the reason (a string) when the body is not that. */
function parseBody(body: string): NormalisedWebhookPayload | string {
  try {
    return parseWebhookPayload(parseJson(body));
  } catch (err) {
    return (err instanceof Error ? err.message : String(err)).slice(0, 500);
  }
}

/** A webhook body as a notification: JSON, the tolerant webhook schema, and GUIDs for `id` and `subscriptionId`. */
export function readNotification(body: string): NotificationReading {
  const payload = parseBody(body);
  if (typeof payload === 'string') return { readable: false, reason: payload };
  if (!isGuid(payload.id) || !isGuid(payload.subscriptionId)) {
    return {
      readable: false,
      reason: `id and subscriptionId must be GUIDs (got ${JSON.stringify(payload.id).slice(0, 80)}, ${JSON.stringify(payload.subscriptionId).slice(0, 80)})`,
    };
  }
  return { readable: true, notification: notificationPayloadOf(payload) };
}

// ------------------------------------------------------------------------------------------------
// The stored shapes (tolerant of fields we do not know)

const Opt = Type.Optional;

const StoredPayload = Type.Object({
  id: Type.String(),
  subscriptionId: Type.String(),
  action: Type.String(),
  activityId: Opt(Type.String()),
  publisherId: Opt(Type.String()),
  offerId: Opt(Type.String()),
  planId: Opt(Type.String()),
  quantity: Opt(Type.Number()),
  timeStamp: Opt(Type.String()),
  status: Opt(Type.String()),
  operationRequestSource: Opt(Type.String()),
  term: Opt(TermSchema),
});

const Received = Type.Object({
  deliveryId: Type.String(),
  receivedAt: Type.String(),
  operationId: Opt(Type.String()),
  subscriptionId: Opt(Type.String()),
  action: Opt(Type.String()),
  body: Type.String(),
  headers: Type.Record(Type.String(), Type.String()),
  caller: Opt(Type.Object({ tokenVersion: Type.String(), issuer: Type.String(), caller: Type.String(), tenantId: Type.String() })),
  payload: Opt(StoredPayload),
  unreadable: Opt(Type.String()),
});

const Acknowledged = Type.Object({
  operationId: Type.String(),
  subscriptionId: Type.String(),
  status: Type.Union([Type.Literal('Success'), Type.Literal('Failure')]),
  at: Type.String(),
  latencyMs: Type.Number(),
  note: Opt(Type.String()),
});

const Processed = Type.Object({
  operationId: Type.String(),
  subscriptionId: Opt(Type.String()),
  action: Opt(Type.String()),
  outcome: Type.Union([
    Type.Literal('applied'),
    Type.Literal('no-change'),
    Type.Literal('rejected'),
    Type.Literal('ignored'),
    Type.Literal('failed'),
    Type.Literal('unverified'),
  ]),
  detail: Type.String(),
  subscriptionEvents: Type.Array(Type.String()),
  operationStatus: Opt(Type.String()),
  at: Type.String(),
});

/**
 * A recorded event as a notification event, or undefined when it is not one (another type, or data that
 * does not have the shape we wrote). A delivery recorded without `payload` (before it was stored) and not
 * marked unreadable gets it from its body, read as it was read then.
 */
/** Compiled on first use: every recorded notification is decoded by the process and the projections. */
let compiled: { received: ReturnType<typeof compileReceived>; acknowledged: ReturnType<typeof compileAcknowledged>; processed: ReturnType<typeof compileProcessed> } | undefined;
const compileReceived = () => Compile(Received);
const compileAcknowledged = () => Compile(Acknowledged);
const compileProcessed = () => Compile(Processed);
function validators() {
  compiled ??= { received: compileReceived(), acknowledged: compileAcknowledged(), processed: compileProcessed() };
  return compiled;
}

export function decodeNotificationEvent(event: Pick<RecordedEvent, 'type' | 'data'>): NotificationEvent | undefined {
  const data = event.data;
  switch (event.type) {
    case 'NotificationReceived': {
      if (!validators().received.Check(data)) return undefined;
      if (data.payload || data.unreadable !== undefined) return { type: 'NotificationReceived', data };
      const payload = parseBody(data.body);
      return { type: 'NotificationReceived', data: typeof payload === 'string' ? data : { ...data, payload: notificationPayloadOf(payload) } };
    }
    case 'OperationAcknowledged':
      return validators().acknowledged.Check(data) ? { type: 'OperationAcknowledged', data } : undefined;
    case 'NotificationProcessed':
      return validators().processed.Check(data) ? { type: 'NotificationProcessed', data } : undefined;
    default:
      return undefined;
  }
}

export function decodeNotificationEvents(events: Iterable<Pick<RecordedEvent, 'type' | 'data'>>): NotificationEvent[] {
  const out: NotificationEvent[] = [];
  for (const e of events) {
    const decoded = decodeNotificationEvent(e);
    if (decoded) out.push(decoded);
  }
  return out;
}
