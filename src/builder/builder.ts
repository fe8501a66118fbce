import { createReadStream } from 'node:fs';
import type Docker from 'dockerode';
import { UserError } from '../errors.js';
import { LABEL_ROLE, hasImage, isConnectionError, isNotFound, pingEngine } from '../engine/engine.js';
import { pullImage, runCaptured } from '../engine/run.js';
import type { Logger } from '../log.js';
import type { BuilderTarget } from './container-runner.js';
import { builderLabels, removeOrphans, type Orphan } from './ownership.js';
import { ensureSeeded, parseSeed, SEED_FILE } from './seed.js';

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
    else await pullBuilderImage(docker, target.image, opts.log, target.platform);
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
  // A volume filled from another builder.image gets this image's Nix (see seed.ts).
  const seed = await runInBuilder(docker, target, ['sh', '-c', `cat ${SEED_FILE} 2>/dev/null; true`], opts.signal);
  await ensureSeeded(docker, target, (await docker.getImage(target.image).inspect()).Id, parseSeed(seed.output), { signal: opts.signal });
  return { image, volume, nixVersion: version.output.trim() };
}

export interface BuilderStatus {
  image: { name: string; present: boolean; id?: string; size?: number };
  volume: { name: string; present: boolean; storeBytes?: number; storePaths?: number };
  /** Build containers running now. */
  running: { id: string; created: number }[];
  /** This project's builder containers whose owner was gone: removed now. */
  orphans: Orphan[];
}

export async function builderStatus(docker: Docker, target: BuilderTarget, projectDir: string, signal?: AbortSignal): Promise<BuilderStatus> {
  await pingEngine(docker);
  const orphans = await removeOrphans(docker, projectDir, target.volume);
  const status: BuilderStatus = { image: { name: target.image, present: false }, volume: { name: target.volume, present: false }, running: [], orphans };
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
    const du = await runInBuilder(docker, target, ['sh', '-c', 'du -sk /nix/store && ls /nix/store | wc -l'], signal, projectDir);
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

async function pullBuilderImage(docker: Docker, image: string, log: Logger, platform?: string): Promise<void> {
  log.info(`pulling the builder image ${image}${platform ? ` for ${platform}` : ''}`);
  try {
    await pullImage(docker, image, (p) => log.debug(`${p.done}/${p.layers} layers: ${p.status}`), { platform });
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause ?? err;
    if (isConnectionError(cause)) throw err;
    throw new UserError(
      `Cannot pull the builder image ${image} (builder.image): ${String((cause as Error)?.message ?? cause).split('\n')[0]}`,
      'check the name and your network, or load a saved image with `nixdocker builder create --from-tarball FILE`',
      { cause: err },
    );
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

/**
 * Runs a one-off command in a fresh builder container; output is stdout and
 * stderr together. Labelled with its owner (and project, when given), so a
 * killed nixdocker's leftover is found as an orphan.
 */
export function runInBuilder(
  docker: Docker,
  target: BuilderTarget,
  cmd: string[],
  signal?: AbortSignal,
  projectDir?: string,
): Promise<{ exitCode: number; output: string }> {
  return runCaptured(docker, {
    image: target.image,
    platform: target.platform,
    cmd,
    volumes: [{ name: target.volume, target: '/nix' }],
    labels: builderLabels(target.volume, projectDir),
    signal,
  });
}
