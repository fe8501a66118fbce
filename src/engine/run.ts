import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import { UserError } from '../errors.js';
import { attachInteractive } from './attach.js';
import { engineUnreachable, isConnectionError, isNotFound, LABEL_ROLE } from './engine.js';
import { portBindings, type PublishedPort } from './run-options.js';

/** Where workdir/user appears when the image names no working directory. */
export const RUN_WORKDIR = '/work';

/** The image's WorkingDir (image.workingDir), where `run` mounts workdir/user. */
export async function imageWorkingDir(docker: Docker, image: string): Promise<string> {
  try {
    return (await docker.getImage(image).inspect()).Config?.WorkingDir || RUN_WORKDIR;
  } catch {
    return RUN_WORKDIR; // runContainer reports a missing image with its fix
  }
}

export interface RunSpec {
  image: string;
  /** Command and arguments; empty means the image's own Cmd. */
  cmd: string[];
  /** Host directory mounted as the working directory, if any. */
  mount?: { host: string; container: string };
  /** Named volumes to mount (the builder's store at /nix). */
  volumes?: { name: string; target: string }[];
  /** Attach stdin and a TTY (an interactive terminal). */
  interactive: boolean;
  /** `KEY=VALUE` strings, on top of the image's own. */
  env?: string[];
  /** Container ports published on the host (`-p`). */
  publish?: PublishedPort[];
  /** The container's name (`--name`); the engine picks one when unset. */
  name?: string;
  /** "linux/arm64": the platform to run the image as (POST /containers/create?platform=). */
  platform?: string;
  labels?: Record<string, string>;
  signal?: AbortSignal;
  stdin?: NodeJS.ReadStream;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** Forward SIGINT/SIGTERM/SIGHUP of this process to the container. */
  forwardSignals?: boolean;
}

/**
 * Runs a container to completion like `docker run --rm`: attaches the output
 * (and stdin with a TTY when interactive), forwards signals, removes the
 * container afterwards, and returns the command's exit code.
 */
