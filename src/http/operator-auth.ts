/**
 * The operator API's bearer token check (`OPERATOR_TOKEN`).
 *
 * Both sides are hashed to SHA-256 first, so `timingSafeEqual` always compares two 32-byte digests:
 * neither the token's content nor its length leaks through the comparison's timing. A refusal is a
 * 401 problem+json with `WWW-Authenticate: Bearer` (RFC 6750) and a log line with the caller's ip
 * and the route, never the token.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { problem, problemContentType } from './problem.js';

export const OPERATOR_REALM = 'operator-api';

export type OperatorAuthFailure = 'missing-token' | 'not-bearer' | 'invalid-token';

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** True when `presented` is the expected token; compares fixed-length digests in constant time. */
export function tokenMatches(expectedDigest: Buffer, presented: string): boolean {
  return timingSafeEqual(expectedDigest, digest(presented));
}

/** Reads `authorization: Bearer <token>`; the scheme is case-insensitive (RFC 7235). */
export function bearerToken(authorization: string | undefined): { token?: string; failure?: OperatorAuthFailure } {
  if (authorization === undefined || authorization.trim() === '') return { failure: 'missing-token' };
  const match = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(authorization);
  if (!match?.[1]) return { failure: 'not-bearer' };
  return { token: match[1] };
}

/** Resolves to the 401 reply when the request is unauthenticated (Fastify then stops), to undefined when it let it through. */
export type OperatorAuthenticator = (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>;

/**
 * An `onRequest`/`preHandler` hook that lets a request through only with the operator token.
 * Throws on an empty token: an operator API without a secret must not start.
 */
export function createOperatorAuth(operatorToken: string): OperatorAuthenticator {
  if (typeof operatorToken !== 'string' || operatorToken.trim() === '') {
    throw new Error('the operator API needs a non-empty OPERATOR_TOKEN');
  }
  const expected = digest(operatorToken);

  return async (request, reply) => {
    const { token, failure } = bearerToken(request.headers.authorization);
    const unauthenticated: OperatorAuthFailure | undefined = failure ?? (token !== undefined && tokenMatches(expected, token) ? undefined : 'invalid-token');
    if (unauthenticated === undefined) return undefined;

    request.log.warn(
      { ip: request.ip, method: request.method, route: request.routeOptions.url ?? request.url.split('?')[0], reason: unauthenticated },
      'operator API request unauthenticated',
    );
    // RFC 6750 §3: no error code when no credentials were offered; `invalid_token` when a bad one was.
    const challenge =
      unauthenticated === 'missing-token' ? `Bearer realm="${OPERATOR_REALM}"` : `Bearer realm="${OPERATOR_REALM}", error="invalid_token"`;
    const detail =
      unauthenticated === 'missing-token'
        ? 'the operator API needs an `Authorization: Bearer <OPERATOR_TOKEN>` header'
        : unauthenticated === 'not-bearer'
          ? 'the Authorization header must use the Bearer scheme'
          : 'the bearer token is not valid for the operator API';
    return reply
      .code(401)
      .header('www-authenticate', challenge)
      .type(problemContentType)
      .send(problem(401, 'unauthorized', detail));
  };
}
