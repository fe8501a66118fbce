import { createHash } from 'node:crypto';
import path from 'node:path';
import { readJson, writeJson } from '../util/json-file.js';
import { LAYOUT_VERSION } from '../version.js';
import { GZIP_LEVEL, hasBlob } from './blob.js';

/** What the cache keeps of a built layer. */
export interface CachedLayer {
  digest: string;
  diffId: string;
  size: number;
}

interface CacheRecord extends CachedLayer {
  /** The text the key hashes, to catch a corrupt file. */
  source: string;
}

/**
 * Digests of layers already built, so an unchanged layer is never read or
 * hashed again. A store layer's key is a hash of its sorted store path set
 * (a store path's content never changes) and of the layout and gzip level;
 * one JSON file per layer under `<cacheDir>/layers/`. An entry whose blob
 * file is gone counts as a miss, so the layer is rebuilt and the blob
 * re-created.
 */
export class LayerCache {
  constructor(readonly cacheDir: string) {}

  /** The cached layer, or undefined when unknown or when its blob file is missing. */
  async get(source: LayerSource): Promise<CachedLayer | undefined> {
    const text = sourceText(source);
    const rec = await readJson<Partial<CacheRecord>>(this.file(text));
    if (!rec || typeof rec.digest !== 'string' || typeof rec.diffId !== 'string' || typeof rec.size !== 'number' || rec.source !== text) return undefined;
    if (!(await hasBlob(this.cacheDir, rec.digest, rec.size))) return undefined;
    return { digest: rec.digest, diffId: rec.diffId, size: rec.size };
  }

  async put(source: LayerSource, layer: CachedLayer): Promise<void> {
    const text = sourceText(source);
    const rec: CacheRecord = { digest: layer.digest, diffId: layer.diffId, size: layer.size, source: text };
    await writeJson(this.file(text), rec);
  }

  private file(text: string): string {
    const key = createHash('sha256').update(text).digest('hex');
    return path.join(this.cacheDir, 'layers', `${key}.json`);
  }
}

/** What a layer's content follows from: its store path set, or (for in-memory layers) its tar digest. */
export type LayerSource = { kind: 'store'; paths: readonly string[] } | { kind: 'content'; diffId: string };

function sourceText(source: LayerSource): string {
  const head = `nixdocker-layer layout=${LAYOUT_VERSION} gzip=${GZIP_LEVEL}\n`;
  return source.kind === 'store' ? `${head}store\n${[...source.paths].sort().join('\n')}` : `${head}content\n${source.diffId}`;
}
