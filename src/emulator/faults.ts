/**
 * Fault injection: the misbehaviours of the real service that an ISV's backend must survive.
 *
 * Webhooks: duplicate deliveries, out-of-order deliveries, delays, bad bearer tokens, and deliveries
 * dropped for good (never sent: Microsoft gave up after its 8 hours of retries).
 * Fulfillment API: 429 with `Retry-After`, 500s, slow answers, and an Activate that answers 200 but
 * fails afterwards (2023 semantics: the subscription is cancelled and an `Unsubscribe` webhook sent).
 *
 * Each fault fires with `probability` (default 1) and at most `times` times (default: until
 * cleared); `times` counts down in the live configuration, and a fault that has fired its last
 * time disappears from it. API faults may be limited to some `operations`.
 */
import { Type } from 'typebox';
import type { Static } from 'typebox';

export const FULFILLMENT_OPERATIONS = [
  'resolve',
  'activate',
  'listSubscriptions',
  'getSubscription',
  'listAvailablePlans',
  'updateSubscription',
  'deleteSubscription',
  'listOperations',
  'getOperation',
  'updateOperation',
  // the Metering Service API (metering.routes.ts)
  'usageEvent',
  'batchUsageEvent',
] as const;
export type FulfillmentOperationName = (typeof FULFILLMENT_OPERATIONS)[number];

export const TOKEN_FAULTS = [
  'missing',
  'expired',
  'not-yet-valid',
  'wrong-audience',
  'wrong-issuer',
  'wrong-tenant',
  'wrong-appid',
  'bad-signature',
] as const;
export type TokenFault = (typeof TOKEN_FAULTS)[number];

const Probability = Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'chance per event, default 1' }));
const Times = Type.Optional(Type.Integer({ minimum: 1, description: 'fire at most this many times, default: until cleared' }));
const Operations = Type.Optional(
  Type.Array(Type.Enum(FULFILLMENT_OPERATIONS), {
    minItems: 1,
    description: 'limit to these Fulfillment operations, default all',
  }),
);
const Delay = Type.Integer({ minimum: 0, maximum: 600_000 });

