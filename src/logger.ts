import { pino } from 'pino';
import type { Logger, LoggerOptions } from 'pino';

export type { Logger };

/** Header and field paths never written to logs. */
export const redactPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-ms-marketplace-token"]',
  'headers.authorization',
  'headers.cookie',
  'res.headers["set-cookie"]',
  '*.clientSecret',
  '*.accessToken',
];

/**
 * Query parameters that carry secrets (the landing page's marketplace purchase token, signed-link
 * signatures, and the usual names of bearer tokens, OAuth codes, client secrets, passwords and API keys
 * that a caller may put in a URL by mistake); matched without regard to case.
 */
const secretParams = new Set(['token', 'sig', 'access_token', 'id_token', 'refresh_token', 'code', 'client_secret', 'password', 'secret', 'api_key', 'apikey', 'key']);

/** A URL for the logs: secret query values replaced, so a log reader cannot reuse a customer's token. */
export function safeUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = url
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const name = pair.split('=')[0] ?? '';
      return secretParams.has(paramName(name)) ? `${name}=[redacted]` : pair;
    });
  return `${url.slice(0, q)}?${params.join('&')}`;
}

function paramName(raw: string): string {
  try {
    return decodeURIComponent(raw.replaceAll('+', ' ')).toLowerCase();
  } catch {
    return raw.toLowerCase(); // a malformed escape: judge the name as written
  }
}

type LoggedRequest = { method?: string; url?: string; host?: string; ip?: string; socket?: { remotePort?: number } };

/** pino options for the service: JSON lines, secrets redacted, pretty output only on a TTY with pino-pretty installed. */
export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    redact: { paths: redactPaths, censor: '[redacted]' },
    serializers: {
      req: (req: LoggedRequest) => ({
        method: req.method,
        url: safeUrl(req.url ?? ''),
        host: req.host,
        remoteAddress: req.ip,
        remotePort: req.socket?.remotePort,
      }),
    },
    base: { service: 'fulfillment-ledger' },
    // One `component` on every line (issue 14): loggers name theirs with a child binding; the rest are the service's own.
    mixin: (mergeObject, _level, logger) => ('component' in mergeObject || logger.bindings().component !== undefined ? {} : { component: 'service' }),
    timestamp: pino.stdTimeFunctions.isoTime,
  };
}

export function createLogger(level: string): Logger {
  return pino(loggerOptions(level));
}
