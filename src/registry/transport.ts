/**
 * Requests to one registry: authentication, retries, redirects, debug logging
 * and counters. Callers get a response whose status is theirs to judge; 401,
 * 403, 5xx and 429 never reach them.
 */
import type { Logger } from '../log.js';
import { Authenticator } from './auth.js';
import { RegistryError, connectionError, describeErrorBody, exhausted, httpToHttps } from './errors.js';
import { HttpAgents, discard, header, readBody, send, type HttpRequest, type HttpResponse } from './http.js';
import { registryOrigin } from './reference.js';
import { DEFAULT_RETRY, TransientStatusError, parseRetryAfter, retry } from './retry.js';
import type { Credentials, RegistryStats, RetryOptions } from './types.js';

export interface TransportOptions {
  host: string;
  insecure: boolean;
  credentials: () => Promise<Credentials | null>;
  stats: RegistryStats;
  logger?: Logger | undefined;
  retry?: Partial<RetryOptions> | undefined;
  idleTimeoutMs?: number | undefined;
}

export interface RegistryRequest {
  method: string;
  /** A path under the registry origin (`/v2/...`) or an absolute URL (an upload Location). */
  path: string | URL;
  headers?: Record<string, string>;
  /** A stream body is sent once: no retry, no replay after a challenge. */
  body?: Buffer | NodeJS.ReadableStream;
  /** Token scopes the request needs, e.g. `repository:team/app:pull,push`. */
  scopes: string[];
  /** For error messages. */
  repo: string;
  signal?: AbortSignal | undefined;
  /** Follow 3xx (blob downloads may redirect to storage). */
  followRedirects?: boolean;
}

const MAX_REDIRECTS = 5;
// Query parameters safe to log; `_state` of an upload location is a signed capability.
const LOGGED_PARAMS = new Set(['digest', 'mount', 'from', 'n', 'last', 'service', 'scope']);

export class Transport {
  readonly origin: string;
  readonly retryOptions: RetryOptions;
  private readonly agents = new HttpAgents();
  private readonly auth: Authenticator;
  private readonly idleTimeoutMs: number;

  constructor(private readonly opts: TransportOptions) {
    this.origin = registryOrigin(opts.host, opts.insecure);
    this.retryOptions = { ...DEFAULT_RETRY, ...opts.retry };
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.auth = new Authenticator(opts.host, opts.credentials, (req) => this.withRetries(req.method, req.url, req.signal, () => this.sendChecked(req)));
  }

  get host(): string {
    return this.opts.host;
  }

  url(path: string): URL {
    return new URL(path, this.origin);
  }

  /**
   * With retries on transient failures and failures the user can fix as
   * UserErrors, for buffered bodies; a streamed body gets one raw attempt.
   */
  request(req: RegistryRequest): Promise<HttpResponse> {
    const url = typeof req.path === 'string' ? this.url(req.path) : req.path;
    // A stream is spent after one try: the caller restarts and describes the failure.
    if (req.body && !Buffer.isBuffer(req.body)) return this.attempt(req);
    return this.withRetries(req.method, url, req.signal, () => this.attempt(req));
  }

  /** One attempt, authentication handshake included; transient answers throw TransientStatusError. */
  async attempt(req: RegistryRequest): Promise<HttpResponse> {
    let url = typeof req.path === 'string' ? this.url(req.path) : req.path;
    const streamed = req.body !== undefined && !Buffer.isBuffer(req.body);
    let authorization = await this.auth.authorization(req.scopes);
    let challenged = false;
    for (let redirects = 0; ; ) {
      const sameOrigin = url.origin === this.origin;
      const headers = { ...req.headers, ...(authorization && sameOrigin && { authorization }) };
      const res = await this.sendChecked({ method: req.method, url, headers, ...(req.body && { body: req.body }), ...(req.signal && { signal: req.signal }) });
      if (res.status === 401 && sameOrigin) {
        discard(res);
        if (challenged) return this.auth.failure(401, req.repo);
        await this.auth.challenge(res, req.scopes, authorization, req.repo);
        // A stream is spent: the caller restarts (a blob upload takes a fresh session).
        if (streamed) throw new TransientStatusError(`${req.method} ${url.pathname} needs fresh authorization`, 401, 0);
        authorization = await this.auth.authorization(req.scopes);
        challenged = true;
        continue;
      }
      if (res.status === 403 && sameOrigin) {
        discard(res);
        return this.auth.failure(403, req.repo);
      }
      const location = header(res, 'location');
      if (req.followRedirects && res.status >= 300 && res.status < 400 && location && !streamed) {
        discard(res);
        if (++redirects > MAX_REDIRECTS) throw new Error(`more than ${MAX_REDIRECTS} redirects from ${this.host}`);
        url = new URL(location, url);
        continue;
      }
      return res;
    }
  }

