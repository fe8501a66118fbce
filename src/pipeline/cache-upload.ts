import type { NixRunner } from '../builder/runner.js';
import { hostPathNow } from '../config/trust.js';
import { readSigningKey, uploadClosure, type UploadProgress, type UploadReport } from '../nix/binary-cache.js';
import type { BuildResult } from '../nix/types.js';
import type { Pipeline } from './pipeline.js';
import { formatBytes } from '../util/bytes.js';

/**
 * Signs and uploads a build's closure to builder.cache and says so in the
 * log (paths and bytes, as a push does); `onProgress` gets each path as Nix
 * copies it, for a status line. Throws on failure: the caller decides whether
 * that fails anything.
 */
export async function uploadBuild(
  p: Pipeline,
  runner: NixRunner,
  result: BuildResult,
  opts: { signal?: AbortSignal; onLog?: (line: string) => void; onProgress?: (p: UploadProgress) => void } = {},
): Promise<UploadReport> {
  const cache = p.config.builder.cache;
  if (!cache) throw new Error('uploadBuild without builder.cache');
  // A project's own key file is checked again before it is read: a symlink swapped in must not hand the user's key to the builder.
  const key = await readSigningKey({ ...cache, secretKeyFile: hostPathNow(p.config, 'builder.cache', cache.secretKeyFile) });
  const paths = Object.keys(result.closure).sort();
  let last = 0;
  const report = await uploadClosure(runner, paths, cache, key, {
    signal: opts.signal,
    onLog: opts.onLog,
    onProgress: (pr) => {
      opts.onProgress?.(pr);
      // A line per path is noise for big closures: one every second at most, and the last.
      const now = performance.now();
      if (now - last < 1000 && pr.uploaded !== pr.total) return;
      last = now;
      p.log.debug({ uploaded: pr.uploaded, total: pr.total, bytes: pr.bytes }, `cache upload: ${pr.uploaded}/${pr.total} path(s), ${pr.bytes} bytes`);
    },
  });
  p.log.info(
    { url: report.url, paths: report.paths, uploaded: report.uploaded, bytes: report.bytes, ms: report.ms },
    `uploaded ${result.name}:${result.tag} to ${report.url}: ${report.uploaded} path(s) copied (${formatBytes(report.bytes)}), ${report.paths - report.uploaded} already there`,
  );
  return report;
}
