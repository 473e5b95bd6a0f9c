/**
 * The whole command × status matrix of the subscription decider: for every command type and every
 * status, the exact events it emits (and the status they lead to), or the DomainError it is refused with.
 *
 * The matrix is typed `{ [type in SubscriptionCommandType]: { [status in SubscriptionStatus]: … } }`, so
 * `tsc` fails when a command type or a status is added without its row or column; because tap runs
 * tests without type checking, a test below also reads the command and status unions from the source
 * and fails on any that has no row.
 *
 * Each cell starts from the canonical history of its status (fixtures), or from the row's own history
 * when the command needs more context (an activation under way, a publisher-side change pending).
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import ts from 'typescript';
import { decide, subscriptionEventTypes } from '../../src/domain/subscription/index.js';
import type {
  SubscriptionCommand,
  SubscriptionCommandType,
  SubscriptionEvent,
  SubscriptionEventType,
  SubscriptionStatus,
  Term,
} from '../../src/domain/subscription/index.js';
import {
  CONTACT,
  FIRST_TERM,
  NOW,
  SECOND_TERM,
  STATUSES,
  activationRequested,
  because,
  details,
  history,
  historyWithPendingCancellation,
  purchased,
  spec,
} from './subscription.fixtures.js';

const YEAR_TERM: Term = { termUnit: 'P1Y', startDate: '2026-05-01T00:00:00Z', endDate: '2027-04-30T00:00:00Z' };
/** `because` of an event converging on Microsoft's record above, with what Microsoft reported. */
const converging = {
  ...because(NOW, 'reconciliation'),
  reported: { status: 'Subscribed', planId: 'gold', quantity: 5, term: YEAR_TERM, autoRenew: false },
};

type Outcome =
  | { kind: 'emits'; events: SubscriptionEvent[]; becomes: SubscriptionStatus; todo?: string }
  | { kind: 'nothing'; todo?: string }
  | { kind: 'refused'; code: string; status: 400 | 404 | 409 | 422; todo?: string };

type Row<K extends SubscriptionCommandType> = {
  command: Extract<SubscriptionCommand, { type: K }>;
  /** The history a cell starts from; the canonical `history(status)` when absent. */
  given?: (status: SubscriptionStatus) => SubscriptionEvent[];
  outcomes: Record<SubscriptionStatus, Outcome>;
};

type Matrix = { [K in SubscriptionCommandType]: Row<K> };

const emits = (becomes: SubscriptionStatus, ...events: SubscriptionEvent[]): Outcome => ({ kind: 'emits', events, becomes });
const nothing: Outcome = { kind: 'nothing' };
const refused = (code: string, status: 400 | 404 | 409 | 422 = 409): Outcome => ({ kind: 'refused', code, status });
const notFound = refused('subscription-not-found', 404);
const illegal = refused('illegal-transition');

