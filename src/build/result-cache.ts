import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BuildResult } from './types.js';

/**
 * Build results keyed by identity, so that an identity built before (pushing
 * to a second registry, --load after a push) does not run Nix again.
 */
export class ResultCache {
  constructor(private readonly cacheDir: string) {}

  private file(name: string, tag: string): string {
    return path.join(this.cacheDir, 'results', name, `${tag}.json`);
  }

  async get(name: string, tag: string): Promise<BuildResult | null> {
    try {
      const r = JSON.parse(await readFile(this.file(name, tag), 'utf8')) as BuildResult;
      return r.name === name && r.tag === tag ? r : null;
    } catch {
      return null;
    }
  }

  async put(result: BuildResult): Promise<void> {
    const file = this.file(result.name, result.tag);
    await mkdir(path.dirname(file), { recursive: true });
    // Write then rename: a crash never leaves half a result behind.
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(result));
    await rename(tmp, file);
  }
}
