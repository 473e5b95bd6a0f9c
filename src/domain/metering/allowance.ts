/**
 * The included quantity of one subscription in one UTC month: the decider of an `allowance-` stream.
 *
 * The ISV's rule (docs/marketplace.md, Metering): each dimension may include a quantity per month in the flat fee
 * (METERING_INCLUDED). The hours of a month consume it in the order they are closed: an hour's usage first uses up
 * what is left of it, and only the rest is sent to Microsoft. Applying an hour's dimension twice changes nothing
 * (the second time returns the first figures), so a submission retried after a crash sends the same quantity.
 */
import type { Decider } from '../decider.js';
import { streamName } from '../streams.js';
import { addQuantity } from './hours.js';
import type { AllowanceEvent, IncludedQuantityApplied } from './usage.events.js';

export const allowanceCategory = 'allowance';

export function allowanceStream(subscriptionId: string, month: string): string {
  return streamName(allowanceCategory, `${subscriptionId}.${month}`);
}

export type AllowanceState = {
  /** dimension → included quantity used so far this month. */
  used: ReadonlyMap<string, number>;
  /** `<hour>|<dimension>` → what was applied to it. */
  applied: ReadonlyMap<string, IncludedQuantityApplied['data']>;
};

export type ApplyIncluded = {
  type: 'ApplyIncluded';
  subscriptionId: string;
  month: string;
  hour: string;
  lines: readonly { dimension: string; recorded: number; includedPerMonth: number }[];
  now: string;
};

export const appliedKey = (hour: string, dimension: string): string => `${hour}|${dimension}`;

export const initialAllowance = (): AllowanceState => ({ used: new Map(), applied: new Map() });

export function evolveAllowance(state: AllowanceState, event: AllowanceEvent): AllowanceState {
  const d = event.data;
  const used = new Map(state.used);
  used.set(d.dimension, addQuantity(used.get(d.dimension) ?? 0, d.applied));
  const applied = new Map(state.applied);
  applied.set(appliedKey(d.hour, d.dimension), d);
  return { used, applied };
}

export function decideAllowance(command: ApplyIncluded, state: AllowanceState): AllowanceEvent[] {
  const events: AllowanceEvent[] = [];
  const used = new Map(state.used);
  for (const line of command.lines) {
    if (state.applied.has(appliedKey(command.hour, line.dimension))) continue;
    const usedBefore = used.get(line.dimension) ?? 0;
    const left = Math.max(0, addQuantity(line.includedPerMonth, -usedBefore));
    const applied = Math.min(left, line.recorded);
    used.set(line.dimension, addQuantity(usedBefore, applied));
    events.push({
      type: 'IncludedQuantityApplied',
      data: { subscriptionId: command.subscriptionId, month: command.month, hour: command.hour, dimension: line.dimension, recorded: line.recorded, includedPerMonth: line.includedPerMonth, usedBefore, applied, at: command.now },
    });
  }
  return events;
}

export const allowanceDecider: Decider<ApplyIncluded, AllowanceState, AllowanceEvent> = {
  decide: decideAllowance,
  evolve: evolveAllowance,
  initialState: initialAllowance,
};
