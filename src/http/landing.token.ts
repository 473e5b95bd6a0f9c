/**
 * The landing page's `token` query parameter, read from the raw query string and percent-decoded
 * exactly once (never form-decoded: a `+` stays a `+`, docs/marketplace.md §14.1).
 */

const MAX_TOKEN_CHARS = 8192;

export type RawToken =
  | {
      kind: 'ok';
      /** As it stands in the URL (still percent-encoded): what `FulfillmentClient.resolve` takes. */
      raw: string;
      /** Percent-decoded once: what Microsoft expects in `x-ms-marketplace-token`. */
      token: string;
    }
  | { kind: 'missing' }
  | { kind: 'malformed'; reason: string };

/**
 * The `token` query parameter of a raw request URL. Read from the raw URL because a query parser
 * form-decodes it (Fastify's and URLSearchParams' parsers turn `+` into a space, docs/marketplace.md §14.1);
 * `token` is the value percent-decoded once, never form-decoded.
 */
export function tokenFromRawUrl(rawUrl: string | undefined): RawToken {
  const url = rawUrl ?? '';
  const q = url.indexOf('?');
  if (q < 0) return { kind: 'missing' };
  const hash = url.indexOf('#', q);
  const query = url.slice(q + 1, hash < 0 ? undefined : hash);
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const rawName = eq < 0 ? pair : pair.slice(0, eq);
    let name: string;
    try {
      name = decodeURIComponent(rawName);
    } catch {
      continue;
    }
    if (name !== 'token') continue;
    const raw = eq < 0 ? '' : pair.slice(eq + 1);
    if (raw === '') continue;
    if (raw.length > MAX_TOKEN_CHARS) return { kind: 'malformed', reason: `longer than ${MAX_TOKEN_CHARS} characters` };
    let token: string;
    try {
      token = decodeURIComponent(raw).trim();
    } catch {
      return { kind: 'malformed', reason: 'invalid percent-encoding' };
    }
    if (token === '') return { kind: 'missing' };
    // A marketplace token is printable ASCII; anything else cannot even travel in a header.
    if (!/^[\x21-\x7e]+$/.test(token)) return { kind: 'malformed', reason: 'characters a marketplace token never has' };
    return { kind: 'ok', raw, token };
  }
  return { kind: 'missing' };
}
