/**
 * cache-cap-200 (issue 15): `.nixdocker` against its cap (`cache.maxBytes`)
 * across 10 builds of the 200-path, 1 GB closure (SCALE_FIXTURES.s200).
 *
 * With `.nixdocker` removed and an empty registry, build 0 is the unchanged
 * closure; builds 1–10 each rebuild one of its 10 shared libraries (and so
 * the 19 packages using it): about 100 MB of new layer bytes per build, so
 * the cap, set just above the image, bites from the third build on.
 * `du -sb .nixdocker` after every build is the figure; it is also sampled
 * every 2 s while a build runs. Then the first image, whose blobs the cap
 * pruned, is built again into another empty registry: the layers it lacks
 * are read from the store again, and the registry must hold every blob.
 */
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { scaleDefaultNix, scaleProject, SCALE_FIXTURES } from '../lib/fixtures.js';
import { registryEnv, withRegistry } from '../lib/registry.js';
import { buildRss, nixdocker, progress, timed, type BuildJson } from '../lib/proc.js';
import { summarize, type Result } from '../lib/result.js';

/** 1.2 GB: above the 1.0 GB image (its blobs are never pruned) by two builds' new bytes. */
const CAP = 1_200_000_000;
const BUILDS = 10;

export const CACHE_CAP_TARGET = { metric: 'max', op: '<=', value: CAP } as const;

/** `du -sb` that tolerates files vanishing under it (a build writes and renames meanwhile). */
async function du(dir: string): Promise<number> {
  const r = await timed('du', ['-sb', dir], { allowFail: true });
  return Number(r.stdout.split(/\s/)[0]) || 0;
}

