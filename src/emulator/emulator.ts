/**
 * A local Microsoft commercial marketplace: the SaaS Fulfillment API v2 under `/api`, webhooks to
 * the publisher, an identity provider for the webhook's bearer tokens, and the emulator's own
 * control API under `/emulator`. One HTTP server on 127.0.0.1.
 *
 *   const emulator = await startEmulator({ webhookUrl, publisherTenantId, publisherAppId });
 *   const bought = emulator.marketplace.purchase({ planId: 'standard', quantity: 5 });
 *   // point the Fulfillment client at emulator.apiBaseUrl, the webhook verifier at emulator.openIdConfigurationUrl
 *   await emulator.close();
 *
 * `createEmulator` builds the same thing without listening (for `inject()`).
 */
import Fastify, { LogController } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, RawServerDefault } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { DEFAULT_CATALOGUE, parseCatalogue } from './catalogue.js';
import type { Catalogue } from './catalogue.js';
import { CalendarClock, Timers, systemClock } from './clock.js';
import type { Clock } from './clock.js';
import { controlRoutes, sendProblem } from './control.routes.js';
import { FaultInjector } from './faults.js';
import type { FaultConfig } from './faults.js';
import { API_VERSION, fulfillmentRoutes, sendMicrosoftError } from './fulfillment.routes.js';
import { identityRoutes } from './identity.routes.js';
import { DEFAULT_TIMINGS, EmulatedMarketplace } from './marketplace.js';
import type { MarketplaceTimings, RevertNotifications } from './marketplace.js';
import { TokenSigner } from './signing.js';
import type { CryptoKeyPair, SignerOptions, TokenVersion } from './signing.js';
import { EmulatorState } from './state.js';
import { EmulatedMeter } from './metering.js';
import { meteringControlRoutes } from './metering.routes.js';
import type { IdSource } from './state.js';
import type { RedeliveryPolicy, WebhookDelivery } from './webhook-sender.js';

/** Demo identities used when none are configured (not real tenants or apps). */
export const DEFAULT_PUBLISHER_TENANT_ID = '4a1e6f0c-5b7d-4c2e-9f3a-8d6b2c1e0a57';
export const DEFAULT_PUBLISHER_APP_ID = 'c3b5e7a9-1d2f-4e6b-8a0c-9f7d5b3e1a24';

export type EmulatorOptions = {
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: any free port). */
  port?: number;
  /** The URL callers use, when it differs from `http://<host>:<port>` (e.g. behind a proxy). */
  publicUrl?: string;
  /** Where webhooks go (the publisher's "Connection webhook"); unset = deliveries fail and are retried. */
  webhookUrl?: string;
  /** The publisher's landing page; purchases return `<landingPageUrl>?token=…` (default: the emulator's stand-in). */
  landingPageUrl?: string;
  publisherId?: string;
  /** The publisher's Entra tenant (webhook token `tid`, issuer). */
  publisherTenantId?: string;
  /** The publisher's app (client) ID (webhook token `aud`). */
  publisherAppId?: string;
  /** Webhook token form (default v2). */
  tokenVersion?: TokenVersion;
  /** Issuer overrides, e.g. `https://sts.windows.net/<tenant>/` to test a verifier's production issuer list. */
  issuerV1?: string;
  issuerV2?: string;
  /** The RS256 key pair that signs webhook tokens (default: generated at start). */
  signingKeyPair?: CryptoKeyPair;
  catalogue?: Catalogue;
  /** List subscriptions page size (default 100). */
  pageSize?: number;
  /** Purchase token lifetime (default 24 h). */
  purchaseTokenTtlMs?: number;
  /** Acknowledgement window (default 10 s). */
  ackWindowMs?: number;
  /** Delay before Microsoft processes a publisher PATCH/DELETE (default 2 s). */
  operationDelayMs?: number;
  /** Per-attempt webhook timeout (default 10 s). */
  webhookTimeoutMs?: number;
  redelivery?: Partial<RedeliveryPolicy>;
  /** Revert notifications after a refused change: after PATCH Failure (default), after any refusal, or never. */
  revertNotifications?: RevertNotifications;
  faults?: FaultConfig;
  /** Require `authorization: Bearer …` on Fulfillment calls (default true; any token value is accepted). */
  requireAuth?: boolean;
  /** The base clock (default the system's); Microsoft's calendar runs ahead of it by what `clock/advance` added. */
  now?: Clock;
  /** Randomness for probabilistic faults. */
  random?: () => number;
  ids?: IdSource;
  /** A pino logger (default: silent). */
  logger?: Logger;
};

export type EmulatorApp = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, Logger, TypeBoxTypeProvider>;

