import type { Docker } from '../engine/engine.js';
import { connectEngine, enginePlatform } from '../engine/engine.js';
import { pullImage } from '../engine/run.js';
import { formatPlatform, parsePlatform, samePlatform } from '../config/platform.js';
import type { Config } from '../config/types.js';
import { UserError } from '../errors.js';
import { repositoryPath, type Identity } from '../identity.js';
import { platformList, readTag } from '../pipeline/platform-index.js';
import { RegistryClient } from '../registry/index.js';
import type { Command, CommandContext } from './command.js';
import { withPipeline } from './project.js';

export const pullCommand: Command = {
  name: 'pull',
  summary: 'pull the image of the current inputs into the engine (`pull run ...` also runs it)',
  usage: `nixdocker pull [--platform OS/ARCH] [run [RUN OPTIONS] [CMD...]]

  Pulls REGISTRY/NAMESPACE/NAME:TAG (see \`nixdocker hash\`) through the engine, for
  the engine's own platform or --platform (linux/arm64, say). A tag whose index
  lacks that platform is not pulled: the message lists the platforms it has.
  \`nixdocker pull run ...\` is \`nixdocker run --pull always ...\`: it takes every
  option of \`run\` in the same places (\`nixdocker pull run -C DIR -p 8888:8888 CMD\`).`,
  options: { platform: { type: 'string' } },
  passthrough: true,
  async run(ctx) {
    if (ctx.positionals.length > 0) {
      process.stderr.write(`nixdocker pull: unexpected "${ctx.positionals[0]}" (did you mean \`nixdocker pull run ${ctx.positionals.join(' ')}\`?)\n`);
      return 2;
    }
    await withPipeline(ctx, async (p) => {
      const identity = await p.identify({ signal: ctx.signal, keepContents: false });
      await pullWithProgress(ctx, connectEngine(), p.config, identity, ctx.values.platform as string | undefined);
    });
    return 0;
  },
};

/**
 * Pulls through the engine for `platform` (the engine's own by default) with a
 * live line on a terminal; logs the outcome. Asks the registry first which
 * platforms the tag's index holds, so that a missing one is a clear message
 * instead of the engine taking another platform or a vague "not found".
 */
export async function pullWithProgress(ctx: CommandContext, docker: Docker, config: Config, id: Identity, platformOption?: string): Promise<string> {
  const platform = platformOption ? parsePlatform(platformOption, '--platform') : await enginePlatform(docker);
  const name = formatPlatform(platform);
  const registry = new RegistryClient({ host: config.registry.host, insecure: config.registry.insecure, logger: ctx.log });
  try {
    // Advisory: a registry this process cannot read (the engine may reach it another way) leaves the answer to the engine.
    const tag = await readTag(registry, repositoryPath(config, id.name), id.tag, ctx.signal).catch((err: unknown) => {
      ctx.log.debug(`could not read ${id.image} from the registry before pulling: ${(err as Error).message}`);
      return null;
    });
    if (tag?.digest && tag.platforms.length > 0 && !tag.platforms.some((p) => samePlatform(p.platform, platform))) {
      throw new UserError(
        `${id.image} holds ${platformList(tag.platforms)}, not ${name}${platformOption ? '' : " (the engine's platform)"}.`,
        `add "${name}" to "platforms" in ${config.configFile ?? 'the config'} with a builder that can build it, then run \`nixdocker build\` (it builds only the platforms the tag lacks); or pass --platform ${formatPlatform(tag.platforms[0]!.platform)} to run an emulated one`,
      );
    }
  } finally {
    registry.close();
  }
  ctx.terminal.status('pull', `pull ${id.image} (${name})…`);
  try {
    await pullImage(docker, id.image, (p) => ctx.progress.report({ phase: 'pull', image: id.image, ...p }), { platform: name });
  } finally {
    ctx.progress.end('pull');
  }
  ctx.log.info(`pulled ${id.image} for ${name}`);
  return name;
}
