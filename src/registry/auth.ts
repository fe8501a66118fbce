/**
 * Registry authentication: anonymous first; on a 401 the `WWW-Authenticate`
 * challenge decides. `Basic` sends the credentials on every later request;
 * `Bearer` trades them (or nothing, for anonymous pulls) for a token from the
 * realm, cached per scope set until it expires.
 */
import { createHash } from 'node:crypto';
import { readBody, type HttpRequest, type HttpResponse, header } from './http.js';
import { denied, unauthorized } from './errors.js';
import type { Credentials } from './types.js';

export interface Challenge {
  /** Lower case: `basic`, `bearer`, ... */
  scheme: string;
  params: Record<string, string>;
}

/**
 * `Bearer realm="https://a/token",service="reg",scope="repository:x:pull,push"`,
 * several challenges in one header included. Quoted values may hold commas.
 */
export function parseChallenges(value: string): Challenge[] {
  const out: Challenge[] = [];
  const re = /\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*))?\s*,?/gy;
  let current: Challenge | undefined;
  let m: RegExpExecArray | null;
  while (re.lastIndex < value.length && (m = re.exec(value))) {
    const [, name, raw] = m;
    if (raw === undefined) {
      // A bare token starts a new challenge ("Bearer realm=..." has its params after it, unseparated).
      current = { scheme: name!.toLowerCase(), params: {} };
      out.push(current);
      continue;
    }
    if (!current) continue;
    const v = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw;
    current.params[name!.toLowerCase()] = v;
  }
  return out;
}

interface CachedToken {
  value: string;
  expiresAt: number;
  /** What it was asked for. */
  scopes: string[];
  /** Which credentials got it (credentialsKey): new credentials get a new token. */
  creds: string;
}

/** Sends one request without authentication, for the token realm (retries and logging are the caller's). */
export type TokenTransport = (req: HttpRequest) => Promise<HttpResponse>;

const MIN_TOKEN_LIFETIME_S = 60; // the distribution spec's default when expires_in is missing

export class Authenticator {
  private mode: 'anonymous' | 'basic' | 'bearer' = 'anonymous';
  private bearer: { realm: string; service?: string } | undefined;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<CachedToken>>();
  private credentials: Promise<Credentials | null> | undefined;

  constructor(
    private readonly host: string,
    private readonly loadCredentials: () => Promise<Credentials | null>,
    private readonly tokenTransport: TokenTransport,
  ) {}

