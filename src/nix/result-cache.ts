import { readJson, writeJson } from '../util/json-file.js';
import path from 'node:path';
import type { BuildResult } from './types.js';

/**
 * Build results keyed by identity, so that an identity built before (pushing
 * to a second registry, --load after a push) does not run Nix again.
 */
export class ResultCache {
  constructor(private readonly cacheDir: string) {}

  /** `key` tells the platforms of one identity apart ("linux/arm64"); none for the builder's own. */
  private file(name: string, tag: string, key?: string): string {
    return path.join(this.cacheDir, 'results', name, `${tag}${key ? `@${key.replace(/[^A-Za-z0-9.-]/g, '-')}` : ''}.json`);
  }

  async get(name: string, tag: string, key?: string): Promise<BuildResult | null> {
    const r = await readJson<BuildResult>(this.file(name, tag, key));
    // A result from before results carried their system is not trusted to say what it holds.
    return r && r.name === name && r.tag === tag && typeof r.system === 'string' ? r : null;
  }

  async put(result: BuildResult, key?: string): Promise<void> {
    await writeJson(this.file(result.name, result.tag, key), result);
  }
}
