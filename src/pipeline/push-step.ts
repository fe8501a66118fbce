import type { ImageDescription, PushReport } from '../hooks.js';
import type { AssembledImage } from '../image/assemble.js';
import { repositoryPath } from '../identity.js';
import type { Pipeline } from './pipeline.js';
import { pushImage } from './push.js';

export interface PushStepOptions {
  signal?: AbortSignal;
  /** Runs the upload as the build's `push` phase (fires buildPhase, records its duration). */
  phase: <T>(name: 'push', fn: () => Promise<T>) => Promise<T>;
}

/**
 * The registry half of a build, given the image it just assembled:
 * beforePush (a plugin may veto), the upload as the `push` phase, then
 * `registry` joins the image's destinations and pushed fires. Returns null
 * when vetoed: the image is then announced nowhere in the registry.
 */
export async function pushStep(p: Pipeline, desc: ImageDescription, image: AssembledImage, opts: PushStepOptions): Promise<PushReport | null> {
  if ((await p.hooks.beforePush.promise(desc)) === false) {
    p.log.info({ event: 'pushVetoed', image: desc.image }, `a plugin kept ${desc.image} out of the registry`);
    return null;
  }
  const t0 = performance.now();
  const stats = await opts.phase('push', () =>
    pushImage(p.registryClient(), repositoryPath(p.config, desc.name), desc.tag, image, { cacheDir: p.config.cacheDir, signal: opts.signal }),
  );
  const report: PushReport = { image: desc.image, ...stats, ms: Math.round(performance.now() - t0) };
  desc.destinations.push('registry');
  p.log.info(
    { uploaded: report.uploaded, skipped: report.skipped, mounted: report.mounted, bytes: report.bytesUploaded },
    `pushed ${desc.image}: ${report.uploaded} blob(s) uploaded, ${report.skipped} already there, ${report.mounted} mounted`,
  );
  await p.hooks.pushed.promise(desc, report);
  return report;
}
