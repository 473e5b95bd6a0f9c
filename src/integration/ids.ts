import { createHash } from 'node:crypto';

/**
 * A UUID-shaped id derived from its parts (SHA-256, version nibble 5, RFC 4122 variant): the same
 * parts give the same id, so a retried append or request is recognised as a repeat.
 */
export function deterministicId(...parts: readonly string[]): string {
  const h = createHash('sha256').update(parts.join('\u001f'), 'utf8').digest('hex');
  const variant = ((parseInt(h.slice(16, 17), 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
