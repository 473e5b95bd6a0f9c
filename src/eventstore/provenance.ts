/**
 * correlationId and causationId: one meaning on every stream (docs/audit.md).
 *
 * - `correlationId` names the unit of work an event belongs to, a GUID: the inbound request (the HTTP request id
 *   of a landing-page or operator request), Microsoft's notification (its `x-ms-correlationid`, else our delivery
 *   id), a reconciliation run, or the run of a component acting on its own initiative. An event caused by another
 *   event keeps the correlationId of its cause, so one id follows a piece of work across streams; it is also the
 *   `x-ms-correlationid` of the calls to Microsoft made for it.
 * - `causationId` names the one thing that directly caused the event: the id of the event a process reacted to,
 *   or, for an event recorded on receipt of something from outside, that inbound message's id (the request id, the
 *   webhook delivery id). Events a component writes on its own initiative (lease moves, checkpoints, scheduled
 *   runs) have no outside cause: their causationId is their correlationId, the component's run id.
 */
import { randomUUID } from 'node:crypto';
import type { EventMetadata, RecordedEvent } from './eventstore.js';

/** The run of this OS process: the correlation of what its components write on their own initiative. */
export const PROCESS_RUN_ID = randomUUID();

export type Provenance = { correlationId: string; causationId: string };

/** Work a component starts by itself (a timer, a schedule): its own run id is both cause and correlation. */
export function ownInitiative(runId: string = PROCESS_RUN_ID): Provenance {
  return { correlationId: runId, causationId: runId };
}

/** An event written in reaction to `cause`: the cause's correlation carries on, the cause is its id. */
export function causedBy(cause: Pick<RecordedEvent, 'id'> & { metadata: EventMetadata }): Provenance {
  const correlationId = cause.metadata.correlationId;
  return { correlationId: typeof correlationId === 'string' && correlationId ? correlationId : cause.id, causationId: cause.id };
}
