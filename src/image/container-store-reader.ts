import path from 'node:path';
import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { tarStream } from '../util/tar-stream.js';
import { comparePaths, compareNames } from './tar.js';
import { normalizeTar, STORE_DIR, storePathName, type StoreDirEntry, type StoreReader } from './store-reader.js';
import type { TarEntryIn } from './tar.js';

/**
 * Reads store paths out of a builder container through the engine's archive
 * API (GET /containers/{id}/archive), so a remote engine works like a local
 * one. The container must have the store volume mounted at /nix.
 */
export class ContainerStoreReader implements StoreReader {
  constructor(
    private readonly container: Docker.Container,
    /** Where incoming archives are spooled before they are put in order. */
    private readonly spoolDir: string,
  ) {}

  async *read(storePaths: readonly string[], signal?: AbortSignal): AsyncGenerator<TarEntryIn> {
    for (const p of [...new Set(storePaths)].sort(comparePaths)) {
      storePathName(p);
      const stream = (await this.container.getArchive({ path: p })) as unknown as Readable;
      yield* normalizeTar(stream, { parent: STORE_DIR, within: p, spoolDir: this.spoolDir, signal });
    }
  }

  async list(dir: string, signal?: AbortSignal): Promise<StoreDirEntry[]> {
    let target = dir;
    for (let hops = 0; hops < 8; hops++) {
      signal?.throwIfAborted();
      if (!target.startsWith(`${STORE_DIR}/`)) return [];
      let stream: Readable;
      try {
        stream = (await this.container.getArchive({ path: target })) as unknown as Readable;
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode === 404) return [];
        throw err;
      }
      const { top, children } = await readListing(stream, path.posix.basename(target));
      if (top?.type === 'symlink' && top.target) {
        target = path.posix.resolve(path.posix.dirname(target), top.target);
        continue;
      }
      return top?.type === 'directory' ? children.sort((a, b) => compareNames(a.name, b.name)) : [];
    }
    return [];
  }
}

/** The archive's top entry and its direct children; file contents are skipped. */
async function readListing(stream: Readable, base: string): Promise<{ top: StoreDirEntry | null; children: StoreDirEntry[] }> {
  const extract = tarStream().extract();
  stream.pipe(extract);
  let top: StoreDirEntry | null = null;
  const children: StoreDirEntry[] = [];
  for await (const entry of extract) {
    const h = entry.header;
    const rel = h.name.replace(/^\.?\/+/, '').replace(/\/+$/, '');
    const type: StoreDirEntry['type'] | null = h.type === 'directory' ? 'directory' : h.type === 'symlink' ? 'symlink' : h.type === 'file' || h.type === 'link' ? 'file' : null;
    const item: StoreDirEntry | null = type && { name: path.posix.basename(rel), type, executable: type === 'file' && ((h.mode ?? 0) & 0o111) !== 0, ...(type === 'symlink' ? { target: h.linkname ?? '' } : {}) };
    if (item && rel === base) top = item;
    else if (item && rel.startsWith(`${base}/`) && !rel.slice(base.length + 1).includes('/')) children.push(item);
    entry.resume();
  }
  return { top, children };
}
