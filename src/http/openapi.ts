/**
 * The service's OpenAPI document and browsable docs: @fastify/swagger builds an OpenAPI 3.1
 * document from the route schemas (register it before the routes it should list), served at
 * `/openapi.json`; @fastify/swagger-ui serves it at `/docs`. Both are public: the document describes
 * the API, it grants nothing; the operator routes declare the bearer scheme they need.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyInstance, FastifyTypeProvider, RawServerDefault } from 'fastify';
import { OPERATOR_SECURITY_SCHEME } from './api.plugin.js';
import { OPTIONAL_BODY_OPERATIONS } from './operator.routes.js';

export type OpenApiOptions = {
  /** Shown in the document's info block; default the package's. */
  version?: string;
  /**
   * The service's public base URL, listed as the document's server: a URL, or a function read when the document
   * is first served (PUBLIC_URL, else the URL the service listens on, known only once it listens).
   */
  serverUrl?: string | (() => string | undefined);
};

export async function registerOpenApi<L extends FastifyBaseLogger, P extends FastifyTypeProvider>(
  app: FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, L, P>,
  options: OpenApiOptions = {},
): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Fulfillment Ledger API',
        version: options.version ?? '0.1.0',
        description:
          "The ISV's side of Microsoft's commercial marketplace for SaaS offers: every subscription as an event-sourced ledger. " +
          'The operator API (`/api`) needs `Authorization: Bearer <token>` with an operator\'s token (OPERATOR_TOKENS, or OPERATOR_TOKEN for the operator named `operator`); ' +
          'what an operator does is recorded with the actor `operator:<name>` of the token presented. Errors are `application/problem+json` (RFC 9457). ' +
          'Revisions and positions are decimal strings; a subscription\'s ETag is `"<revision>"`.',
      },
      tags: [
        { name: 'subscriptions', description: 'SaaS subscriptions: state, history and publisher-side commands' },
        { name: 'audit', description: 'Auditors: history, a subscription at a moment, the event log streamed, the integrity chain (docs/audit.md, docs/audit-cli.md)' },
      ],
      components: {
        securitySchemes: {
          [OPERATOR_SECURITY_SCHEME]: {
            type: 'http',
            scheme: 'bearer',
            description: "An operator's token (OPERATOR_TOKENS=name:token,…, or OPERATOR_TOKEN as the operator named `operator`): the name is the actor recorded for what the request does",
          },
        },
      },
    },
    transformObject: (documents) => {
      if (!('openapiObject' in documents)) return documents.swaggerObject;
      const doc = documents.openapiObject;
      const serverUrl = typeof options.serverUrl === 'function' ? options.serverUrl() : options.serverUrl;
      if (serverUrl) doc.servers = [{ url: serverUrl }];
      for (const item of Object.values(doc.paths ?? {})) {
        for (const op of Object.values(item ?? {})) {
          if (op && typeof op === 'object' && 'operationId' in op && OPTIONAL_BODY_OPERATIONS.has(String(op.operationId))) {
            const body = (op as { requestBody?: { required?: boolean } }).requestBody;
            if (body) body.required = false;
          }
        }
      }
      return doc;
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