export async function runContainer(docker: Docker, spec: RunSpec): Promise<number> {
  const stdout = spec.stdout ?? process.stdout;
  const stderr = spec.stderr ?? process.stderr;
  const stdin = spec.stdin ?? process.stdin;
  spec.signal?.throwIfAborted();
  let container: Docker.Container;
  try {
    const ports = portBindings(spec.publish ?? []);
    container = await docker.createContainer({
      name: spec.name,
      // dockerode sends every option as a query parameter too, which is where the API reads platform.
      ...(spec.platform ? { platform: spec.platform } : {}),
      Image: spec.image,
      Cmd: spec.cmd.length > 0 ? spec.cmd : undefined,
      Tty: spec.interactive,
      OpenStdin: spec.interactive,
      StdinOnce: spec.interactive,
      AttachStdin: spec.interactive,
      AttachStdout: true,
      AttachStderr: true,
      Env: spec.env,
      Labels: { [LABEL_ROLE]: 'run', ...spec.labels },
      WorkingDir: spec.mount?.container,
      ExposedPorts: ports.ExposedPorts,
      // The Mounts API, not a Binds string: a path may hold ':' or ','.
      HostConfig: {
        PortBindings: ports.PortBindings,
        Mounts: [
          ...(spec.mount ? [{ Type: 'bind' as const, Source: spec.mount.host, Target: spec.mount.container }] : []),
          ...(spec.volumes ?? []).map((v) => ({ Type: 'volume' as const, Source: v.name, Target: v.target })),
        ],
      },
    });
  } catch (err) {
    if (isConnectionError(err)) throw engineUnreachable(err);
    if (isNotFound(err)) {
      throw new UserError(`The image ${spec.image} is not in the engine.`, 'run `nixdocker pull` first, or `nixdocker run --pull missing ...` (the default) to pull it on the way');
    }
    if ((err as { statusCode?: number }).statusCode === 409 && spec.name) {
      throw new UserError(`A container named "${spec.name}" exists already: ${firstLine(err)}`, `choose another --name, or remove that container (docker rm ${spec.name})`, { cause: err });
    }
    // podman 4's Docker API turns Mounts back into a comma-separated --mount string (measured on 4.3).
    if (spec.mount?.host.includes(',') && /invalid mount option/i.test(String((err as Error)?.message))) {
      throw new UserError(
        `The engine cannot mount ${spec.mount.host}: its path holds a ',' (podman's Docker API splits mount options on commas).`,
        'move the project to a path without a comma, or use Docker, which takes the path as it is',
        { cause: err },
      );
    }
    throw err;
  }

  const forwarded: [NodeJS.Signals, () => void][] = [];
  let rawMode = false;
  try {
    const stream = spec.interactive
      ? await attachInteractive(docker, container)
      : await container.attach({ stream: true, stdout: true, stderr: true });
    const ended = new Promise<void>((resolve) => {
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', () => resolve());
    });
    if (spec.interactive) {
      stream.pipe(stdout);
      if (stdin.isTTY) {
        stdin.setRawMode(true);
        rawMode = true;
      }
      stdin.pipe(stream);
    } else {
      docker.modem.demuxStream(stream, stdout, stderr);
    }
    try {
      await container.start();
    } catch (err) {
      if (spec.publish?.length && /address already in use|port is already allocated|bind/i.test(firstLine(err))) {
        throw new UserError(`The engine could not publish the ports ${spec.publish.map(showPort).join(', ')}: ${firstLine(err)}`, 'choose a free host port with -p HOST_PORT:CONTAINER_PORT', { cause: err });
      }
      throw err;
    }

    if (spec.interactive && (stdout as NodeJS.WriteStream).isTTY) {
      const resize = () => {
        const out = stdout as NodeJS.WriteStream;
        container.resize({ h: out.rows, w: out.columns }).catch(() => {});
      };
      resize();
      (stdout as NodeJS.WriteStream).on('resize', resize);
    }
    if (spec.forwardSignals) {
      for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as NodeJS.Signals[]) {
        const fn = () => void container.kill({ signal: sig }).catch(() => {});
        process.on(sig, fn);
        forwarded.push([sig, fn]);
      }
    }
    const onAbort = () => void container.kill().catch(() => {});
    spec.signal?.addEventListener('abort', onAbort, { once: true });
    // A cancel that came during create, attach or start must still stop it.
    if (spec.signal?.aborted) onAbort();
    try {
      const { StatusCode } = (await container.wait()) as { StatusCode: number };
      // The last output can trail the exit by a moment.
      await Promise.race([ended, new Promise((r) => setTimeout(r, 2000).unref())]);
      // A hijacked connection with stdin stays open until we close our side.
      (stream as unknown as { destroy(): void }).destroy();
      return StatusCode;
    } finally {
      spec.signal?.removeEventListener('abort', onAbort);
    }
  } finally {
    for (const [sig, fn] of forwarded) process.off(sig, fn);
    if (rawMode) stdin.setRawMode(false);
    if (spec.interactive) stdin.unpipe();
    stdin.pause();
    await container.remove({ force: true }).catch(() => {});
  }
}

/**
 * Runs a non-interactive command to completion and returns its exit code and
 * its output (stdout and stderr together). A command the runtime cannot start
 * (a missing executable) answers exit code 127 with the runtime's message.
 */
export async function runCaptured(
  docker: Docker,
  spec: Omit<RunSpec, 'interactive' | 'stdin' | 'stdout' | 'stderr' | 'forwardSignals'>,
): Promise<{ exitCode: number; output: string }> {
  const chunks: Buffer[] = [];
  const sink = new PassThrough().on('data', (c: Buffer) => chunks.push(c));
  try {
    const exitCode = await runContainer(docker, { ...spec, interactive: false, stdout: sink, stderr: sink });
    // A cancel kills the container (exit 137): that is the cancel, not the command's answer.
    spec.signal?.throwIfAborted();
    return { exitCode, output: Buffer.concat(chunks).toString() };
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode;
    if (status && !isNotFound(err) && !isConnectionError(err)) return { exitCode: 127, output: (err as Error).message };
    throw err;
  }
}

