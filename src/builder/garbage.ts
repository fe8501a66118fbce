import { createHash } from 'node:crypto';
import type Docker from 'dockerode';
import { runInBuilder } from './builder.js';
import type { BuilderTarget } from './container-runner.js';

/**
 * Runs nix-collect-garbage in the builder after rooting the Nix outputs of
 * the images to keep. Builds register no GC roots, so the roots are made
 * here: one directory per project (a hash of its path), rewritten each time,
 * so other projects' roots on a shared volume stay as they are.
 */
export async function collectGarbage(
  docker: Docker,
  target: BuilderTarget,
  opts: { projectDir: string; keepOutPaths: Iterable<string>; signal?: AbortSignal },
): Promise<{ exitCode: number; output: string }> {
  const outs = new Set(opts.keepOutPaths);
  const roots = `/nix/var/nix/gcroots/nixdocker/${createHash('sha256').update(opts.projectDir).digest('hex').slice(0, 16)}`;
  // Paths are arguments of the script, never pasted into it.
  const script = 'r=$1; shift; rm -rf "$r" && mkdir -p "$r" || exit 1; i=0; for p in "$@"; do i=$((i+1)); ln -s "$p" "$r/$i" || exit 1; done; exec nix-collect-garbage';
  return runInBuilder(docker, target, ['sh', '-c', script, 'sh', roots, ...outs], opts.signal, opts.projectDir);
}
