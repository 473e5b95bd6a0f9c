/**
 * JSON from outside, parsed once with the prototype keys dropped: `__proto__`, `constructor` and `prototype`
 * (also with surrounding whitespace, which key trimming would otherwise turn into the real thing) never become
 * keys of a parsed object, at any depth. `JSON.parse` alone makes `__proto__` an own key, harmless until some
 * code copies it with `out[key] = value` or `Object.assign`, which then sets the copy's prototype; dropping the
 * keys here means no later copy can. Used for every body and token read from outside: webhooks, Microsoft's
 * answers, the emulator's control API, read-model cursors.
 */
const PROTOTYPE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Whether a key (trimmed) names an object's prototype machinery. */
export function isPrototypeKey(key: string): boolean {
  return PROTOTYPE_KEYS.has(key.trim());
}

/**
 * Text that may hold a prototype key: its name (`prototype` contains `proto`), or a `\u` escape, which could spell
 * one (`"\u005f_proto__"`). Text without any of these cannot, and is parsed by plain JSON.parse, several times
 * faster than with a reviver (every webhook body goes through here).
 */
const MAY_NAME_A_PROTOTYPE_KEY = /proto|constructor|\\u/;

/** JSON.parse without prototype keys; throws SyntaxError as JSON.parse does. */
export function parseJson(text: string): unknown {
  if (!MAY_NAME_A_PROTOTYPE_KEY.test(text)) return JSON.parse(text);
  return JSON.parse(text, (key, value: unknown) => (isPrototypeKey(key) ? undefined : value));
}
