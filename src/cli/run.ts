import { UserError } from '../errors.js';
import { userDirToMount } from '../config/containment.js';
import { connectEngine, imagePlatform } from '../engine/engine.js';
import { formatPlatform, parsePlatform, samePlatform } from '../config/platform.js';
import { imageWorkingDir, runContainer, RUN_WORKDIR } from '../engine/run.js';
import { parseEnvOption, parsePublish } from '../engine/run-options.js';
import type { Command, CommandContext } from './command.js';
import { withPipeline } from './project.js';
import { pullWithProgress } from './pull.js';

export const PULL_POLICIES = ['missing', 'always', 'never'] as const;
export type PullPolicy = (typeof PULL_POLICIES)[number];

export const runCommand: Command = {
  name: 'run',
  summary: 'run a command (or a shell) in the image of the current inputs, with workdir/user as the working directory',
  usage: `nixdocker run [--pull missing|always|never] [--platform OS/ARCH] [-p HOST:CONTAINER]... [-e KEY[=VALUE]]... [--name NAME] [CMD...]

  Starts a container from the current image with WORKDIR/user mounted at the image's
  working directory (${RUN_WORKDIR} unless image.workingDir says otherwise)
  and removes it afterwards; exits with the command's exit code. Without CMD, the
  image's own command (a shell in the examples) runs interactively.
  Options end at CMD: \`nixdocker run python -c 'print(1)'\` passes -c to python.

  --pull POLICY        missing (default): pull the image when the engine lacks it;
                       always: pull first (what \`nixdocker pull run\` does); never
  -p, --publish SPEC   publish a container port on the host, as docker run -p:
                       8888:8888, 127.0.0.1:8080:80, 80 (any free host port), 53:53/udp
  -e, --env KEY=VALUE  set a variable in the container; KEY alone passes this shell's
  --name NAME          name the container (the engine picks one otherwise)
  --platform OS/ARCH   run the image of that platform (linux/arm64, say; emulated where
                       the engine allows it); the engine's own platform by default`,
  options: {
    pull: { type: 'string' },
    publish: { type: 'string', short: 'p', multiple: true },
    env: { type: 'string', short: 'e', multiple: true },
    name: { type: 'string' },
    platform: { type: 'string' },
  },
  passthrough: true,
  async run(ctx) {
    const policy = (ctx.values.pull as string | undefined) ?? 'missing';
    if (!(PULL_POLICIES as readonly string[]).includes(policy)) {
      throw new UserError(`--pull ${policy} is not a pull policy.`, 'use --pull missing (the default), --pull always or --pull never');
    }
    const publish = list(ctx.values.publish).map((v) => parsePublish(v, '-p/--publish'));
    const env = list(ctx.values.env).map((v) => parseEnvOption(v, '-e/--env')).filter((e): e is string => e !== null);
    const platformOption = ctx.values.platform as string | undefined;
    const platform = platformOption ? parsePlatform(platformOption, '--platform') : undefined;
    return withPipeline(ctx, async (p) => {
      const config = p.config;
      const identity = await p.identify({ signal: ctx.signal, keepContents: false });
      const { image } = identity;
      // Resolved now, not at load: a symlink to /etc is refused, whatever it was then.
      const userDir = userDirToMount(config);
      const docker = connectEngine();
      // An engine keeps one image per name: the one there may be another platform's.
      const present = await imagePlatform(docker, image);
      const wrong = present && platform ? !samePlatform(present, platform) : false;
      if (policy === 'always' || (policy === 'missing' && (!present || wrong))) {
        await pullWithProgress(ctx, docker, config, identity, platformOption);
      } else if (wrong) {
        throw new UserError(
          `The engine holds ${image} for ${formatPlatform(present!)}, not ${formatPlatform(platform!)} (--platform), and --pull never keeps it from pulling.`,
          `run \`nixdocker pull --platform ${formatPlatform(platform!)}\`, or drop --pull never`,
        );
      }
      const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
      return runContainer(docker, {
        image,
        cmd: ctx.positionals,
        mount: userDir ? { host: userDir, container: await imageWorkingDir(docker, image) } : undefined,
        interactive,
        env,
        publish,
        name: ctx.values.name as string | undefined,
        platform: platform ? formatPlatform(platform) : undefined,
        forwardSignals: true,
      });
    });
  },
};

function list(v: CommandContext['values'][string]): string[] {
  return v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(String);
}
