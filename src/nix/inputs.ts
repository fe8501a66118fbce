import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/types.js';
import { NIX_DIR, NIX_ENTRY_FILES } from '../version.js';
import type { Identity } from '../identity.js';
import type { StagedFile } from '../builder/staging.js';


export const PROJECT_SUBDIR = 'project';
export const ENTRY_PATH = 'nix/entry.nix';

/**
 * The files a build sees: nixdocker's entry point under `nix/` and the
 * project's inputs (the identity's files) under `project/`. Nothing else of the
 * project is copied, so a build can only depend on what the hash covers, and
 * the inputs are the very bytes the identity hashed (kept when it read them),
 * never a second read: a file that changes meanwhile is the next build's.
 */
export async function stageInputs(identity: Identity): Promise<StagedFile[]> {
  const { contents } = identity;
  if (!contents) throw new Error(`the identity ${identity.image} was computed without keeping its inputs' bytes (keepContents: false)`);
  const files: StagedFile[] = [];
  for (const f of NIX_ENTRY_FILES) files.push({ path: `nix/${f}`, bytes: await readFile(path.join(NIX_DIR, f)) });
  for (const input of identity.inputs) files.push({ path: `${PROJECT_SUBDIR}/${input.path}`, bytes: contents.get(input.path) });
  return files;
}

/** The manifest entry.nix reads: which files are the env and which the user's. */
export function nixManifest(config: Config): string {
  return JSON.stringify({ envDir: config.envDir, userConfig: config.userConfig });
}
