/**
 * Checks HTTP traffic against Microsoft's OpenAPI file for the Marketplace Metering Service API
 * (test/fixtures/microsoft/meteringapi.v1.json, copied unmodified from microsoft/commercial-marketplace-openapi),
 * as openapi.ts does for the Fulfillment API. Request paths may carry the server's base path (`/api`).
 */
import { fileURLToPath } from 'node:url';
import { openApiChecker } from './openapi-checker.js';

export const METERING_SPEC_PATH = fileURLToPath(new URL('../fixtures/microsoft/meteringapi.v1.json', import.meta.url));

const metering = openApiChecker(METERING_SPEC_PATH, 'meteringapi.v1.json', (pathname) => {
  const at = pathname.lastIndexOf('/api/');
  return at >= 0 ? pathname.slice(at + 4) : pathname;
});

export const { spec, operationFor, validateRequestBody, validateRequest, validateResponse, validateComponent } = metering;