  /** The Authorization header to send up front, when earlier challenges tell us what works. */
  async authorization(scopes: string[]): Promise<string | undefined> {
    if (this.mode === 'basic') return basicHeader((await this.creds())!);
    if (this.mode === 'bearer') {
      const cached = this.tokens.get(scopeKey(scopes));
      if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.value}`;
    }
    return undefined;
  }

  /**
   * Handles a 401: afterwards a retry carries fresh authorization. Throws a
   * UserError when no retry can help (no or rejected credentials).
   */
  async challenge(res: HttpResponse, scopes: string[], sent: string | undefined, repo: string): Promise<void> {
    const challenges = parseChallenges(header(res, 'www-authenticate') ?? '');
    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    const basic = challenges.find((c) => c.scheme === 'basic');
    // Every challenge looks the credentials up again: a `docker login` (or a
    // credential helper that answers now) after the daemon started counts,
    // and a failed lookup is never remembered.
    this.credentials = undefined;
    const creds = await this.creds();
    const credsNow = credentialsKey(creds);
    if (bearer) {
      const asked = (bearer.params.scope ?? '').split(' ').filter(Boolean);
      const key = scopeKey(scopes);
      let cached = this.tokens.get(key);
      if (cached && cached.creds !== credsNow) {
        // Got with other credentials (or none): worthless now.
        this.tokens.delete(key);
        cached = undefined;
      }
      if (sent && sent === `Bearer ${cached?.value}` && bearer.params.error === 'insufficient_scope' && asked.every((s) => cached!.scopes.includes(s))) {
        // The token carries what the registry asks for, and it still says no.
        throw denied(this.host, repo, creds);
      }
      this.mode = 'bearer';
      this.bearer = { realm: bearer.params.realm!, ...(bearer.params.service !== undefined && { service: bearer.params.service }) };
      const wanted = [...new Set([...scopes, ...asked, ...(cached?.scopes ?? [])])];
      // Parallel requests that meet the same challenge share one token request,
      // and one that left before a token arrived just takes it.
      if (cached && cached.expiresAt > Date.now() && sent !== `Bearer ${cached.value}`) return;
      let pending = this.pending.get(key);
      if (!pending) {
        pending = this.fetchToken(wanted, creds).finally(() => this.pending.delete(key));
        this.pending.set(key, pending);
      }
      this.tokens.set(key, await pending);
      return;
    }
    if (basic) {
      if (!creds || creds.password === undefined) throw unauthorized(this.host, creds);
      // The very credentials we sent were refused; other ones (a new login) get their try.
      if (sent === basicHeader(creds)) throw unauthorized(this.host, creds);
      this.mode = 'basic';
      return;
    }
    throw unauthorized(this.host, creds, 'the registry sent no challenge nixdocker understands');
  }

  /** A second 401 (or a 403) after a fresh challenge: the credentials do not do. */
  failure(status: number, repo: string): Promise<never> {
    return this.creds().then((creds) => {
      throw status === 403 || (this.mode === 'bearer' && creds) ? denied(this.host, repo, creds) : unauthorized(this.host, creds);
    });
  }

  private creds(): Promise<Credentials | null> {
    this.credentials ??= this.loadCredentials();
    return this.credentials;
  }

  private async fetchToken(scopes: string[], creds: Credentials | null): Promise<CachedToken> {
    const { realm, service } = this.bearer!;
    const url = new URL(realm);
    let req: HttpRequest;
    if (creds?.identityToken) {
      // OAuth2 refresh-token grant: what `docker login` with an identity token expects.
      const form = new URLSearchParams({ grant_type: 'refresh_token', client_id: 'nixdocker', refresh_token: creds.identityToken, scope: scopes.join(' ') });
      if (service) form.set('service', service);
      req = { method: 'POST', url, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Buffer.from(form.toString()) };
    } else {
      if (service) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      const headers: Record<string, string> = {};
      if (creds && creds.password !== undefined) {
        url.searchParams.set('account', creds.username);
        headers.authorization = basicHeader(creds);
      }
      req = { method: 'GET', url, headers };
    }
    const res = await this.tokenTransport(req);
    const body = await readBody(res, 1024 * 1024).catch(() => Buffer.alloc(0));
    if (res.status !== 200) throw unauthorized(this.host, creds, `the token service at ${url.host} answered ${res.status}`);
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
    } catch {
      throw unauthorized(this.host, creds, `the token service at ${url.host} sent no JSON`);
    }
    const value = typeof parsed.token === 'string' ? parsed.token : typeof parsed.access_token === 'string' ? parsed.access_token : '';
    if (!value) throw unauthorized(this.host, creds, `the token service at ${url.host} sent no token`);
    const lifetime = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : MIN_TOKEN_LIFETIME_S;
    // Renew a little early so a token never expires between our check and the registry's.
    return { value, scopes, creds: credentialsKey(creds), expiresAt: Date.now() + Math.max(1, lifetime - 10) * 1000 };
  }
}

function basicHeader(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64')}`;
}

/** Tells credentials apart without keeping them in the clear: a hash, never logged. */
function credentialsKey(creds: Credentials | null): string {
  if (!creds) return 'anonymous';
  return createHash('sha256').update(JSON.stringify([creds.username, creds.password ?? null, creds.identityToken ?? null])).digest('hex');
}

function scopeKey(scopes: string[]): string {
  return [...scopes].sort().join(' ');
}
