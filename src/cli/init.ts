import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { constants, existsSync } from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../version.js';
import { PROTOTYPE_FILE, readPrototypeConfig } from '../config/prototype.js';
import type { Command } from './command.js';

const RC_FILE = '.nixdockerrc.json';

/** The project `init` writes: the default Python environment. */
export const TEMPLATE_DIR = path.join(PACKAGE_ROOT, 'examples', 'python');

export const initCommand: Command = {
  name: 'init',
  summary: 'scaffold env/, workdir/local.nix, workdir/user/hello_world.py and .nixdockerrc.json here',
  usage: `nixdocker init [-C DIR]

  Writes the default Python environment; existing files are left alone. In a
  project of the prototype (a ${PROTOTYPE_FILE} with userConfig, DOCKER_REGISTRY_HOST,
  DOCKER_REGISTRY_CONTAINER), it writes only .nixdockerrc.json, from that file,
  and says what it converted; the project's own env/ and workdir/ stay as they are.`,
  async run(ctx) {
    const written: string[] = [];
    const kept: string[] = [];
    await mkdir(ctx.cwd, { recursive: true });
    const prototype = readPrototypeConfig(ctx.cwd);
    const converted: string[] = [];
    if (prototype) {
      try {
        await writeFile(path.join(ctx.cwd, RC_FILE), `${JSON.stringify(prototype.input, null, 2)}\n`, { flag: 'wx' });
        written.push(RC_FILE);
        converted.push(
          `converted ${PROTOTYPE_FILE} (the prototype's) into ${RC_FILE}: ${prototype.converted.join(', ') || 'nothing nixdocker uses'}`,
          ...prototype.notes.map((n) => `  ${n}`),
          `  ${PROTOTYPE_FILE} and the project's files are left as they were; nixdocker reads ${RC_FILE} from now on.`,
        );
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    // A prototype project has its environment already: adding the template's files to env/ would change its image.
    for (const rel of prototype ? [] : await listTree(TEMPLATE_DIR)) {
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
    for (const line of converted) ctx.stdout.write(`${line}\n`);
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
