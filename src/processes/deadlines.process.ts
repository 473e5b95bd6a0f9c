/**
 * The deadline warner: every `intervalMs` (DEADLINES_CHECK_INTERVAL_MS, default 5 minutes) it reads the
 * open deadlines (src/projections/views/deadlines.ts) and writes one `warn` line per item entering
 * `warning` or `overdue` (the pure decision is deadlines.workflow.ts), one `info` line when a warned item
 * is resolved. It skips a tick while the read models are not live (catching up, they may still list what
 * the event log has resolved). Its memory is in-process: after a restart each open item is warned once more.
 * Every instance warns on its own (the credential's health is per process anyway).
 */
import type { Logger } from '../logger.js';
import type { CredentialHealthSnapshot } from '../marketplace/credential-health.js';
import type { RunningProjections } from '../projections/runner.js';
import { formatTimeLeft, readDeadlines } from '../projections/views/deadlines.js';
import type { Deadline, DeadlineSettings } from '../projections/views/deadlines.js';
import { DEFAULT_WARNER_LIMIT, decideWarnings, emptyWarnerMemory } from './deadlines.workflow.js';
import type { WarnerMemory } from './deadlines.workflow.js';

export type DeadlineWarnerOptions = {
  /** The open deadlines at `now`, or undefined when they cannot be read yet (the tick is skipped). */
  read: (now: Date) => Promise<readonly Deadline[] | undefined>;
  logger: Logger;
  /** 0: no timer (`check()` still works). */
  intervalMs: number;
  now?: () => Date;
  /** Items remembered and warned individually; default 1000. */
  limit?: number;
};

export type DeadlineWarner = {
  /** One tick now: logs and returns what it warned about (undefined when the deadlines could not be read). */
  check(): Promise<Deadline[] | undefined>;
  stop(): void;
};

function logFields(d: Deadline): Record<string, unknown> {
  return {
    key: d.key,
    kind: d.kind,
    severity: d.severity,
    ...(d.subscriptionId ? { subscriptionId: d.subscriptionId } : {}),
    ...(d.operation ? { operationId: d.operation.operationId } : {}),
    since: d.since,
    deadline: d.deadline,
    timeLeft: formatTimeLeft(d.timeLeftMs),
    action: d.action,
  };
}

export function startDeadlineWarner(options: DeadlineWarnerOptions): DeadlineWarner {
  const log = options.logger.child({ component: 'deadlines' });
  const now = options.now ?? (() => new Date());
  const limit = options.limit ?? DEFAULT_WARNER_LIMIT;
  let memory: WarnerMemory = emptyWarnerMemory;

  async function check(): Promise<Deadline[] | undefined> {
    let items: readonly Deadline[] | undefined;
    try {
      items = await options.read(now());
    } catch (err) {
      log.error({ err }, 'could not read the deadlines; trying again at the next check');
      return undefined;
    }
    if (!items) return undefined;
    const decision = decideWarnings(items, memory, limit);
    memory = decision.memory;
    for (const d of decision.warn) log.warn(logFields(d), `deadline ${d.severity}: ${d.summary}`);
    for (const key of decision.resolved) log.info({ key }, 'deadline resolved');
    if (decision.overflow !== undefined && decision.overflow > 0) {
      log.warn({ notWarned: decision.overflow, limit }, `${decision.overflow} more deadlines in warning or overdue are not logged one by one: GET /api/deadlines lists them`);
    }
    return decision.warn;
  }

  const timer = options.intervalMs > 0 ? setInterval(() => void check(), options.intervalMs) : undefined;
  timer?.unref();
  return {
    check,
    stop: () => {
      if (timer) clearInterval(timer);
    },
  };
}

/** The deadlines from running projections, once every projection is live; undefined before. */
export function liveDeadlines(
  readModels: () => RunningProjections | undefined,
  credential: () => CredentialHealthSnapshot | undefined,
  settings: DeadlineSettings,
): (now: Date) => Promise<Deadline[] | undefined> {
  return async (at) => {
    const running = readModels();
    if (!running || !running.target.isOpen() || !running.status().every((s) => s.state === 'live' || s.state === 'standby')) return undefined;
    return readDeadlines(running.target.read, credential(), at, settings);
  };
}
