/**
 * The one decode from a stored event to a metering event: undefined for a type of another aggregate, an
 * EventDecodeError for one of ours whose data does not fit its schema (unknown fields are kept). Compiled once,
 * on first use: the check of the union of the aggregate's events is what types the result.
 */
import Type from 'typebox';
import { Compile } from 'typebox/compile';
import { EventDecodeError } from '../subscription/subscription.codec.js';
import { allowanceSchemas, usageHourSchemas } from './usage.events.js';
import type { AllowanceEvent, UsageHourEvent } from './usage.events.js';

const hourUnion = () =>
  Compile(Type.Union([usageHourSchemas.UsageRecorded, usageHourSchemas.LateUsageRecorded, usageHourSchemas.UsageHourClosed, usageHourSchemas.UsageSubmitted, usageHourSchemas.UsageSettled]));
const allowanceUnion = () => Compile(allowanceSchemas.IncludedQuantityApplied);

let hourValidator: ReturnType<typeof hourUnion> | undefined;
let allowanceValidator: ReturnType<typeof allowanceUnion> | undefined;

function problem(type: string, errors: Iterable<{ instancePath: string; message: string }>): EventDecodeError {
  for (const first of errors) return new EventDecodeError(type, `${first.instancePath || '/'} ${first.message}`);
  return new EventDecodeError(type, 'invalid');
}

export function decodeUsageHourEvent(stored: { type: string; data: unknown }): UsageHourEvent | undefined {
  if (!Object.hasOwn(usageHourSchemas, stored.type)) return undefined;
  const candidate = { type: stored.type, data: stored.data };
  const validator = (hourValidator ??= hourUnion());
  if (validator.Check(candidate)) return candidate;
  throw problem(stored.type, validator.Errors(candidate));
}

export function decodeAllowanceEvent(stored: { type: string; data: unknown }): AllowanceEvent | undefined {
  if (!Object.hasOwn(allowanceSchemas, stored.type)) return undefined;
  const candidate = { type: stored.type, data: stored.data };
  const validator = (allowanceValidator ??= allowanceUnion());
  if (validator.Check(candidate)) return candidate;
  throw problem(stored.type, validator.Errors(candidate));
}