/** How far a pull is, from the engine's progress events. */
export interface PullProgress {
  /** Layers the engine named, and those done (downloaded and extracted, or already there). */
  layers: number;
  done: number;
  /** Bytes downloaded of the layers whose size the engine told (podman tells fewer than Docker). */
  bytes: number;
  bytesTotal: number;
  status: string;
}

/** Pulls an image through the engine, reporting each layer's progress. */
export async function pullImage(
  docker: Docker,
  image: string,
  onProgress?: (p: PullProgress) => void,
  opts: { platform?: string } = {},
): Promise<void> {
  let stream: NodeJS.ReadableStream;
  try {
    // From an index the engine takes `platform` ("linux/arm64"), else its own.
    stream = await docker.pull(image, opts.platform ? { platform: opts.platform } : {});
  } catch (err) {
    if (isConnectionError(err)) throw engineUnreachable(err);
    throw pullError(image, err);
  }
  const layers = new Map<string, { status: string; current: number; total: number }>();
  // podman reports some failures as an event in a stream that ends normally.
  let failure: string | null = null;
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(
      stream,
      (err) => (err ? reject(pullError(image, err)) : failure ? reject(pullError(image, new Error(failure))) : resolve()),
      (e: { id?: string; status?: string; error?: string; progressDetail?: { current?: number; total?: number } }) => {
        if (e.error) {
          failure ??= e.error;
          return;
        }
        if (e.id && e.status && !/^Pulling from|^Digest|^Status/i.test(e.status)) {
          const l = layers.get(e.id) ?? { status: '', current: 0, total: 0 };
          l.status = e.status;
          if (e.progressDetail?.total) l.total = e.progressDetail.total;
          if (/^Downloading/i.test(e.status) && e.progressDetail?.current !== undefined) l.current = e.progressDetail.current;
          if (/download complete|pull complete|already exists/i.test(e.status) && l.total) l.current = l.total;
          layers.set(e.id, l);
        }
        const all = [...layers.values()];
        onProgress?.({
          layers: all.length,
          done: all.filter((l) => /complete|already exists|exists/i.test(l.status)).length,
          bytes: all.reduce((n, l) => n + l.current, 0),
          bytesTotal: all.reduce((n, l) => n + l.total, 0),
          status: e.status ?? '',
        });
      },
    ),
  );
  try {
    await docker.getImage(image).inspect();
  } catch {
    throw pullError(image, new Error('the engine reports success but does not have the image'));
  }
}

function showPort(p: PublishedPort): string {
  return `${p.hostIp ? `${p.hostIp}:` : ''}${p.hostPort ?? ''}:${p.containerPort}/${p.protocol}`;
}

function firstLine(err: unknown): string {
  const e = err as { json?: { message?: string }; message?: string };
  return String(e.json?.message ?? e.message ?? err).split('\n')[0]!.replace(/^\(HTTP code \d+\) [^-]*- /, '');
}

function pullError(image: string, err: unknown): UserError {
  const msg = String((err as Error)?.message ?? err).split('\n')[0] ?? '';
  return new UserError(
    `The engine could not pull ${image}: ${msg}`,
    /manifest unknown|not found|404/i.test(msg)
      ? 'build and push it first with `nixdocker build`'
      : /http: server gave HTTP response to HTTPS client|https/i.test(msg)
        ? 'the engine needs the registry listed as insecure (podman: registries.conf; Docker: insecure-registries in daemon.json)'
        : 'check that the registry (registry.host) is reachable from the engine',
    { cause: err },
  );
}
