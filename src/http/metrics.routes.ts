/**
 * GET /metrics — the service's Prometheus metrics (src/metrics/prometheus.ts), in the text exposition format.
 *
 * On the service's own port, behind a bearer token: METRICS_TOKEN (read-only, for the scraper) or the
 * operator token. The series name subscriptions' plans and Microsoft's failures, and rendering them reads
 * the store, so an unauthenticated scrape is refused with 401 like the operator API.
 */
import type { FastifyPluginAsync } from 'fastify';
import { createHash } from 'node:crypto';
import { bearerToken, tokenMatches } from './operator-auth.js';
import { problem, problemContentType } from './problem.js';

export type MetricsRoutesOptions = {
  /** The tokens a scrape may carry (METRICS_TOKEN, OPERATOR_TOKEN): at least one, none empty. */
  tokens: readonly string[];
  render(): Promise<string>;
  contentType: string;
};

export const metricsRoutes: FastifyPluginAsync<MetricsRoutesOptions> = async (app, options) => {
  const tokens = options.tokens.filter((t) => t.trim() !== '');
  if (tokens.length === 0) throw new Error('GET /metrics needs a token (METRICS_TOKEN or OPERATOR_TOKEN)');
  const digests = tokens.map((t) => createHash('sha256').update(t, 'utf8').digest());

  app.get('/metrics', { schema: { hide: true } }, async (request, reply) => {
    const { token, failure } = bearerToken(request.headers.authorization);
    const reason = failure ?? (token !== undefined && digests.some((d) => tokenMatches(d, token)) ? undefined : 'invalid-token');
    if (reason !== undefined) {
      request.log.warn({ ip: request.ip, reason }, 'metrics scrape unauthenticated');
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="metrics"')
        .type(problemContentType)
        .send(problem(401, 'unauthorized', 'GET /metrics needs Authorization: Bearer <METRICS_TOKEN or OPERATOR_TOKEN>'));
    }
    const text = await options.render();
    return reply.header('cache-control', 'no-store').type(options.contentType).send(text);
  });
};
