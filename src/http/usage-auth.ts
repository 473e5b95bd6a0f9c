/**
 * Who may report usage (`POST /api/usage`): the operator token, or USAGE_TOKEN when one is set, so the ISV's product
 * can report usage without holding the operator's token. Same constant-time digest comparison and the same 401 as
 * operator-auth.ts.
 */
import { createHash } from 'node:crypto';
import { createOperatorAuth, bearerToken, tokenMatches } from './operator-auth.js';
import type { OperatorAuthenticator, OperatorTokens } from './operator-auth.js';

export function createUsageAuth(operatorToken: OperatorTokens, usageToken: string | undefined): OperatorAuthenticator {
  const operator = createOperatorAuth(operatorToken);
  if (usageToken === undefined) return operator;
  const expected = createHash('sha256').update(usageToken, 'utf8').digest();
  return async (request, reply) => {
    const { token } = bearerToken(request.headers.authorization);
    if (token !== undefined && tokenMatches(expected, token)) return undefined;
    return operator(request, reply);
  };
}
