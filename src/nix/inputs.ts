import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/types.js';
import { NIX_DIR, NIX_ENTRY_FILES } from '../version.js';
import type { Identity } from '../identity.js';
import type { StagedFile } from '../builder/staging.js';

export type { StagedFile };

export const PROJECT_SUBDIR = 'project';
export const ENTRY_PATH = 'nix/entry.nix';

/**
 * The files a build sees: nixdocker's entry point under `nix/` and the
 * project's inputs (the identity's files) under `project/`. Nothing else of the
 * project is copied, so a build can only depend on what the hash covers.
 */
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
