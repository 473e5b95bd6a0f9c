/**
 * The one error the emulator's logic throws. `kind` says what went wrong; each HTTP layer maps it to
 * its own status: the Fulfillment routes answer as Microsoft does (a wrong state is a 400 there), the
 * emulator's own control API answers problem+json (a wrong state is a 409 there).
 */
export type EmulatorErrorKind =
  /** The input is malformed or not allowed (unknown plan, quantity out of range, same value). */
  | 'bad-request'
  /** The subscription's status does not allow it (e.g. changing a Suspended subscription). */
  | 'wrong-state'
  /** No such subscription, operation or token. */
  | 'not-found'
  /** The subscription exists but is Unsubscribed, where Microsoft answers 404 (activate). */
  | 'gone'
  /** Microsoft answers 403 (e.g. listAvailablePlans on an Unsubscribed subscription). */
  | 'forbidden'
  /** An operation is in progress on the subscription. */
  | 'locked'
  /** The request contradicts what has already happened (e.g. PATCH Failure on a Succeeded operation). */
  | 'conflict';

export class EmulatorError extends Error {
  override name = 'EmulatorError';
  constructor(
    readonly kind: EmulatorErrorKind,
    /** Stable, machine-readable (`PlanNotAvailable`, `SubscriptionLocked`, ...). */
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Status the Fulfillment API routes answer with (Microsoft's semantics, docs/marketplace.md §10). */
export const FULFILLMENT_STATUS: Record<EmulatorErrorKind, number> = {
  'bad-request': 400,
  'wrong-state': 400,
  'not-found': 404,
  gone: 404,
  forbidden: 403,
  locked: 409,
  conflict: 409,
};

/** Status the emulator's own control API answers with. */
export const CONTROL_STATUS: Record<EmulatorErrorKind, number> = {
  'bad-request': 400,
  'wrong-state': 409,
  'not-found': 404,
  gone: 409,
  forbidden: 409,
  locked: 409,
  conflict: 409,
};