export const FaultConfigSchema = Type.Object(
  {
    webhook: Type.Optional(
      Type.Object(
        {
          /** Each delivery is also sent `copies` more times (same payload, same operation id). */
          duplicate: Type.Optional(
            Type.Object(
              { copies: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 })), probability: Probability, times: Times },
              { additionalProperties: false },
            ),
          ),
          /** Deliveries are held until `window` of them are queued (or `maxHoldMs` passed), then sent newest first. */
          reorder: Type.Optional(
            Type.Object(
              { window: Type.Integer({ minimum: 2, maximum: 50 }), maxHoldMs: Type.Optional(Delay) },
              { additionalProperties: false },
            ),
          ),
          /**
           * The delivery is never sent (Microsoft gave up after 8 hours) and is recorded as `dropped`.
           * The operation goes on as if the publisher had not answered: a change is accepted when its
           * acknowledgement window ends, since 8 hours of retries outlast the 10-second window.
           */
          drop: Type.Optional(
            Type.Object(
              {
                probability: Probability,
                times: Times,
                actions: Type.Optional(
                  Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'limit to these webhook actions, default all' }),
                ),
              },
              { additionalProperties: false },
            ),
          ),
          /** Every delivery waits this long before its first attempt. */
          delayMs: Type.Optional(Delay),
          /** The bearer token is missing or wrong in the given way. */
          token: Type.Optional(Type.Enum(TOKEN_FAULTS)),
        },
        { additionalProperties: false },
      ),
    ),
    api: Type.Optional(
      Type.Object(
        {
          throttle: Type.Optional(
            Type.Object(
              {
                retryAfterSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })),
                probability: Probability,
                times: Times,
                operations: Operations,
              },
              { additionalProperties: false },
            ),
          ),
          serverError: Type.Optional(
            Type.Object({ probability: Probability, times: Times, operations: Operations }, { additionalProperties: false }),
          ),
          delay: Type.Optional(
            Type.Object({ ms: Delay, probability: Probability, times: Times, operations: Operations }, { additionalProperties: false }),
          ),
          /** Activate answers 200, then the activation fails: Unsubscribed + `Unsubscribe` webhook. */
          failActivation: Type.Optional(
            Type.Object({ probability: Probability, times: Times }, { additionalProperties: false }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type FaultConfig = Static<typeof FaultConfigSchema>;

type Trigger = { probability?: number; times?: number; operations?: readonly FulfillmentOperationName[] };

export type FaultCounts = Record<
  'duplicate' | 'drop' | 'reorder' | 'webhookDelay' | 'token' | 'throttle' | 'serverError' | 'apiDelay' | 'failActivation',
  number
>;

export class FaultInjector {
  #config: FaultConfig;
  readonly #random: () => number;
  readonly fired: FaultCounts = {
    duplicate: 0,
    drop: 0,
    reorder: 0,
    webhookDelay: 0,
    token: 0,
    throttle: 0,
    serverError: 0,
    apiDelay: 0,
    failActivation: 0,
  };

  constructor(config: FaultConfig = {}, random: () => number = Math.random) {
    this.#config = structuredClone(config);
    this.#random = random;
  }

  /** The live configuration (with `times` counted down). */
  get config(): FaultConfig {
    return structuredClone(this.#config);
  }

  set(config: FaultConfig): void {
    this.#config = structuredClone(config);
  }

  clear(): void {
    this.#config = {};
  }

  /** Extra copies to send of a delivery (0 = none). */
  duplicateCopies(): number {
    const d = this.#config.webhook?.duplicate;
    if (!d || !this.#fires(d, undefined, () => delete this.#config.webhook?.duplicate)) return 0;
    this.fired.duplicate++;
    return d.copies ?? 1;
  }

  /** Whether a delivery of `action` is dropped for good (counted only for the actions the fault names). */
  drop(action: string): boolean {
    const d = this.#config.webhook?.drop;
    if (!d || (d.actions !== undefined && !d.actions.includes(action))) return false;
    if (!this.#fires(d, undefined, () => delete this.#config.webhook?.drop)) return false;
    this.fired.drop++;
    return true;
  }

  reorder(): { window: number; maxHoldMs: number } | undefined {
    const r = this.#config.webhook?.reorder;
    return r ? { window: r.window, maxHoldMs: r.maxHoldMs ?? 1000 } : undefined;
  }

  webhookDelayMs(): number {
    const ms = this.#config.webhook?.delayMs ?? 0;
    if (ms > 0) this.fired.webhookDelay++;
    return ms;
  }

  tokenFault(): TokenFault | undefined {
    const f = this.#config.webhook?.token;
    if (f) this.fired.token++;
    return f;
  }

  /** `Retry-After` seconds when this call is to be throttled. */
  throttle(operation: FulfillmentOperationName): number | undefined {
    const t = this.#config.api?.throttle;
    if (!t || !this.#fires(t, operation, () => delete this.#config.api?.throttle)) return undefined;
    this.fired.throttle++;
    return t.retryAfterSeconds ?? 1;
  }

  serverError(operation: FulfillmentOperationName): boolean {
    const e = this.#config.api?.serverError;
    if (!e || !this.#fires(e, operation, () => delete this.#config.api?.serverError)) return false;
    this.fired.serverError++;
    return true;
  }

  apiDelayMs(operation: FulfillmentOperationName): number {
    const d = this.#config.api?.delay;
    if (!d || !this.#fires(d, operation, () => delete this.#config.api?.delay)) return 0;
    this.fired.apiDelay++;
    return d.ms;
  }

  failActivation(): boolean {
    const f = this.#config.api?.failActivation;
    if (!f || !this.#fires(f, undefined, () => delete this.#config.api?.failActivation)) return false;
    this.fired.failActivation++;
    return true;
  }

  #fires(trigger: Trigger, operation: FulfillmentOperationName | undefined, remove: () => void): boolean {
    if (operation !== undefined && trigger.operations !== undefined && !trigger.operations.includes(operation)) return false;
    if (this.#random() >= (trigger.probability ?? 1)) return false;
    if (trigger.times !== undefined) {
      trigger.times -= 1;
      if (trigger.times <= 0) {
        remove();
        if (this.#config.webhook && Object.keys(this.#config.webhook).length === 0) delete this.#config.webhook;
        if (this.#config.api && Object.keys(this.#config.api).length === 0) delete this.#config.api;
      }
    }
    return true;
  }
}
