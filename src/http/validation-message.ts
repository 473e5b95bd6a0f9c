/**
 * One readable line for a request that failed its schema. Ajv reports a union of literals (`Type.Union` of
 * `Type.Literal`s: `sort`, `order`, booleans as strings) as one "must be equal to constant" per literal plus
 * "must match a schema in anyOf"; this says instead, once per field, which values are allowed.
 *
 *   querystring/sort must be one of: createdAt, activatedAt, … (got "size")
 */
export type SchemaError = { keyword: string; instancePath: string; message?: string | undefined; params?: Record<string, unknown> | undefined };

function allowedOf(error: SchemaError): unknown[] {
  if (error.keyword === 'const') return [error.params?.allowedValue];
  if (error.keyword === 'enum' && Array.isArray(error.params?.allowedValues)) return error.params.allowedValues;
  return [];
}

/** `context` is Fastify's validation context (`querystring`, `body`, `params`, `headers`); `value` reads the field given. */
export function validationMessage(context: string | undefined, errors: readonly SchemaError[], value: (path: string) => unknown): string {
  const byPath = new Map<string, SchemaError[]>();
  for (const e of errors) byPath.set(e.instancePath, [...(byPath.get(e.instancePath) ?? []), e]);
  const lines: string[] = [];
  for (const [path, list] of byPath) {
    const where = `${context ?? ''}${path}`;
    const allowed = [...new Set(list.flatMap(allowedOf))];
    const onlyChoices = list.every((e) => e.keyword === 'const' || e.keyword === 'enum' || e.keyword === 'anyOf');
    if (allowed.length > 0 && onlyChoices) {
      const given = value(path);
      lines.push(`${where} must be one of: ${allowed.map(String).join(', ')}${given === undefined ? '' : ` (got ${JSON.stringify(given)})`}`);
    } else {
      const messages = [...new Set(list.filter((e) => e.keyword !== 'anyOf' || list.length === 1).map((e) => e.message ?? 'is invalid'))];
      lines.push(`${where} ${messages.join(', ')}`);
    }
  }
  return lines.join('; ');
}

/** The value at a JSON pointer (`/sort`, `/items/0/id`) in `data`, if any. */
export function atPointer(data: unknown, pointer: string): unknown {
  let here: unknown = data;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (here === null || typeof here !== 'object') return undefined;
    here = (here as Record<string, unknown>)[key];
  }
  return here;
}
