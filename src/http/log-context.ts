/**
 * What every request's log lines carry besides Fastify's `reqId`: one `component` named for the front door
 * the request came in by, and Microsoft's request and correlation ids when the caller sent them (the
 * webhook's x-ms-requestid / x-ms-correlationid), so a line can be matched with Microsoft's own logs; and
 * the subscription an operator API path names (/api/subscriptions/<id>/…).
 */
import type { IncomingHttpHeaders } from 'node:http';

/** The front doors, by path prefix; anything else is `http`. */
const components: ReadonlyArray<readonly [string, string]> = [
  ['/webhook', 'webhook'],
  ['/landing', 'landing'],
  ['/api/', 'operator-api'],
  ['/metrics', 'metrics'],
  ['/healthz', 'health'],
  ['/readyz', 'health'],
  ['/openapi.json', 'docs'],
  ['/docs', 'docs'],
];

export function componentOf(url: string | undefined): string {
  const path = (url ?? '').split('?')[0] ?? '';
  return components.find(([prefix]) => path === prefix.replace(/\/$/, '') || path.startsWith(prefix))?.[1] ?? 'http';
}

/** The bindings of one request's logger. */
export function requestLogBindings(url: string | undefined, headers: IncomingHttpHeaders): Record<string, string> {
  const header = (name: string) => {
    const v = headers[name];
    return typeof v === 'string' && v.length <= 128 ? v : undefined;
  };
  const msRequestId = header('x-ms-requestid');
  const msCorrelationId = header('x-ms-correlationid');
  const subscriptionId = /^\/api\/subscriptions\/([0-9a-zA-Z-]{1,64})(?:[/?]|$)/.exec(url ?? '')?.[1];
  return {
    component: componentOf(url),
    ...(subscriptionId ? { subscriptionId } : {}),
    ...(msRequestId ? { msRequestId } : {}),
    ...(msCorrelationId ? { msCorrelationId } : {}),
  };
}
