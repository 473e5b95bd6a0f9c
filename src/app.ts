/**
 * buildApp: the Fastify instance with its plugins, error handling and routes, and nothing that
 * listens or reads the environment (server.ts does that), so tests build it and call inject().
 */
import type { OperatorTokens } from './http/operator-auth.js';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyError, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { DomainError } from './domain/errors.js';
import { ConcurrencyError, StoreUnavailableError } from './eventstore/eventstore.js';
import type { EventStore } from './eventstore/eventstore.js';
import { apiPlugin } from './http/api.plugin.js';
import { healthRoutes } from './http/health.routes.js';
import { webhookRoutes } from './http/webhook.routes.js';
import { integrationRoutes } from './http/integration.routes.js';
import { readModelRoutes } from './http/readmodel.routes.js';
import { deadlineRoutes } from './http/deadlines.routes.js';
import type { DeadlineRoutesOptions } from './http/deadlines.routes.js';
import { reconciliationRoutes } from './http/reconciliation.routes.js';
import { auditRoutes } from './http/audit.routes.js';
import type { AuditRoutesOptions } from './http/audit.routes.js';
import { auditVerifyRoutes } from './http/audit-verify.routes.js';
import type { ReconciliationRoutesOptions } from './http/reconciliation.routes.js';
import type { ReadModelRoutesOptions } from './http/readmodel.routes.js';
import type { IntegrationRoutesOptions } from './http/integration.routes.js';
import type { WebhookOptions } from './http/webhook.routes.js';
import { registerOpenApi } from './http/openapi.js';
import type { OpenApiOptions } from './http/openapi.js';
import { operatorRoutes } from './http/operator.routes.js';
import { processesRoutes } from './http/processes.routes.js';
import type { ProcessesRoutesOptions } from './http/processes.routes.js';
import type { OperatorRoutesOptions } from './http/operator.routes.js';
import { landingRoutes } from './http/landing.routes.js';
import type { LandingOptions } from './http/landing.routes.js';
import { problem, problemContentType } from './http/problem.js';
import { atPointer, validationMessage } from './http/validation-message.js';
import type { Logger } from './logger.js';
// issue 14: /metrics and the request log's component
import { metricsRoutes } from './http/metrics.routes.js';
import type { MetricsRoutesOptions } from './http/metrics.routes.js';
import { requestLogBindings } from './http/log-context.js';
// Metered billing: usage intake and finance's read model (usage.routes.ts)
import { usageRoutes } from './http/usage.routes.js';
import type { UsageRoutesOptions } from './http/usage.routes.js';

export type AppDeps = {
  logger: Logger;
  /** The store once open; routes that need it answer 503 until then. */
  store: () => EventStore | undefined;
  /** The operator API under /api, behind OPERATOR_TOKEN, with /openapi.json and /docs; not served when absent. */
  api?: ApiOptions;
  /** The customer landing page (GET /landing?token=…); not served when absent. */
  landing?: LandingOptions;
  /** Microsoft's webhook (POST /webhook); not served when absent. */
  webhook?: WebhookOptions;
  /** GET /metrics behind METRICS_TOKEN or the operator token (docs/operations.md); not served when absent. */
  metrics?: MetricsRoutesOptions;
  /** Metered usage: POST /api/usage (operator token or USAGE_TOKEN), GET /api/read/usage… (operator token); not served when absent. */
  usage?: UsageRoutesOptions;
};

/** The operator API: one token, the OpenAPI document, and the route modules served under /api. */
export type ApiOptions = {
  /** OPERATOR_TOKEN: the bearer token every /api request must carry. */
  operatorToken: OperatorTokens;
  openapi?: OpenApiOptions;
  /** Subscriptions: state, history, publisher-side commands (/api/subscriptions/…); not served when absent. */
  subscriptions?: OperatorRoutesOptions;
  /** Dead letters of the outbound integration events (/api/integration/…); not served when absent. */
  integration?: IntegrationRoutesOptions;
  /** Read models for operators and analysts (/api/read/…); not served when absent. */
  readModels?: ReadModelRoutesOptions;
  /** The process managers' parked and retrying events (/api/processes/…); not served when absent. */
  processes?: ProcessesRoutesOptions;
  /** Deadlines that lose revenue (/api/deadlines); not served when absent. */
  deadlines?: DeadlineRoutesOptions;
  /** Reconciliation runs: trigger one, list the last, show one (/api/reconcile, /api/reconciliations…); not served when absent. */
  reconciliation?: ReconciliationRoutesOptions;
  /** Auditors (issue 12): state at a moment, the streamed event log (/api/subscriptions/:id/state, /api/events/export) and the integrity
   * chain (/api/audit/verify); not served when absent. */
  audit?: AuditRoutesOptions;
};

