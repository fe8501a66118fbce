import type { Bindings, ChildLoggerOptions, Logger, Level } from 'pino';
import type pretty from 'pino-pretty';
import { lazy } from './util/lazy.js';

// Only terminals get pretty lines; JSON output never loads it.
const prettyStream = lazy<typeof pretty>('pino-pretty');
// pino itself loads with the first line logged (see deferred).
const pinoModule = lazy<typeof import('pino')>('pino');

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
  return deferred(() => createPino(opts), opts.level ?? 'info');
}

function createPino(opts: LogOptions): Logger {
  const { pino } = pinoModule();
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

const LEVELS: Readonly<Record<string, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
const dropped = (): void => {};

/** A logger that drops everything, for library callers and tests. */
export const silentLogger: Logger = deferred(() => pinoModule().pino({ level: 'silent' }), 'silent');

type ChildOptions = ChildLoggerOptions & { level?: string };

/**
 * A Logger that makes the real one (`make`) on first real use: pino and its
 * streams are about 50 ms of every start-up, and a command that logs
 * nothing at its level (`hash`, a build found up to date) need not pay them.
 * Until then a line below `level` is dropped unread and `child` defers too;
 * anything else (a line at the level, `level`, `flush`, ...) makes the real
 * logger and is its own, so plugins see a pino logger in every respect.
 */
function deferred(make: () => Logger, level: string): Logger {
  let real: Logger | undefined;
  const get = (): Logger => (real ??= make());
  const threshold = LEVELS[level] ?? Infinity; // 'silent' drops all
  return new Proxy({} as Logger, {
    get(_target, key) {
      if (!real) {
        if (key === 'then') return undefined; // not a thenable: returning it from an async function must not make it
        if (typeof key === 'string' && LEVELS[key] !== undefined && LEVELS[key] < threshold) return dropped;
        if (key === 'child') {
          return (bindings: Bindings, options?: ChildOptions) => deferred(() => get().child(bindings, options) as Logger, options?.level ?? level);
        }
      }
      const r = get();
      const value: unknown = Reflect.get(r, key, r);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(r) : value;
    },
    set(_target, key, value) {
      return Reflect.set(get(), key, value);
    },
    has(_target, key) {
      return Reflect.has(get(), key);
    },
  });
}
