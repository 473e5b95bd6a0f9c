/**
 * Input hardening (issue 10's defects that a single function decides), each checked where it is decided:
 * - a payload's `__proto__` / `constructor` / `prototype` keys never become an object's prototype or fields
 *   (the tolerant key trimming once assigned `out["__proto__"]`, which set the prototype);
 * - CSV cells that a spreadsheet would run as a formula after leading whitespace (spaces, tabs, a
 *   non-breaking space) or in full-width forms (＝ ＋ － ＠) are neutralised like the plain ones;
 * - every secret-bearing query parameter is redacted from logged URLs, not only `token` and `sig`.
 */
import t from 'tap';
import { parseWebhookPayload, trimKeys } from '../../src/marketplace/schemas.js';
import { csvField } from '../../src/projections/csv.js';
import { safeUrl } from '../../src/logger.js';
import { parseJson } from '../../src/json.js';

const SUB = '3c1f6a2e-9b7d-4e51-8a0c-2d4f6b8e1a37';
const OP = '5e0f6a2e-9b7d-4e51-8a0c-2d4f6b8e1a38';

t.test('prototype keys in a payload are dropped, at every depth, padded or not', async (t) => {
  for (const key of ['__proto__', ' __proto__ ', 'constructor', 'prototype']) {
    const body = `{"id":"${OP}","subscriptionId":"${SUB}","action":"ChangePlan","${key}":{"planId":"evil","quantity":999},"nested":{"${key}":{"x":1}}}`;
    const out = trimKeys(JSON.parse(body));
    t.equal(Object.getPrototypeOf(out), Object.prototype, `${JSON.stringify(key)}: the prototype is untouched`);
    t.notOk(Object.hasOwn(out as object, key.trim()), `${JSON.stringify(key)}: no such own key`);
    t.equal((out as { planId?: unknown }).planId, undefined, `${JSON.stringify(key)}: nothing inherited`);
    const nested = (out as { nested?: object }).nested;
    t.equal(nested && Object.getPrototypeOf(nested), Object.prototype, `${JSON.stringify(key)}: nested prototype untouched`);
    const payload = parseWebhookPayload(JSON.parse(body));
    t.equal(payload.planId, undefined, `${JSON.stringify(key)}: the webhook payload has no plan it was not given`);
    t.equal(payload.quantity, undefined, `${JSON.stringify(key)}: nor seats`);
  }
});

t.test('formula cells are neutralised after leading whitespace and in full-width forms', async (t) => {
  const cases = ['=1+1', '  =1+1', '\t=1+1', '\u00a0=HYPERLINK("x")', ' \u00a0 +1', '\u3000-1', '\uff1d1+1', '\uff0b1', '\uff0d1', '\uff20SUM(A1)', ' \uff1d1'];
  for (const text of cases) t.match(csvField(text), /^"?'/, `${JSON.stringify(text)} starts with a quote mark`);
  for (const text of ['plain', 'a = b', '1-2', 'x@y.example', '']) t.notMatch(csvField(text), /^"?'/, `${JSON.stringify(text)} is left as it is`);
});

t.test('every secret-bearing query parameter is redacted from logged URLs', async (t) => {
  for (const name of ['token', 'sig', 'access_token', 'id_token', 'refresh_token', 'code', 'client_secret', 'password', 'secret', 'api_key', 'apikey', 'key', 'Access_Token', 'ACCESS%5FTOKEN']) {
    t.equal(safeUrl(`/landing?a=1&${name}=s3cr3t&b=2`), `/landing?a=1&${name}=[redacted]&b=2`, name);
  }
  t.equal(safeUrl('/landing?planId=standard&state=xyz'), '/landing?planId=standard&state=xyz', 'the rest is kept');
});

t.test('parseJson drops prototype keys at every depth, padded or not, so no later copy can set a prototype', async (t) => {
  const text = '{"a":1,"__proto__":{"polluted":true}," constructor ":{"prototype":{"x":1}},"nested":[{"prototype":2,"b":{"__proto__ ":{"y":1},"c":3}}]}';
  const parsed = parseJson(text);
  t.same(parsed, { a: 1, nested: [{ b: { c: 3 } }] }, 'only the data is left');
  const copy: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) copy[k.trim()] = v;
  t.equal(Object.getPrototypeOf(copy), Object.prototype, "a key-by-key copy keeps Object's prototype");
  t.equal((copy as { polluted?: unknown }).polluted, undefined);
  t.same(JSON.parse(text)['__proto__'], { polluted: true }, 'JSON.parse alone keeps __proto__ as an own key (what a copy would turn into a prototype)');
  t.throws(() => parseJson('{"a":'), SyntaxError, 'malformed JSON still throws SyntaxError');
  t.same(parseJson('[1,"__proto__",{"k":"constructor"}]'), [1, '__proto__', { k: 'constructor' }], 'prototype words as VALUES are kept');
  const escaped = String.raw`{"a":1,"\u005f_proto__":{"polluted":true},"b":{"constr\u0075ctor":1,"c":"\u00e9"}}`;
  t.same(parseJson(escaped), { a: 1, b: { c: 'é' } }, 'prototype keys spelled with \\u escapes are dropped too');
  t.same(parseJson('{"id":"x","n":[1,{"k":null}]}'), { id: 'x', n: [1, { k: null }] }, 'text without any prototype word parses as JSON.parse does');
});
