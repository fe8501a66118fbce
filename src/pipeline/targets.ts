import type { BuilderTarget } from '../builder/container-runner.js';
import { builderTarget } from '../builder/target.js';
import { formatPlatform, nixSystemOf, platformOfNixSystem, samePlatform, type Platform } from '../config/platform.js';
import type { Config } from '../config/types.js';
import { enginePlatform } from '../engine/engine.js';
import { UserError } from '../errors.js';
import { readJson, writeJson } from '../util/json-file.js';
import type { Pipeline } from './pipeline.js';

/** One platform of a build, with the builder that builds it. */
export interface BuildTarget {
  /** "linux/arm64"; "builder" when `platforms` is unset (the builder's own platform). */
  key: string;
  /** The platform asked for, or null: whatever the configured builder builds. */
  platform: Platform | null;
  builder: BuilderTarget;
  /** The platform's own engine, if it names one. */
  dockerHost?: string;
}

/** The config's platforms as build targets; unset, the one configured builder as it is. */
export function buildTargets(config: Config): BuildTarget[] {
  // Mounts and network (caches, remote builders) are the same for every platform's builder.
  const base = builderTarget(config);
  if (!config.platforms) return [{ key: 'builder', platform: null, builder: base }];
  return config.platforms.map((t) => ({
    key: t.name,
    platform: t.platform,
    builder: { ...base, image: t.image, volume: t.volume, platform: t.name },
    ...(t.dockerHost ? { dockerHost: t.dockerHost } : {}),
  }));
}

const SYSTEMS_FILE = 'builder-systems.json';

/**
 * The platform each target must find in the tag's index. A target without a
 * platform builds for whatever its builder's Nix says: remembered from the
 * last build with that image (a no-op then needs nothing but the registry),
 * else the engine's native platform, which an ordinary builder image has.
 */
export async function expectedPlatform(p: Pipeline, target: BuildTarget): Promise<Platform> {
  if (target.platform) return target.platform;
  const known = (await readJson<Record<string, string>>(p.stateFile(SYSTEMS_FILE))) ?? {};
  const system = known[target.builder.image];
  if (system) return platformOfNixSystem(system);
  return enginePlatform(p.engineFor(target));
}

/**
 * After Nix ran: the builder built for the target's platform (an amd64-only
 * image started "for" arm64 runs as amd64 on some engines), and the system of
 * a target without a platform is remembered for the next skip check.
 */
export async function checkBuiltSystem(p: Pipeline, target: BuildTarget, system: string): Promise<void> {
  if (target.platform) {
    const want = nixSystemOf(target.platform);
    if (want !== system) {
      throw new UserError(
        `The builder for ${formatPlatform(target.platform)} (image ${target.builder.image}) built for ${system}, not ${want}: the engine ran the image as another platform.`,
        `give ${target.key} a builder image of that platform in "platforms" ({"platform": "${target.key}", "image": "..."}), or enable emulation on the engine (binfmt and qemu-user-static)`,
      );
    }
    return;
  }
  const file = p.stateFile(SYSTEMS_FILE);
  const known = (await readJson<Record<string, string>>(file)) ?? {};
  if (known[target.builder.image] !== system) await writeJson(file, { ...known, [target.builder.image]: system });
}

/** The targets to build for the engine alone (--load, a config without a registry). */
export async function engineTargets(p: Pipeline, targets: BuildTarget[]): Promise<BuildTarget[]> {
  if (!p.config.platforms) return targets;
  const native = await enginePlatform(p.engine());
  const mine = targets.filter((t) => t.platform && samePlatform(t.platform, native));
  if (mine.length === 0) {
    throw new UserError(
      `The engine runs ${formatPlatform(native)}, which "platforms" does not list (${targets.map((t) => t.key).join(', ')}); an image of another platform cannot be loaded into it.`,
      `add "${formatPlatform(native)}" to "platforms", or push instead of --load`,
    );
  }
  return mine;
}
