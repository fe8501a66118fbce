import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { UserError } from '../errors.js';
import { engineUnreachable, hasImage, isConnectionError } from './engine.js';

/**
 * Streams a docker-archive into the engine (POST /images/load), for users
 * without a registry; the archive is never written to disk in between.
 */
export async function loadArchive(docker: Docker, archive: Readable, image: string, signal?: AbortSignal): Promise<void> {
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.loadImage(archive, { abortSignal: signal } as object);
  } catch (err) {
    if (isConnectionError(err)) throw engineUnreachable(err);
    throw err;
  }
  await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve())));
  if (!(await hasImage(docker, image))) {
    throw new UserError(`The engine accepted the image archive but has no image named ${image}.`, 'check the engine log; `nixdocker build --load --force` tries again');
  }
}
