/** List subscriptions: every page via @nextLink or continuationToken; an empty body means none. */
import t from 'tap';
import { MarketplaceUnexpectedResponseError } from '../../src/marketplace/errors.js';
import { FulfillmentClient } from '../../src/marketplace/fulfillment-client.js';
import { StaticTokenProvider } from '../../src/marketplace/token-provider.js';
import { validateRequest, validateResponse } from '../support/openapi.js';
import { captureLogger, startScriptedServer } from '../support/scripted-server.js';
import type { Recorded, Reply } from '../support/scripted-server.js';
import { CORRELATION_ID, subscription } from './fixtures.js';

function uuid(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

function page(from: number, count: number, nextLink?: string): Record<string, unknown> {
  const body: Record<string, unknown> = {
    subscriptions: Array.from({ length: count }, (_, i) => subscription({ id: uuid(from + i), name: `sub ${from + i}` })),
  };
  if (nextLink !== undefined) body['@nextLink'] = nextLink;
  return body;
}

async function clientFor(route: (req: Recorded, base: string) => Reply) {
  const server = await startScriptedServer();
  server.script((req) => route(req, server.apiUrl));
  const client = new FulfillmentClient({
    baseUrl: server.apiUrl,
    tokenProvider: new StaticTokenProvider('page-token'),
    logger: captureLogger().logger,
    retry: { maxAttempts: 1 },
  });
  return { server, client };
}

t.test('follows @nextLink through every page', async (t) => {
  const { server, client } = await clientFor((req, base) => {
    const token = new URL(req.url, 'http://x').searchParams.get('continuationToken');
    if (!token) return { status: 200, body: page(1, 100, `${base}/saas/subscriptions/?continuationToken=p2&api-version=2018-08-31`) };
    if (token === 'p2') return { status: 200, body: page(101, 100, `${base}/saas/subscriptions/?continuationToken=p3&api-version=2018-08-31`) };
    return { status: 200, body: page(201, 17) };
  });
  t.teardown(() => server.close());

  const all = await client.listSubscriptions({ correlationId: CORRELATION_ID });
  t.equal(all.length, 217);
  t.equal(new Set(all.map((s) => s.id)).size, 217, 'no duplicates');
  t.equal(server.requests.length, 3);
  for (const req of server.requests) {
    t.same(validateRequest(req).errors, [], `${req.url} matches the spec`);
    t.equal(req.headers['x-ms-correlationid'], CORRELATION_ID, 'one correlation id for all pages');
    t.equal(req.headers.authorization, 'Bearer page-token');
  }
  t.same(
    server.requests.map((r) => new URL(r.url, 'http://x').searchParams.get('continuationToken')),
    [null, 'p2', 'p3'],
  );
  t.same(validateResponse('FulfillmentOperations_ListSubscriptions', 200, page(1, 2, `${server.apiUrl}/saas/subscriptions/?continuationToken=x`)).errors, []);
});

t.test('page by page', async (t) => {
  const { server, client } = await clientFor((req, base) =>
    req.url.includes('continuationToken')
      ? { status: 200, body: page(3, 1, '') }
      : { status: 200, body: page(1, 2, `${base}/saas/subscriptions/?continuationToken=n&api-version=2018-08-31`) },
  );
  t.teardown(() => server.close());
  const sizes: number[] = [];
  const links: (string | undefined)[] = [];
  for await (const p of client.listSubscriptionPages()) {
    sizes.push(p.subscriptions.length);
    links.push(p.nextLink);
  }
  t.same(sizes, [2, 1], 'an empty @nextLink ends the listing');
  t.match(links, [/continuationToken=n/, undefined]);
});

t.test('one page at a time, from a recorded nextLink (as a resumed reconciliation does), even one of another origin', async (t) => {
  const { server, client } = await clientFor((req, base) => {
    const token = new URL(req.url, 'http://x').searchParams.get('continuationToken');
    if (!token) return { status: 200, body: page(1, 2, `${base}/saas/subscriptions/?continuationToken=p2&api-version=2018-08-31`) };
    return { status: 200, body: page(3, 1) };
  });
  t.teardown(() => server.close());
  const first = await client.listSubscriptionsPage(undefined, { correlationId: CORRELATION_ID });
  t.equal(first.subscriptions.length, 2);
  t.match(first.nextLink, /continuationToken=p2/);
  const recorded = first.nextLink?.replace(new URL(server.apiUrl).origin, 'https://old-host.example') ?? '';
  const next = await client.listSubscriptionsPage(recorded, { correlationId: CORRELATION_ID });
  t.same(next.subscriptions.map((s) => s.id), [uuid(3)]);
  t.equal(next.nextLink, undefined, 'the last page');
  t.equal(server.requests.length, 2, 'the second request went to the configured API, not the recorded origin');
  t.same(server.requests.map((r) => new URL(r.url, 'http://x').searchParams.get('continuationToken')), [null, 'p2']);
});

t.test('an empty body means no subscriptions', async (t) => {
  const { server, client } = await clientFor(() => ({ status: 200 }));
  t.teardown(() => server.close());
  t.same(await client.listSubscriptions(), []);
  server.script([{ status: 200, body: {} }]);
  t.same(await client.listSubscriptions(), [], '{} too');
  server.script([{ status: 200, body: { subscriptions: [] } }]);
  t.same(await client.listSubscriptions(), [], 'and an empty list');
});

t.test('a continuationToken in the body is followed too', async (t) => {
  const { server, client } = await clientFor((req) =>
    req.url.includes('continuationToken=abc%2B%2F%3D')
      ? { status: 200, body: page(2, 1) }
      : { status: 200, body: { ...page(1, 1), continuationToken: 'abc+/=' } },
  );
  t.teardown(() => server.close());
  const all = await client.listSubscriptions();
  t.equal(all.length, 2);
  t.same(validateRequest(server.requests[1] as Recorded).errors, []);
});

t.test('a @nextLink on another origin is rebuilt on the base URL (the token goes nowhere else)', async (t) => {
  const { server, client } = await clientFor((req) =>
    req.url.includes('continuationToken')
      ? { status: 200, body: page(2, 1) }
      : { status: 200, body: page(1, 1, 'https://marketplaceapi.microsoft.com/api/saas/subscriptions/?continuationToken=zz&api-version=2018-08-31') },
  );
  t.teardown(() => server.close());
  const all = await client.listSubscriptions();
  t.equal(all.length, 2);
  t.equal(server.requests[1]?.url, '/api/saas/subscriptions/?continuationToken=zz&api-version=2018-08-31');
});

t.test("the docs' 'https:// https://…' typo still pages", async (t) => {
  const { server, client } = await clientFor((req, base) =>
    req.url.includes('continuationToken')
      ? { status: 200, body: page(2, 1) }
      : { status: 200, body: page(1, 1, `https:// ${base}/saas/subscriptions/?continuationToken=typo&api-version=2018-08-31`) },
  );
  t.teardown(() => server.close());
  t.equal((await client.listSubscriptions()).length, 2);
  t.match(server.requests[1]?.url, /continuationToken=typo/);
});

t.test('a @nextLink without api-version gets it', async (t) => {
  const { server, client } = await clientFor((req, base) =>
    req.url.includes('continuationToken')
      ? { status: 200, body: page(2, 1) }
      : { status: 200, body: page(1, 1, `${base}/saas/subscriptions/?continuationToken=q`) },
  );
  t.teardown(() => server.close());
  await client.listSubscriptions();
  t.same(validateRequest(server.requests[1] as Recorded).errors, []);
});

t.test('a link loop is an error, not an endless listing', async (t) => {
  const { server, client } = await clientFor((_req, base) => ({
    status: 200,
    body: page(1, 1, `${base}/saas/subscriptions/?continuationToken=same&api-version=2018-08-31`),
  }));
  t.teardown(() => server.close());
  await t.rejects(client.listSubscriptions(), MarketplaceUnexpectedResponseError);
  t.equal(server.requests.length, 2);
});

t.test('a failing page fails the listing with the page error', async (t) => {
  const { server, client } = await clientFor((req, base) =>
    req.url.includes('continuationToken')
      ? { status: 403, body: 'forbidden' }
      : { status: 200, body: page(1, 1, `${base}/saas/subscriptions/?continuationToken=x&api-version=2018-08-31`) },
  );
  t.teardown(() => server.close());
  await t.rejects(client.listSubscriptions(), { name: 'MarketplaceForbiddenError' });
});
