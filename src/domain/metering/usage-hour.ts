/**
 * One clock hour of one subscription's metered usage, every dimension: the decider of a `usage-` stream.
 *
 *   RecordUsage  → UsageRecorded per new record (open hour) or LateUsageRecorded (closed hour); a repeated
 *                  idempotency key records nothing (a key reused with other content is a conflict, not recorded)
 *   CloseHour    → UsageHourClosed: the totals per dimension, frozen (nothing after it is ever added to them)
 *   SubmitUsage  → UsageSubmitted per closed dimension with something above its included quantity, else
 *                  UsageSettled `Included` (nothing to send)
 *   SettleUsage  → UsageSettled per submitted dimension, from Microsoft's answer
 *
 * `evolve` adds to the key index and the dimension map of the state it is given instead of copying them (a stream
 * of a busy hour holds thousands of records): fold from `initialState()`, never from a state kept elsewhere.
 */
import type { Decider } from '../decider.js';
import { DomainError } from '../errors.js';
import { streamName } from '../streams.js';
import { addQuantity, expiresAtMs } from './hours.js';
import type { ClosedLine, UsageHourEvent, UsageSettled, UsageSubmitted } from './usage.events.js';

export const usageCategory = 'usage';

export function usageHourStream(subscriptionId: string, hour: string): string {
  return streamName(usageCategory, `${subscriptionId}.${hour}`);
}

export type UsageRecord = { dimension: string; quantity: number; effectiveTime: string; idempotencyKey: string };

export type DimensionHour = {
  dimension: string;
  recorded: number;
  records: number;
  /** The latest usage time of the dimension's records in the hour. */
  latestTime?: string;
  late: number;
  lateRecords: number;
  closed?: ClosedLine;
  submitted?: UsageSubmitted['data'];
  settled?: UsageSettled['data'];
};

export type UsageHourState = {
  subscriptionId?: string;
  hour?: string;
  closed: boolean;
  /** idempotency key → fingerprint of the record it was first seen with. */
  keys: Map<string, string>;
  dimensions: Map<string, DimensionHour>;
};

export type UsageHourCommand =
  | { type: 'RecordUsage'; subscriptionId: string; hour: string; records: readonly UsageRecord[]; now: string }
  | { type: 'CloseHour'; subscriptionId: string; hour: string; now: string }
  | { type: 'SubmitUsage'; planId: string; included: ReadonlyMap<string, number>; now: string }
  | { type: 'SettleUsage'; answers: readonly SettlementAnswer[]; now: string };

export type SettlementAnswer = Pick<UsageSettled['data'], 'dimension' | 'status' | 'billed' | 'via' | 'usageEventId' | 'messageTime' | 'detail'>;

/** What makes two records with one key the same record. */
export function fingerprint(r: UsageRecord): string {
  return `${r.dimension}\u0000${r.quantity}\u0000${Date.parse(r.effectiveTime)}`;
}

export const initialUsageHour = (): UsageHourState => ({ closed: false, keys: new Map(), dimensions: new Map() });

function dimensionOf(state: UsageHourState, dimension: string): DimensionHour {
  let d = state.dimensions.get(dimension);
  if (!d) state.dimensions.set(dimension, (d = { dimension, recorded: 0, records: 0, late: 0, lateRecords: 0 }));
  return d;
}

export function evolveUsageHour(state: UsageHourState, event: UsageHourEvent): UsageHourState {
  const { data } = event;
  const next: UsageHourState = { ...state, subscriptionId: data.subscriptionId, hour: data.hour };
  switch (event.type) {
    case 'UsageRecorded':
    case 'LateUsageRecorded': {
      const r = event.data;
      next.keys.set(r.idempotencyKey, fingerprint(r));
      const d = dimensionOf(next, r.dimension);
      if (event.type === 'UsageRecorded') {
        d.recorded = addQuantity(d.recorded, r.quantity);
        d.records += 1;
        if (d.latestTime === undefined || Date.parse(r.effectiveTime) > Date.parse(d.latestTime)) d.latestTime = r.effectiveTime;
      } else {
        d.late = addQuantity(d.late, r.quantity);
        d.lateRecords += 1;
      }
      return next;
    }
    case 'UsageHourClosed':
      for (const line of event.data.lines) dimensionOf(next, line.dimension).closed = line;
      return { ...next, closed: true };
    case 'UsageSubmitted':
      dimensionOf(next, event.data.dimension).submitted = event.data;
      return next;
    case 'UsageSettled':
      dimensionOf(next, event.data.dimension).settled = event.data;
      return next;
    default: {
      const _exhaustive: never = event;
      return _exhaustive;
    }
  }
}

function checkRecord(r: UsageRecord, hour: string): void {
  if (!(r.quantity > 0) || !Number.isFinite(r.quantity)) throw new DomainError('invalid-quantity', `quantity must be a number above 0, got ${r.quantity}`, 422);
  if (r.dimension.trim() === '') throw new DomainError('invalid-dimension', 'dimension must not be empty', 422);
  if (new Date(Date.parse(r.effectiveTime)).toISOString().slice(0, 13) !== hour) {
    throw new DomainError('wrong-hour', `effectiveTime ${r.effectiveTime} is not in the hour ${hour}`, 422);
  }
}

