import type { Command } from './command.js';
import { withPipeline } from './project.js';

export const hashCommand: Command = {
  name: 'hash',
  summary: 'print the image reference REGISTRY/NAMESPACE/NAME:TAG of the current inputs',
  usage:
    'nixdocker hash [--json]\n\n  The platforms are not part of the tag: one tag names the index of every platform.\n' +
    '  --json   print {"name","tag","image","platforms","inputs":[{path,role,sha256,size}]};\n' +
    '           platforms: the "platforms" setting, or null (the builder\'s own)',
  options: { json: { type: 'boolean' } },
  async run(ctx) {
    const [config, id] = await withPipeline(ctx, async (p) => [p.config, await p.identify({ signal: ctx.signal, keepContents: false })] as const);
    if (ctx.values.json) {
      const { name, tag, image, inputs } = id;
      const platforms = config.platforms?.map((t) => t.name) ?? null;
      ctx.stdout.write(`${JSON.stringify({ name, tag, image, platforms, inputs }, null, 2)}\n`);
    } else {
      ctx.stdout.write(`${id.image}\n`);
    }
    return 0;
  },
};
