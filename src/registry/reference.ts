/** Image references (host/repo:tag@digest) and which scheme a registry host gets. */
import { UserError } from '../errors.js';

export interface ImageReference {
  /** host or host:port, as written. */
  host: string;
  /** Repository path inside the registry. */
  repository: string;
  tag?: string;
  digest?: string;
}

const DEFAULT_HOST = 'docker.io';
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
export const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

/**
 * Splits `host[:port]/path/name[:tag][@digest]`. The first component is the
 * host when it has a `.` or `:` or is `localhost` (Docker's rule); otherwise
 * the host is docker.io and a one-component path gets `library/`.
 */
export function parseReference(ref: string): ImageReference {
  const bad = (why: string) =>
    new UserError(`"${ref}" is not an image reference: ${why}.`, 'write it as HOST[:PORT]/PATH/NAME[:TAG][@DIGEST], e.g. localhost:5000/team/app:1.0');
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(`"${digest}" is not a digest`);
  }
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  const hasHost = slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['));
  const host = hasHost ? first : DEFAULT_HOST;
  let path = hasHost ? rest.slice(slash + 1) : rest;
  let tag: string | undefined;
  const colon = path.lastIndexOf(':');
  if (colon >= 0) {
    tag = path.slice(colon + 1);
    path = path.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`"${tag}" is not a tag`);
  }
  if (!path) throw bad('the repository is empty');
  if (!path.split('/').every((c) => COMPONENT.test(c))) throw bad('repository components are lowercase letters, digits and . _ - separators');
  if (host === DEFAULT_HOST && !path.includes('/')) path = `library/${path}`;
  return { host, repository: path, ...(tag !== undefined && { tag }), ...(digest !== undefined && { digest }) };
}

/** The host without its port: `[::1]:5000` → `::1`, `localhost:5000` → `localhost`. */
export function hostname(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon >= 0 ? host.slice(0, colon) : host;
}

/** localhost, 127.x.x.x or ::1: traffic that never leaves the machine. */
export function isLoopbackHost(host: string): boolean {
  const name = hostname(host).toLowerCase();
  if (name === 'localhost' || name === '::1') return true;
  const m = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(name);
  return m !== null && m.slice(1).every((o) => Number(o) <= 255);
}

/** Plain http only for loopback hosts or when the user said `registry.insecure`. */
export function registryScheme(host: string, insecure = false): 'http' | 'https' {
  return insecure || isLoopbackHost(host) ? 'http' : 'https';
}

/** `http://host[:port]` or `https://...`, without a trailing slash. */
export function registryOrigin(host: string, insecure = false): string {
  return `${registryScheme(host, insecure)}://${host}`;
}

/** Validates a repository path before it goes into a URL. */
export function checkRepository(repo: string): string {
  if (!repo || !repo.split('/').every((c) => COMPONENT.test(c))) {
    throw new UserError(`"${repo}" is not a repository name: lowercase path components separated by "/".`, 'check registry.namespace');
  }
  return repo;
}
