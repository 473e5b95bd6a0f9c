/**
 * The emulator's state file (`<DATA_DIR>/emulator-state.json` in a sandbox): what Microsoft has on record
 * (subscriptions, operations, purchase tokens, the purchase counter) and how far its calendar was moved on.
 * Dates are ISO strings in the file and `Date`s once decoded; the schema checks the file when it is read back,
 * so a hand-edited or truncated file is refused with the field it got wrong, never half-loaded.
 */
import Type from 'typebox';
import type { StaticDecode } from 'typebox';
import Value from 'typebox/value';
import {
  ALLOWED_CUSTOMER_OPERATION_VALUES,
  OPERATION_REQUEST_SOURCE_VALUES,
  OPERATION_STATUS_VALUES,
  SANDBOX_TYPE_VALUES,
  SESSION_MODE_VALUES,
} from '../marketplace/schemas.js';
import type { StateContents } from './state.js';

export const SNAPSHOT_VERSION = 1;

const When = Type.Codec(Type.String({ format: 'date-time' }))
  .Decode((s: string) => new Date(s))
  .Encode((d: Date) => d.toISOString());

const Identity = Type.Object({ emailId: Type.String(), objectId: Type.String(), tenantId: Type.String(), puid: Type.String() });

const Subscription = Type.Object({
  id: Type.String({ minLength: 1 }),
  name: Type.String(),
  publisherId: Type.String(),
  offerId: Type.String(),
  planId: Type.String(),
  quantity: Type.Optional(Type.Integer()),
  status: Type.Enum(['PendingFulfillmentStart', 'Subscribed', 'Suspended', 'Unsubscribed'] as const),
  beneficiary: Identity,
  purchaser: Identity,
  termUnit: Type.String(),
  startDate: Type.Optional(When),
  endDate: Type.Optional(When),
  autoRenew: Type.Boolean(),
  suspendedAt: Type.Optional(When),
  isTest: Type.Boolean(),
  isFreeTrial: Type.Boolean(),
  allowedCustomerOperations: Type.Array(Type.Enum(ALLOWED_CUSTOMER_OPERATION_VALUES)),
  sandboxType: Type.Enum(SANDBOX_TYPE_VALUES),
  sessionMode: Type.Enum(SESSION_MODE_VALUES),
  created: When,
  lastModified: When,
  purchasedPlanId: Type.String(),
});

const Operation = Type.Object({
  id: Type.String({ minLength: 1 }),
  activityId: Type.String(),
  subscriptionId: Type.String(),
  offerId: Type.String(),
  publisherId: Type.String(),
  planId: Type.String(),
  quantity: Type.Optional(Type.Integer()),
  action: Type.String(),
  timeStamp: When,
  status: Type.Enum(OPERATION_STATUS_VALUES),
  source: Type.Enum(OPERATION_REQUEST_SOURCE_VALUES),
  errorStatusCode: Type.Optional(Type.Integer()),
  errorMessage: Type.Optional(Type.String()),
  injected: Type.Optional(Type.Literal(true)),
  revertOf: Type.Optional(Type.String()),
});

const Token = Type.Object({ token: Type.String(), subscriptionId: Type.String(), issuedAt: When, expiresAt: When });

export const SnapshotSchema = Type.Object({
  version: Type.Literal(SNAPSHOT_VERSION),
  savedAt: Type.String(),
  /** What POST /emulator/clock/advance added to Microsoft's calendar. */
  calendarOffsetMs: Type.Number({ minimum: 0 }),
  counter: Type.Integer({ minimum: 0 }),
  subscriptions: Type.Array(Subscription),
  operations: Type.Array(Operation),
  tokens: Type.Array(Token),
});

export type Snapshot = StaticDecode<typeof SnapshotSchema>;

/** The file's text for `contents` and the calendar's offset. */
export function encodeSnapshot(contents: StateContents, calendarOffsetMs: number, savedAt: Date): string {
  const snapshot: Snapshot = { version: SNAPSHOT_VERSION, savedAt: savedAt.toISOString(), calendarOffsetMs, ...contents };
  return `${JSON.stringify(Value.Encode(SnapshotSchema, snapshot))}\n`;
}

/** A state file read back: the snapshot, or why it cannot be used (the first field that is wrong). */
export function decodeSnapshot(text: string): { snapshot: Snapshot } | { problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { problem: `not JSON (${err instanceof Error ? err.message : String(err)})` };
  }
  if (!Value.Check(SnapshotSchema, value)) {
    const first = Value.Errors(SnapshotSchema, value)[0];
    return { problem: first ? `${first.instancePath || '/'} ${first.message}` : 'not an emulator state file' };
  }
  return { snapshot: Value.Decode(SnapshotSchema, value) };
}
