/**
 * The operator API's bearer token check: named operators (`OPERATOR_TOKENS=name:token,…`, and `OPERATOR_TOKEN`
 * as the operator named `operator`; config.ts).
 *
 * Both sides are hashed to SHA-256 first, so `timingSafeEqual` always compares two 32-byte digests:
 * neither the token's content nor its length leaks through the comparison's timing; the presented token is
 * compared with EVERY operator's (no early exit), so the time does not tell which one, or how many, were tried.
 * A refusal is a 401 problem+json with `WWW-Authenticate: Bearer` (RFC 6750) and a log line with the caller's ip
 * and the route, never the token.
 *
 * The name of the operator a request authenticated as is `operatorNameOf(request)`: the actor recorded for what
 * the request does is `operator:<name>` (no header can say otherwise).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { OperatorCredential } from '../config.js';
import { problem, problemContentType } from './problem.js';

/** One token (the single OPERATOR_TOKEN: the operator named `operator`), or the named operators. */
export type OperatorTokens = string | readonly OperatorCredential[];

/** The name `OPERATOR_TOKEN` authenticates as. */
export const DEFAULT_OPERATOR_NAME = 'operator';

const authenticated = new WeakMap<FastifyRequest, string>();

/** The operator the request authenticated as; undefined when it did not go through the operator check. */
export function operatorNameOf(request: FastifyRequest): string | undefined {
  return authenticated.get(request);
}

/** The actor recorded for an operator's command: `operator:<authenticated name>`. */
export function operatorActorOf(request: FastifyRequest): string {
  const name = operatorNameOf(request);
  if (name === undefined) throw new Error('operator route reached without the operator check');
  return `operator:${name}`;
}

export function credentialsOf(tokens: OperatorTokens): readonly OperatorCredential[] {
  return typeof tokens === 'string' ? [{ name: DEFAULT_OPERATOR_NAME, token: tokens }] : tokens;
}

export const OPERATOR_REALM = 'operator-api';

export type OperatorAuthFailure = 'missing-token' | 'not-bearer' | 'invalid-token';

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** True when `presented` is the expected token; compares fixed-length digests in constant time. */
export function tokenMatches(expectedDigest: Buffer, presented: string): boolean {
  return timingSafeEqual(expectedDigest, digest(presented));
}

/** The operator whose token `presented` is, comparing with every one of them (constant time per operator). */
function whoseToken(operators: readonly { name: string; digest: Buffer }[], presented: string): string | undefined {
  const given = digest(presented);
  let found: string | undefined;
  for (const o of operators) if (timingSafeEqual(o.digest, given) && found === undefined) found = o.name;
  return found;
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
 * An `onRequest`/`preHandler` hook that lets a request through only with an operator's token, and remembers which
 * operator it was (operatorNameOf). Throws on an empty token: an operator API without a secret must not start.
 */
export function createOperatorAuth(tokens: OperatorTokens): OperatorAuthenticator {
  const credentials = credentialsOf(tokens);
  if (credentials.length === 0 || credentials.some((c) => typeof c.token !== 'string' || c.token.trim() === '')) {
    throw new Error('the operator API needs a non-empty OPERATOR_TOKEN (or OPERATOR_TOKENS)');
  }
  const operators = credentials.map((c) => ({ name: c.name, digest: digest(c.token) }));

  return async (request, reply) => {
    const { token, failure } = bearerToken(request.headers.authorization);
    const name = failure === undefined && token !== undefined ? whoseToken(operators, token) : undefined;
    const unauthenticated: OperatorAuthFailure | undefined = failure ?? (name !== undefined ? undefined : 'invalid-token');
    if (name !== undefined && unauthenticated === undefined) {
      authenticated.set(request, name);
      return undefined;
    }

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
