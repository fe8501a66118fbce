import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(REPO_ROOT, 'bin', 'nixdocker.js');

const made: string[] = [];

/** A temporary project with the given files (relative path → content). */
export async function tmpProject(files: Record<string, string>, prefix = 'nixdocker-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  made.push(dir);
  await writeFiles(dir, files);
  return dir;
}

export async function writeFiles(dir: string, files: Record<string, string>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(dir, rel);
    await mkdir(path.dirname(p), { recursive: true });
    await writeFile(p, content);
  }
}

/**
 * A user-level config (what NIXDOCKER_USER_CONFIG names) with these settings,
 * in a directory of its own outside any project: where host paths outside a
 * project (keys, file:// caches) must come from.
 */
export async function userConfigFile(settings: Record<string, unknown>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixdocker-user-'));
  made.push(dir);
  const file = path.join(dir, 'config.json');
  await writeFile(file, JSON.stringify(settings, null, 2));
  return file;
}

/** Removes every project this process made (call from a suite's `after`). */
export async function cleanupProjects(): Promise<void> {
  await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI as a user would, in a child process. */
export async function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<CliResult> {
  const r = await execa(process.execPath, [BIN, ...args], {
    reject: false,
    env: { ...opts.env },
    timeout: opts.timeoutMs ?? 120_000,
    input: opts.input ?? '',
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
