import { UserError } from '../errors.js';
import { ResultCache } from '../nix/result-cache.js';
import type { NixRunner } from '../builder/runner.js';
import { uploadBuild } from '../pipeline/cache-upload.js';
import { Pipeline } from '../pipeline/pipeline.js';
import { buildTargets } from '../pipeline/targets.js';
import type { Command } from './command.js';
import { formatBytes, formatMs } from './format.js';
import { projectConfig } from './project.js';

const USAGE = `nixdocker cache push [--json]

  push   sign the closure of the current inputs' image with
         builder.cache.secretKeyFile and upload it to builder.cache.url
         (what a build does by itself after each new image; this tries again
         after a failed upload, or fills a new cache). Needs a build of the
         current inputs in this project (\`nixdocker build\`).`;

export const cacheCommand: Command = {
  name: 'cache',
  summary: 'upload the current image\'s Nix closure to the binary cache (builder.cache)',
  usage: USAGE,
  options: { json: { type: 'boolean' } },
  async run(ctx) {
    const sub = ctx.positionals[0];
    if (sub !== 'push') throw new UserError(sub ? `Unknown cache command "${sub}".` : 'Missing the cache command.', `run \`nixdocker cache push\` (see \`nixdocker cache --help\`)`);
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
          const r = await uploadBuild(pipeline, runner, result, { signal: ctx.signal, onLog: (l) => ctx.log.debug({ nix: true }, l) });
          const platform = target.platform ? target.key : undefined;
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
