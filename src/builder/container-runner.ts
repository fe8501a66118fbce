import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import { isUserError, UserError } from '../errors.js';
import { isConnectionError, isNotFound, engineUnreachable } from '../engine/engine.js';
import { builderLabels, HEARTBEAT_FILE, KEEP_ALIVE } from './ownership.js';
import { ensureSeeded, parseSeed, SEED_FILE } from './seed.js';
import { containerBuildRoots } from './gc-roots.js';
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

/** Whose builder container it is, and how long it outlives a silent owner. */
export interface BuilderLife {
  projectDir: string;
  /** builder.idleSeconds */
  idleSeconds: number;
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
  private heartbeat: NodeJS.Timeout | null = null;

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
    readonly gcRoots: string,
  ) {}

  static async open(docker: Docker, target: BuilderTarget, files: StagedFile[], life: BuilderLife, signal?: AbortSignal): Promise<ContainerRunner> {
    const imageId = await checkBuilder(docker, target);
    let container: Docker.Container;
    try {
      container = await docker.createContainer({
        // A query parameter of POST /containers/create (dockerode puts every option there too).
        ...(target.platform ? { platform: target.platform } : {}),
        Image: target.image,
        // Lives while this process sends heartbeats, then stops and is removed (see KEEP_ALIVE).
        Cmd: ['sh', '-c', KEEP_ALIVE, 'nixdocker-keep-alive', String(life.idleSeconds)],
        Labels: builderLabels(target.volume, life.projectDir),
        WorkingDir: '/',
        // Nix downloads with curl, which reads these: a host behind a proxy builds behind it too.
        Env: proxyEnv(),
        HostConfig: {
          Mounts: [{ Type: 'volume', Source: target.volume, Target: '/nix' }, ...(target.mounts ?? [])],
          Init: true,
          AutoRemove: true,
          ...(target.networkMode ? { NetworkMode: target.networkMode } : {}),
        },
      });
    } catch (err) {
      throw isConnectionError(err) ? engineUnreachable(err) : err;
    }
    const runner = new ContainerRunner(docker, container, containerBuildRoots(life.projectDir));
    try {
      await container.start();
      runner.beat(life.idleSeconds);
      // The volume must hold this image's Nix, not the one of an image it was filled from before.
      const seed = await runner.run(['sh', '-c', `cat ${SEED_FILE} 2>/dev/null; true`], { signal });
      await ensureSeeded(docker, target, imageId, parseSeed(seed.stdout), { projectDir: life.projectDir, signal });
      await runner.stage(files, signal);
    } catch (err) {
      // The first failure is the one to report, not a failing removal after it.
      await runner.close().catch(() => {});
      throw err;
    }
    return runner;
  }

  /**
   * Touches the heartbeat file a few times per idle bound for as long as this
   * runner is open, also while a long Nix step runs. The timer is unref'd: it
   * never keeps the process alive, and when the process dies the beats stop.
   */
  private beat(idleSeconds: number): void {
    const every = Math.max(500, Math.floor((idleSeconds * 1000) / 4));
    const touch = async () => {
      const exec = await this.container.exec({ Cmd: ['sh', '-c', `: > ${HEARTBEAT_FILE}`], AttachStdout: false, AttachStderr: false });
      // podman answers a detached start with a response it never ends: drop it, or it keeps the process alive.
      const res = (await exec.start({ Detach: true })) as unknown as { destroy?: () => void } | undefined;
      res?.destroy?.();
    };
    this.heartbeat = setInterval(() => {
      // A missed beat is harmless (the next one comes); a container gone shows at its next use.
      if (!this.closed) touch().catch(() => {});
    }, every);
    this.heartbeat.unref();
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
    let stream: NodeJS.ReadWriteStream | null = null;
    // Dropping the HTTP stream does not stop the process: cancelling kills the
    // container. The listener goes on before the first await, so a cancel that
    // arrives while the exec is being created is not lost.
    const onAbort = () => {
      // A failing remove (the engine gone) must not become an unhandled
      // rejection; the run rejects with the abort anyway, and a container left
      // behind stops on its own (see KEEP_ALIVE) or is removed as an orphan.
      this.close().catch(() => {});
      (stream as unknown as { destroy?: () => void } | null)?.destroy?.();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const withStdin = opts.stdin !== undefined;
      const exec = await this.container.exec({
        Cmd: cmd,
        Env: opts.env ? Object.entries(opts.env).map(([k, v]) => `${k}=${v}`) : undefined,
        AttachStdout: true,
        AttachStderr: true,
        AttachStdin: withStdin,
        Tty: false,
      });
      opts.signal?.throwIfAborted();
      const s = await exec.start({ hijack: true, stdin: withStdin });
      stream = s;
      opts.signal?.throwIfAborted();
      // Half-closing after the bytes gives the command its end of file; the output still arrives.
      if (withStdin) s.end(opts.stdin);
      const out: Buffer[] = [];
      const err = new LineSplitter(opts.onStderrLine);
      const stdout = new PassThrough().on('data', (c: Buffer) => out.push(c));
      const stderr = new PassThrough().on('data', (c: Buffer) => err.push(c));
      this.docker.modem.demuxStream(s, stdout, stderr);
      await new Promise<void>((resolve, reject) => {
        s.on('end', resolve);
        s.on('close', resolve);
        s.on('error', reject);
      });
      opts.signal?.throwIfAborted();
      err.end();
      const info = await exec.inspect();
      const exitCode = info.ExitCode ?? 1;
      // A Nix step killed with its container reads as a failed step: say what happened instead.
      // Killed by a signal (exit > 128), the container may still read as running for a moment.
      if (exitCode !== 0 && (await this.gone(exitCode > 128 ? 2000 : 0))) throw this.vanished();
      return { exitCode, stdout: Buffer.concat(out).toString(), stderrTail: err.tail };
    } catch (err) {
      // Cancelled: whatever the engine answered meanwhile (the container is being removed), it was the cancel.
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      if (isUserError(err)) throw err;
      throw await this.explain(err);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * The error to report for a failure while this runner was in use: a clear
   * one when the container disappeared (removed, stopped, the engine
   * restarted), else `err` itself. A vanished runner is no longer usable.
   */
  async explain(err: unknown): Promise<unknown> {
    if (this.closed || isUserError(err)) return err;
    return (await this.gone()) ? this.vanished(err) : err;
  }

  /** True when the container is no longer running (asking again for up to `waitMs`) and we did not close it. */
  private async gone(waitMs = 0): Promise<boolean> {
    if (this.closed) return false; // closed by us: not something to explain
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        const info = await this.container.inspect();
        if (!info.State?.Running) break;
      } catch (err) {
        if (!isNotFound(err)) return false;
        break;
      }
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
    this.closed = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    return true;
  }

  private vanished(cause?: unknown): UserError {
    return new UserError(
      `The builder container ${this.container.id.slice(0, 12)} disappeared during the build: something removed or stopped it (\`docker rm -f\`, \`nixdocker builder rm\`, a prune, an engine restart). Nothing of this build was pushed or tagged.`,
      'build again; `nixdocker watch` starts a new builder container with the next change',
      { cause },
    );
  }

  private closing: Promise<void> | null = null;

  /** Removes the container; every caller (a cancel, then the build's finally) awaits the same removal. */
  close(): Promise<void> {
    this.closed = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.closing ??= this.container.remove({ force: true }).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
    return this.closing;
  }
}

/** Image and volume must exist: a missing one is a setup step, not something to create silently. */
export async function checkBuilder(docker: Docker, target: BuilderTarget): Promise<string> {
  let imageId: string;
  try {
    imageId = (await docker.getImage(target.image).inspect()).Id;
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
  return imageId;
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
