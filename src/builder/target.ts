import { existsSync, mkdirSync } from 'node:fs';
import type Docker from 'dockerode';
import { fileStoreDir, hostPathNow } from '../config/trust.js';
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
  const mountDir = (url: string, setting: 'builder.cache' | 'builder.substituters', readOnly: boolean) => {
    const dir = fileStoreDir(url);
    if (!dir || seen.has(dir)) return;
    // Checked again now (a symlink may have been swapped in since the config was read); the real path is mounted.
    let source = hostPathNow(config, setting, dir);
    // The upload target is made on first use; a substituter that is not there yet has nothing to give.
    if (!readOnly) {
      mkdirSync(source, { recursive: true });
      source = hostPathNow(config, setting, source);
    } else if (!existsSync(source)) return;
    seen.add(dir);
    mounts.push({ Type: 'bind', Source: source, Target: dir, ReadOnly: readOnly });
  };
  if (b.cache) mountDir(b.cache.url, 'builder.cache', false);
  for (const s of b.substituters) mountDir(s, 'builder.substituters', true);
  const remote = b.substituters.length > 0 || b.cache !== null || b.remoteBuilders.length > 0;
  return { image: b.image, volume: b.volume, mounts, ...(remote ? { networkMode: 'host' as const } : {}) };
}
