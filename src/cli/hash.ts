import { computeIdentity } from '../identity.js';
import type { Command } from './command.js';
import { projectConfig } from './project.js';

export const hashCommand: Command = {
  name: 'hash',
  summary: 'print the image reference REGISTRY/NAMESPACE/NAME:TAG of the current inputs',
  usage: 'nixdocker hash [--json]\n\n  --json   print {"name","tag","image","inputs":[{path,role,sha256,size}]}',
  options: { json: { type: 'boolean' } },
  async run(ctx) {
    const config = await projectConfig(ctx);
    const id = await computeIdentity(config, { signal: ctx.signal, keepContents: false });
    if (ctx.values.json) {
      const { name, tag, image, inputs } = id;
      ctx.stdout.write(`${JSON.stringify({ name, tag, image, inputs }, null, 2)}\n`);
    } else {
      ctx.stdout.write(`${id.image}\n`);
    }
    return 0;
  },
};
