import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { constants, existsSync } from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../version.js';
import type { Command } from './command.js';

/** The project `init` writes: the default Python environment. */
export const TEMPLATE_DIR = path.join(PACKAGE_ROOT, 'examples', 'python');

export const initCommand: Command = {
  name: 'init',
  summary: 'scaffold env/, workdir/local.nix, workdir/user/hello_world.py and .nixdockerrc.json here',
  usage: 'nixdocker init [-C DIR]\n\nWrites the default Python environment; existing files are left alone.',
  async run(ctx) {
    const written: string[] = [];
    const kept: string[] = [];
    await mkdir(ctx.cwd, { recursive: true });
    for (const rel of await listTree(TEMPLATE_DIR)) {
      const dest = path.join(ctx.cwd, rel);
      await mkdir(path.dirname(dest), { recursive: true });
      try {
        // COPYFILE_EXCL: the check and the write are one step, so nothing is ever overwritten.
        await copyFile(path.join(TEMPLATE_DIR, rel), dest, constants.COPYFILE_EXCL);
        written.push(rel);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        kept.push(rel);
      }
    }
    for (const rel of written) ctx.stdout.write(`created  ${rel}\n`);
    for (const rel of kept) ctx.stdout.write(`kept     ${rel} (exists; left alone)\n`);
    if (written.length > 0) {
      ctx.stdout.write(`\nNext: nixdocker builder create, then nixdocker build${existsSync(path.join(ctx.cwd, '.git')) ? ' (add .nixdocker/ to .gitignore)' : ''}.\n`);
    }
    return 0;
  },
};

async function listTree(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(root, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listTree(root, child)));
    else out.push(child);
  }
  return out.sort();
}
