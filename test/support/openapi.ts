/**
 * Checks HTTP traffic against Microsoft's OpenAPI file for the SaaS Fulfillment API v2
 * (test/fixtures/microsoft/saasapi.v2.json, copied unmodified from microsoft/commercial-marketplace-openapi);
 * the checker itself is openapi-checker.ts.
 *
 * - `operationFor(method, url)`: which spec operation a request is (path template + method), or undefined.
 *   The path may carry the server's base path (`/api`) or any prefix before `/saas/`; the query string is
 *   ignored. Trailing slashes must match the spec exactly (the list path is `/saas/subscriptions/`).
 * - `validateRequest(req)`, `validateRequestBody(operationId, body)`, `validateResponse(operationId, status, body, headers?)`,
 *   `validateComponent(name, value)`.
 */
import { fileURLToPath } from 'node:url';
import { openApiChecker } from './openapi-checker.js';

export type { RecordedRequest, SpecOperation, ValidationResult } from './openapi-checker.js';

export const SPEC_PATH = process.env.SAASAPI_SPEC_PATH ?? fileURLToPath(new URL('../fixtures/microsoft/saasapi.v2.json', import.meta.url));

const saas = openApiChecker(SPEC_PATH, 'saasapi.v2.json', (pathname) => {
  const at = pathname.indexOf('/saas/');
  return at >= 0 ? pathname.slice(at) : pathname;
});

export const { spec, SPEC_BASE_PATH, operations, operationById, operationFor, validateRequestBody, validateRequest, validateResponse, validateComponent } = saas;