/** Samples `du` of `dir` every 2 s until `until` settles; the largest figure. */
async function peakWhile<T>(dir: string, until: Promise<T>): Promise<{ value: T; peak: number }> {
  let done = false;
  let peak = 0;
  const sampler = (async () => {
    while (!done) {
      peak = Math.max(peak, await du(dir));
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
  try {
    return { value: await until, peak };
  } finally {
    done = true;
    await sampler;
  }
}

function expectBuilt(out: BuildJson, what: string): asserts out is BuildJson & { image: NonNullable<BuildJson['image']>; push: NonNullable<BuildJson['push']> } {
  if (out.status !== 'built' || !out.image || !out.push) throw new Error(`${what}: expected a built and pushed image, got ${JSON.stringify(out).slice(0, 500)}`);
}

/** Whether the registry serves the index and every layer blob of `out` (HEAD requests). */
async function registryHolds(host: string, out: BuildJson & { image: NonNullable<BuildJson['image']> }): Promise<{ ok: boolean; missing: string[] }> {
  const ref = out.reference.slice(out.reference.indexOf('/') + 1);
  const repo = ref.slice(0, ref.lastIndexOf(':'));
  const missing: string[] = [];
  const head = async (url: string, accept?: string) => (await fetch(url, { method: 'HEAD', headers: accept ? { accept } : {} })).status === 200;
  // image.digest is the tag's index (the platform manifests under it were pushed first).
  if (!(await head(`http://${host}/v2/${repo}/manifests/${out.image.digest}`, 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json'))) missing.push(out.image.digest);
  for (const l of out.image.layers) if (!(await head(`http://${host}/v2/${repo}/blobs/${l.digest}`))) missing.push(l.digest);
  return { ok: missing.length === 0, missing };
}

export async function cacheCapBenchmarks(): Promise<Result[]> {
  const f = SCALE_FIXTURES.s200;
  const dir = await scaleProject(f);
  const cache = path.join(dir, '.nixdocker');
  const rcFile = path.join(dir, '.nixdockerrc.json');
  const rc = await readFile(rcFile, 'utf8');
  await writeFile(rcFile, `${JSON.stringify({ ...JSON.parse(rc), cache: { maxBytes: CAP } }, null, 2)}\n`);
  try {
    await nixdocker(['-C', dir, 'builder', 'create'], { timeoutMs: 600_000 });
    await rm(cache, { recursive: true, force: true });
    const after: number[] = [];
    const blobs: number[] = [];
    let peak = 0;
    const first = await withRegistry(async (reg) => {
      progress(`cache-cap-200: ${f.paths} paths of ${(f.size / 1e6).toFixed(0)} MB, cache.maxBytes ${CAP / 1e9} GB; build 0 (the unchanged closure; a first run builds it with Nix)`);
      const b0 = await buildRss(dir, [], registryEnv(reg), 1_800_000);
      expectBuilt(b0.out, 'cache-cap-200 build 0');
      progress(`cache-cap-200 build 0: image ${(b0.out.image.size / 1e6).toFixed(0)} MB, .nixdocker ${((await du(cache)) / 1e6).toFixed(0)} MB`);
      for (let k = 1; k <= BUILDS; k++) {
        await writeFile(path.join(dir, 'env', 'default.nix'), scaleDefaultNix(f, `cap-${k}`, { lib: (k - 1) % f.libs }));
        const { value: b, peak: p } = await peakWhile(cache, buildRss(dir, [], registryEnv(reg), 900_000));
        expectBuilt(b.out, `cache-cap-200 build ${k}`);
        const now = await du(cache);
        after.push(now);
        blobs.push(await du(path.join(cache, 'blobs')));
        peak = Math.max(peak, p, now);
        progress(`cache-cap-200 build ${k}/${BUILDS}: ${b.out.layersBuilt ?? '?'} layers built, ${(b.out.push.bytesUploaded / 1e6).toFixed(0)} MB uploaded; .nixdocker ${(now / 1e6).toFixed(0)} MB (blobs ${(blobs.at(-1)! / 1e6).toFixed(0)} MB), peak during the build ${(p / 1e6).toFixed(0)} MB`);
      }
      return b0.out;
    });

    // The first image again, into an empty registry: its blobs that the cap pruned come from the store.
    await writeFile(path.join(dir, 'env', 'default.nix'), scaleDefaultNix(f));
    const have = new Set(await readdir(path.join(cache, 'blobs', 'sha256')).catch(() => [] as string[]));
    const pruned = first.image.layers.filter((l) => !have.has(l.digest.replace(/^sha256:/, ''))).length;
    const again = await withRegistry(async (reg) => {
      progress(`cache-cap-200: the first image into an empty registry; ${pruned} of its ${first.image.layers.length} layer blobs were pruned`);
      const b = await buildRss(dir, [], registryEnv(reg), 900_000);
      expectBuilt(b.out, 'cache-cap-200 re-push');
      return { out: b.out, holds: await registryHolds(reg.host, b.out) };
    });
    const sameImage = again.out.image.digest === first.image.digest; // the same index: the same platform manifest
    const rePushOk = again.holds.ok && sameImage && pruned > 0;
    progress(`cache-cap-200 re-push: ${again.out.layersBuilt ?? '?'} layers made again, ${again.out.push.uploaded} blobs uploaded, same manifest ${sameImage}, registry complete ${again.holds.ok}`);
    return [
      summarize({
        name: 'cache-cap-200',
        unit: 'bytes',
        samples: after,
        target: CACHE_CAP_TARGET,
        extraCondition: rePushOk,
        note:
          `du -sb .nixdocker after each of ${BUILDS} builds of the ${f.paths}-path closure (image ${(first.image.size / 1e6).toFixed(0)} MB), each rebuilding one shared library; cache.maxBytes ${CAP / 1e9} GB; ` +
          `peak while building ${(peak / 1e6).toFixed(0)} MB; the first image pushed again into an empty registry after ${pruned} of its ${first.image.layers.length} blobs were pruned: ` +
          `${again.out.layersBuilt ?? '?'} layers read from the store again, ${rePushOk ? 'same manifest, every blob in the registry' : `FAILED (same manifest ${sameImage}, missing ${again.holds.missing.length})`}`,
        extra: {
          cap: CAP,
          imageBytes: first.image.size,
          blobBytesAfterEach: blobs,
          peakWhileBuilding: peak,
          prunedBlobsOfFirstImage: pruned,
          rePush: { layersBuilt: again.out.layersBuilt, uploaded: again.out.push.uploaded, bytesUploaded: again.out.push.bytesUploaded, sameManifest: sameImage, missing: again.holds.missing },
        },
      }),
    ];
  } finally {
    await writeFile(rcFile, rc);
    await scaleProject(f); // back to the unchanged closure for the next run
  }
}
