/**
 * The application service the front doors and process managers share: run a command on one
 * subscription's stream with the who/why metadata every event must carry, and load its state.
 */
import { subscriptionDecider, subscriptionStream } from '../domain/subscription/index.js';
import type { SubscriptionCommand, SubscriptionEvent, SubscriptionState } from '../domain/subscription/index.js';
import { StoreUnavailableError } from '../eventstore/eventstore.js';
import type { EventMetadata, EventStore } from '../eventstore/eventstore.js';
import { handleCommand, loadAggregate } from '../eventstore/command-handler.js';
import type { Aggregate, HandleResult } from '../eventstore/command-handler.js';

/** A customer signed in on the landing page (Microsoft Entra ID or the sandbox's provider): recorded with the events as `signedInUser`. */
export type SignedInActor = { name?: string; email?: string; oid: string; tid: string; issuer?: string };

export type CommandContext = {
  /** Who caused it: 'microsoft', 'customer:<email>', 'operator:<id>', 'system:<process>'. */
  actor: string;
  /** The signed-in person behind a `customer:` actor, when the landing page signed them in. */
  signedInUser?: SignedInActor;
  correlationId?: string;
  causationId?: string;
  /** The revision the caller last saw (If-Match); a stale one fails with 412 instead of retrying. */
  expectedRevision?: bigint;
};

/** The store, or a getter for it while it is still opening (routes then answer 503). */
export type StoreRef = EventStore | (() => EventStore | undefined);

export function resolveStore(ref: StoreRef): EventStore {
  const store = typeof ref === 'function' ? ref() : ref;
  if (!store) throw new StoreUnavailableError('the event store is not open yet');
  return store;
}

export class SubscriptionLedger {
  constructor(private readonly storeRef: StoreRef) {}

  get store(): EventStore {
    return resolveStore(this.storeRef);
  }

  execute(
    subscriptionId: string,
    command: SubscriptionCommand,
    context: CommandContext,
  ): Promise<HandleResult<SubscriptionState, SubscriptionEvent>> {
    const metadata: EventMetadata = {
      actor: context.actor,
      ...(context.signedInUser ? { signedInUser: context.signedInUser } : {}),
      ...(context.correlationId ? { correlationId: context.correlationId } : {}),
      ...(context.causationId ? { causationId: context.causationId } : {}),
    };
    return handleCommand(this.store, subscriptionStream(subscriptionId), subscriptionDecider, command, {
      metadata,
      ...(context.expectedRevision !== undefined ? { expectedRevision: context.expectedRevision } : {}),
    });
  }

  load(subscriptionId: string): Promise<Aggregate<SubscriptionState>> {
    return loadAggregate(this.store, subscriptionStream(subscriptionId), subscriptionDecider);
  }
}
