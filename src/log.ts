import { pino, type Logger, type Level } from 'pino';
import type pretty from 'pino-pretty';
import { lazy } from './util/lazy.js';

// Only terminals get pretty lines; JSON output never loads it.
const prettyStream = lazy<typeof pretty>('pino-pretty');

export type { Logger };

export interface LogOptions {
  level?: Level | 'silent';
  /** JSON lines even on a terminal. */
  json?: boolean;
  /** Where lines go; stderr by default so stdout stays for results. */
  stream?: NodeJS.WritableStream;
}

/**
 * Human-readable lines on a terminal, JSON lines otherwise (or with --json-logs).
 * Credentials never reach a logger: the registry client redacts them before
 * logging, and `redact` catches the usual header names as a second guard.
 */
export function createLogger(opts: LogOptions = {}): Logger {
  const stream = opts.stream ?? process.stderr;
  const isTTY = Boolean((stream as NodeJS.WriteStream).isTTY);
  const base = {
    level: opts.level ?? 'info',
    base: undefined,
    redact: { paths: ['authorization', '*.authorization', 'password', '*.password', 'auth', '*.auth', 'token', '*.token'], censor: '[redacted]' },
  };
  if (!opts.json && isTTY) {
    // hideObject: a line says what it means; the fields stay in JSON logs, so a
    // report (pushed: uploaded, skipped, ...) is not dumped a second time under it.
    return pino(
      base,
      prettyStream()({
        destination: stream,
        sync: true,
        ignore: 'pid,hostname',
        translateTime: 'HH:MM:ss',
        hideObject: true,
        messageFormat: '{if plugin}[{plugin}] {end}{msg}',
      }),
    );
  }
  const fd = (stream as { fd?: unknown }).fd;
  return pino(base, typeof fd === 'number' ? pino.destination({ dest: fd, sync: true }) : (stream as NodeJS.WritableStream & { write(s: string): boolean }));
}

/** A logger that drops everything, for library callers and tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