function recordUsage(command: Extract<UsageHourCommand, { type: 'RecordUsage' }>, state: UsageHourState): UsageHourEvent[] {
  const events: UsageHourEvent[] = [];
  const seen = new Set<string>();
  for (const r of command.records) {
    checkRecord(r, command.hour);
    if (state.keys.has(r.idempotencyKey) || seen.has(r.idempotencyKey)) continue; // a repeat (or a conflict): nothing new
    seen.add(r.idempotencyKey);
    const data = { subscriptionId: command.subscriptionId, hour: command.hour, at: command.now, dimension: r.dimension, quantity: r.quantity, effectiveTime: r.effectiveTime, idempotencyKey: r.idempotencyKey };
    events.push(state.closed ? { type: 'LateUsageRecorded', data } : { type: 'UsageRecorded', data });
  }
  return events;
}

function closeHour(command: Extract<UsageHourCommand, { type: 'CloseHour' }>, state: UsageHourState): UsageHourEvent[] {
  if (state.closed) return [];
  const lines: ClosedLine[] = [];
  for (const d of state.dimensions.values()) {
    if (d.records === 0 || d.latestTime === undefined) continue;
    lines.push({ dimension: d.dimension, quantity: d.recorded, records: d.records, effectiveStartTime: new Date(Date.parse(d.latestTime)).toISOString() });
  }
  return [{ type: 'UsageHourClosed', data: { subscriptionId: command.subscriptionId, hour: command.hour, at: command.now, lines } }];
}

function submitUsage(command: Extract<UsageHourCommand, { type: 'SubmitUsage' }>, state: UsageHourState): UsageHourEvent[] {
  const { subscriptionId, hour } = state;
  if (!state.closed || subscriptionId === undefined || hour === undefined) throw new DomainError('hour-open', 'an hour is submitted once it is closed');
  const events: UsageHourEvent[] = [];
  for (const d of state.dimensions.values()) {
    if (!d.closed || d.submitted || d.settled) continue;
    const included = Math.min(d.closed.quantity, Math.max(0, command.included.get(d.dimension) ?? 0));
    const quantity = addQuantity(d.closed.quantity, -included);
    const base = { subscriptionId, hour, at: command.now, dimension: d.dimension };
    if (quantity <= 0) {
      events.push({ type: 'UsageSettled', data: { ...base, status: 'Included', billed: 0, via: 'local', detail: `all ${d.closed.quantity} within the included quantity` } });
    } else {
      events.push({
        type: 'UsageSubmitted',
        data: { ...base, planId: command.planId, recorded: d.closed.quantity, included, quantity, effectiveStartTime: d.closed.effectiveStartTime },
      });
    }
  }
  return events;
}

function settleUsage(command: Extract<UsageHourCommand, { type: 'SettleUsage' }>, state: UsageHourState): UsageHourEvent[] {
  const { subscriptionId, hour } = state;
  if (subscriptionId === undefined || hour === undefined) return [];
  const events: UsageHourEvent[] = [];
  for (const answer of command.answers) {
    const d = state.dimensions.get(answer.dimension);
    if (!d?.submitted || d.settled) continue; // settled already (a repeat), or never submitted
    events.push({ type: 'UsageSettled', data: { subscriptionId, hour, at: command.now, ...definedOnly(answer) } });
  }
  return events;
}

function definedOnly(answer: SettlementAnswer): SettlementAnswer {
  const { usageEventId, messageTime, detail, ...rest } = answer;
  return { ...rest, ...(usageEventId ? { usageEventId } : {}), ...(messageTime ? { messageTime } : {}), ...(detail ? { detail } : {}) };
}

export function decideUsageHour(command: UsageHourCommand, state: UsageHourState): UsageHourEvent[] {
  switch (command.type) {
    case 'RecordUsage':
      return recordUsage(command, state);
    case 'CloseHour':
      return closeHour(command, state);
    case 'SubmitUsage':
      return submitUsage(command, state);
    case 'SettleUsage':
      return settleUsage(command, state);
    default: {
      const _exhaustive: never = command;
      return _exhaustive;
    }
  }
}

export const usageHourDecider: Decider<UsageHourCommand, UsageHourState, UsageHourEvent> = {
  decide: decideUsageHour,
  evolve: evolveUsageHour,
  initialState: initialUsageHour,
};

/** Dimensions submitted and still waiting for Microsoft's answer. */
export function awaitingAnswer(state: UsageHourState): UsageSubmitted['data'][] {
  return [...state.dimensions.values()].flatMap((d) => (d.submitted && !d.settled ? [d.submitted] : []));
}

/** True when every dimension with usage in the hour has settled (or the hour had none). */
export function isSettled(state: UsageHourState): boolean {
  return state.closed && [...state.dimensions.values()].every((d) => !d.closed || d.settled !== undefined);
}

/** When the first of the hour's unsettled dimensions can no longer be sent to Microsoft (ms), or undefined. */
export function earliestExpiryMs(state: UsageHourState): number | undefined {
  let earliest: number | undefined;
  for (const d of state.dimensions.values()) {
    if (d.settled) continue;
    const time = d.closed?.effectiveStartTime ?? d.latestTime;
    if (time === undefined) continue;
    const ms = expiresAtMs(time);
    if (earliest === undefined || ms < earliest) earliest = ms;
  }
  return earliest;
}
