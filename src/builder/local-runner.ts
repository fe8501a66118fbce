import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UserError } from '../errors.js';
import type { StagedFile } from './staging.js';
import { LineSplitter, type NixRunner, type RunOptions, type RunResult } from './runner.js';

/**
 * Local mode: the host's Nix, on a staged copy of the inputs, so that a local
 * build sees exactly the files a container build sees.
 */
export class LocalRunner implements NixRunner {
  private constructor(
    readonly root: string,
    readonly gcRoots: string,
  ) {}

  static async open(files: StagedFile[], gcRoots: string): Promise<LocalRunner> {
    const root = await mkdtemp(path.join(tmpdir(), 'nixdocker-build-'));
    for (const f of files) {
      const p = path.join(root, f.path);
      await mkdir(path.dirname(p), { recursive: true });
      await writeFile(p, f.bytes);
    }
    return new LocalRunner(root, gcRoots);
  }

  async run(cmd: string[], opts: RunOptions): Promise<RunResult> {
    const err = new LineSplitter(opts.onStderrLine);
    const { execa } = await import('execa');
    const child = execa(cmd[0]!, cmd.slice(1), {
      reject: false,
      cancelSignal: opts.signal,
      forceKillAfterDelay: 5000,
      ...(opts.stdin !== undefined ? { input: opts.stdin } : { stdin: 'ignore' as const }),
      env: opts.env,
      buffer: { stdout: true, stderr: false },
      maxBuffer: 256 * 1024 * 1024,
    });
    child.stderr?.on('data', (c: Buffer) => err.push(c));
    const r = await child;
    err.end();
    if (r.isCanceled) throw opts.signal?.reason ?? new Error('cancelled');
    if ((r as { code?: string }).code === 'ENOENT') {
      throw new UserError(`builder.mode is "local" but ${cmd[0]} is not on PATH.`, 'install Nix on this machine, or set builder.mode to "container"');
    }
    return { exitCode: r.exitCode ?? 1, stdout: String(r.stdout), stderrTail: err.tail };
  }

  async close(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }
}
