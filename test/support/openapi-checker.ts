/**
 * Checks HTTP traffic against one of Microsoft's OpenAPI files (test/fixtures/microsoft/, copied unmodified from
 * microsoft/commercial-marketplace-openapi): `openApiChecker(specPath, specId, localPath)`. openapi.ts is the
 * Fulfillment API's (saasapi.v2.json), metering-openapi.ts the Metering API's (meteringapi.v1.json).
 *
 * - `operationFor(method, url)`: which spec operation a request is (path template + method), or undefined.
 * - `validateRequest(req)`: path/method exist, required query and header parameters are present and valid,
 *   the body matches the request schema.
 * - `validateRequestBody(operationId, body)` / `validateResponse(operationId, status, body, headers?)`.
 *
 * Schemas are validated with Ajv 8 (installed as a fastify dependency), `$ref`s resolve to
 * `#/components/schemas/...` inside the spec document. The OpenAPI formats used by the files
 * (uuid, email, uri, date-time, int32, int64, double) are defined here.
 */
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';

type JsonSchema = Record<string, unknown>;

type Parameter = {
  in: 'query' | 'header' | 'path' | 'cookie';
  name: string;
  required?: boolean;
  schema?: JsonSchema;
};

type ResponseObject = {
  description?: string;
  content?: Record<string, { schema?: JsonSchema }>;
  headers?: Record<string, { schema?: JsonSchema }>;
};

type OperationObject = {
  operationId: string;
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: JsonSchema }> };
  responses: Record<string, ResponseObject>;
};

type Spec = {
  servers?: { url: string }[];
  paths: Record<string, Record<string, OperationObject>>;
  components: { schemas: Record<string, JsonSchema> };
};

export type SpecOperation = {
  operationId: string;
  method: string;
  pathTemplate: string;
  /** Path parameters taken from the concrete path (when matched through `operationFor`). */
  pathParams: Record<string, string>;
  operation: OperationObject;
};

export type ValidationResult = { valid: boolean; errors: string[] };

