/**
 * The operator API: one Fastify plugin, registered once under `/api`, that owns what every route
 * under it shares:
 *
 * - the operator bearer token (`OPERATOR_TOKEN`, operator-auth.ts), checked on every request before
 *   anything else, unknown paths included;
 * - the problem+json 404 for a path under `/api` that no route serves;
 * - the problem schema, the error responses built on it and the security requirement the routes
 *   declare in the OpenAPI document.
 *
 * The route modules (subscriptions, integration dead letters, read models) register inside it
 * (`routes`), so they inherit the check and the 404 and add neither.
 */
import type { OperatorTokens } from './operator-auth.js';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { createOperatorAuth } from './operator-auth.js';
import { problem, problemContentType } from './problem.js';

/** The Fastify instance inside the plugin, where the route modules register. */
export type ApiScope = Parameters<FastifyPluginAsyncTypebox>[0];

export type ApiPluginOptions = {
  /** OPERATOR_TOKEN: the bearer token every /api request must carry. */
  operatorToken: OperatorTokens;
  /** Registers the route modules inside the plugin (behind the token, beside the 404). */
  routes: (api: ApiScope) => Promise<void>;
};

/** The security scheme name used in the OpenAPI document (see openapi.ts). */
export const OPERATOR_SECURITY_SCHEME = 'operatorToken';

/** The security requirement of every operator route, for its schema. */
export const operatorSecurity = [{ [OPERATOR_SECURITY_SCHEME]: [] }];

/** RFC 9457 problem details (problem.ts builds them), as documented in the OpenAPI document. */
export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.Optional(Type.String()),
    currentRevision: Type.Optional(Type.String({ description: '412: the revision the subscription is at now' })),
    requestId: Type.Optional(Type.String({ description: 'the publisher-side change request concerned, or the HTTP request id of a 500' })),
  },
  { additionalProperties: true, description: 'RFC 9457 problem details (application/problem+json)' },
);

export type ProblemResponse = { description: string; content: { 'application/problem+json': { schema: typeof Problem } } };

/** An error response, documented (and serialized) as application/problem+json. */
export function problemResponse(description: string): ProblemResponse {
  return { description, content: { 'application/problem+json': { schema: Problem } } };
}

export const apiPlugin: FastifyPluginAsyncTypebox<ApiPluginOptions> = async (app, options) => {
  const auth = createOperatorAuth(options.operatorToken);
  app.addHook('onRequest', auth);
  // Unknown paths under /api need the token like the others: unauthenticated, they are a 401 before they are a 404.
  app.setNotFoundHandler({ preHandler: auth }, (request, reply) =>
    reply.code(404).type(problemContentType).send(problem(404, 'not-found', `no route for ${request.method} ${request.url.split('?')[0]}`)),
  );
  await options.routes(app);
};
