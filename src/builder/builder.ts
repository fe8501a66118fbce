import { createReadStream } from 'node:fs';
import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import { UserError } from '../errors.js';
import { LABEL_ROLE, hasImage, isNotFound, pingEngine } from '../engine/engine.js';
import type { Logger } from '../log.js';
import type { BuilderTarget } from './container-runner.js';

export type StepOutcome = 'exists' | 'created';

export interface CreateReport {
  image: StepOutcome;
  volume: StepOutcome;
  nixVersion: string;
}

/**
 * Prepares the builder once: image present (pulled or loaded from a tarball),
 * store volume present, and Nix answering inside it. Idempotent: what exists
 * is reported and left as it is.
 */
export async function createBuilder(
  docker: Docker,
  target: BuilderTarget,
  opts: { fromTarball?: string; log: Logger; signal?: AbortSignal },
): Promise<CreateReport> {
  await pingEngine(docker);
  let image: StepOutcome = 'exists';
  if (!(await hasImage(docker, target.image))) {
    image = 'created';
    if (opts.fromTarball) await loadTarball(docker, target.image, opts.fromTarball, opts.log);
    else await pullImage(docker, target.image, opts.log);
  }
  let volume: StepOutcome = 'exists';
  try {
    await docker.getVolume(target.volume).inspect();
  } catch (err) {
    if (!isNotFound(err)) throw err;
    // An empty volume is seeded from the image's /nix the first time it is mounted (below).
    await docker.createVolume({ Name: target.volume, Labels: { [LABEL_ROLE]: 'store' } });
    volume = 'created';
  }
  const version = await runInBuilder(docker, target, ['nix-build', '--version'], opts.signal);
  if (version.exitCode !== 0) {
    throw new UserError(
      `The builder image ${target.image} (builder.image) cannot run nix-build: ${version.output.trim().split('\n').pop() ?? `exit code ${version.exitCode}`}`,
      'set builder.image to an image with Nix on its PATH (for example docker.io/nixos/nix), then run `nixdocker builder rm --volume` and `nixdocker builder create`',
    );
  }
  return { image, volume, nixVersion: version.output.trim() };
}

export interface BuilderStatus {
  image: { name: string; present: boolean; id?: string; size?: number };
  volume: { name: string; present: boolean; storeBytes?: number; storePaths?: number };
  /** Build containers running now. */
  running: { id: string; created: number }[];
}

