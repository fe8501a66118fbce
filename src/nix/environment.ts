import type { Config } from '../config/types.js';
import type { Identity } from '../identity.js';
import type { Logger } from '../log.js';
import { nixManifest } from './inputs.js';
import { evaluate, queryClosure, realise, type NixProgress } from './commands.js';
import type { NixRunner } from '../builder/runner.js';
import type { BuildPhase, BuildResult } from './types.js';

export interface NixBuildOptions {
  log: Logger;
  signal?: AbortSignal;
  /** Each line of Nix's log, as it arrives. */
  onLog?: (line: string) => void;
  onProgress?: (p: NixProgress) => void;
  /** The phase that starts now. */
  onPhase?: (phase: BuildPhase) => void;
}

/** Evaluates, builds and queries the closure: everything image assembly needs. */
export async function buildEnvironment(runner: NixRunner, config: Config, identity: Identity, opts: NixBuildOptions): Promise<BuildResult> {
  const phases: BuildResult['phases'] = {};
  const timed = async <T>(phase: BuildPhase, fn: () => Promise<T>): Promise<T> => {
    opts.onPhase?.(phase);
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      phases[phase] = Math.round(performance.now() - t0);
    }
  };
  const step = { signal: opts.signal, onLog: opts.onLog };

  const ev = await timed('evaluate', () => evaluate(runner, nixManifest(config), step));
  const packages = [...ev.base, ...ev.user];
  const built = await timed('build', () => realise(runner, packages.map((p) => p.drvPath), { ...step, onProgress: opts.onProgress }));
  const closure = await timed('closure', () => queryClosure(runner, packages.map((p) => p.outPath), step));
  return { name: identity.name, tag: identity.tag, system: ev.system, base: ev.base, user: ev.user, closure, image: ev.image, phases, built };
}
