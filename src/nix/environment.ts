import type Docker from 'dockerode';
import type { Config } from '../config/types.js';
import type { Identity } from '../identity.js';
import type { Logger } from '../log.js';
import { ContainerRunner } from '../builder/container-runner.js';
import { nixManifest, type StagedFile } from './inputs.js';
import { LocalRunner } from '../builder/local-runner.js';
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

/** Opens the runner of the configured mode with the inputs staged. */
export async function openRunner(config: Config, files: StagedFile[], docker: Docker | null, signal?: AbortSignal): Promise<NixRunner> {
  if (config.builder.mode === 'local') return LocalRunner.open(files);
  if (!docker) throw new Error('container mode needs an engine client');
  return ContainerRunner.open(docker, { image: config.builder.image, volume: config.builder.volume }, files, signal);
}

/** Evaluates, builds and queries the closure: everything image assembly needs. */
export async function runNixBuild(runner: NixRunner, config: Config, identity: Identity, opts: NixBuildOptions): Promise<BuildResult> {
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
  return { name: identity.name, tag: identity.tag, base: ev.base, user: ev.user, closure, image: ev.image, phases, built };
}