/** Every Microsoft-operation command below uses an operation id that no canonical history has applied. */
const matrix = {
  RecordPurchase: {
    command: {
      type: 'RecordPurchase',
      now: NOW,
      source: 'landing',
      subscription: details(),
      microsoftStatus: 'PendingFulfillmentStart',
    },
    outcomes: {
      Initial: emits('PendingFulfillmentStart', {
        type: 'Purchased',
        data: { ...because(NOW, 'landing'), ...details(), microsoftStatus: 'PendingFulfillmentStart' },
      }),
      // A second Resolve ("Manage account" on the landing page) or a repeated Subscribe: already recorded.
      PendingFulfillmentStart: nothing,
      Subscribed: nothing,
      Suspended: nothing,
      Unsubscribed: nothing,
    },
  },

  RequestActivation: {
    command: { type: 'RequestActivation', now: NOW, source: 'landing', contact: CONTACT },
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: emits('PendingFulfillmentStart', {
        type: 'ActivationRequested',
        data: { ...because(NOW, 'landing'), planId: 'silver', quantity: 5, contact: CONTACT },
      }),
      Subscribed: refused('already-active'),
      Suspended: refused('already-active'),
      Unsubscribed: illegal,
    },
  },

  RecordActivationFailure: {
    command: { type: 'RecordActivationFailure', now: NOW, source: 'process', reason: 'Activate answered 500', final: false },
    given: (status) => (status === 'PendingFulfillmentStart' ? [purchased(), activationRequested()] : history(status)),
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: emits('PendingFulfillmentStart', {
        type: 'ActivationFailed',
        data: { ...because(NOW, 'process'), reason: 'Activate answered 500', attempt: 1, final: false },
      }),
      Subscribed: illegal,
      Suspended: illegal,
      Unsubscribed: illegal,
    },
  },

  ConfirmActivation: {
    command: { type: 'ConfirmActivation', now: NOW, source: 'process' },
    given: (status) => (status === 'PendingFulfillmentStart' ? [purchased(), activationRequested()] : history(status)),
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: emits('Subscribed', {
        type: 'Activated',
        data: { ...because(NOW, 'process'), planId: 'silver', quantity: 5, autoActivated: false },
      }),
      // Confirmed before a crash, the process retries: nothing more to record.
      Subscribed: nothing,
      Suspended: nothing, // a Suspended subscription was activated: a retried confirmation is satisfied
      Unsubscribed: illegal,
    },
  },

  RequestPlanChange: {
    command: { type: 'RequestPlanChange', now: NOW, source: 'operator', requestId: 'req-plan', planId: 'gold' },
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: illegal,
      Subscribed: emits('Subscribed', {
        type: 'PlanChangeRequested',
        data: { ...because(NOW, 'operator'), requestId: 'req-plan', planId: 'gold', previousPlanId: 'silver' },
      }),
      Suspended: illegal,
      Unsubscribed: illegal,
    },
  },

  RequestQuantityChange: {
    command: { type: 'RequestQuantityChange', now: NOW, source: 'operator', requestId: 'req-quantity', quantity: 10 },
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: illegal,
      Subscribed: emits('Subscribed', {
        type: 'QuantityChangeRequested',
        data: { ...because(NOW, 'operator'), requestId: 'req-quantity', quantity: 10, previousQuantity: 5 },
      }),
      Suspended: illegal,
      Unsubscribed: illegal,
    },
  },

  RequestUnsubscribe: {
    command: { type: 'RequestUnsubscribe', now: NOW, source: 'operator', requestId: 'req-cancel', reason: 'moving to an annual plan' },
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: emits('PendingFulfillmentStart', {
        type: 'CancellationRequested',
        data: { ...because(NOW, 'operator'), requestId: 'req-cancel', reason: 'moving to an annual plan' },
      }),
      Subscribed: emits('Subscribed', {
        type: 'CancellationRequested',
        data: { ...because(NOW, 'operator'), requestId: 'req-cancel', reason: 'moving to an annual plan' },
      }),
      Suspended: emits('Suspended', {
        type: 'CancellationRequested',
        data: { ...because(NOW, 'operator'), requestId: 'req-cancel', reason: 'moving to an annual plan' },
      }),
      Unsubscribed: illegal,
    },
  },

  RecordChangeSubmitted: {
    command: { type: 'RecordChangeSubmitted', now: NOW, source: 'process', requestId: 'req-cancel', operationId: 'op-cancel-1' },
    given: historyWithPendingCancellation,
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: emits('PendingFulfillmentStart', {
        type: 'ChangeSubmitted',
        data: { ...because(NOW, 'process'), requestId: 'req-cancel', operationId: 'op-cancel-1' },
      }),
      Subscribed: emits('Subscribed', {
        type: 'ChangeSubmitted',
        data: { ...because(NOW, 'process'), requestId: 'req-cancel', operationId: 'op-cancel-1' },
      }),
      Suspended: emits('Suspended', {
        type: 'ChangeSubmitted',
        data: { ...because(NOW, 'process'), requestId: 'req-cancel', operationId: 'op-cancel-1' },
      }),
      // The cancellation went through and Unsubscribed settled it: nothing is pending any more.
      Unsubscribed: refused('no-such-request'),
    },
  },

  RecordChangeRequestFailure: {
    command: {
      type: 'RecordChangeRequestFailure',
      now: NOW,
      source: 'process',
      requestId: 'req-cancel',
      status: 'Failed',
      reason: 'DELETE answered 409',
    },
    given: historyWithPendingCancellation,
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: emits('PendingFulfillmentStart', {
        type: 'ChangeRequestFailed',
        data: { ...because(NOW, 'process'), requestId: 'req-cancel', status: 'Failed', reason: 'DELETE answered 409' },
      }),
      Subscribed: emits('Subscribed', {
        type: 'ChangeRequestFailed',
        data: { ...because(NOW, 'process'), requestId: 'req-cancel', status: 'Failed', reason: 'DELETE answered 409' },
      }),
      Suspended: emits('Suspended', {
        type: 'ChangeRequestFailed',
        data: { ...because(NOW, 'process'), requestId: 'req-cancel', status: 'Failed', reason: 'DELETE answered 409' },
      }),
      // Settled already (it succeeded): a late failure report changes nothing.
      Unsubscribed: nothing,
    },
  },

  ApplyPlanChange: {
    command: { type: 'ApplyPlanChange', now: NOW, source: 'webhook', operationId: 'op-plan-1', planId: 'gold', requestSource: 'Azure' },
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: illegal,
      Subscribed: emits('Subscribed', {
        type: 'PlanChanged',
        data: { ...because(NOW, 'webhook'), operationId: 'op-plan-1', planId: 'gold', previousPlanId: 'silver', requestSource: 'Azure' },
      }),
      Suspended: illegal,
      Unsubscribed: illegal,
    },
  },

  ApplyQuantityChange: {
    command: { type: 'ApplyQuantityChange', now: NOW, source: 'webhook', operationId: 'op-quantity-1', quantity: 8, requestSource: 'Azure' },
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: illegal,
      Subscribed: emits('Subscribed', {
        type: 'QuantityChanged',
        data: { ...because(NOW, 'webhook'), operationId: 'op-quantity-1', quantity: 8, previousQuantity: 5, requestSource: 'Azure' },
      }),
      Suspended: illegal,
      Unsubscribed: illegal,
    },
  },

  RefuseChange: {
    command: {
      type: 'RefuseChange',
      now: NOW,
      source: 'webhook',
      operationId: 'op-plan-2',
      action: 'ChangePlan',
      planId: 'platinum',
      reason: 'platinum is not sold to this tenant',
    },
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: illegal,
      Subscribed: emits('Subscribed', {
        type: 'ChangeRejected',
        data: {
          ...because(NOW, 'webhook'),
          operationId: 'op-plan-2',
          action: 'ChangePlan',
          planId: 'platinum',
          reason: 'platinum is not sold to this tenant',
        },
      }),
      Suspended: illegal,
      Unsubscribed: illegal,
    },
  },

  Suspend: {
    command: { type: 'Suspend', now: NOW, source: 'webhook', operationId: 'op-suspend-1' },
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: illegal,
      Subscribed: emits('Suspended', { type: 'Suspended', data: { ...because(NOW, 'webhook'), operationId: 'op-suspend-1' } }),
      // Another Suspend operation while suspended (the one that suspended it is a no-op: see idempotency tests).
      Suspended: illegal,
      Unsubscribed: illegal,
    },
  },

  Reinstate: {
    command: { type: 'Reinstate', now: NOW, source: 'webhook', operationId: 'op-reinstate-1' },
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: illegal,
      Subscribed: illegal,
      Suspended: emits('Subscribed', { type: 'Reinstated', data: { ...because(NOW, 'webhook'), operationId: 'op-reinstate-1' } }),
      Unsubscribed: illegal,
    },
  },

  Renew: {
    command: { type: 'Renew', now: NOW, source: 'webhook', operationId: 'op-renew-1', term: SECOND_TERM },
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: illegal,
      Subscribed: emits('Subscribed', {
        type: 'Renewed',
        data: { ...because(NOW, 'webhook'), operationId: 'op-renew-1', term: SECOND_TERM },
      }),
      // Notifications are not ordered: a renewal reported after a suspension still moves the term.
      Suspended: emits('Suspended', {
        type: 'Renewed',
        data: { ...because(NOW, 'webhook'), operationId: 'op-renew-1', term: SECOND_TERM },
      }),
      Unsubscribed: illegal,
    },
  },

  Unsubscribe: {
    command: { type: 'Unsubscribe', now: NOW, source: 'webhook', operationId: 'op-unsubscribe-1', reason: 'cancelled in the Azure portal' },
    outcomes: {
      Initial: notFound,
      PendingFulfillmentStart: emits('Unsubscribed', {
        type: 'Unsubscribed',
        data: { ...because(NOW, 'webhook'), operationId: 'op-unsubscribe-1', reason: 'cancelled in the Azure portal' },
      }),
      Subscribed: emits('Unsubscribed', {
        type: 'Unsubscribed',
        data: { ...because(NOW, 'webhook'), operationId: 'op-unsubscribe-1', reason: 'cancelled in the Azure portal' },
      }),
      Suspended: emits('Unsubscribed', {
        type: 'Unsubscribed',
        data: { ...because(NOW, 'webhook'), operationId: 'op-unsubscribe-1', reason: 'cancelled in the Azure portal' },
      }),
      Unsubscribed: nothing, // terminal and already satisfied; a 409 would make Microsoft retry the webhook for hours
    },
  },

  ReconcileStatus: {
    command: { type: 'ReconcileStatus', now: NOW, source: 'reconciliation', microsoftStatus: 'Suspended' },
    outcomes: {
      Initial: notFound,
      // Never activated here, Microsoft has it (and has suspended it): catch up.
      PendingFulfillmentStart: emits(
        'Suspended',
        { type: 'Activated', data: { ...because(NOW, 'reconciliation'), planId: 'silver', quantity: 5, autoActivated: true } },
        { type: 'Suspended', data: because(NOW, 'reconciliation') },
      ),
      Subscribed: emits('Suspended', { type: 'Suspended', data: because(NOW, 'reconciliation') }),
      Suspended: nothing,
      Unsubscribed: refused('cannot-reconcile'),
    },
  },

  // Microsoft: Subscribed on plan gold, 5 seats, a yearly term, auto-renew off (docs/marketplace.md §4.1).
  ConvergeOnMicrosoft: {
    command: { type: 'ConvergeOnMicrosoft', now: NOW, source: 'reconciliation', microsoft: { details: details({ planId: 'gold', term: YEAR_TERM, autoRenew: false }), status: 'Subscribed' } },
    outcomes: {
      Initial: notFound,
      // Activated takes Microsoft's plan, seats and term; only auto-renew is left to refresh.
      PendingFulfillmentStart: emits(
        'Subscribed',
        { type: 'Activated', data: { ...converging, planId: 'gold', quantity: 5, autoActivated: true, term: YEAR_TERM } },
        { type: 'DetailsRefreshed', data: { ...converging, changes: { autoRenew: false }, previous: { autoRenew: true } } },
      ),
      Subscribed: emits(
        'Subscribed',
        { type: 'PlanChanged', data: { ...converging, planId: 'gold', previousPlanId: 'silver' } },
        { type: 'DetailsRefreshed', data: { ...converging, changes: { term: YEAR_TERM, autoRenew: false }, previous: { term: FIRST_TERM, autoRenew: true } } },
      ),
      Suspended: emits(
        'Subscribed',
        { type: 'Reinstated', data: converging },
        { type: 'PlanChanged', data: { ...converging, planId: 'gold', previousPlanId: 'silver' } },
        { type: 'DetailsRefreshed', data: { ...converging, changes: { term: YEAR_TERM, autoRenew: false }, previous: { term: FIRST_TERM, autoRenew: true } } },
      ),
      // Terminal: nothing Microsoft reports brings it back (the reconciler counts the status as a drift it cannot
      // repair), but Microsoft's final plan and term belong in its history.
      Unsubscribed: emits(
        'Unsubscribed',
        { type: 'PlanChanged', data: { ...converging, planId: 'gold', previousPlanId: 'silver' } },
        { type: 'DetailsRefreshed', data: { ...converging, changes: { term: YEAR_TERM, autoRenew: false }, previous: { term: FIRST_TERM, autoRenew: true } } },
      ),
    },
  },
} satisfies Matrix;

