import type { Docker } from '../engine/engine.js';
import { connectEngine } from '../engine/engine.js';
import { pullImage } from '../engine/run.js';
import { computeIdentity } from '../identity.js';
import type { Command, CommandContext } from './command.js';
import { projectConfig } from './project.js';
import { StatusLine } from './status-line.js';

export const pullCommand: Command = {
  name: 'pull',
  summary: 'pull the image of the current inputs into the engine (`pull run ...` also runs it)',
  usage: `nixdocker pull [run [RUN OPTIONS] [CMD...]]

  Pulls REGISTRY/NAMESPACE/NAME:TAG (see \`nixdocker hash\`) through the engine.
  \`nixdocker pull run ...\` is \`nixdocker run --pull always ...\`: it takes every
  option of \`run\` in the same places (\`nixdocker pull run -C DIR -p 8888:8888 CMD\`).`,
  passthrough: true,
  async run(ctx) {
    if (ctx.positionals.length > 0) {
      process.stderr.write(`nixdocker pull: unexpected "${ctx.positionals[0]}" (did you mean \`nixdocker pull run ${ctx.positionals.join(' ')}\`?)\n`);
      return 2;
    }
    const config = await projectConfig(ctx);
    const { image } = await computeIdentity(config, { signal: ctx.signal, keepContents: false });
    await pullWithProgress(ctx, connectEngine(), image);
    return 0;
  },
};

/** Pulls through the engine with a live line on a terminal; logs the outcome. */
export async function pullWithProgress(ctx: CommandContext, docker: Docker, image: string): Promise<void> {
  const line = new StatusLine(process.stderr);
  try {
    await pullImage(docker, image, (p) => line.set(`pulling ${image}: ${p.done}/${p.layers} layers`));
  } finally {
    line.clear();
  }
  ctx.log.info(`pulled ${image}`);
}
