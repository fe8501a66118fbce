/** Bounded retries with exponential backoff and jitter, for answers worth another try. */
import { setTimeout as sleep } from 'node:timers/promises';
import { isAbortError } from '../errors.js';
import type { RetryOptions } from './types.js';

export const DEFAULT_RETRY: RetryOptions = { attempts: 5, baseDelayMs: 250, maxDelayMs: 8_000, totalMs: 60_000 };

/** A registry answer that may succeed later: 5xx or 429. */
export class TransientStatusError extends Error {
  override readonly name = 'TransientStatusError';
  constructor(
    message: string,
    readonly status: number,
    /** From Retry-After, when the registry sent one. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** Connection failures where the same request may work a moment later. */
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function isTransient(err: unknown): boolean {
  if (err instanceof TransientStatusError) return true;
  if (!(err instanceof Error) || isAbortError(err)) return false;
  const code = errorCode(err);
  return (code !== undefined && TRANSIENT_CODES.has(code)) || err.message === 'socket hang up';
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Delay before attempt `attempt + 1`: base·2^(attempt-1), capped, then halved at random ("equal jitter"). */
export function backoffDelay(attempt: number, opts: RetryOptions, random: () => number = Math.random): number {
  const full = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(full / 2 + (random() * full) / 2);
}

export interface RetryHooks {
  signal?: AbortSignal;
  /** Called before each wait; `attempt` is the one that failed. */
  onRetry?(err: unknown, attempt: number, delayMs: number): void;
  /** Which failures deserve another attempt; `isTransient` by default. */
  shouldRetry?(err: unknown): boolean;
}

/**
 * Runs `fn` until it succeeds, a failure is not transient, the attempts run
 * out, or the next wait would end past `totalMs`; then rethrows the last error.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions, hooks: RetryHooks = {}): Promise<T> {
  const started = Date.now();
  const shouldRetry = hooks.shouldRetry ?? isTransient;
  for (let attempt = 1; ; attempt++) {
    hooks.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (err) {
      if (hooks.signal?.aborted) throw isAbortError(err) ? err : hooks.signal.reason;
      if (attempt >= opts.attempts || !shouldRetry(err)) throw err;
      const hinted = err instanceof TransientStatusError ? err.retryAfterMs : undefined;
      const delay = hinted ?? backoffDelay(attempt, opts);
      if (Date.now() - started + delay > opts.totalMs) throw err;
      hooks.onRetry?.(err, attempt, delay);
      await sleep(delay, undefined, hooks.signal ? { signal: hooks.signal } : {});
    }
  }
}
