/**
 * Client for Microsoft's Marketplace Metering Service API (docs/marketplace.md §11): `POST /usageEvent` and
 * `POST /batchUsageEvent`, on the Fulfillment client's base URL, token, request/correlation ids and retries.
 *
 * Both calls are retried on 429, 5xx and network errors although they create usage events: Microsoft accepts one
 * event per resource, dimension and hour, and answers a repeat with a duplicate carrying the event it accepted
 * first, so a retry can never bill twice. A 409 is that answer (`{ kind: 'duplicate', original }`), not an error.
 * Responses are checked with the tolerant schemas of metering.schemas.ts.
 */
import {
  MarketplaceConflictError,
  MarketplaceUnexpectedResponseError,
} from './errors.js';
import type { FulfillmentClient, MarketplaceOutcome } from './fulfillment-client.js';
import { check } from './schemas.js';
import { AcceptedUsageEvent, BatchUsageResponse, UsageConflict } from './metering.schemas.js';
import type { BatchUsageItem, UsageEventRequest } from './metering.schemas.js';
import type { TSchema, Static } from 'typebox';
import { parseJson } from '../json.js';
import type { CallOptions } from './transport.js';

/** Microsoft's limit on one batch. */
export const MAX_USAGE_BATCH = 25;

export type SingleUsageResult =
  | { kind: 'accepted'; event: AcceptedUsageEvent }
  | { kind: 'duplicate'; original: AcceptedUsageEvent | undefined; message?: string };

export class MeteringClient {
  constructor(private readonly client: FulfillmentClient) {}

  /** One usage event. A 409 (already recorded for that hour) is answered with the event Microsoft accepted first. */
  async postUsageEvent(event: UsageEventRequest, options?: CallOptions): Promise<SingleUsageResult> {
    try {
      const out = await this.client.send({ name: 'postUsageEvent', method: 'POST', url: this.client.url('usageEvent'), body: event, idempotent: true, expect: [200], options });
      return { kind: 'accepted', event: this.parse('postUsageEvent', out, AcceptedUsageEvent) };
    } catch (err) {
      if (!(err instanceof MarketplaceConflictError)) throw err;
      const conflict = conflictOf(err.body);
      return { kind: 'duplicate', original: conflict?.additionalInfo?.acceptedMessage ?? undefined, ...(conflict?.message ? { message: conflict.message } : {}) };
    }
  }

  /** 1 to 25 usage events; Microsoft's answer per item, in the order sent (check every item). */
  async postBatchUsageEvent(events: readonly UsageEventRequest[], options?: CallOptions): Promise<BatchUsageItem[]> {
    if (events.length === 0 || events.length > MAX_USAGE_BATCH) throw new TypeError(`a usage batch holds 1 to ${MAX_USAGE_BATCH} events, got ${events.length}`);
    const out = await this.client.send({
      name: 'postBatchUsageEvent',
      method: 'POST',
      url: this.client.url('batchUsageEvent'),
      body: { request: events },
      idempotent: true,
      expect: [200],
      options,
    });
    const result = this.parse('postBatchUsageEvent', out, BatchUsageResponse).result ?? [];
    if (result.length !== events.length) {
      throw new MarketplaceUnexpectedResponseError({
        call: 'postBatchUsageEvent',
        method: out.method,
        url: out.url,
        status: out.status,
        requestId: out.requestId,
        correlationId: out.correlationId,
        reason: `${result.length} results for ${events.length} events`,
      });
    }
    return result;
  }

  private parse<T extends TSchema>(call: string, out: MarketplaceOutcome, schema: T): Static<T> {
    return this.client.parseResponse(call, out, (raw) => check(call, schema, raw));
  }
}

/** The Conflict body of a 409, when it reads as one. */
function conflictOf(body: string | undefined): UsageConflict | undefined {
  if (!body) return undefined;
  try {
    return check('usageConflict', UsageConflict, parseJson(body));
  } catch {
    return undefined;
  }
}
