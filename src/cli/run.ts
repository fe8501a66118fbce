import path from 'node:path';
import { existsSync } from 'node:fs';
import { connectEngine } from '../engine/engine.js';
import { imageWorkingDir, runContainer, RUN_WORKDIR } from '../engine/run.js';
import { computeIdentity } from '../identity.js';
import type { Command } from './command.js';
import { projectConfig } from './project.js';


export const runCommand: Command = {
  name: 'run',
  summary: 'run a command (or a shell) in the image of the current inputs, with workdir/user as the working directory',
  usage: `nixdocker run [CMD...]

  Starts a container from the current image with WORKDIR/user mounted at the image's
  working directory (${RUN_WORKDIR} unless image.workingDir says otherwise)
  and removes it afterwards; exits with the command's exit code. Without CMD, the
  image's own command (a shell in the examples) runs interactively.
  Options end at CMD: \`nixdocker run python -c 'print(1)'\` passes -c to python.`,
  passthrough: true,
  async run(ctx) {
    const config = await projectConfig(ctx);
    const { image } = await computeIdentity(config);
    const userDir = path.join(config.projectDir, config.workdir, 'user');
    const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
    const docker = connectEngine();
    return runContainer(docker, {
      image,
      cmd: ctx.positionals,
      mount: existsSync(userDir) ? { host: userDir, container: await imageWorkingDir(docker, image) } : undefined,
      interactive,
      forwardSignals: true,
    });
  },
};
