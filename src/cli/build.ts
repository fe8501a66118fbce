import { connectEngine } from '../engine/engine.js';
import { computeIdentity } from '../identity.js';
import { nixStep } from '../pipeline/nix-step.js';
import type { Command } from './command.js';
import { formatMs } from './format.js';
import { projectConfig } from './project.js';
import { StatusLine } from './status-line.js';

export const buildCommand: Command = {
  name: 'build',
  summary: 'build the environment with Nix and make its image (skipped when the image already exists)',
  usage: `nixdocker build [--force] [--json]

  --force   rebuild even when the image for the current inputs exists
  --json    print the build result (out paths, closure, phases) as JSON`,
  options: { force: { type: 'boolean' }, json: { type: 'boolean' } },
  async run(ctx) {
    const config = await projectConfig(ctx);
    const t0 = performance.now();
    const identity = await computeIdentity(config);
    const hashMs = performance.now() - t0;
    const docker = config.builder.mode === 'container' ? connectEngine() : null;
    const line = new StatusLine(process.stderr);
    try {
      const step = await nixStep(config, identity, docker, {
        log: ctx.log,
        signal: ctx.signal,
        force: Boolean(ctx.values.force),
        onLog: (l) => (line.active ? line.log(l) : ctx.log.debug({ nix: true }, l)),
        onPhase: (p) => line.set(`${p}…`),
        onProgress: (p) => line.set(`building ${p.current} (${p.started}/${p.total})`),
      });
      await step.runner?.close();
      line.clear();
      const r = step.result;
      r.phases.hash = Math.round(hashMs);
      if (ctx.values.json) {
        ctx.stdout.write(`${JSON.stringify({ image: identity.image, cached: step.cached, result: r }, null, 2)}\n`);
        return 0;
      }
      const paths = Object.keys(r.closure).length;
      ctx.stdout.write(
        `${identity.image}\n` +
          (step.cached
            ? `  Nix result remembered from an earlier build (--force runs Nix again)\n`
            : `  built ${r.built.length} derivation(s); ${paths} store paths in the closure\n`) +
          `  phases: ${Object.entries(r.phases).map(([k, v]) => `${k} ${formatMs(v ?? 0)}`).join(', ')}\n`,
      );
      return 0;
    } finally {
      line.clear();
    }
  },
};
