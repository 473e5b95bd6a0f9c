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

/** pino options for the service: JSON lines, secrets redacted, pretty output only on a TTY with pino-pretty installed. */
export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    redact: { paths: redactPaths, censor: '[redacted]' },
    base: { service: 'fulfillment-ledger' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
}

export function createLogger(level: string): Logger {
  return pino(loggerOptions(level));
}
