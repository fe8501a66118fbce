import { builderStatus, createBuilder, removeBuilder } from '../builder/builder.js';
import { connectEngine } from '../engine/engine.js';
import { buildTargets } from '../pipeline/targets.js';
import type { Command } from './command.js';
import { projectConfig } from './project.js';
import { formatBytes } from './format.js';

const USAGE = `nixdocker builder create [--from-tarball FILE]
       nixdocker builder status [--json]
       nixdocker builder rm [--volume]

  create           pull builder.image (or load it from FILE), create the store volume
                   builder.volume, and check that nix-build runs; idempotent. With
                   "platforms", does so for each platform's builder (its image for that
                   platform, its own volume, its own engine)
  status           image, volume, store size and running builds (of each platform's
                   builder with "platforms"; --json then prints one entry per platform)
  rm               remove the builder image and its containers; --volume also
                   removes the store volume (everything built is lost); with
                   "platforms", each platform's`;

export const builderCommand: Command = {
  name: 'builder',
  summary: 'create, inspect or remove the builder container image and its Nix store volume',
  usage: USAGE,
  options: { 'from-tarball': { type: 'string' }, volume: { type: 'boolean' }, json: { type: 'boolean' } },
  async run(ctx) {
    const sub = ctx.positionals[0];
    const config = await projectConfig(ctx);
    const targets = buildTargets(config);
    const docker = connectEngine();
    const engineOf = (t: (typeof targets)[number]) => (t.dockerHost ? connectEngine(t.dockerHost) : docker);
    const out = (s: string) => ctx.stdout.write(`${s}\n`);
    switch (sub) {
      case 'create': {
        for (const t of targets) {
          const r = await createBuilder(engineOf(t), t.builder, { fromTarball: ctx.values['from-tarball'] as string | undefined, log: ctx.log, signal: ctx.signal });
          const prefix = t.platform ? `${t.key}: ` : '';
          out(`${prefix}image   ${t.builder.image}: ${r.image === 'exists' ? 'present, left as is' : ctx.values['from-tarball'] ? 'loaded from the tarball' : 'pulled'}`);
          out(`${prefix}volume  ${t.builder.volume}: ${r.volume === 'exists' ? 'present, left as is' : 'created'}`);
          out(`${prefix}nix     ${r.nixVersion}`);
        }
        return 0;
      }
      case 'status': {
        // With "platforms", one status per platform's builder (its image, volume and engine).
        const all = [];
        for (const t of targets) {
          const s = await builderStatus(engineOf(t), t.builder, config.projectDir, ctx.signal);
          all.push(t.platform ? { platform: t.key, ...s } : s);
          if (ctx.values.json) continue;
          const prefix = t.platform ? `${t.key}: ` : '';
          out(`${prefix}image   ${s.image.name}: ${s.image.present ? `present (${s.image.id?.slice(7, 19)}, ${formatBytes(s.image.size ?? 0)})` : 'missing (run `nixdocker builder create`)'}`);
          out(`${prefix}volume  ${s.volume.name}: ${s.volume.present ? 'present' : 'missing (run `nixdocker builder create`)'}`);
          if (s.volume.storeBytes !== undefined) out(`${prefix}store   ${formatBytes(s.volume.storeBytes)} in ${s.volume.storePaths} paths`);
          for (const o of s.orphans) {
            const pid = o.owner?.split('/')[1];
            out(`${prefix}orphan  ${o.id.slice(0, 12)} (${o.state}): ${pid ? `its nixdocker process ${pid} is gone` : 'left by an older nixdocker'}; removed`);
          }
          // A running daemon keeps one builder container between builds, so one here may be idle.
          out(`${prefix}builds  ${s.running.length === 0 ? 'no builder container running' : `builder container(s) up: ${s.running.map((c) => c.id).join(', ')}`}`);
        }
        if (ctx.values.json) out(JSON.stringify(config.platforms ? all : all[0], null, 2));
        return 0;
      }
      case 'rm': {
        for (const t of targets) {
          const r = await removeBuilder(engineOf(t), t.builder, { volume: Boolean(ctx.values.volume) });
          const prefix = t.platform ? `${t.key}: ` : '';
          out(`${prefix}containers removed: ${r.containers}`);
          out(`${prefix}image   ${t.builder.image}: ${r.image ? 'removed' : 'was not there'}`);
          out(`${prefix}volume  ${t.builder.volume}: ${ctx.values.volume ? (r.volume ? 'removed' : 'was not there') : 'kept (use --volume to remove it)'}`);
        }
        return 0;
      }
      default:
        process.stderr.write(`Usage: ${USAGE}\n`);
        return 2;
    }
  },
};