  /** Retries `fn` on transient failures, then turns what is left into the error a user reads. */
  async withRetries<T>(method: string, url: URL, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await retry(fn, this.retryOptions, {
        ...(signal && { signal }),
        onRetry: (err, attempt, delayMs) => {
          this.opts.stats.retries++;
          this.opts.logger?.debug({ url: logUrl(url), attempt, delayMs, reason: reason(err) }, 'registry request failed, retrying');
        },
      });
    } catch (err) {
      throw this.describe(method, url, err);
    }
  }

  /** The error a user reads for what is left after retries. */
  describe(method: string, url: URL, err: unknown): unknown {
    if (err instanceof TransientStatusError && err.status !== 401) {
      return exhausted(this.host, method, url.pathname, err.status, this.retryOptions.attempts);
    }
    return connectionError(this.host, url, err);
  }

  /** The error for an answer the protocol does not allow here; the body's error codes help whoever reads it. */
  async unexpected(res: HttpResponse, method: string, path: string): Promise<Error> {
    const body = await readBody(res, 64 * 1024).catch(() => Buffer.alloc(0));
    if (res.status === 400 && /HTTP request to an HTTPS server/i.test(body.toString('utf8'))) return httpToHttps(this.host);
    const { text, codes } = describeErrorBody(body);
    return new RegistryError(`${method} ${path} on ${this.host} answered ${res.status}${text ? `: ${text}` : ''}`, res.status, codes);
  }

  /** Like sendOnce, but 5xx and 429 throw TransientStatusError (with Retry-After). */
  async sendChecked(req: HttpRequest): Promise<HttpResponse> {
    const res = await this.sendOnce(req);
    if (res.status >= 500 || res.status === 429) {
      const { text } = describeErrorBody(await readBody(res, 64 * 1024).catch(() => Buffer.alloc(0)));
      throw new TransientStatusError(`${req.method} ${req.url.pathname} answered ${res.status}${text ? `: ${text}` : ''}`, res.status, parseRetryAfter(header(res, 'retry-after')));
    }
    return res;
  }

  /** Sends and logs (method, url without secrets, status); counts the request. */
  async sendOnce(req: HttpRequest): Promise<HttpResponse> {
    this.opts.stats.requests++;
    const started = Date.now();
    try {
      const res = await send(this.agents, req, this.idleTimeoutMs);
      this.opts.logger?.debug({ method: req.method, url: logUrl(req.url), status: res.status, ms: Date.now() - started }, 'registry request');
      return res;
    } catch (err) {
      this.opts.logger?.debug({ method: req.method, url: logUrl(req.url), error: reason(err), ms: Date.now() - started }, 'registry request failed');
      throw err;
    }
  }

  close(): void {
    this.agents.destroy();
  }
}

/** The URL without credentials-like query parameters. */
export function logUrl(url: URL): string {
  const kept = [...url.searchParams].filter(([k]) => LOGGED_PARAMS.has(k));
  const query = kept.length ? `?${new URLSearchParams(kept).toString()}` : '';
  return `${url.protocol}//${url.host}${url.pathname}${query}`;
}

function reason(err: unknown): string {
  if (err instanceof TransientStatusError) return `status ${err.status}`;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
}
