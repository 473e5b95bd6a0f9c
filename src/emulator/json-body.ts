import type { FastifyInstance } from 'fastify';
import { parseJson } from '../json.js';
import { EmulatorError } from './errors.js';

/**
 * Replaces Fastify's JSON parser in one plugin scope with one that reads an empty body as "no
 * body" (clients often send `content-type: application/json` on every call, body or not) and turns
 * malformed JSON into a 400 `EmulatorError`.
 */
export function acceptEmptyJson(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    try {
      done(null, parseJson(text));
    } catch {
      done(new EmulatorError('bad-request', 'InvalidJson', 'the request body is not valid JSON'), undefined);
    }
  });
}
