/**
 * Credentials from the docker CLI's config file, as `docker login` leaves them:
 * `credHelpers[host]`, then `credsStore`, then `auths[host]` (base64 `auth`,
 * `username`/`password`, or an `identitytoken`).
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../errors.js';
import { formatJsonError } from '../util/json-syntax.js';
import type { Credentials } from './types.js';

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

export interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.DOCKER_CONFIG || path.join(env.HOME || os.homedir(), '.docker');
  return path.join(dir, 'config.json');
}

/** The parsed file, or null when there is none. */
export async function readDockerConfig(file: string): Promise<DockerConfig | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const fix = `fix or remove ${file}, or point DOCKER_CONFIG at another directory`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    // Never V8's message itself: it may quote the text around the error, a password included.
    throw new UserError(`The docker config file ${file} is not valid JSON (${formatJsonError(text, err)}).`, fix);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UserError(`The docker config file ${file} is not a JSON object.`, fix);
  }
  return parsed as DockerConfig;
}

// Docker Hub goes by several names; `docker login` stores it under the v1 URL.
const HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
const HUB_KEY = 'https://index.docker.io/v1/';

/** `https://host:5000/v1/` → `host:5000`; Hub aliases → `docker.io`. */
export function normaliseHostKey(key: string): string {
  const bare = key.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').split('/')[0]!.toLowerCase();
  return HUB.has(bare) ? 'docker.io' : bare;
}

/** Looks `host` up in the docker config named by `env`; null when it has nothing for it. */
export async function dockerCredentials(host: string, env: NodeJS.ProcessEnv = process.env): Promise<Credentials | null> {
  const file = dockerConfigPath(env);
  const config = await readDockerConfig(file);
  if (!config) return null;
  const want = normaliseHostKey(host);
  const find = <T>(map: Record<string, T> | undefined): [string, T] | undefined =>
    map ? Object.entries(map).find(([k]) => normaliseHostKey(k) === want) : undefined;

  const helper = find(config.credHelpers);
  if (helper) return runHelper(helper[1], serverUrlFor(want, helper[0]), env, `${file} (credHelpers: ${helper[1]})`);
  if (config.credsStore) {
    const fromStore = await runHelper(config.credsStore, serverUrlFor(want, find(config.auths)?.[0]), env, `${file} (credsStore: ${config.credsStore})`);
    if (fromStore) return fromStore;
  }
  const entry = find(config.auths);
  return entry ? fromAuthEntry(entry[1], `${file} (auths["${entry[0]}"])`) : null;
}

function serverUrlFor(host: string, key: string | undefined): string {
  if (host === 'docker.io') return HUB_KEY;
  return key ?? host;
}

function fromAuthEntry(entry: AuthEntry, source: string): Credentials | null {
  let username = entry.username ?? '';
  let password = entry.password;
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new UserError(`The docker config ${source} has an "auth" value that is not base64 of user:password.`, 'log in again with docker login');
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (entry.identitytoken) return { username, identityToken: entry.identitytoken, source };
  if (!username && !password) return null;
  return { username, ...(password !== undefined && { password }), source };
}

const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** `docker-credential-NAME get` with the server URL on stdin; null when it has nothing. */
async function runHelper(name: string, serverUrl: string, env: NodeJS.ProcessEnv, source: string): Promise<Credentials | null> {
  const program = `docker-credential-${name}`;
  if (!HELPER_NAME.test(name)) throw new UserError(`The docker config ${source} names a credential helper "${name}" that is not a plain program name.`, 'fix the docker config file');
  const { execa } = await import('execa');
  const r = await execa(program, ['get'], { input: serverUrl, env, extendEnv: false, reject: false, timeout: 30_000, stripFinalNewline: true });
  if (r.failed && (r as { code?: string }).code === 'ENOENT') {
    throw new UserError(`The docker config ${source} uses the credential helper ${program}, which is not on PATH.`, `install ${program}, or remove it from the docker config file`);
  }
  const stdout = String(r.stdout ?? '');
  if (r.exitCode !== 0) {
    // The helpers' protocol: "credentials not found in native keychain" on stdout means none.
    if (/credentials not found/i.test(stdout)) return null;
    const stderr = String(r.stderr ?? '').slice(0, 300);
    throw new UserError(
      `The credential helper ${program} (from ${source}) failed for ${serverUrl} with exit code ${r.exitCode ?? 'none'}${r.timedOut ? ' (timed out)' : ''}${stderr ? `: ${stderr}` : ''}.`,
      `check that ${program} works (echo ${serverUrl} | ${program} get), or log in again with docker login`,
    );
  }
  let out: { Username?: unknown; Secret?: unknown };
  try {
    out = JSON.parse(stdout) as typeof out;
  } catch {
    // Never echo stdout: it may hold the secret.
    throw new UserError(`The credential helper ${program} (from ${source}) printed something that is not JSON.`, `check that ${program} works, or remove it from the docker config file`);
  }
  const username = typeof out.Username === 'string' ? out.Username : '';
  const secret = typeof out.Secret === 'string' ? out.Secret : '';
  if (!secret) return null;
  // The helpers' convention for identity tokens.
  if (username === '<token>') return { username: '', identityToken: secret, source };
  return { username, password: secret, source };
}
