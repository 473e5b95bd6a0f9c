/**
 * What the deadline warner logs, pure: `decideWarnings(items, memory) → { warn, resolved, overflow, memory }`.
 *
 * One warn line per item *entering* `warning` and one more when it enters `overdue`, never one per tick:
 * the memory holds the severity each open item was last warned at. An item no longer listed (activated,
 * acknowledged, the credential accepted again) is forgotten and reported `resolved`; if it opens again it
 * is warned again. The memory is bounded: only the `limit` most urgent items are remembered and warned
 * individually; the rest are counted in `overflow`, reported when that count changes.
 *
 * The executor (deadlines.process.ts) reads the deadlines, calls this, and writes the log lines.
 */
import type { Deadline, Severity } from '../projections/views/deadlines.js';

export type WarnedSeverity = Exclude<Severity, 'info'>;

export type WarnerMemory = {
  /** Item key → the severity it was last warned at. */
  readonly warned: ReadonlyMap<string, WarnedSeverity>;
  /** The overflow last reported (0: none). */
  readonly overflow: number;
};

export const emptyWarnerMemory: WarnerMemory = { warned: new Map(), overflow: 0 };

export type WarnerDecision = {
  /** Items to warn about now (entered warning, or entered overdue), most urgent first. */
  warn: Deadline[];
  /** Keys warned about before that are no longer open. */
  resolved: string[];
  /** Warning or overdue items beyond `limit`, when that number changed since it was last reported (else undefined). */
  overflow?: number;
  memory: WarnerMemory;
};

export const DEFAULT_WARNER_LIMIT = 1000;

type Urgent = Deadline & { severity: WarnedSeverity };
const isUrgent = (d: Deadline): d is Urgent => d.severity !== 'info';

/** `items` as `deadlinesAt` returns them (most urgent first). */
export function decideWarnings(items: readonly Deadline[], memory: WarnerMemory, limit = DEFAULT_WARNER_LIMIT): WarnerDecision {
  const urgent = items.filter(isUrgent);
  const kept = urgent.slice(0, limit);
  const warned = new Map<string, WarnedSeverity>();
  const warn: Deadline[] = [];
  for (const d of kept) {
    const before = memory.warned.get(d.key);
    // Never back from overdue to warning while the item stays open: it was warned about at its worst already.
    const now: WarnedSeverity = before === 'overdue' ? 'overdue' : d.severity;
    if (before !== now) warn.push(d);
    warned.set(d.key, now);
  }
  const open = new Set(items.map((d) => d.key));
  const resolved = [...memory.warned.keys()].filter((k) => !open.has(k));
  const overflowNow = urgent.length - kept.length;
  return {
    warn,
    resolved,
    ...(overflowNow !== memory.overflow ? { overflow: overflowNow } : {}),
    memory: { warned, overflow: overflowNow },
  };
}