export type Emulator = {
  app: EmulatorApp;
  marketplace: EmulatedMarketplace;
  /** The Metering Service: `meter.accepted()` is what Microsoft would bill. */
  meter: EmulatedMeter;
  state: EmulatorState;
  faults: FaultInjector;
  signer: TokenSigner;
  timings: MarketplaceTimings;
  /** Microsoft's calendar: `clock.now()`; `marketplace.advanceClock(ms)` moves it on. */
  clock: CalendarClock;
  /** Base URL of the emulator (set once it listens). */
  readonly url: string;
  /** The Fulfillment API base: `<url>/api` (Microsoft: `https://marketplaceapi.microsoft.com/api`). */
  readonly apiBaseUrl: string;
  readonly issuer: string;
  readonly openIdConfigurationUrl: string;
  readonly jwksUrl: string;
  readonly webhookUrl: string | undefined;
  readonly landingPageUrl: string;
  publisherTenantId: string;
  publisherAppId: string;
  setWebhookUrl(url: string | undefined): void;
  setLandingPageUrl(url: string | undefined): void;
  deliveries(filter?: { subscriptionId?: string; operationId?: string }): WebhookDelivery[];
  close(): Promise<void>;
};

export type RunningEmulator = Emulator;

/** Builds the emulator without listening (for `app.inject()`); it calls itself `baseUrl`. */
export async function createEmulator(options: EmulatorOptions = {}, baseUrl = 'http://127.0.0.1'): Promise<Emulator> {
  return (await buildEmulator(options, baseUrl)).emulator;
}

function timingsOf(options: EmulatorOptions): MarketplaceTimings {
  return {
    ackWindowMs: options.ackWindowMs ?? DEFAULT_TIMINGS.ackWindowMs,
    operationDelayMs: options.operationDelayMs ?? DEFAULT_TIMINGS.operationDelayMs,
    webhookTimeoutMs: options.webhookTimeoutMs ?? DEFAULT_TIMINGS.webhookTimeoutMs,
    redelivery: { ...DEFAULT_TIMINGS.redelivery, ...options.redelivery },
  };
}

/** The signer of the emulator's Entra ID tokens (webhook bearer tokens, the JWKS). */
function createSigner(
  options: EmulatorOptions,
  base: Pick<SignerOptions, 'tenantId' | 'appId' | 'now' | 'baseUrl'>,
): Promise<TokenSigner> {
  const signerOptions: SignerOptions = { ...base, version: options.tokenVersion ?? 'v2' };
  if (options.issuerV1 !== undefined) signerOptions.issuerV1 = options.issuerV1;
  if (options.issuerV2 !== undefined) signerOptions.issuerV2 = options.issuerV2;
  if (options.signingKeyPair !== undefined) signerOptions.keyPair = options.signingKeyPair;
  return TokenSigner.create(signerOptions);
}

/** Unknown routes: in Microsoft's error shape under /api, a problem elsewhere. */
function notFound(req: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (req.url.startsWith('/api/')) {
    return sendMicrosoftError(reply, 404, 'NotFound', `${req.method} ${req.url.split('?')[0]} is not an operation of the Fulfillment API`);
  }
  return sendProblem(reply, { status: 404, code: 'RouteNotFound', detail: `${req.method} ${req.url.split('?')[0]} is not a route of the emulator` });
}

/** The handlers of last resort (unknown routes, errors no route handled), and GET /emulator/usage. */
async function registerBase(app: EmulatorApp, meter: EmulatedMeter): Promise<void> {
  app.setNotFoundHandler(notFound);
  app.setErrorHandler(lastResortError);
  await app.register(meteringControlRoutes(meter));
}

/** Errors no route handled itself. */
function lastResortError(err: FastifyError, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const status = (err as { statusCode?: number }).statusCode ?? 500;
  if (status >= 500) req.log.error({ err }, 'emulator route failed');
  return sendProblem(reply, {
    status,
    code: 'Error',
    detail: status >= 500 ? 'An internal error occurred; see the emulator log.' : (err as Error).message,
  });
}

/** What GET /emulator answers: the configuration, the URLs as they are now, the timings. */
function infoOf(
  emulator: Emulator,
  fixed: {
    publisherId?: string;
    publisherTenantId: string;
    publisherAppId: string;
    requireAuth: boolean;
    pageSize?: number;
    purchaseTokenTtlMs?: number;
    revertNotifications: RevertNotifications;
  },
): Record<string, unknown> {
  const { signer } = emulator;
  return {
    url: emulator.url,
    apiBaseUrl: emulator.apiBaseUrl,
    apiVersion: API_VERSION,
    publisherId: fixed.publisherId,
    publisherTenantId: fixed.publisherTenantId,
    publisherAppId: fixed.publisherAppId,
    webhookUrl: emulator.webhookUrl ?? null,
    landingPageUrl: emulator.landingPageUrl,
    tokenVersion: signer.version,
    issuer: signer.issuer(),
    openIdConfigurationUrl: signer.metadataUrl(),
    jwksUrl: signer.jwksUrl(),
    requireAuth: fixed.requireAuth,
    pageSize: fixed.pageSize,
    purchaseTokenTtlMs: fixed.purchaseTokenTtlMs,
    revertNotifications: fixed.revertNotifications,
    timings: emulator.timings,
  };
}

