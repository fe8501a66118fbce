import type Docker from 'dockerode';
import { lazy } from '../util/lazy.js';
import { UserError } from '../errors.js';

export type { Docker };

const dockerode = lazy<typeof Docker>('dockerode');

/** Where the engine is, for messages: DOCKER_HOST or the default socket. */
export function engineAddress(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_HOST || 'unix:///var/run/docker.sock';
}

/**
 * A dockerode client for the engine DOCKER_HOST names (a unix socket, tcp or
 * ssh; podman's Docker-compatible socket works the same). Nothing is sent yet.
 */
export function connectEngine(): Docker {
  try {
    return new (dockerode())();
  } catch (err) {
    throw new UserError(`DOCKER_HOST=${process.env.DOCKER_HOST} is not a valid engine address: ${(err as Error).message}`, 'use unix:///path/to.sock, tcp://host:port or ssh://user@host');
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