export type RecordedRequest = {
  method: string;
  /** Path plus query, as received by a server (`/api/saas/subscriptions/x?api-version=...`) or a full URL. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body, or undefined when there was none. */
  body?: unknown;
  /** Raw body text, when available: lets the check tell "no body" from "empty body". */
  rawBody?: string;
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A checker for the spec at `specPath`. `localPath` turns a request's pathname into the spec's path (e.g. drops the
 * server's base path `/api`).
 */
export function openApiChecker(specPath: string, specId: string, localPath: (pathname: string) => string) {
  const spec: Spec = JSON.parse(readFileSync(specPath, 'utf8')) as Spec;
  const SPEC_ID = specId;

  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: true });
  ajv.addFormat('uuid', UUID);
  ajv.addFormat('email', /^[^\s@]+@[^\s@]+$/);
  ajv.addFormat('uri', (s: string) => URL.canParse(s));
  ajv.addFormat('date-time', (s: string) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$/i.test(s) && !Number.isNaN(Date.parse(s)));
  ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isSafeInteger(n) });
  ajv.addFormat('double', { type: 'number', validate: (n: number) => Number.isFinite(n) });
  ajv.addSchema(spec as unknown as JsonSchema, SPEC_ID);

  const validators = new Map<string, ValidateFunction>();

  /** Compiles a schema from the spec; `$ref`s resolve inside the spec document. */
  function compile(schema: JsonSchema): ValidateFunction {
    const key = JSON.stringify(schema);
    let v = validators.get(key);
    if (!v) {
      const ref = schema.$ref;
      if (typeof ref === 'string' && ref.startsWith('#/') && Object.keys(schema).length === 1) {
        const found = ajv.getSchema(`${SPEC_ID}${ref}`);
        if (!found) throw new Error(`cannot resolve ${ref} in ${SPEC_ID}`);
        v = found;
      } else {
        v = ajv.compile({ ...rewriteRefs(schema) });
      }
      validators.set(key, v);
    }
    return v;
  }

  /** Inline (non-$ref) schemas get their `#/...` refs pointed at the spec document. */
  function rewriteRefs(value: unknown): JsonSchema {
    const walk = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(walk);
      if (v === null || typeof v !== 'object') return v;
      const out: Record<string, unknown> = {};
      for (const [k, inner] of Object.entries(v as Record<string, unknown>)) {
        out[k] = k === '$ref' && typeof inner === 'string' && inner.startsWith('#/') ? `${SPEC_ID}${inner}` : walk(inner);
      }
      return out;
    };
    return walk(value) as JsonSchema;
  }

  function formatErrors(prefix: string, errors: ErrorObject[] | null | undefined): string[] {
    return (errors ?? []).map((e) => `${prefix}${e.instancePath || ''} ${e.message ?? 'is invalid'}`.trim());
  }

  /** The base path of the spec's server URL (`/api`). */
  const SPEC_BASE_PATH = new URL(spec.servers?.[0]?.url ?? 'https://localhost/api').pathname.replace(/\/$/, '');

  /** All operations of the spec, by operationId. */
  function operations(): SpecOperation[] {
    const out: SpecOperation[] = [];
    for (const [pathTemplate, methods] of Object.entries(spec.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        out.push({ operationId: operation.operationId, method: method.toUpperCase(), pathTemplate, pathParams: {}, operation });
      }
    }
    return out;
  }

  function operationById(operationId: string): SpecOperation {
    const op = operations().find((o) => o.operationId === operationId);
    if (!op) throw new Error(`unknown operationId ${operationId}`);
    return op;
  }

  function templateRegExp(template: string): { re: RegExp; names: string[] } {
    const names: string[] = [];
    const source = template
      .split(/(\{[^}]+\})/)
      .map((part) => {
        const m = /^\{([^}]+)\}$/.exec(part);
        if (m?.[1]) {
          names.push(m[1]);
          return '([^/]+)';
        }
        return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      })
      .join('');
    return { re: new RegExp(`^${source}$`), names };
  }

  /**
   * The spec operation for a method and a path (or a full URL). The path may carry the server's base
   * path (`/api`) or any prefix before `/saas/`; the query string is ignored. Trailing slashes must match
   * the spec exactly (the list path is `/saas/subscriptions/`).
   */
  function operationFor(method: string, url: string): SpecOperation | undefined {
    const path = localPath(new URL(url, 'http://placeholder').pathname);
    for (const op of operations()) {
      if (op.method !== method.toUpperCase()) continue;
      const { re, names } = templateRegExp(op.pathTemplate);
      const m = re.exec(path);
      if (!m) continue;
      const pathParams: Record<string, string> = {};
      names.forEach((name, i) => {
        pathParams[name] = decodeURIComponent(m[i + 1] ?? '');
      });
      return { ...op, pathParams };
    }
    return undefined;
  }

  function headerValue(headers: RecordedRequest['headers'], name: string): string | undefined {
    const wanted = name.toLowerCase();
    for (const [k, v] of Object.entries(headers)) {
      if (k.toLowerCase() === wanted) return Array.isArray(v) ? v[0] : v;
    }
    return undefined;
  }

  function checkParameter(p: Parameter, value: string | undefined, errors: string[]): void {
    if (value === undefined) {
      if (p.required) errors.push(`missing required ${p.in} parameter ${p.name}`);
      return;
    }
    if (!p.schema) return;
    const validate = compile(p.schema);
    if (!validate(value)) errors.push(...formatErrors(`${p.in} parameter ${p.name}: ${JSON.stringify(value)}`, validate.errors));
  }

  /** Validates a JSON request body against the operation's request schema. */
  function validateRequestBody(operationId: string, body: unknown): ValidationResult {
    const { operation } = operationById(operationId);
    const errors: string[] = [];
    const rb = operation.requestBody;
    if (!rb) {
      if (body !== undefined) errors.push(`${operationId} takes no request body`);
      return { valid: errors.length === 0, errors };
    }
    if (body === undefined) {
      if (rb.required) errors.push(`${operationId} requires a request body`);
      return { valid: errors.length === 0, errors };
    }
    const schema = rb.content?.['application/json']?.schema;
    if (schema) {
      const validate = compile(schema);
      if (!validate(body)) errors.push(...formatErrors('body', validate.errors));
    }
    return { valid: errors.length === 0, errors };
  }

  /**
   * Validates a whole recorded request: method + path exist in the spec, required query/header/path
   * parameters are present and match their schemas, a JSON body carries `content-type: application/json`
   * and matches the request schema.
   */
  function validateRequest(req: RecordedRequest): ValidationResult & { operationId?: string } {
    const op = operationFor(req.method, req.url);
    if (!op) return { valid: false, errors: [`${req.method} ${req.url} is not an operation of the spec`] };
    const errors: string[] = [];
    const query = new URL(req.url, 'http://placeholder').searchParams;
    const known = new Set<string>();
    for (const p of op.operation.parameters ?? []) {
      if (p.in === 'query') {
        known.add(p.name);
        checkParameter(p, query.get(p.name) ?? undefined, errors);
      } else if (p.in === 'header') {
        checkParameter(p, headerValue(req.headers, p.name), errors);
      } else if (p.in === 'path') {
        checkParameter(p, op.pathParams[p.name], errors);
      }
    }
    for (const name of query.keys()) {
      if (!known.has(name)) errors.push(`query parameter ${name} is not declared for ${op.operationId}`);
    }
    const hasBody = req.rawBody !== undefined ? req.rawBody.length > 0 : req.body !== undefined;
    if (hasBody) {
      const contentType = headerValue(req.headers, 'content-type') ?? '';
      if (!contentType.toLowerCase().startsWith('application/json')) {
        errors.push(`request body sent with content-type ${JSON.stringify(contentType)}, expected application/json`);
      }
    }
    errors.push(...validateRequestBody(op.operationId, hasBody ? req.body : undefined).errors);
    return { valid: errors.length === 0, errors, operationId: op.operationId };
  }

  /**
   * Validates a response against the spec: the status is declared for the operation; when the spec
   * gives a JSON schema for it, the body (parsed JSON) matches it; declared response headers are
   * present (pass `headers` to check them). A 2xx that the spec declares without content should have no body.
   */
  function validateResponse(
    operationId: string,
    status: number,
    body: unknown,
    headers?: Record<string, string | string[] | undefined>,
  ): ValidationResult {
    const { operation } = operationById(operationId);
    const errors: string[] = [];
    const response = operation.responses[String(status)] ?? operation.responses.default;
    if (!response) {
      return { valid: false, errors: [`status ${status} is not declared for ${operationId}`] };
    }
    const schema = response.content?.['application/json']?.schema;
    if (schema) {
      // An empty body is allowed where Microsoft documents it (list subscriptions, list operations).
      if (body !== undefined && body !== '') {
        const validate = compile(schema);
        if (!validate(body)) errors.push(...formatErrors('body', validate.errors));
      }
    } else if (status < 300 && body !== undefined && body !== '') {
      errors.push(`${operationId} ${status} has no body in the spec, got ${JSON.stringify(body).slice(0, 100)}`);
    }
    if (headers) {
      for (const [name, h] of Object.entries(response.headers ?? {})) {
        const value = headerValue(headers, name);
        if (value === undefined) {
          errors.push(`missing response header ${name}`);
          continue;
        }
        if (h.schema) {
          const validate = compile(h.schema);
          if (!validate(value)) errors.push(...formatErrors(`header ${name}`, validate.errors));
        }
      }
    }
    return { valid: errors.length === 0, errors };
  }

  /** Validates a value against a named component schema (`Subscription`, `SaaSOperation`, ...). */
  function validateComponent(name: string, value: unknown): ValidationResult {
    if (!spec.components.schemas[name]) throw new Error(`unknown component schema ${name}`);
    const validate = compile({ $ref: `#/components/schemas/${name}` });
    const ok = validate(value);
    return { valid: ok, errors: ok ? [] : formatErrors(name, validate.errors) };
  }

  return { spec, SPEC_BASE_PATH, operations, operationById, operationFor, validateRequestBody, validateRequest, validateResponse, validateComponent };
}
