import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(REPO_ROOT, 'bin', 'nixdocker.js');
export const WORK = path.join(REPO_ROOT, 'bench', 'work');

/** The bench's own Nix store volume, so that nothing of the tests' or a user's is touched. */
export const VOLUME = process.env.NIXDOCKER_BENCH_VOLUME ?? 'nixdocker-bench-store';
export const BUILDER_IMAGE = process.env.NIXDOCKER_TEST_BUILDER_IMAGE ?? 'localhost/nixdocker-test-builder:latest';

export function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

export interface Timed {
  /** Wall-clock seconds, spawn to exit. */
  seconds: number;
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a program and times it wall-clock; a non-zero exit throws with its output. */
export async function timed(file: string, args: string[], opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number; allowFail?: boolean } = {}): Promise<Timed> {
  const t0 = performance.now();
  const r = await execa(file, args, { cwd: opts.cwd, env: opts.env, reject: false, stdin: 'ignore', timeout: opts.timeoutMs ?? 300_000 });
  const seconds = (performance.now() - t0) / 1000;
  const out: Timed = { seconds, exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  if (out.exitCode !== 0 && !opts.allowFail) {
    throw new Error(`${path.basename(file)} ${args.join(' ')} exited ${r.exitCode ?? r.signal}${r.timedOut ? ' (timed out)' : ''}:\n${out.stderr.slice(-3000)}`);
  }
  return out;
}

/** `node bin/nixdocker.js ARGS`, as a user runs it (the parent's environment plus `env`). */
export function nixdocker(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number; allowFail?: boolean } = {}): Promise<Timed> {
  return timed(process.execPath, [BIN, ...args], opts);
}

/** The parts of `nixdocker build --json` the benchmarks read. */
export interface BuildJson {
  status: 'built' | 'up-to-date' | 'skipped';
  reference: string;
  image?: { digest: string; size: number; layers: { digest: string; size: number; kind: string }[]; durations: Record<string, number> };
  nixCached?: boolean;
  layersBuilt?: number;
  push?: { uploaded: number; skipped: number; mounted: number; bytesUploaded: number; ms: number } | null;
  durations?: Record<string, number>;
}

export async function build(dir: string, args: string[], env: Record<string, string> = {}): Promise<{ run: Timed; out: BuildJson }> {
  const run = await nixdocker(['-C', dir, 'build', '--json', ...args], { env });
  return { run, out: JSON.parse(run.stdout) as BuildJson };
}

/** `host/ns/name:tag` → the `docker://` reference skopeo takes. */
export function dockerRef(reference: string): string {
  return `docker://${reference}`;
}

/**
 * `timed` under GNU time: also the peak resident set of the process (and of
 * its largest child, as getrusage reports it), in bytes.
 */
export async function timedRss(file: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Timed & { maxRss: number }> {
  const { mkdtemp, readFile, rm } = await import('node:fs/promises');
  const os = await import('node:os');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nixdocker-bench-rss-'));
  try {
    const out = path.join(dir, 'rss');
    const r = await timed('/usr/bin/time', ['-f', '%M', '-o', out, file, ...args], opts);
    const kb = Number((await readFile(out, 'utf8')).trim().split('\n').pop());
    return { ...r, maxRss: kb * 1024 };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `nixdocker build --json` under GNU time. */
export async function buildRss(dir: string, args: string[], env: Record<string, string> = {}, timeoutMs = 600_000): Promise<{ run: Timed & { maxRss: number }; out: BuildJson }> {
  const run = await timedRss(process.execPath, [BIN, '-C', dir, 'build', '--json', ...args], { env, timeoutMs });
  return { run, out: JSON.parse(run.stdout) as BuildJson };
}

/** Bytes under `dir`, as `du -sb` counts them. */
export async function diskUsage(dir: string): Promise<number> {
  const r = await timed('du', ['-sb', dir]);
  return Number(r.stdout.split(/\s/)[0]);
}
