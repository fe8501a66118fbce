import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pidAlive, selfOwner } from './owner.js';

/**
 * Each process writes its temporary files (partial blobs, spooled archives)
 * under `<cacheDir>/tmp/<pid>-<start>/`, so whatever a killed process left
 * there can be told from what a live one is still writing, and removed.
 */
export function processTmpDir(cacheDir: string): string {
  const o = selfOwner();
  return path.join(cacheDir, 'tmp', `${o.pid}-${o.start}`);
}

export async function ensureProcessTmpDir(cacheDir: string): Promise<string> {
  const dir = processTmpDir(cacheDir);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Loose files of versions before the per-process folders: `blob-<pid>-…`, `tar-…`. */
const LEGACY_BLOB = /^blob-(\d+)-/;
const LEGACY_AGE_MS = 60 * 60 * 1000;

/**
 * Removes the temporary files of processes that are gone (`kill -9`, a crash,
 * a power cut). Returns how many entries it removed. Never fails the caller:
 * what cannot be removed now is tried again at the next start.
 */
export async function removeDeadTmp(cacheDir: string): Promise<number> {
  const root = path.join(cacheDir, 'tmp');
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const owned = /^(\d+)-(\d+)$/.exec(name);
    const legacy = LEGACY_BLOB.exec(name);
    let dead: boolean;
    if (owned) dead = !pidAlive(Number(owned[1]), Number(owned[2]));
    else if (legacy) dead = !pidAlive(Number(legacy[1]));
    else if (name.startsWith('tar-')) dead = await olderThan(path.join(root, name), LEGACY_AGE_MS);
    else continue;
    if (!dead) continue;
    try {
      await rm(path.join(root, name), { recursive: true, force: true });
      removed++;
    } catch {
      // tried again next time
    }
  }
  return removed;
}

async function olderThan(p: string, ms: number): Promise<boolean> {
  try {
    return Date.now() - (await stat(p)).mtimeMs > ms;
  } catch {
    return false;
  }
}
