import pino, { type Logger } from 'pino';
import type { LogLevel } from './config.ts';

/** Every path that may hold a secret; pino replaces the value before it is written anywhere. */
export const REDACTED_PATHS = [
  'apikey',
  'token',
  'password',
  'secret',
  'webhookSecret',
  'sessionKey',
  '*.apikey',
  '*.token',
  '*.password',
  '*.secret',
  '*.webhookSecret',
  'req.headers.apikey',
  'req.headers.authorization',
  'headers.apikey',
  'proxy.password',
  '*.proxy.password',
];

export function createLogger(level: LogLevel, pretty = process.stdout.isTTY === true): Logger {
  return pino({
    level,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss' } } }
      : {}),
  });
}

export type { Logger };