const commandTypes = Object.keys(matrix) as SubscriptionCommandType[];

function messageFragments(command: SubscriptionCommand, status: SubscriptionStatus, code: string): string[] {
  switch (code) {
    case 'illegal-transition':
    case 'already-active':
      return [command.type, status];
    case 'subscription-not-found':
      return [command.type, 'no purchase has been recorded'];
    case 'no-such-request':
      return [command.type, 'requestId' in command ? command.requestId : ''];
    default:
      return [command.type];
  }
}

for (const type of commandTypes) {
  const row: Row<SubscriptionCommandType> = matrix[type];
  t.test(type, async (t) => {
    for (const status of STATUSES) {
      const outcome = row.outcomes[status];
      const given = (row.given ?? history)(status);
      t.test(`${type} × ${status}`, async (t) => {
        const when = spec(t).given(given).when(row.command);
        t.equal(when.state.status, status, `the given history leaves the subscription ${status}`);
        const extra = outcome.todo ? { todo: outcome.todo } : {};
        switch (outcome.kind) {
          case 'emits': {
            const after = when.then(outcome.events, extra);
            t.equal(after.status, outcome.becomes, `then the subscription is ${outcome.becomes}`, extra);
            break;
          }
          case 'nothing':
            when.thenNothing(extra);
            break;
          case 'refused':
            when.thenError(outcome.code, {
              ...extra,
              status: outcome.status,
              messageIncludes: messageFragments(row.command, status, outcome.code),
            });
            break;
        }
      });
    }
  });
}

