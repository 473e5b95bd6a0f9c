/**
 * The operator API for subscriptions, for the ISV's staff and systems; registered inside the /api
 * plugin (api.plugin.ts), which puts every route behind the operator bearer token.
 *
 *   GET  /api/subscriptions/:id            current state + pending change, ETag "<revision>"
 *   GET  /api/subscriptions/:id/events     the full history (?fromRevision=)
 *   POST /api/subscriptions/:id/activate   { contact }    → 202 (the activation process does the rest)
 *   POST /api/subscriptions/:id/plan       { planId }     → 202 once Microsoft accepted (PATCH)
 *   POST /api/subscriptions/:id/quantity   { quantity }   → 202 once Microsoft accepted (PATCH)
 *   POST /api/subscriptions/:id/cancel     { reason? }    → 202 once Microsoft accepted (DELETE)
 *
 * Commands honour `If-Match: "<revision>"` (412 with the current revision when stale). A publisher
 * change is applied locally only when Microsoft confirms it (docs/marketplace.md §7.5): the 202 says it was
 * accepted; `pendingChange` / `lastChange` of the subscription say how it ends.
 */
import { operatorActorOf } from './operator-auth.js';
import { requestProvenance } from './request-provenance.js';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { SubscriptionLedger } from '../application/subscription-ledger.js';
import { historyOf } from '../application/audit-history.js';
import type { HistoryEntry } from '../application/audit-history.js';
import { DomainError } from '../domain/errors.js';
import { decodeSubscriptionEvent, latestChangeRequest, subscriptionStream } from '../domain/subscription/index.js';
import type { ChangeRequest, KnownSubscription, SubscriptionEvent } from '../domain/subscription/index.js';
import { ConcurrencyError } from '../eventstore/eventstore.js';
import type { RecordedEvent } from '../eventstore/eventstore.js';
import { ChangeNotSubmittedError } from '../application/publisher-changes.js';
import type { PublisherChange, PublisherChanges } from '../application/publisher-changes.js';
import { operatorSecurity as security, problemResponse } from './api.plugin.js';
import type { ProblemResponse } from './api.plugin.js';
import {
  Accepted,
  ActivateBody,
  CancelBody,
  CommandHeaders,
  EventHistory,
  EventsQuery,
  PlanBody,
  QuantityBody,
  SubscriptionParams,
  SubscriptionView,
} from './operator.schemas.js';
import type { LastChangeView, RecordedEventView } from './operator.schemas.js';
import type { Static } from 'typebox';
import { problem, problemContentType } from './problem.js';

export type OperatorRoutesOptions = {
  ledger: SubscriptionLedger;
  publisherChanges: PublisherChanges;
};

const TAG = 'subscriptions';

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid request: unknown or malformed fields, parameters or headers, or a value the subscription cannot take',
  401: 'Missing or wrong operator bearer token',
  404: 'No such subscription has been recorded',
  409: 'The subscription is not in a state that allows this (e.g. a publisher-side change is still pending), or Microsoft reported a conflict',
  412: 'If-Match is stale: the subscription changed since it was read; `currentRevision` says where it is now',
  422: 'Microsoft refused the change (400/404 from the Fulfillment API), or the subscription does not allow it (e.g. CSP purchases)',
  502: "Microsoft's answer was unusable: credentials refused, or the outcome of the call is unknown (the change stays pending and is checked again)",
  503: 'The event store or the Marketplace API is unavailable; retry later',
};

/** Error responses, documented (and serialized) as application/problem+json. */
function problems(...codes: number[]): Record<number, ProblemResponse> {
  const out: Record<number, ProblemResponse> = {};
  for (const code of codes) out[code] = problemResponse(PROBLEM_DESCRIPTIONS[code] ?? 'Problem');
  return out;
}

/** Operations whose request body may be left out (Fastify's schema makes every body look required). */
export const OPTIONAL_BODY_OPERATIONS: ReadonlySet<string> = new Set(['cancelSubscription']);

const ETAG_HEADER = { type: 'string', description: 'The subscription\'s revision as `"<revision>"`, for If-Match' } as const;
const LOCATION_HEADER = { type: 'string', description: 'The subscription: follow it to see the change settle' } as const;
const StateResponse = { ...SubscriptionView, headers: { etag: ETAG_HEADER } };
const AcceptedResponse = { ...Accepted, headers: { location: LOCATION_HEADER, etag: ETAG_HEADER } };

