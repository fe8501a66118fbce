import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { UserError } from './errors.js';

/**
 * Bumped whenever the image layout changes (layering, tar normalisation,
 * customisation layer), so that an upgrade never reuses a tag built by an
 * older nixdocker for the same inputs. The Nix entry point is hashed by
 * content, so editing it needs no bump.
 */
export const LAYOUT_VERSION = 3;

/**
 * The `created` of every image made with this LAYOUT_VERSION when
 * SOURCE_DATE_EPOCH is unset: fixed, so the same inputs give the same digest
 * on every machine and run, and the date this layout came in, so `docker
 * images` shows a plausible age instead of "56 years ago". Move it forward
 * with each LAYOUT_VERSION bump (version 2 brought it in; 3, the chunked rest of docs/layering.md, came the same day).
 */
export const LAYOUT_DATE = '2026-11-25T00:00:00Z';

/**
 * The image's `created`: SOURCE_DATE_EPOCH (the reproducible-builds
 * convention, whole seconds since the epoch) when set, else LAYOUT_DATE.
 * It is part of the tag, so two values never share one name:tag.
 */
export function imageCreated(env: NodeJS.ProcessEnv = process.env): string {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return LAYOUT_DATE;
  const seconds = /^\d{1,12}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(seconds)) {
    throw new UserError(
      `SOURCE_DATE_EPOCH=${JSON.stringify(raw.slice(0, 40))} is not a whole number of seconds since 1970.`,
      'set SOURCE_DATE_EPOCH to an integer such as `git log -1 --format=%ct`, or unset it to use nixdocker\'s fixed date',
    );
  }
  return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

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