export async function buildApp(deps: AppDeps) {
  const app = Fastify({
    loggerInstance: deps.logger,
    requestIdHeader: 'x-request-id',
    genReqId: () => crypto.randomUUID(),
    // Errors Fastify raises before any route runs (a malformed URL, an over-long parameter): problem+json too.
    frameworkErrors: (error, _request, reply: FastifyReply) => {
      const status = error.statusCode ?? 400;
      return reply.code(status).type(problemContentType).send(problem(status, status === 414 ? 'uri-too-long' : 'bad-url', error.message));
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // Logs (issue 14): one `component` per request line, named for its front door, and Microsoft's ids (log-context.ts).
    childLoggerFactory: (logger, bindings, options, raw) => logger.child({ ...bindings, ...requestLogBindings(raw.url, raw.headers) }, options),
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.setErrorHandler((error: FastifyError | Error, request, reply) => {
    const send = (status: number, title: string, detail?: string, extra?: Record<string, unknown>) =>
      reply.code(status).type(problemContentType).send(problem(status, title, detail, extra));

    if (error instanceof DomainError) return send(error.status, error.code, error.message);
    if (error instanceof ConcurrencyError) {
      return send(412, 'precondition-failed', error.message, {
        currentRevision: error.actual === undefined ? undefined : error.actual.toString(),
      });
    }
    if (error instanceof StoreUnavailableError) {
      request.log.error({ err: error }, 'event store unavailable');
      return reply.header('retry-after', '5').code(503).type(problemContentType).send(problem(503, 'store-unavailable', 'the event store is unavailable; retry later'));
    }
    const fe = error as FastifyError;
    if (fe.validation) {
      const given: Record<string, unknown> = { querystring: request.query, body: request.body, params: request.params, headers: request.headers };
      const data = given[fe.validationContext ?? ''];
      return send(400, 'invalid-request', validationMessage(fe.validationContext, fe.validation, (path) => atPointer(data, path)));
    }
    const status = fe.statusCode ?? 500;
    if (status < 500) return send(status, fe.code ? fe.code.toLowerCase() : 'bad-request', fe.message);
    request.log.error({ err: error }, 'unhandled error');
    return send(status, 'internal-error', 'an unexpected error occurred; see the service log for this request id', { requestId: request.id });
  });

  app.setNotFoundHandler((request, reply) =>
    reply.code(404).type(problemContentType).send(problem(404, 'not-found', `no route for ${request.method} ${request.url.split('?')[0]}`)),
  );

  const api = deps.api;
  if (api) await registerOpenApi(app, api.openapi); // before the routes it documents
  await app.register(healthRoutes, { store: deps.store });
  if (deps.landing) await app.register(landingRoutes, deps.landing);
  if (deps.webhook) await app.register(webhookRoutes, deps.webhook);
  if (deps.metrics) await app.register(metricsRoutes, deps.metrics); // issue 14
  if (deps.usage) await app.register(usageRoutes, deps.usage);
  if (api) {
    await app.register(apiPlugin, {
      prefix: '/api',
      operatorToken: api.operatorToken,
      routes: async (scope) => {
        if (api.subscriptions) await scope.register(operatorRoutes, api.subscriptions);
        if (api.integration) await scope.register(integrationRoutes, api.integration);
        if (api.readModels) await scope.register(readModelRoutes, api.readModels);
        if (api.processes) await scope.register(processesRoutes, api.processes);
        if (api.deadlines) await scope.register(deadlineRoutes, api.deadlines);
        if (api.reconciliation) await scope.register(reconciliationRoutes, api.reconciliation);
        if (api.audit) {
          await scope.register(auditRoutes, api.audit);
          await scope.register(auditVerifyRoutes, api.audit);
        }
      },
    });
  }
  return app;
}

export type App = Awaited<ReturnType<typeof buildApp>>;
export type { FastifyInstance };
