/**
 * The Metering client's calls agree with meteringapi.v1.json (path, method, query, headers, body), as the
 * Fulfillment client's agree with saasapi.v2.json; spec-conformant answers (200, the 409 duplicate, batch items)
 * are read as Microsoft means them; a 5xx is retried (a repeat can only be a duplicate).
 */
import t from 'tap';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { MeteringClient } from '../../src/marketplace/metering-client.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { operationFor, validateRequest, validateResponse } from '../support/metering-openapi.js';
import { captureLogger, startScriptedServer } from '../support/scripted-server.js';
import type { Recorded, Reply } from '../support/scripted-server.js';

const SUB_ID = '5f2a3c4d-1b2e-4f5a-8b9c-0d1e2f3a4b5c';
const CORRELATION_ID = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
const EVENT_ID = 'c2f8b4d6-3a1e-4b7c-9d2f-6e8a0b1c3d5e';
const event = { resourceId: SUB_ID, quantity: 12.5, dimension: 'api-calls', effectiveStartTime: '2026-12-01T08:30:14.000Z', planId: 'basic' };
const accepted = { usageEventId: EVENT_ID, status: 'Accepted', messageTime: '2026-12-01T09:01:00.000Z', ...event };

function replyFor(req: Recorded): Reply {
  switch (operationFor(req.method, req.url)?.operationId) {
    case 'MeteringOperations_PostUsageEvent':
      return { status: 200, body: accepted };
    case 'MeteringOperations_PostBatchUsageEvent':
      return {
        status: 200,
        body: {
          count: 2,
          result: [accepted, { ...event, dimension: 'gb', status: 'Duplicate', messageTime: accepted.messageTime, error: { additionalInfo: { acceptedMessage: { ...accepted, dimension: 'gb', status: 'Duplicate' } }, message: 'This usage event already exist.', code: 'Conflict' } }],
        },
      };
    default:
      return { status: 404, body: 'no such operation in the spec' };
  }
}

function clientOf(apiUrl: string, maxAttempts = 1) {
  const { logger } = captureLogger();
  const fulfillment = new FulfillmentClient({ baseUrl: apiUrl, tokenProvider: new StaticTokenProvider('static-secret-token'), logger, retry: { maxAttempts, baseDelayMs: 1 } });
  return new MeteringClient(fulfillment);
}

t.test('both calls agree with the OpenAPI file, and spec-conformant answers are read', async (t) => {
  const server = await startScriptedServer();
  t.teardown(() => server.close());
  server.script((req) => replyFor(req));
  const client = clientOf(server.apiUrl);

  const single = await client.postUsageEvent(event, { correlationId: CORRELATION_ID });
  t.match(single, { kind: 'accepted', event: { usageEventId: EVENT_ID, status: 'Accepted', quantity: 12.5 } });
  const batch = await client.postBatchUsageEvent([event, { ...event, dimension: 'gb' }], { correlationId: CORRELATION_ID });
  t.equal(batch.length, 2);
  t.match(batch[1], { status: 'Duplicate', error: { additionalInfo: { acceptedMessage: { usageEventId: EVENT_ID } } } }, 'a duplicate item carries the original');

  t.equal(server.requests.length, 2);
  for (const req of server.requests) {
    const check = validateRequest(req);
    t.same(check.errors, [], `${req.method} ${req.url} matches meteringapi.v1.json`);
    t.ok(check.operationId, 'an operation of the spec');
    t.match(req.url, /^\/api\/(usageEvent|batchUsageEvent)\?api-version=2018-08-31$/, 'under the base path, with the api-version');
    t.equal(req.headers.authorization, 'Bearer static-secret-token');
    t.equal(req.headers['x-ms-correlationid'], CORRELATION_ID);
    t.ok(req.headers['x-ms-requestid'], 'x-ms-requestid sent');
    t.same(validateResponse(check.operationId ?? '', 200, replyFor(req).body).errors, [], 'the canned reply is spec-conformant');
  }
  t.same(server.requests[1]?.body, { request: [event, { ...event, dimension: 'gb' }] }, 'the batch body is { request: [...] }');
});

t.test('a 409 on the single call is the duplicate answer, carrying the original event', async (t) => {
  const conflict = { additionalInfo: { acceptedMessage: { ...accepted, status: 'Duplicate' } }, message: 'This usage event already exist.', code: 'Conflict' };
  t.same(validateResponse('MeteringOperations_PostUsageEvent', 409, conflict).errors, [], 'the 409 body is the spec\'s');
  const server = await startScriptedServer([{ status: 409, body: conflict }]);
  t.teardown(() => server.close());
  const result = await clientOf(server.apiUrl).postUsageEvent(event);
  t.match(result, { kind: 'duplicate', original: { usageEventId: EVENT_ID, quantity: 12.5 } });
});

t.test('a 5xx on the batch is retried; more than 25 events are refused before any call', async (t) => {
  const server = await startScriptedServer([{ status: 503, body: 'busy' }, { status: 200, body: { count: 1, result: [accepted] } }]);
  t.teardown(() => server.close());
  const client = clientOf(server.apiUrl, 3);
  const items = await client.postBatchUsageEvent([event]);
  t.equal(items[0]?.status, 'Accepted');
  t.equal(server.requests.length, 2, 'retried once after the 503');
  await t.rejects(client.postBatchUsageEvent(Array.from({ length: 26 }, () => event)), /1 to 25/);
  t.equal(server.requests.length, 2, 'no call for 26 events');
});
