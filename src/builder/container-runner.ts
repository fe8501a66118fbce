import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import { UserError } from '../errors.js';
import { LABEL_ROLE, isConnectionError, isNotFound, engineUnreachable } from '../engine/engine.js';
import { stagedTar, type StagedFile } from './staging.js';
import { LineSplitter, type NixRunner, type RunOptions, type RunResult } from './runner.js';

/** Where the inputs go inside the builder container. */
const ROOT = '/nixdocker';

export interface BuilderTarget {
  image: string;
  volume: string;
  /** Extra mounts (read-only SSH files, a file:// binary cache). */
  mounts?: Docker.MountSettings[];
  /** 'host' to reach caches and remote builders on the host's loopback. */
  networkMode?: 'host';
  /** "linux/arm64": the engine starts the image for that platform (emulated where it is foreign). */
  platform?: string;
}

/**
 * Container mode: one builder container per build, with the store volume at
 * /nix. It idles while nixdocker execs each Nix step into it (an exec costs
 * ~0.05 s against ~0.5 s for a new container), and is killed and removed on
 * close or cancel, which stops every Nix process in it.
 */
export class ContainerRunner implements NixRunner {
  private stagings = 0;
  private closed = false;

  /** Each staging gets a folder of its own, so a reused container never mixes two builds' inputs. */
  get root(): string {
    return `${ROOT}/${this.stagings}`;
  }

  /** False once closed or cancelled (the container is gone). */
  get usable(): boolean {
    return !this.closed;
  }

  private constructor(
    private readonly docker: Docker,
    readonly container: Docker.Container,
  ) {}

  static async open(docker: Docker, target: BuilderTarget, files: StagedFile[], signal?: AbortSignal): Promise<ContainerRunner> {
    await checkBuilder(docker, target);
    let container: Docker.Container;
    try {
      container = await docker.createContainer({
        // A query parameter of POST /containers/create (dockerode puts every option there too).
        ...(target.platform ? { platform: target.platform } : {}),
        Image: target.image,
        // Idle until removed; sh -c keeps this working in images whose PATH lacks coreutils' sleep.
        Cmd: ['sh', '-c', 'while :; do sleep 3600; done'],
        Labels: { [LABEL_ROLE]: 'build', 'org.nixdocker.volume': target.volume },
        WorkingDir: '/',
        // Nix downloads with curl, which reads these: a host behind a proxy builds behind it too.
        Env: proxyEnv(),
        HostConfig: {
          Mounts: [{ Type: 'volume', Source: target.volume, Target: '/nix' }, ...(target.mounts ?? [])],
          Init: true,
          ...(target.networkMode ? { NetworkMode: target.networkMode } : {}),
        },
      });
    } catch (err) {
      throw isConnectionError(err) ? engineUnreachable(err) : err;
    }
    const runner = new ContainerRunner(docker, container);
    try {
      await container.start();
      await runner.stage(files, signal);
    } catch (err) {
      await runner.close();
      throw err;
    }
    return runner;
  }

  /**
   * Copies a build's inputs in (the archive API, so a remote engine works).
   * The daemon keeps one runner warm and stages each build into it: an exec
   * into a running container costs ~0.05 s, a new container ~0.5 s.
   */
  async stage(files: StagedFile[], signal?: AbortSignal): Promise<void> {
    this.stagings++;
    const tar = await stagedTar(files.map((f) => ({ ...f, path: `${this.root.slice(1)}/${f.path}` })));
    await this.container.putArchive(tar, { path: '/' });
    signal?.throwIfAborted();
  }

  async run(cmd: string[], opts: RunOptions): Promise<RunResult> {
    opts.signal?.throwIfAborted();
    const withStdin = opts.stdin !== undefined;
    const exec = await this.container.exec({
      Cmd: cmd,
      Env: opts.env ? Object.entries(opts.env).map(([k, v]) => `${k}=${v}`) : undefined,
      AttachStdout: true,
      AttachStderr: true,
      AttachStdin: withStdin,
      Tty: false,
    });
    const stream = await exec.start({ hijack: true, stdin: withStdin });
    // Half-closing after the bytes gives the command its end of file; the output still arrives.
    if (withStdin) stream.end(opts.stdin);
    const out: Buffer[] = [];
    const err = new LineSplitter(opts.onStderrLine);
    const stdout = new PassThrough().on('data', (c: Buffer) => out.push(c));
    const stderr = new PassThrough().on('data', (c: Buffer) => err.push(c));
    this.docker.modem.demuxStream(stream, stdout, stderr);

    // Dropping the HTTP stream does not stop the process: cancelling kills the container.
    const onAbort = () => {
      void this.close();
      stream.destroy();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        stream.on('end', resolve);
        stream.on('close', resolve);
        stream.on('error', reject);
      });
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
    opts.signal?.throwIfAborted();
    err.end();
    const info = await exec.inspect();
    return { exitCode: info.ExitCode ?? 1, stdout: Buffer.concat(out).toString(), stderrTail: err.tail };
  }

  private closing: Promise<void> | null = null;

  /** Removes the container; every caller (a cancel, then the build's finally) awaits the same removal. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= this.container.remove({ force: true }).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
    return this.closing;
  }
}

/** Image and volume must exist: a missing one is a setup step, not something to create silently. */
export async function checkBuilder(docker: Docker, target: BuilderTarget): Promise<void> {
  try {
    await docker.getImage(target.image).inspect();
  } catch (err) {
    if (isConnectionError(err)) throw engineUnreachable(err);
    if (isNotFound(err)) {
      throw new UserError(`The builder image ${target.image} (builder.image) is not in the engine.`, 'run `nixdocker builder create`');
    }
    throw err;
  }
  try {
    await docker.getVolume(target.volume).inspect();
  } catch (err) {
    if (isNotFound(err)) {
      throw new UserError(`The Nix store volume ${target.volume} (builder.volume) does not exist.`, 'run `nixdocker builder create`');
    }
    throw err;
  }
}

/** The proxy variables of this process, in both spellings curl reads (http_proxy only in lower case). */
export function proxyEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  const out: string[] = [];
  for (const name of ['http_proxy', 'https_proxy', 'ftp_proxy', 'all_proxy', 'no_proxy']) {
    const value = env[name] ?? env[name.toUpperCase()];
    if (value) out.push(`${name}=${value}`, `${name.toUpperCase()}=${value}`);
  }
  return out;
}