export async function builderStatus(docker: Docker, target: BuilderTarget, signal?: AbortSignal): Promise<BuilderStatus> {
  await pingEngine(docker);
  const status: BuilderStatus = { image: { name: target.image, present: false }, volume: { name: target.volume, present: false }, running: [] };
  try {
    const info = await docker.getImage(target.image).inspect();
    status.image = { name: target.image, present: true, id: info.Id, size: info.Size };
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  try {
    await docker.getVolume(target.volume).inspect();
    status.volume.present = true;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  const containers = await docker.listContainers({ filters: { label: [`${LABEL_ROLE}=build`, `org.nixdocker.volume=${target.volume}`] } });
  status.running = containers.map((c) => ({ id: c.Id.slice(0, 12), created: c.Created }));
  if (status.image.present && status.volume.present) {
    // du -s counts each hard link once, which matches what the store holds on disk.
    const du = await runInBuilder(docker, target, ['sh', '-c', 'du -sk /nix/store && ls /nix/store | wc -l'], signal);
    const [kb, count] = du.output.trim().split('\n');
    if (du.exitCode === 0) {
      status.volume.storeBytes = Number.parseInt(kb ?? '0', 10) * 1024;
      status.volume.storePaths = Number.parseInt(count ?? '0', 10);
    }
  }
  return status;
}

export interface RemoveReport {
  containers: number;
  image: boolean;
  volume: boolean;
}

/** Removes the builder's containers and image, and the store volume only when asked. */
export async function removeBuilder(docker: Docker, target: BuilderTarget, opts: { volume: boolean }): Promise<RemoveReport> {
  await pingEngine(docker);
  const containers = await docker.listContainers({ all: true, filters: { label: [`${LABEL_ROLE}=build`, `org.nixdocker.volume=${target.volume}`] } });
  for (const c of containers) await ignoreNotFound(docker.getContainer(c.Id).remove({ force: true }));
  const image = await ignoreNotFound(docker.getImage(target.image).remove());
  const volume = opts.volume ? await ignoreNotFound(docker.getVolume(target.volume).remove()) : false;
  return { containers: containers.length, image, volume };
}

async function ignoreNotFound(p: Promise<unknown>): Promise<boolean> {
  try {
    await p;
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

async function pullImage(docker: Docker, image: string, log: Logger): Promise<void> {
  log.info(`pulling the builder image ${image}`);
  try {
    const stream = await docker.pull(image);
    await new Promise<void>((resolve, reject) =>
      docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve()), (e: { status?: string; id?: string }) => log.debug(`${e.id ?? ''} ${e.status ?? ''}`)),
    );
  } catch (err) {
    throw new UserError(
      `Cannot pull the builder image ${image} (builder.image): ${(err as Error).message.split('\n')[0]}`,
      'check the name and your network, or load a saved image with `nixdocker builder create --from-tarball FILE`',
      { cause: err },
    );
  }
  if (!(await hasImage(docker, image))) {
    throw new UserError(`Pulling ${image} finished but the engine does not have it.`, 'check builder.image, or use --from-tarball');
  }
}

async function loadTarball(docker: Docker, image: string, file: string, log: Logger): Promise<void> {
  log.info(`loading the builder image from ${file}`);
  const input = createReadStream(file);
  const opened = new Promise<void>((resolve, reject) => {
    input.once('open', () => resolve());
    input.once('error', reject);
  });
  try {
    await opened;
  } catch (err) {
    throw new UserError(`Cannot read the builder image tarball ${file}: ${(err as Error).message}`, 'pass a file saved with `docker save` or `podman save`');
  }
  const stream = await docker.loadImage(input);
  await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve())));
  if (!(await hasImage(docker, image))) {
    throw new UserError(
      `The tarball ${file} was loaded but holds no image named ${image} (builder.image).`,
      'set builder.image to the name the tarball carries (see `podman load -i FILE`), or tag it so',
    );
  }
}

/** Runs a one-off command in a fresh builder container; output is stdout and stderr together. */
export async function runInBuilder(docker: Docker, target: BuilderTarget, cmd: string[], signal?: AbortSignal): Promise<{ exitCode: number; output: string }> {
  const container = await docker.createContainer({
    Image: target.image,
    Cmd: cmd,
    Labels: { [LABEL_ROLE]: 'build', 'org.nixdocker.volume': target.volume },
    HostConfig: { Mounts: [{ Type: 'volume', Source: target.volume, Target: '/nix' }] },
  });
  const chunks: Buffer[] = [];
  const sink = new PassThrough().on('data', (c: Buffer) => chunks.push(c));
  const onAbort = () => void container.remove({ force: true }).catch(() => {});
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const stream = await container.attach({ stream: true, stdout: true, stderr: true });
    const ended = new Promise<void>((resolve) => {
      stream.on('end', resolve);
      stream.on('close', resolve);
    });
    docker.modem.demuxStream(stream, sink, sink);
    await container.start();
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    // The attach stream may still carry the last output when wait() answers.
    await Promise.race([ended, new Promise((r) => setTimeout(r, 2000).unref())]);
    return { exitCode: StatusCode, output: Buffer.concat(chunks).toString() };
  } catch (err) {
    // A missing executable fails at start with the runtime's message: report it as output.
    if ((err as { statusCode?: number }).statusCode && !isNotFound(err)) return { exitCode: 127, output: (err as Error).message };
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await container.remove({ force: true }).catch(() => {});
  }
}
