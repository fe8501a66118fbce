import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type Docker from 'dockerode';
import type { Config } from '../config/types.js';
import type { BuilderTarget } from './container-runner.js';
import { sshMounts } from './remote-builders.js';

/**
 * The builder container a config asks for. Caches and remote builders are
 * often on the host's loopback (a static server, an SSH tunnel), so a builder
 * that talks to any of them shares the host's network. A file:// cache is a
 * host directory mounted at the same path, so its URL means the same inside.
 */
export function builderTarget(config: Config): BuilderTarget {
  const b = config.builder;
  const mounts: Docker.MountSettings[] = [...sshMounts(config)];
  const seen = new Set<string>();
  const mountDir = (url: string, readOnly: boolean) => {
    const dir = fileCacheDir(url);
    if (!dir || seen.has(dir)) return;
    // The upload target is made on first use; a substituter that is not there yet has nothing to give.
    if (!readOnly) mkdirSync(dir, { recursive: true });
    else if (!existsSync(dir)) return;
    seen.add(dir);
    mounts.push({ Type: 'bind', Source: dir, Target: dir, ReadOnly: readOnly });
  };
  if (b.cache) mountDir(b.cache.url, false);
  for (const s of b.substituters) mountDir(s, true);
  const remote = b.substituters.length > 0 || b.cache !== null || b.remoteBuilders.length > 0;
  return { image: b.image, volume: b.volume, mounts, ...(remote ? { networkMode: 'host' as const } : {}) };
}

/** The directory of a file:// store URL (query parameters dropped), else null. */
export function fileCacheDir(url: string): string | null {
  if (!url.startsWith('file://')) return null;
  const dir = decodeURIComponent(url.slice('file://'.length).split('?')[0]!);
  return path.posix.normalize(dir).replace(/\/+$/, '') || '/';
}
