import type Docker from 'dockerode';
import { openRunner, runNixBuild, type NixBuildOptions } from '../build/nix-build.js';
import { ResultCache } from '../build/result-cache.js';
import type { NixRunner } from '../build/runner.js';
import type { BuildResult } from '../build/types.js';
import type { Config } from '../config/types.js';
import type { Identity } from '../identity.js';

export interface NixStepResult {
  result: BuildResult;
  /** True when the result came from the cache and Nix did not run. */
  cached: boolean;
  /** The open runner (to read store paths through); null when cached. Close it. */
  runner: NixRunner | null;
}

/**
 * The Nix half of a build: a remembered result for this identity, or a
 * fresh evaluation and build. The runner stays open so that image assembly
 * can read store paths through the same builder container.
 */
export async function nixStep(
  config: Config,
  identity: Identity,
  docker: Docker | null,
  opts: NixBuildOptions & { force?: boolean },
): Promise<NixStepResult> {
  const cache = new ResultCache(config.cacheDir);
  if (!opts.force) {
    const hit = await cache.get(identity.name, identity.tag);
    if (hit) return { result: hit, cached: true, runner: null };
  }
  const runner = await openRunner(config, identity, docker, opts.signal);
  try {
    const result = await runNixBuild(runner, config, identity, opts);
    await cache.put(result);
    return { result, cached: false, runner };
  } catch (err) {
    await runner.close();
    throw err;
  }
}