function notFound(subscriptionId: string): DomainError {
  return new DomainError('subscription-not-found', `no subscription ${subscriptionId} has been recorded`, 404);
}

/** A stale If-Match on a subscription that does not exist is a 404, not a 412. */
async function onKnownSubscription<T>(subscriptionId: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof ConcurrencyError && err.actual === -1n) throw notFound(subscriptionId);
    throw err;
  }
}

/** `"12"` → 12n; `*` or absent → undefined (no precondition). The header schema has checked the shape. */
export function parseIfMatch(value: string | undefined): bigint | undefined {
  const v = value?.trim();
  if (!v || v === '*') return undefined;
  return BigInt(v.slice(1, -1));
}

export function etagOf(revision: bigint): string {
  return `"${revision.toString()}"`;
}

/** Who acts (the authenticated operator, never a header), the request's provenance, and its If-Match. */
function commandContext(request: FastifyRequest & { headers: Static<typeof CommandHeaders> }) {
  const expectedRevision = parseIfMatch(request.headers['if-match']);
  return {
    actor: operatorActorOf(request),
    ...requestProvenance(request),
    ...(expectedRevision !== undefined ? { expectedRevision } : {}),
  };
}

type Api = Parameters<FastifyPluginAsyncTypebox<OperatorRoutesOptions>>[0];
type Accept = (reply: FastifyReply, body: Omit<Static<typeof Accepted>, 'status' | 'location'>) => FastifyReply;

