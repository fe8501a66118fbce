import { createHash } from 'node:crypto';
import path from 'node:path';

/** The builder store's folder of one project's roots (container mode). */
export function projectRootsDir(projectDir: string): string {
  return `/nix/var/nix/gcroots/nixdocker/${createHash('sha256').update(projectDir).digest('hex').slice(0, 16)}`;
}

/** The roots of the project's current image: rewritten by each successful build. */
export function containerBuildRoots(projectDir: string): string {
  return `${projectRootsDir(projectDir)}/current`;
}

/** Local mode: an indirect root in the cache directory (Nix records it under gcroots/auto). */
export function localBuildRoots(cacheDir: string): string {
  return path.join(cacheDir, 'gcroots', 'current');
}
