import { buildImage } from '../pipeline/build-image.js';
import { Pipeline } from '../pipeline/pipeline.js';
import type { BuildResult } from '../nix/types.js';
import type { Command } from './command.js';
import { formatBytes, formatMs } from './format.js';
import { projectConfig } from './project.js';
import type { BuildProgress } from '../pipeline/build-image.js';

/** Derivations built (here or remotely) against paths fetched from substituters. */
function nixCounts(r: BuildResult): { built: number; fetched: number; remote: number } {
  return { built: r.built.length, fetched: r.fetched?.length ?? 0, remote: r.builtRemotely?.length ?? 0 };
}

export const buildCommand: Command = {
  name: 'build',
  summary: 'build the environment with Nix, assemble its image and push it (nothing to do when it exists)',
  usage: `nixdocker build [--force] [--load] [--json]

  --force   build even when the registry (or engine) already has the image, and
            run Nix again rather than reuse the result remembered for these inputs
  --load    load the image into the engine (DOCKER_HOST) instead of pushing it
  --json    print the outcome as JSON: status, reference, image (digest, layers,
            durations), push counts, Nix counts (built, fetched, remote), the
            upload to builder.cache, and the Nix result (packages, closure with
            references and NAR sizes, derivations built, paths fetched)`,
  options: { force: { type: 'boolean' }, load: { type: 'boolean' }, json: { type: 'boolean' } },
  async run(ctx) {
    const config = await projectConfig(ctx);
    const pipeline = await Pipeline.create(config, ctx.log);
    const { terminal, progress } = ctx;
    let inProgress: BuildProgress['phase'] | null = null;
    pipeline.hooks.buildPhase.tap('cli', (_id, phase) => {
      if (inProgress) progress.end(inProgress);
      inProgress = null;
      terminal.status('step', `${phase}…`);
    });
    // Nix's own lines: above the status lines on a terminal, debug events otherwise.
    pipeline.hooks.buildLog.tap('cli', (_id, l) => (terminal.live ? terminal.write(l) : ctx.log.debug({ nix: true }, l)));
    try {
      const outcome = await buildImage(pipeline, {
        buildId: 1,
        force: Boolean(ctx.values.force),
        load: Boolean(ctx.values.load),
        signal: ctx.signal,
        onProgress: (p) => {
          // The phase's own line replaces its "phase…" word.
          terminal.clear('step');
          inProgress = p.phase;
          progress.report(p);
        },
      });
      terminal.stop();
      if (ctx.values.json) {
        const { status, identity } = outcome;
        const extra =
          outcome.status === 'built'
            ? {
                image: outcome.image,
                builds: outcome.builds.map((b) => ({ platform: b.platform, digest: b.assembled.manifestDigest, nixCached: b.nixCached, layersBuilt: b.assembled.stats.layersBuilt })),
                nixCached: outcome.nixCached,
                layersBuilt: outcome.assembled.stats.layersBuilt,
                push: outcome.push,
                nix: nixCounts(outcome.result),
                upload: outcome.upload ?? null,
                result: outcome.result,
              }
            : outcome.status === 'skipped'
              ? { reason: outcome.reason }
              : { where: outcome.where, durations: outcome.durations };
        ctx.stdout.write(`${JSON.stringify({ status, reference: identity.image, ...extra }, null, 2)}\n`);
        return 0;
      }
      const out = (s: string) => ctx.stdout.write(`${s}\n`);
      out(outcome.identity.image);
      if (outcome.status === 'up-to-date') {
        out(`  up to date: the ${outcome.where.join(' and the ')} has this image; nothing evaluated, built or pushed (--force rebuilds)`);
      } else if (outcome.status === 'skipped') {
        out(`  skipped by a plugin: ${outcome.reason}`);
      } else {
        const img = outcome.image;
        const s = outcome.assembled.stats;
        const n = nixCounts(outcome.result);
        out(
          `  ${outcome.nixCached ? 'Nix result remembered from an earlier build' : `Nix built ${n.built} derivation(s)${n.remote ? ` (${n.remote} on remote builders)` : ''}, fetched ${n.fetched} path(s) from substituters`}`,
        );
        out(`  ${img.layers.length} layers, ${formatBytes(img.size)}; ${s.layersBuilt} layer(s) made, ${s.layersCached} from the cache`);
        out(`  ${describeDestinations(img.destinations)}; digest ${img.digest}`);
        const up = outcome.upload;
        if (up?.ok) out(`  uploaded to ${up.url}: ${up.uploaded} path(s), ${formatBytes(up.bytes)}; ${up.paths - up.uploaded} already there`);
        else if (up) out(`  upload to ${up.url} FAILED (the image is fine; \`nixdocker cache push\` tries again)`);
        out(`  platforms: ${img.platforms.map((x) => `${x.platform}${x.built ? '' : ' (already there)'}`).join(', ')}`);
        out(`  phases: ${Object.entries(img.durations).map(([k, v]) => `${k} ${formatMs(v)}`).join(', ')}`);
      }
      return 0;
    } finally {
      terminal.stop();
      await pipeline.shutdown();
    }
  },
};

function describeDestinations(reached: readonly string[]): string {
  const said = reached.map((d) => (d === 'registry' ? 'pushed' : 'loaded into the engine'));
  return said.length > 0 ? said.join(' and ') : 'neither pushed nor loaded (a plugin vetoed the push)';
}