export const operatorRoutes: FastifyPluginAsyncTypebox<OperatorRoutesOptions> = async (app, options) => {
  const { ledger, publisherChanges } = options;

  const locationOf = (subscriptionId: string) => `${app.prefix}/subscriptions/${encodeURIComponent(subscriptionId)}`;

  const accepted: Accept = (reply, body) => {
    const location = locationOf(body.subscriptionId);
    return reply
      .code(202)
      .header('location', location)
      .header('etag', `"${body.revision}"`)
      .send({ ...body, status: 'accepted' as const, location });
  };

  app.get(
    '/subscriptions/:id',
    {
      schema: {
        tags: [TAG],
        operationId: 'getSubscription',
        summary: 'A subscription: current state, flags, pending change and revision',
        description: 'The `ETag` header is `"<revision>"`: send it back as `If-Match` on a command to make it conditional.',
        security,
        params: SubscriptionParams,
        response: { 200: StateResponse, ...problems(400, 401, 404, 503) },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const { state, revision, events } = await ledger.load(id);
      if (state.status === 'Initial' || revision === undefined) throw notFound(id);
      reply.header('etag', etagOf(revision));
      return toSubscriptionView(state, revision, events);
    },
  );

  app.get(
    '/subscriptions/:id/events',
    {
      schema: {
        tags: [TAG],
        operationId: 'listSubscriptionEvents',
        summary: "A subscription's full history, oldest first",
        description:
          'Every event of the subscription stream with its metadata (actor, correlation) and its revision and global position, ' +
          'where it came from (`source`: landing page, webhook with Microsoft\'s operation id and notification stream, operator by name, reconciliation, process) ' +
          'and what it changed in the folded state (`changes`).',
        security,
        params: SubscriptionParams,
        querystring: EventsQuery,
        response: { 200: EventHistory, ...problems(400, 401, 404, 503) },
      },
    },
    async (request) => {
      const { id } = request.params;
      const fromRevision = request.query.fromRevision === undefined ? 0n : BigInt(request.query.fromRevision);
      const store = ledger.store;
      const stream = subscriptionStream(id);
      const all = await store.readStream(stream); // from the first event: the state diffs fold the whole stream
      if (all.length === 0) throw notFound(id);
      const { entries } = historyOf(id, all);
      const events = all.map((e, i) => ({ ...toEventView(e), ...withProvenance(entries[i]) })).filter((e) => BigInt(e.revision) >= fromRevision);
      return { subscriptionId: id, fromRevision: fromRevision.toString(), events };
    },
  );

  app.post(
    '/subscriptions/:id/activate',
    {
      schema: {
        tags: [TAG],
        operationId: 'activateSubscription',
        summary: 'Request the activation of a pending subscription',
        description:
          'Records the contact and the activation request; the activation process then activates the subscription at Microsoft. ' +
          'Repeating it while an activation is under way changes nothing.',
        security,
        params: SubscriptionParams,
        headers: CommandHeaders,
        body: ActivateBody,
        response: { 202: AcceptedResponse, ...problems(400, 401, 404, 409, 412, 503) },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const context = commandContext(request);
      const contact = request.body.contact;
      const result = await onKnownSubscription(id, () =>
        ledger.execute(id, { type: 'RequestActivation', contact, now: new Date().toISOString(), source: 'operator' }, context),
      );
      return accepted(reply, { subscriptionId: id, command: 'activate', revision: (result.revision ?? 0n).toString() });
    },
  );

  changeRoute(app, publisherChanges, accepted, 'plan', 'changeSubscriptionPlan', 'Change the plan (publisher-initiated, confirmed by Microsoft)', PlanBody, (b) => ({
    kind: 'plan',
    planId: b.planId,
  }));
  changeRoute(app, publisherChanges, accepted, 'quantity', 'changeSubscriptionQuantity', 'Change the number of seats (publisher-initiated, confirmed by Microsoft)', QuantityBody, (b) => ({
    kind: 'quantity',
    quantity: b.quantity,
  }));
  changeRoute(app, publisherChanges, accepted, 'cancel', 'cancelSubscription', 'Cancel the subscription at Microsoft (publisher-initiated)', CancelBody, (b) =>
    b.reason === undefined ? { kind: 'cancel' } : { kind: 'cancel', reason: b.reason },
  );
};

/** One publisher-side change (plan, quantity, cancel): Microsoft is asked, 202 once it accepted. */
function changeRoute<B extends typeof PlanBody | typeof QuantityBody | typeof CancelBody>(
  api: Api,
  publisherChanges: OperatorRoutesOptions['publisherChanges'],
  accepted: Accept,
  path: 'plan' | 'quantity' | 'cancel',
  operationId: string,
  summary: string,
  body: B,
  toChange: (body: Static<B>) => PublisherChange,
): void {
  api.post(
    `/subscriptions/:id/${path}`,
    {
      schema: {
        tags: [TAG],
        operationId,
        summary,
        description:
          `Records the request, asks Microsoft (${path === 'cancel' ? 'DELETE' : 'PATCH'} subscription) and answers 202 once Microsoft accepted it. ` +
          'The change is applied to the subscription only when Microsoft confirms it; until then it is its `pendingChange`, ' +
          'and `lastChange` tells how it ended. One publisher-side change at a time (409 while one is pending).',
        security,
        params: SubscriptionParams,
        headers: CommandHeaders,
        body,
        response: { 202: AcceptedResponse, ...problems(400, 401, 404, 409, 412, 422, 502, 503) },
      },
      // `{ reason? }` may be left out altogether: no body reads as `{}`.
      preValidation: async (request) => {
        if (path === 'cancel' && request.body === undefined) request.body = {} as typeof request.body;
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const context = commandContext(request);
      try {
        const submitted = await onKnownSubscription(id, () =>
          publisherChanges.request(id, toChange(request.body as Static<B>), context),
        );
        return accepted(reply, {
          subscriptionId: id,
          command: path,
          requestId: submitted.requestId,
          ...(submitted.operationId ? { operationId: submitted.operationId } : {}),
          revision: (submitted.revision ?? 0n).toString(),
        });
      } catch (err) {
        if (err instanceof ChangeNotSubmittedError) return sendNotSubmitted(reply, err);
        throw err;
      }
    },
  );
}

function sendNotSubmitted(reply: FastifyReply, err: ChangeNotSubmittedError): FastifyReply {
  const send = (status: number, title: string, headers: Record<string, string> = {}) =>
    reply
      .code(status)
      .headers(headers)
      .type(problemContentType)
      .send(problem(status, title, err.message, { requestId: err.requestId, ...(err.microsoftStatus ? { microsoftStatus: err.microsoftStatus } : {}) }));
  if (err.outcome === 'rejected') {
    if (err.microsoftStatus === 409) return send(409, 'microsoft-conflict');
    if (err.microsoftStatus === 401 || err.microsoftStatus === 403) return send(502, 'marketplace-credentials-refused');
    return send(422, 'refused-by-microsoft');
  }
  if (err.outcome === 'not-sent') return send(503, 'marketplace-unavailable', { 'retry-after': '30' });
  return send(502, 'marketplace-outcome-unknown');
}

// ------------------------------------------------------------------------------------------------
// Views

export function toSubscriptionView(state: KnownSubscription, revision: bigint, events: readonly RecordedEvent[]): SubscriptionView {
  const view: SubscriptionView = {
    subscriptionId: state.subscriptionId,
    revision: revision.toString(),
    status: state.status,
    name: state.name,
    offerId: state.offerId,
    planId: state.planId,
    term: { ...state.term },
    autoRenew: state.autoRenew,
    isFreeTrial: state.isFreeTrial,
    isTest: state.isTest,
    autoActivated: state.autoActivated,
    allowedCustomerOperations: [...state.allowedCustomerOperations],
    purchaser: { ...state.purchaser },
    beneficiary: { ...state.beneficiary },
    activation: { ...state.activation },
    purchasedAt: state.purchasedAt,
    appliedOperations: [...state.appliedOperations],
  };
  if (state.publisherId !== undefined) view.publisherId = state.publisherId;
  if (state.quantity !== undefined) view.quantity = state.quantity;
  if (state.sandboxType !== undefined) view.sandboxType = state.sandboxType;
  if (state.sessionMode !== undefined) view.sessionMode = state.sessionMode;
  if (state.created !== undefined) view.created = state.created;
  if (state.contact !== undefined) view.contact = { ...state.contact };
  if (state.pendingChange !== undefined) view.pendingChange = { ...state.pendingChange };
  const last = lastChangeOf(events);
  if (last !== undefined) view.lastChange = last;
  if (state.activatedAt !== undefined) view.activatedAt = state.activatedAt;
  if (state.suspendedAt !== undefined) view.suspendedAt = state.suspendedAt;
  if (state.lastRenewedAt !== undefined) view.lastRenewedAt = state.lastRenewedAt;
  if (state.unsubscribedAt !== undefined) view.unsubscribedAt = state.unsubscribedAt;
  return view;
}

type LastChange = Static<typeof LastChangeView>;

/** The most recent publisher-side change request and how it ended, folded from the history (`latestChangeRequest`). */
export function lastChangeOf(events: readonly { type: string; data: unknown }[]): LastChange | undefined {
  const history: SubscriptionEvent[] = [];
  for (const recorded of events) {
    const event = decodeSubscriptionEvent(recorded);
    if (event) history.push(event);
  }
  const request = latestChangeRequest(history);
  return request && toLastChangeView(request);
}

/** The API's view of a request: `submitted` (Microsoft accepted it, the outcome is awaited) is still `pending` here. */
function toLastChangeView(request: ChangeRequest): LastChange {
  const view: LastChange = {
    kind: request.kind,
    requestId: request.requestId,
    requestedAt: request.requestedAt,
    outcome: request.outcome === 'submitted' ? 'pending' : request.outcome,
  };
  if (request.kind === 'plan') view.planId = request.planId;
  if (request.kind === 'quantity') view.quantity = request.quantity;
  if (request.kind === 'cancel' && request.reason !== undefined) view.reason = request.reason;
  if (request.operationId !== undefined) view.operationId = request.operationId;
  if (request.settledAt !== undefined) view.settledAt = request.settledAt;
  if (request.failure !== undefined) view.failure = { ...request.failure };
  return view;
}

/** Issue 12: where the event came from and what it changed (src/application/audit-history.ts). */
function withProvenance(entry: HistoryEntry | undefined): Pick<RecordedEventView, 'source' | 'changes'> {
  return entry ? { source: entry.source, changes: entry.changes } : {};
}

function toEventView(e: RecordedEvent): RecordedEventView {
  return {
    eventId: e.id,
    type: e.type,
    revision: e.revision.toString(),
    position: e.position.toString(),
    recordedAt: e.recordedAt,
    data: (e.data ?? {}) as Record<string, unknown>,
    metadata: { ...e.metadata },
  };
}
