import { UserError } from '../errors.js';
import { ResultCache } from '../nix/result-cache.js';
import type { NixRunner } from '../builder/runner.js';
import { uploadBuild } from '../pipeline/cache-upload.js';
import { Pipeline } from '../pipeline/pipeline.js';
import { buildTargets } from '../pipeline/targets.js';
import type { Command, CommandContext } from './command.js';
import { cacheStatus, MIN_AUTO_CAP } from '../pipeline/disk-cache.js';
import { formatBytes, formatMs } from './format.js';
import { projectConfig } from './project.js';

const USAGE = `nixdocker cache push [--json]
       nixdocker cache status [--json]

  push   sign the closure of the current inputs' image with
         builder.cache.secretKeyFile and upload it to builder.cache.url
         (what a build does by itself after each new image; this tries again
         after a failed upload, or fills a new cache). Needs a build of the
         current inputs in this project (\`nixdocker build\`).
  status what the local cache directory (cacheDir) holds: layer blobs and
         their bytes against the cap (cache.maxBytes), remembered layer
         digests, build results (kept: the last cache.keepResults)`;

export const cacheCommand: Command = {
  name: 'cache',
  summary: 'upload the current image\'s Nix closure to the binary cache (builder.cache); show the local cache directory',
  usage: USAGE,
  options: { json: { type: 'boolean' } },
  async run(ctx) {
    const sub = ctx.positionals[0];
    if (sub === 'status') return localStatus(ctx);
    if (sub !== 'push') throw new UserError(sub ? `Unknown cache command "${sub}".` : 'Missing the cache command.', `run \`nixdocker cache push\` or \`nixdocker cache status\` (see \`nixdocker cache --help\`)`);
    const config = await projectConfig(ctx);
    if (!config.builder.cache) {
      throw new UserError(
        `No binary cache is configured${config.configFile ? ` in ${config.configFile}` : ''}.`,
        'set builder.cache to { "url": "file:///DIR" | "https://HOST/PATH" | "s3://BUCKET", "secretKeyFile": "PATH" }',
      );
    }
    // With the plugins: their identity hook names the build to upload, as it named the build.
    const pipeline = await Pipeline.create(config, ctx.log);
    try {
      const identity = await pipeline.identify({ signal: ctx.signal });
      const results = new ResultCache(config.cacheDir);
      // Each platform's closure lives in its own builder's store.
      const built = [];
      for (const target of buildTargets(config)) {
        const result = await results.get(identity.name, identity.tag, target.platform ? target.key : undefined);
        if (result) built.push({ target, result });
      }
      if (built.length === 0) {
        throw new UserError(`This project has no build of its current inputs (${identity.image}) to upload.`, 'run `nixdocker build` first');
      }
      for (const { target, result } of built) {
        let runner: NixRunner | null = null;
        try {
          runner = await pipeline.acquireRunner(identity, target, ctx.signal);
          const platform = target.platform ? target.key : undefined;
          const url = config.builder.cache.url;
          const r = await uploadBuild(pipeline, runner, result, {
            signal: ctx.signal,
            onLog: (l) => ctx.log.debug({ nix: true }, l),
            onProgress: (u) => ctx.progress.report({ phase: 'upload', url, platform: platform ?? null, ...u }),
          }).finally(() => ctx.progress.end('upload'));
          if (ctx.values.json) {
            ctx.stdout.write(`${JSON.stringify({ reference: identity.image, ...(platform ? { platform } : {}), ...r }, null, 2)}\n`);
          } else {
            ctx.stdout.write(`${identity.image}${platform ? ` (${platform})` : ''}\n  uploaded to ${r.url}: ${r.uploaded} path(s), ${formatBytes(r.bytes)}; ${r.paths - r.uploaded} already there (${formatMs(r.ms)})\n`);
          }
        } finally {
          if (runner) await pipeline.releaseRunner(runner, target);
        }
      }
      return 0;
    } finally {
      await pipeline.shutdown();
    }
  },
};

/** `cache status`: the local cache directory, not the binary cache. */
async function localStatus(ctx: CommandContext): Promise<number> {
  const config = await projectConfig(ctx, { skipFileChecks: true });
  const s = await cacheStatus(config.cacheDir);
  const cap = config.cache.maxBytes ?? null;
  if (ctx.values.json) {
    ctx.stdout.write(`${JSON.stringify({ ...s, cap: { maxBytes: cap, auto: cap === null ? `max(${MIN_AUTO_CAP}, 2 × current image)` : null }, keepResults: config.cache.keepResults }, null, 2)}\n`);
    return 0;
  }
  const out = (line: string) => ctx.stdout.write(`${line}\n`);
  out(`cache    ${s.cacheDir}: ${formatBytes(s.totalBytes)} in all`);
  out(`blobs    ${s.blobs.count} layer blobs, ${formatBytes(s.blobs.bytes)}; cap ${cap === null ? `the larger of ${formatBytes(MIN_AUTO_CAP)} and twice the current image (cache.maxBytes unset)` : formatBytes(cap)}`);
  if (s.blobs.oldest) out(`         least recently used ${s.blobs.oldest}, most recently ${s.blobs.newest}`);
  out(`layers   ${s.layers} layer digests remembered (a layer whose blob was pruned is rebuilt from the store)`);
  out(`results  ${s.results.count} build results, ${formatBytes(s.results.bytes)}; kept: the last ${config.cache.keepResults} and the current one`);
  return 0;
}
