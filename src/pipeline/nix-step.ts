import { buildEnvironment, type NixBuildOptions } from '../nix/environment.js';
import { ResultCache } from '../nix/result-cache.js';
import type { NixRunner } from '../builder/runner.js';
import type { BuildResult } from '../nix/types.js';
import type { Config } from '../config/types.js';
import type { Identity } from '../identity.js';

export interface NixStepResult {
  result: BuildResult;
  /** True when the result came from the cache and Nix did not run. */
  cached: boolean;
  /** The runner Nix ran in (to read store paths through); null when cached. */
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
  opts: NixBuildOptions & {
    force?: boolean;
    open: () => Promise<NixRunner>;
    /** The result cache's key of the platform ("linux/arm64"); none for the builder's own platform. */
    cacheKey?: string;
    /** A remembered result for another system does not count (the builder changed). */
    system?: string;
  },
): Promise<NixStepResult> {
  const cache = new ResultCache(config.cacheDir);
  if (!opts.force) {
    const hit = await cache.get(identity.name, identity.tag, opts.cacheKey);
    if (hit && (!opts.system || hit.system === opts.system)) return { result: hit, cached: true, runner: null };
  }
  // The caller owns the runner (open() records it) and releases it, also on failure.
  const runner = await opts.open();
  const result = await buildEnvironment(runner, config, identity, opts);
  await cache.put(result, opts.cacheKey);
  return { result, cached: false, runner };
}
