/**
 * A process manager's handling latency and outcome, measured around its handler whatever the runner mode:
 * `handled`, `retry-later` (something outside is not answering; the runner tries again) or `failed`.
 */
import type { Metrics } from '../../metrics/metrics.js';
import { secondsSince } from '../../metrics/metrics.js';
import { RetryLater } from './types.js';
import type { ProcessHandler } from './types.js';

export function timeHandler(handler: ProcessHandler, metrics: Pick<Metrics, 'processHandled'>): ProcessHandler {
  return {
    ...handler,
    async handle(event) {
      const started = performance.now();
      try {
        await handler.handle(event);
        metrics.processHandled(handler.name, 'handled', secondsSince(started));
      } catch (err) {
        metrics.processHandled(handler.name, err instanceof RetryLater ? 'retry-later' : 'failed', secondsSince(started));
        throw err;
      }
    },
  };
}
