import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { tarStream } from '../util/tar-stream.js';
import type { Config } from '../config/types.js';
import { NIX_DIR, NIX_ENTRY_FILES } from '../version.js';
import type { Identity } from '../identity.js';

/**
 * The files a build sees: nixdocker's entry point under `nix/` and the
 * project's inputs (the identity's files) under `project/`. Nothing else of the
 * project is copied, so a build can only depend on what the hash covers.
 */
export interface StagedFile {
  /** Path inside the staging root, e.g. `project/env/default.nix`. */
  path: string;
  bytes: Buffer;
}

export const PROJECT_SUBDIR = 'project';
export const ENTRY_PATH = 'nix/entry.nix';

export async function stageInputs(config: Config, identity: Identity): Promise<StagedFile[]> {
  const files: StagedFile[] = [];
  for (const f of NIX_ENTRY_FILES) files.push({ path: `nix/${f}`, bytes: await readFile(path.join(NIX_DIR, f)) });
  for (const input of identity.inputs) {
    files.push({ path: `${PROJECT_SUBDIR}/${input.path}`, bytes: await readFile(path.join(config.projectDir, input.path)) });
  }
  return files;
}

/** The manifest entry.nix reads: which files are the env and which the user's. */
export function nixManifest(config: Config): string {
  return JSON.stringify({ envDir: config.envDir, userConfig: config.userConfig });
}

/** A tar of the staged files for the engine's archive API. */
export async function stagedTar(files: StagedFile[]): Promise<Buffer> {
  const p = tarStream().pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    p.on('end', resolve);
    p.on('error', reject);
  });
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!dirs.has(dir)) {
        dirs.add(dir);
        p.entry({ name: `${dir}/`, type: 'directory', mode: 0o755, mtime: new Date(0) });
      }
    }
    p.entry({ name: f.path, mode: 0o644, mtime: new Date(0), size: f.bytes.length }, f.bytes);
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}
