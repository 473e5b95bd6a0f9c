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

/** Query parameters that are secrets (the landing page's marketplace purchase token). */
const secretParams = ['token', 'sig'];

/** A URL for the logs: secret query values replaced, so a log reader cannot reuse a customer's token. */
export function safeUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = url
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const name = pair.split('=')[0] ?? '';
      return secretParams.includes(decodeURIComponent(name)) ? `${name}=[redacted]` : pair;
    });
  return `${url.slice(0, q)}?${params.join('&')}`;
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
    timestamp: pino.stdTimeFunctions.isoTime,
  };
}

export function createLogger(level: string): Logger {
  return pino(loggerOptions(level));
}
