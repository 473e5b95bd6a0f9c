/**
 * The provenance of what an HTTP request records (src/eventstore/provenance.ts): the request is both the unit of
 * work and the cause. correlationId is the request id when it is a GUID (Fastify's ids are; a caller's
 * `x-request-id` may not be), else a new GUID, since it goes to Microsoft as `x-ms-correlationid`; causationId is
 * the request id as the logs show it.
 */
import { randomUUID } from 'node:crypto';
import { isGuid } from '../marketplace/schemas.js';
import type { Provenance } from '../eventstore/provenance.js';

export function requestProvenance(request: { id: string }): Provenance {
  return { correlationId: isGuid(request.id) ? request.id : randomUUID(), causationId: request.id };
}