/** Microsoft's state, with Microsoft's defaults: 100 subscriptions a page, purchase tokens valid 24 h. */
function stateOf(options: EmulatorOptions, catalogue: Catalogue): EmulatorState {
  const stateOptions: ConstructorParameters<typeof EmulatorState>[0] = {
    catalogue,
    publisherId: options.publisherId ?? 'contoso',
    pageSize: options.pageSize ?? 100,
    purchaseTokenTtlMs: options.purchaseTokenTtlMs ?? 24 * 60 * 60 * 1000,
  };
  if (options.ids) stateOptions.ids = options.ids;
  return new EmulatorState(stateOptions);
}

async function buildEmulator(options: EmulatorOptions, baseUrl: string): Promise<{ emulator: Emulator; setUrl: (u: string) => void }> {
  const now = options.now ?? systemClock;
  const log = options.logger ?? pino({ level: 'silent' });
  const catalogue = parseCatalogue(options.catalogue ?? DEFAULT_CATALOGUE);
  const publisherTenantId = options.publisherTenantId ?? DEFAULT_PUBLISHER_TENANT_ID;
  const publisherAppId = options.publisherAppId ?? DEFAULT_PUBLISHER_APP_ID;
  const timings = timingsOf(options);
  let url = (options.publicUrl ?? baseUrl).replace(/\/+$/, '');
  let webhookUrl = options.webhookUrl;
  let landingPageUrl = options.landingPageUrl;

  const calendar = new CalendarClock(now);
  const timers = new Timers();
  const faults = new FaultInjector(options.faults ?? {}, options.random);
  const signer = await createSigner(options, { tenantId: publisherTenantId, appId: publisherAppId, now, baseUrl: () => url });
  const state = stateOf(options, catalogue);
  const marketplace = new EmulatedMarketplace({
    state,
    signer,
    faults,
    timers,
    calendar,
    log,
    timings,
    webhookUrl: () => webhookUrl,
    landingPageUrl: () => landingPageUrl ?? `${url}/emulator/landing`,
    revertNotifications: options.revertNotifications ?? 'failure',
  });

  const app = Fastify({
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { ignoreTrailingSlash: true },
  }).withTypeProvider<TypeBoxTypeProvider>();

  const emulator: Emulator = {
    app,
    marketplace,
    meter: new EmulatedMeter(state, calendar.now),
    state,
    faults,
    signer,
    timings,
    clock: calendar,
    get url() {
      return url;
    },
    get apiBaseUrl() {
      return `${url}/api`;
    },
    get issuer() {
      return signer.issuer();
    },
    get openIdConfigurationUrl() {
      return signer.metadataUrl();
    },
    get jwksUrl() {
      return signer.jwksUrl();
    },
    get webhookUrl() {
      return webhookUrl;
    },
    get landingPageUrl() {
      return landingPageUrl ?? `${url}/emulator/landing`;
    },
    publisherTenantId,
    publisherAppId,
    setWebhookUrl(next) {
      webhookUrl = next;
      log.info({ webhookUrl: next }, 'emulator webhook URL set');
    },
    setLandingPageUrl(next) {
      landingPageUrl = next;
    },
    deliveries: (filter) => marketplace.deliveries(filter),
    async close() {
      timers.close();
      await marketplace.close();
      await app.close();
    },
  };

  const info = (): Record<string, unknown> =>
    infoOf(emulator, {
      publisherId: state.options.publisherId,
      pageSize: state.options.pageSize,
      purchaseTokenTtlMs: state.options.purchaseTokenTtlMs,
      publisherTenantId,
      publisherAppId,
      requireAuth: options.requireAuth ?? true,
      revertNotifications: options.revertNotifications ?? 'failure',
    });

  await registerBase(app, emulator.meter);

  await app.register(fulfillmentRoutes, {
    prefix: '/api',
    marketplace,
    faults,
    timers,
    baseUrl: () => url,
    requireAuth: options.requireAuth ?? true,
    meter: { meter: emulator.meter, now: calendar.now },
  });
  await app.register(controlRoutes, {
    marketplace,
    faults,
    clock: calendar,
    info,
    setWebhookUrl: (next) => emulator.setWebhookUrl(next),
    setLandingPageUrl: (next) => emulator.setLandingPageUrl(next),
  });
  await app.register(identityRoutes, { signer });
  await app.ready();

  const setUrl = (u: string): void => {
    if (options.publicUrl === undefined) url = u.replace(/\/+$/, '');
  };
  return { emulator, setUrl };
}

/** Builds the emulator and listens on `host:port` (default 127.0.0.1, any free port). */
export async function startEmulator(options: EmulatorOptions = {}): Promise<RunningEmulator> {
  const host = options.host ?? '127.0.0.1';
  const { emulator, setUrl } = await buildEmulator(options, 'http://127.0.0.1');
  await emulator.app.listen({ host, port: options.port ?? 0 });
  const address = emulator.app.server.address();
  if (address === null || typeof address === 'string') throw new Error('the emulator is not listening on a TCP port');
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  setUrl(`http://${shownHost}:${address.port}`);
  return emulator;
}
