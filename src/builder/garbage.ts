import type Docker from 'dockerode';
import { runInBuilder } from './builder.js';
import { projectRootsDir } from './gc-roots.js';
import type { BuilderTarget } from './container-runner.js';

/**
 * Runs nix-collect-garbage in the builder after rooting the Nix outputs of
 * the images to keep, in the project's folder of roots (a hash of its path)
 * beside the current build's own roots; rewritten each time, so other
 * projects' roots on a shared volume stay as they are.
 */
export async function collectGarbage(
  docker: Docker,
  target: BuilderTarget,
  opts: { projectDir: string; keepOutPaths: Iterable<string>; signal?: AbortSignal },
): Promise<{ exitCode: number; output: string }> {
  const outs = new Set(opts.keepOutPaths);
  // Beside `current`, which builds keep (see gc-roots.ts): the current image is never collected.
  const roots = `${projectRootsDir(opts.projectDir)}/keep`;
  // Paths are arguments of the script, never pasted into it.
  const script = 'r=$1; shift; rm -rf "$r" && mkdir -p "$r" || exit 1; i=0; for p in "$@"; do i=$((i+1)); ln -s "$p" "$r/$i" || exit 1; done; exec nix-collect-garbage';
  return runInBuilder(docker, target, ['sh', '-c', script, 'sh', roots, ...outs], opts.signal, opts.projectDir);
}