/** The string literals of `prop` in the members of a union type alias, read from the source. */
function unionLiterals(file: URL, alias: string, prop: string): string[] {
  const source = ts.createSourceFile(file.pathname, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visitMember = (node: ts.TypeNode): void => {
    if (ts.isParenthesizedTypeNode(node)) return visitMember(node.type);
    if (ts.isUnionTypeNode(node) || ts.isIntersectionTypeNode(node)) return node.types.forEach(visitMember);
    if (!ts.isTypeLiteralNode(node)) return;
    for (const member of node.members) {
      if (
        ts.isPropertySignature(member) &&
        member.name.getText(source) === prop &&
        member.type &&
        ts.isLiteralTypeNode(member.type) &&
        ts.isStringLiteral(member.type.literal)
      ) {
        found.push(member.type.literal.text);
      }
    }
  };
  source.forEachChild((node) => {
    if (ts.isTypeAliasDeclaration(node) && node.name.text === alias) visitMember(node.type);
  });
  return found;
}

t.test('the matrix is complete', async (t) => {
  const commandsInSource = unionLiterals(
    new URL('../../src/domain/subscription/subscription.decide.ts', import.meta.url),
    'SubscriptionCommand',
    'type',
  );
  const statusesInSource = unionLiterals(
    new URL('../../src/domain/subscription/subscription.state.ts', import.meta.url),
    'SubscriptionState',
    'status',
  );
  t.ok(commandsInSource.length >= 16, `read ${commandsInSource.length} command types from the source`);
  t.strictSame([...commandsInSource].sort(), [...commandTypes].sort(), 'one row per command type of SubscriptionCommand');
  t.strictSame([...statusesInSource].sort(), [...STATUSES].sort(), 'one column per status of SubscriptionState');

  for (const type of commandTypes) {
    const row: Row<SubscriptionCommandType> = matrix[type];
    t.strictSame(Object.keys(row.outcomes).sort(), [...STATUSES].sort(), `${type}: an outcome for every status`);
    t.equal(row.command.type, type, `${type}: the row's command is a ${type}`);
  }
  t.equal(commandTypes.length * STATUSES.length, 18 * 5, '18 command types × 5 statuses');

  const emitted = new Set<SubscriptionEventType>();
  for (const type of commandTypes) {
    const row: Row<SubscriptionCommandType> = matrix[type];
    for (const status of STATUSES) {
      const outcome = row.outcomes[status];
      if (outcome.kind === 'emits') outcome.events.forEach((e) => emitted.add(e.type));
    }
  }
  for (const type of subscriptionEventTypes) t.ok(emitted.has(type), `some legal transition emits ${type}`);
});

t.test('an unknown command type is refused, not ignored', async (t) => {
  const bogus = { type: 'Teleport', now: NOW, source: 'operator' } as unknown as SubscriptionCommand;
  t.throws(() => decide(bogus, { status: 'Initial' }), { name: 'DomainError', code: 'unknown-command', status: 400 });
});
