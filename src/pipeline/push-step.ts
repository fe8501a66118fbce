import type { ImageDescription, PushReport } from '../hooks.js';
import { parsePlatform, formatPlatform } from '../config/platform.js';
import { repositoryPath } from '../identity.js';
import type { Pipeline } from './pipeline.js';
import type { PlatformBuild } from './build-image.js';
import { publishIndex, tagPlatform } from './platform-index.js';
import { settleAll } from '../util/settle-all.js';
import { pushImage, type PushProgress, type PushStats } from './push.js';

export interface PushStepOptions {
  signal?: AbortSignal;
  /** Bytes and blobs as each platform's push goes. */
  onProgress?: (p: PushProgress, platform: string) => void;
  /** Runs the upload as the build's `push` phase (fires buildPhase, records its duration). */
  phase: <T>(name: 'push', fn: () => Promise<T>) => Promise<T>;
}

/**
 * The registry half of a build, given the platforms it just built:
 * beforePush (a plugin may veto), then as the `push` phase each platform's
 * blobs and manifest (by digest, then its platform tag), and last the tag's
 * index of every platform tag (see platform-index.ts); then `registry` joins
 * the image's destinations, `desc` names the index, and pushed fires.
 * Returns null when vetoed: the image is then announced nowhere in the registry.
 */
export async function pushStep(p: Pipeline, desc: ImageDescription, builds: PlatformBuild[], opts: PushStepOptions): Promise<PushReport | null> {
  if ((await p.hooks.beforePush.promise(desc)) === false) {
    p.log.info({ event: 'pushVetoed', image: desc.image }, `a plugin kept ${desc.image} out of the registry`);
    return null;
  }
  const t0 = performance.now();
  const registry = p.registryClient();
  const repo = repositoryPath(p.config, desc.name);
  const { stats, index } = await opts.phase('push', async () => {
    // One failed platform stops the others' uploads; none moves its platform tag after the build failed.
    const local = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, local.signal]) : local.signal;
    const each = await settleAll(
      builds.map(async (b) => {
        try {
          // The manifest goes up by its digest: reachable on its own, and not yet under any tag.
          const s = await pushImage(registry, repo, b.assembled.manifestDigest, b.assembled, {
            cacheDir: p.config.cacheDir,
            signal,
            onProgress: opts.onProgress && ((x) => opts.onProgress!(x, b.platform)),
          });
          await tagPlatform(registry, repo, desc.tag, parsePlatform(b.platform, 'build'), b.assembled, signal);
          return s;
        } catch (err) {
          local.abort(err);
          throw err;
        }
      }),
    ).catch((err: unknown) => {
      // The first failure is the cause; the others only stopped because of it.
      throw local.signal.aborted ? local.signal.reason : err;
    });
    // Every platform is up: only now does the tag move, to the index of all of them.
    const index = await publishIndex(registry, repo, desc.tag, opts.signal);
    return { stats: sumStats(each), index };
  });
  desc.digest = index.digest;
  // More than one write: another writer added its platform while this one wrote the index.
  if (index.writes > 1) p.log.info({ writes: index.writes }, `the index of ${desc.image} was written ${index.writes} times: another writer pushed a platform meanwhile`);
  const mine = new Set(desc.platforms.map((x) => x.platform));
  for (const e of index.entries) {
    const name = formatPlatform(e.platform);
    if (!mine.has(name)) desc.platforms.push({ platform: name, digest: e.digest, built: false });
  }
  const report: PushReport = { image: desc.image, ...stats, ms: Math.round(performance.now() - t0) };
  desc.destinations.push('registry');
  p.log.info(
    { uploaded: report.uploaded, skipped: report.skipped, mounted: report.mounted, bytes: report.bytesUploaded },
    `pushed ${desc.image} (${builds.map((b) => b.platform).join(', ')}; the index holds ${desc.platforms.map((x) => x.platform).join(', ')}): ${report.uploaded} blob(s) uploaded, ${report.skipped} already there, ${report.mounted} mounted`,
  );
  await p.hooks.pushed.promise(desc, report);
  return report;
}

function sumStats(all: PushStats[]): PushStats {
  return all.reduce((a, s) => ({ uploaded: a.uploaded + s.uploaded, skipped: a.skipped + s.skipped, mounted: a.mounted + s.mounted, bytesUploaded: a.bytesUploaded + s.bytesUploaded }), {
    uploaded: 0,
    skipped: 0,
    mounted: 0,
    bytesUploaded: 0,
  });
}
