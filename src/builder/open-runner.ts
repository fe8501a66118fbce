import type Docker from 'dockerode';
import type { Config } from '../config/types.js';
import { ContainerRunner, type BuilderTarget } from './container-runner.js';
import { LocalRunner } from './local-runner.js';
import { localBuildRoots } from './gc-roots.js';
import type { NixRunner } from './runner.js';
import type { StagedFile } from './staging.js';

/** Opens the runner of the configured mode with the inputs staged. */
export async function openRunner(config: Config, target: BuilderTarget, files: StagedFile[], docker: Docker | null, signal?: AbortSignal): Promise<NixRunner> {
  if (config.builder.mode === 'local') return LocalRunner.open(files, localBuildRoots(config.cacheDir));
  if (!docker) throw new Error('container mode needs an engine client');
  return ContainerRunner.open(docker, target, files, { projectDir: config.projectDir, idleSeconds: config.builder.idleSeconds }, signal);
}
