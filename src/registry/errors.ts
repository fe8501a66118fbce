/**
 * What the registry client throws. Failures a user can fix become a UserError
 * that names the host and the setting; no message ever carries a password,
 * token or Authorization header (credentials appear by source and user name).
 */
import { UserError } from '../errors.js';
import { errorCode } from './retry.js';
import type { Credentials } from './types.js';

const LOGIN_HINT = (host: string) => `log in with docker login ${host} or set NIXDOCKER_REGISTRY_USER/NIXDOCKER_REGISTRY_PASSWORD`;

/** An answer the client did not expect; a bug here or in the registry, so no UserError. */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  constructor(
    message: string,
    readonly status: number,
    /** The distribution-spec error codes of the body, e.g. MANIFEST_BLOB_UNKNOWN. */
    readonly codes: string[] = [],
  ) {
    super(message);
  }
}

/** `{"errors":[{"code","message"}]}` as "CODE: message; ...", and the codes. */
export function describeErrorBody(body: Buffer): { text: string; codes: string[] } {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: { code?: unknown; message?: unknown }[] };
    const errors = Array.isArray(parsed.errors) ? parsed.errors : [];
    const codes = errors.map((e) => String(e.code ?? '')).filter(Boolean);
    const text = errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ');
    return { text, codes };
  } catch {
    return { text: body.toString('utf8').slice(0, 200).trim(), codes: [] };
  }
}

const TLS_MISMATCH = /wrong version number|packet length too long|unknown protocol|ERR_SSL_WRONG_VERSION|EPROTO/i;
const CERT_CODES = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME/;

/**
 * A connection-level failure as a UserError when the user can fix it (wrong
 * host, registry down, http/https mismatch, untrusted certificate); anything
 * else is returned unchanged.
 */
export function connectionError(host: string, url: URL, err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof UserError) return err;
  const code = errorCode(err) ?? '';
  const where = `${url.protocol}//${url.host}`;
  if (url.protocol === 'https:' && (TLS_MISMATCH.test(code) || TLS_MISMATCH.test(err.message))) {
    return new UserError(
      `The registry at ${host} (setting registry.host) does not speak https: the TLS handshake with ${where} failed (${code || err.message}). It looks like a plain-http registry.`,
      `set registry.insecure to true to use http://${host}, or give the registry a TLS certificate`,
      { cause: err },
    );
  }
  if (CERT_CODES.test(code)) {
    return new UserError(
      `The registry at ${host} (setting registry.host) has a TLS certificate nixdocker does not trust (${code}).`,
      'add its CA to NODE_EXTRA_CA_CERTS=/path/ca.pem, or set registry.insecure to true if it also serves plain http',
      { cause: err },
    );
  }
  const what: Record<string, string> = {
    ECONNREFUSED: 'refused the connection',
    ENOTFOUND: 'has a name that does not resolve',
    EAI_AGAIN: 'has a name that does not resolve right now',
    ETIMEDOUT: 'did not answer in time',
    EHOSTUNREACH: 'is unreachable',
    ENETUNREACH: 'is unreachable',
    ECONNRESET: 'dropped the connection',
    EPIPE: 'dropped the connection',
  };
  const reason = what[code] ?? (err.message === 'socket hang up' ? 'dropped the connection' : undefined);
  if (!reason) return err;
  return new UserError(
    `Cannot reach the registry at ${host} (setting registry.host): ${where} ${reason} (${code || err.message}).`,
    `is the registry running at ${host}? set registry.host or DOCKER_REGISTRY_HOST`,
    { cause: err },
  );
}

export function unauthorized(host: string, creds: Credentials | null, detail?: string): UserError {
  const why = creds
    ? `rejected the credentials of user "${creds.username}" from ${creds.source}`
    : 'requires credentials and none were found (no NIXDOCKER_REGISTRY_USER, no entry in the docker config)';
  return new UserError(`The registry at ${host} (setting registry.host) ${why}${detail ? ` (${detail})` : ''}.`, LOGIN_HINT(host));
}

export function denied(host: string, repo: string, creds: Credentials | null): UserError {
  const who = creds ? `user "${creds.username}" (from ${creds.source})` : 'anonymous access';
  return new UserError(
    `The registry at ${host} (setting registry.host) denied ${who} access to repository "${repo}".`,
    `${LOGIN_HINT(host)} as a user that may push to ${repo}, or change registry.namespace`,
  );
}

export function digestMismatch(host: string, what: string, expected: string, got?: string): UserError {
  return new UserError(
    `The registry at ${host} (setting registry.host) rejected ${what}: its content does not match the digest ${expected}${got ? ` (content hashes to ${got})` : ''}.`,
    'the data changed while it was read (or its cached digest is stale); clear the cache directory (cacheDir) and build again',
  );
}

export function exhausted(host: string, method: string, path: string, status: number, attempts: number): UserError {
  return new UserError(
    `The registry at ${host} (setting registry.host) answered ${status} to ${method} ${path}, ${attempts} time(s) in a row.`,
    `the registry is overloaded or broken; check its logs, or set registry.host or DOCKER_REGISTRY_HOST to another registry`,
  );
}

export function deleteDisabled(host: string): UserError {
  return new UserError(
    `The registry at ${host} (setting registry.host) does not allow deleting manifests.`,
    'enable it in the registry configuration (storage: delete: enabled: true, or REGISTRY_STORAGE_DELETE_ENABLED=true)',
  );
}

export function httpToHttps(host: string): UserError {
  return new UserError(
    `The registry at ${host} (setting registry.host) speaks only https, but nixdocker used plain http (loopback hosts and registry.insecure use http).`,
    `set registry.insecure to false and use a host name that is not localhost for ${host}, or serve the registry over plain http`,
  );
}
