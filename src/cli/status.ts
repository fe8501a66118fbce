import { readStatus } from '../daemon/status.js';
import type { Command } from './command.js';
import { formatBytes, formatMs } from './format.js';
import { projectConfig } from './project.js';

export const statusCommand: Command = {
  name: 'status',
  summary: "show the daemon's state: current image, build in progress, last result, durations and error",
  usage: `nixdocker status [--json]

  Reads the state file of \`nixdocker watch\` in the project's cache directory.
  Exits 0 when a daemon runs, 3 when none does (its last state is still shown).`,
  options: { json: { type: 'boolean' } },
  async run(ctx) {
    const config = await projectConfig(ctx);
    const found = await readStatus(config.cacheDir);
    if (!found) {
      if (ctx.values.json) ctx.stdout.write(`${JSON.stringify({ running: false, status: null })}\n`);
      else ctx.stdout.write('no daemon has run in this project (start one with `nixdocker watch`)\n');
      return 3;
    }
    const { status: s, running } = found;
    if (ctx.values.json) {
      ctx.stdout.write(`${JSON.stringify({ running, status: s }, null, 2)}\n`);
      return running ? 0 : 3;
    }
    const out = (t: string) => ctx.stdout.write(`${t}\n`);
    out(running ? `daemon   running (pid ${s.pid}) since ${s.startedAt}` : `daemon   not running (last seen ${s.updatedAt})`);
    out(`state    ${s.state}${s.building ? `: build ${s.building.buildId} ${s.building.phase ?? 'starting'} ${s.building.image}` : ''}`);
    for (const [platform, phase] of Object.entries(s.building?.platforms ?? {})) out(`         ${platform}: ${phase}`);
    out(`inputs   ${s.current ?? 'not hashed yet'}`);
    out(`image    ${s.lastImage ? `${s.lastImage.image} (${s.lastImage.status} at ${s.lastImage.at})` : 'none yet'}`);
    if (s.lastImage?.platforms) out(`         platforms ${s.lastImage.platforms.map((x) => `${x.platform} ${x.digest.slice(7, 19)}${x.built ? '' : ' (another writer)'}`).join(', ')}`);
    for (const [platform, d] of Object.entries(s.lastPlatformDurations ?? {})) {
      if (Object.keys(d).length > 0) out(`         ${platform}: ${Object.entries(d).map(([k, v]) => `${k} ${formatMs(v)}`).join(', ')}`);
    }
    if (s.lastDurations) out(`phases   ${Object.entries(s.lastDurations).map(([k, v]) => `${k} ${formatMs(v)}`).join(', ')}`);
    if (s.lastNix) out(`nix      ${s.lastNix.built} derivation(s) built${s.lastNix.remote ? ` (${s.lastNix.remote} remotely)` : ''}, ${s.lastNix.fetched} path(s) fetched`);
    if (s.lastUpload) {
      out(
        s.lastUpload.ok
          ? `cache    uploaded ${s.lastUpload.uploaded} path(s), ${formatBytes(s.lastUpload.bytes)} to ${s.lastUpload.url} at ${s.lastUpload.at}`
          : `cache    upload to ${s.lastUpload.url} FAILED at ${s.lastUpload.at}: ${s.lastUpload.message}`,
      );
    }
    out(`builds   ${s.builds.ok} ok, ${s.builds.failed} failed, ${s.builds.cancelled} cancelled`);
    if (s.lastError) out(`error    build ${s.lastError.buildId} at ${s.lastError.at}:\n${s.lastError.message.replace(/^/gm, '         ')}`);
    return running ? 0 : 3;
  },
};
