import { connectEngine } from '../engine/engine.js';
import { pullImage } from '../engine/run.js';
import { computeIdentity } from '../identity.js';
import type { Command, CommandContext } from './command.js';
import { projectConfig } from './project.js';
import { runCommand } from './run.js';
import { StatusLine } from './status-line.js';

export const pullCommand: Command = {
  name: 'pull',
  summary: 'pull the image of the current inputs into the engine (`pull run CMD...` also runs it)',
  usage: `nixdocker pull [run [CMD...]]

  Pulls REGISTRY/NAMESPACE/NAME:TAG (see \`nixdocker hash\`) through the engine.
  \`nixdocker pull run python hello_world.py\` pulls, then runs as \`nixdocker run\` does.`,
  passthrough: true,
  async run(ctx) {
    await pull(ctx);
    if (ctx.positionals[0] === 'run') return runCommand.run({ ...ctx, positionals: ctx.positionals.slice(1) });
    if (ctx.positionals.length > 0) {
      process.stderr.write(`nixdocker pull: unexpected "${ctx.positionals[0]}" (did you mean \`nixdocker pull run ${ctx.positionals.join(' ')}\`?)\n`);
      return 2;
    }
    return 0;
  },
};

async function pull(ctx: CommandContext): Promise<void> {
  const config = await projectConfig(ctx);
  const { image } = await computeIdentity(config);
  const line = new StatusLine(process.stderr);
  try {
    await pullImage(connectEngine(), image, (p) => line.set(`pulling ${image}: ${p.done}/${p.layers} layers`));
  } finally {
    line.clear();
  }
  ctx.log.info(`pulled ${image}`);
}
