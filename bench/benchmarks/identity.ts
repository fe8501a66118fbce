/**
 * identity-N: `nixdocker hash` (the image reference of the current files) on
 * env trees of N files, against `sha256sum` over the same files, the floor
 * of reading and hashing them. identity-10000 is a tree of small files
 * (0.5–3.5 KB, like Nix expressions), where the cost per file dominates;
 * its target (issue 15): within 2× sha256sum, both measured in the same run.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { envTreeProject } from '../lib/fixtures.js';
import { nixdocker, progress, timed } from '../lib/proc.js';
import { summarize, type Result } from '../lib/result.js';

const RUNS = 5;

export async function identityBenchmarks(): Promise<Result[]> {
  const results: Result[] = [];
  for (const files of [10, 100, 1000, 10_000]) {
    progress(`identity-${files}: generating the env tree (once) and hashing it ${RUNS}× with nixdocker and sha256sum`);
    const small = files === 10_000;
    const { dir, inputs } = await envTreeProject(files, small ? { min: 500, spread: 3_001 } : undefined);
    let bytes = 0;
    for (const rel of inputs) bytes += (await stat(path.join(dir, rel))).size;
    const ours: number[] = [];
    const theirs: number[] = [];
    const hash = () => nixdocker(['-C', dir, 'hash']);
    const sum = () => timed('sha256sum', inputs, { cwd: dir });
    // One untimed round each, so both find the files in the page cache.
    const first = await hash();
    if (!/:[0-9a-f]{32}\n?$/.test(first.stdout)) throw new Error(`nixdocker hash printed ${JSON.stringify(first.stdout)}`);
    await sum();
    for (let i = 0; i < RUNS; i++) {
      // Alternate who goes first, so neither always runs right after the other.
      if (i % 2 === 0) {
        ours.push((await hash()).seconds);
        theirs.push((await sum()).seconds);
      } else {
        theirs.push((await sum()).seconds);
        ours.push((await hash()).seconds);
      }
    }
    results.push(
      summarize({
        name: `identity-${files}`,
        unit: 's',
        samples: ours,
        competitor: { name: 'sha256sum', samples: theirs },
        target: small ? { metric: 'ratio', op: '<=', value: 2 } : null,
        extra: { envFiles: files, bytes },
      }),
    );
  }
  return results;
}
