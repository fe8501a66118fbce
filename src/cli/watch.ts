import { Daemon } from '../daemon/daemon.js';
import type { Command } from './command.js';
import { projectConfig } from './project.js';

export const watchCommand: Command = {
  name: 'watch',
  summary: 'the daemon: watch env/ and the user files, rebuild and push on every change, run the plugins',
  usage: `nixdocker watch

  Builds the current inputs once, then every time envDir or a userConfig file
  changes (debounced by watch.debounceMs; a build whose inputs are outdated is
  cancelled when watch.cancelSuperseded is on). One per project. Stop it with
  Ctrl-C or SIGTERM: a running build is cancelled and nothing is tagged.
  Log lines carry an "event" field (watching, buildStart, imageReady, upToDate,
  buildFailed, buildCancelled, stopped); --json-logs makes them JSON.`,
  async run(ctx) {
    const config = await projectConfig(ctx);
    const daemon = new Daemon(config, ctx.log, { onPhase: (t) => ctx.terminal.status('daemon', t) });
    await daemon.start();
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    ctx.terminal.stop();
    await daemon.stop();
    return 0;
  },
};
