import path from 'node:path';
import { readJson, writeJson } from '../util/json-file.js';
import type { StoreDirEntry, StoreReader } from './store-reader.js';
import type { TarEntryIn } from './tar.js';

/**
 * Remembers directory listings of store paths (the `bin/` folders the
 * customisation layer links), which never change once built. Through an
 * engine each listing is an archive request (~0.1 s on podman); cached, a
 * rebuild after adding one package lists only that package.
 */
export class ListingCache implements StoreReader {
  private listings: Record<string, StoreDirEntry[]> | null = null;
  private dirty = false;

  constructor(
    private readonly inner: StoreReader,
    cacheDir: string,
    private readonly file = path.join(cacheDir, 'listings.json'),
  ) {}

  read(storePaths: readonly string[], signal?: AbortSignal): AsyncIterable<TarEntryIn> {
    return this.inner.read(storePaths, signal);
  }

  async *readLayers(pathSets: readonly (readonly string[])[], signal?: AbortSignal): AsyncGenerator<AsyncIterable<TarEntryIn>> {
    if (this.inner.readLayers) yield* this.inner.readLayers(pathSets, signal);
    else for (const set of pathSets) yield this.inner.read(set, signal);
  }

  async list(dir: string, signal?: AbortSignal): Promise<StoreDirEntry[]> {
    this.listings ??= (await readJson<Record<string, StoreDirEntry[]>>(this.file)) ?? {};
    const hit = this.listings[dir];
    if (hit) return hit;
    const entries = await this.inner.list(dir, signal);
    this.listings[dir] = entries;
    this.dirty = true;
    return entries;
  }

  async listMany(dirs: readonly string[], signal?: AbortSignal): Promise<Map<string, StoreDirEntry[]>> {
    this.listings ??= (await readJson<Record<string, StoreDirEntry[]>>(this.file)) ?? {};
    const out = new Map<string, StoreDirEntry[]>();
    const missing: string[] = [];
    for (const d of dirs) {
      const hit = this.listings[d];
      if (hit) out.set(d, hit);
      else missing.push(d);
    }
    if (missing.length === 0) return out;
    const fetched = this.inner.listMany ? await this.inner.listMany(missing, signal) : new Map<string, StoreDirEntry[]>();
    for (const d of missing) {
      const entries = fetched.get(d) ?? (await this.inner.list(d, signal));
      this.listings[d] = entries;
      out.set(d, entries);
    }
    this.dirty = true;
    return out;
  }

  async save(): Promise<void> {
    if (this.dirty && this.listings) await writeJson(this.file, this.listings);
    this.dirty = false;
  }
}
