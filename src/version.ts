import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/**
 * Bumped whenever the image layout changes (layering, tar normalisation,
 * customisation layer), so that an upgrade never reuses a tag built by an
 * older nixdocker for the same inputs. The Nix entry point is hashed by
 * content, so editing it needs no bump.
 */
export const LAYOUT_VERSION = 1;

/** The repository root of this package (works from src/ under tsx and from dist/src/). */
export const PACKAGE_ROOT = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));

/** The Nix entry point that evaluates envDir and the user files. */
export const NIX_DIR = path.join(PACKAGE_ROOT, 'nix');
export const NIX_ENTRY_FILES = ['entry.nix'] as const;

function findPackageRoot(dir: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(d, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'nixdocker') return d;
    } catch {
      // keep climbing
    }
    if (path.dirname(d) === d) throw new Error(`nixdocker: cannot find its package.json above ${dir}`);
  }
}

export const VERSION: string = (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

let formatDigest: string | undefined;

/** Digest of everything of nixdocker's own that shapes image content. */
export function formatVersion(): string {
  if (!formatDigest) {
    const h = createHash('sha256').update(`layout:${LAYOUT_VERSION}\n`);
    for (const f of NIX_ENTRY_FILES) h.update(`${f}\0`).update(readFileSync(path.join(NIX_DIR, f))).update('\n');
    formatDigest = h.digest('hex');
  }
  return formatDigest;
}
