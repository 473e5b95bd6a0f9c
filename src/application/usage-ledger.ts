/**
 * The metering streams' command side: run a command on an hour (`usage-<subscriptionId>.<hour>`) or a month's
 * allowance (`allowance-<subscriptionId>.<month>`) with the who/why metadata every event carries, and load them.
 */
import { allowanceDecider, allowanceStream, decodeAllowanceEvent, decodeUsageHourEvent, usageHourDecider, usageHourStream } from '../domain/metering/index.js';
import type { AllowanceEvent, AllowanceState, ApplyIncluded, UsageHourCommand, UsageHourEvent, UsageHourState } from '../domain/metering/index.js';
import { handleCommand, loadAggregate } from '../eventstore/command-handler.js';
import type { Aggregate, HandleResult } from '../eventstore/command-handler.js';
import type { EventMetadata } from '../eventstore/eventstore.js';
import { resolveStore } from './subscription-ledger.js';
import type { StoreRef } from './subscription-ledger.js';

const hourDecider = { ...usageHourDecider, decode: decodeUsageHourEvent };
const monthDecider = { ...allowanceDecider, decode: decodeAllowanceEvent };

export class UsageLedger {
  constructor(private readonly storeRef: StoreRef) {}

  executeHour(subscriptionId: string, hour: string, command: UsageHourCommand, metadata: EventMetadata): Promise<HandleResult<UsageHourState, UsageHourEvent>> {
    return handleCommand(resolveStore(this.storeRef), usageHourStream(subscriptionId, hour), hourDecider, command, { metadata, maxRetries: 10 });
  }

  loadHour(subscriptionId: string, hour: string): Promise<Aggregate<UsageHourState>> {
    return loadAggregate(resolveStore(this.storeRef), usageHourStream(subscriptionId, hour), hourDecider);
  }

  applyIncluded(command: ApplyIncluded, metadata: EventMetadata): Promise<HandleResult<AllowanceState, AllowanceEvent>> {
    return handleCommand(resolveStore(this.storeRef), allowanceStream(command.subscriptionId, command.month), monthDecider, command, { metadata, maxRetries: 10 });
  }
}
