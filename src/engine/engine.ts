import type Docker from 'dockerode';
import { dockerode } from './dockerode.js';
import { UserError } from '../errors.js';
import { platformOfEngine, type Platform } from '../config/platform.js';

export type { Docker };

/** Where the engine is, for messages: DOCKER_HOST or the default socket. */
export function engineAddress(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_HOST || 'unix:///var/run/docker.sock';
}

/**
 * A dockerode client for the engine DOCKER_HOST names (a unix socket, tcp or
 * ssh; podman's Docker-compatible socket works the same). Nothing is sent yet.
 */
export function connectEngine(host?: string): Docker {
  try {
    return new (dockerode())(host ? engineOptions(host) : undefined);
  } catch (err) {
    throw new UserError(`${host ? `The engine address ${host}` : `DOCKER_HOST=${process.env.DOCKER_HOST}`} is not a valid engine address: ${(err as Error).message}`, 'use unix:///path/to.sock, tcp://host:port or ssh://user@host');
  }
}

/** dockerode options for a DOCKER_HOST-style address (a platform's own engine). */
function engineOptions(host: string): Docker.DockerOptions {
  const url = new URL(host);
  switch (url.protocol) {
    case 'unix:':
      return { socketPath: url.pathname };
    case 'tcp:':
    case 'http:':
      return { protocol: 'http', host: url.hostname, port: Number(url.port || 2375) };
    case 'https:':
      return { protocol: 'https', host: url.hostname, port: Number(url.port || 2376) };
    case 'ssh:':
      return { protocol: 'ssh', host: url.hostname, port: Number(url.port || 22), username: url.username || undefined };
    default:
      throw new Error(`unknown scheme ${url.protocol}`);
  }
}

/** Fails with a message that says how to start or point to an engine. */
export async function pingEngine(docker: Docker): Promise<void> {
  try {
    await docker.ping();
  } catch (err) {
    throw engineUnreachable(err);
  }
}

export function engineUnreachable(err: unknown): UserError {
  const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  return new UserError(
    `Cannot reach the container engine at ${engineAddress()} (${code}).`,
    'start Docker, or podman with `podman system service --time=0 unix:///run/podman.sock`, and point DOCKER_HOST at its socket',
    { cause: err },
  );
}

/** True for dockerode's "no such image/container/volume" answer. */
export function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404;
}

/** True when the error is the engine being unreachable rather than an API answer. */
export function isConnectionError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES' || code === 'ECONNRESET' || code === 'EHOSTUNREACH' || code === 'ETIMEDOUT';
}

/** True when the engine has the image; a missing engine is a UserError. */
export async function hasImage(docker: Docker, image: string): Promise<boolean> {
  try {
    await docker.getImage(image).inspect();
    return true;
  } catch (err) {
    if (isConnectionError(err)) throw engineUnreachable(err);
    if (isNotFound(err)) return false;
    throw err;
  }
}

/** Labels that mark what nixdocker created, so status and cleanup can find it. */
export const LABEL_ROLE = 'org.nixdocker.role';

/**
 * The engine's native platform, from `/version` (Os, Arch): the platform
 * `pull` and `run` ask for, and the default one to build. Engines name
 * architectures their own way (podman amd64, dockerd's /info x86_64).
 */
export async function enginePlatform(docker: Docker): Promise<Platform> {
  let v: { Os?: string; Arch?: string };
  try {
    v = await docker.version();
  } catch (err) {
    if (isConnectionError(err)) throw engineUnreachable(err);
    throw err;
  }
  if (!v.Arch) throw new Error(`the engine at ${engineAddress()} did not say its architecture in /version`);
  return platformOfEngine(v.Os, v.Arch);
}

/** The platform of an image in the engine, or null when the engine lacks it. */
export async function imagePlatform(docker: Docker, image: string): Promise<Platform | null> {
  try {
    const info = (await docker.getImage(image).inspect()) as { Os?: string; Architecture?: string; Variant?: string };
    const p = platformOfEngine(info.Os, info.Architecture ?? '');
    return info.Variant && !p.variant ? { ...p, variant: info.Variant } : p;
  } catch (err) {
    if (isConnectionError(err)) throw engineUnreachable(err);
    if (isNotFound(err)) return null;
    throw err;
  }
}
