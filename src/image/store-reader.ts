import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Extract } from 'tar-stream';
import { tarStream } from '../util/tar-stream.js';
import { checkImagePath, comparePaths, compareNames, type TarEntryIn } from './tar.js';

/** Where store paths live inside the image. */
export const STORE_DIR = '/nix/store';

/** One entry of a store directory listing. Symlinks are not followed. */
export interface StoreDirEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink';
  /** Regular files only: has an execute bit. */
  executable: boolean;
  /** Symlinks only. */
  target?: string;
}

/**
 * Reads store paths for layers. Two implementations: FsStoreReader (local
 * mode, the host's /nix/store) and ContainerStoreReader (container mode: a
 * tar streamed out of the builder by one exec per layer).
 */
export interface StoreReader {
  /**
   * The entries of `storePaths`, in canonical order (see `comparePaths`):
   * the store paths in sorted order, each one's own entry first and then its
   * tree; paths are absolute image paths (`/nix/store/...`). `/nix` and
   * `/nix/store` themselves are not included. Files are opened lazily, one at
   * a time, as the layer is written.
   */
  read(storePaths: readonly string[], signal?: AbortSignal): AsyncIterable<TarEntryIn>;
  /**
   * The entries of directory `dir` (an image path inside the store), sorted
   * by name. A `dir` that is a symlink is followed; `[]` when it does not exist
   * or is not a directory.
   */
  list(dir: string, signal?: AbortSignal): Promise<StoreDirEntry[]>;
  /**
   * The entries of several layers from one stream, where the reader can do
   * that cheaper than one `read` each: yields one iterable per path set, in
   * order, each to be read to its end before the next is asked for.
   */
  readLayers?(pathSets: readonly (readonly string[])[], signal?: AbortSignal): AsyncGenerator<AsyncIterable<TarEntryIn>>;
  /** `list` of many directories at once, where the reader can do that cheaper than one by one. */
  listMany?(dirs: readonly string[], signal?: AbortSignal): Promise<Map<string, StoreDirEntry[]>>;
}

/** Checks `p` is `/nix/store/NAME` and returns NAME. */
export function storePathName(p: string): string {
  const name = p.startsWith(`${STORE_DIR}/`) ? p.slice(STORE_DIR.length + 1) : '';
  if (!name || name.includes('/') || name === '.' || name === '..') throw new Error(`not a store path: ${p}`);
  return name;
}

export interface FsStoreReaderOptions {
  /** The host directory holding the store paths; `/nix/store` by default (tests use a temporary directory). */
  storeDir?: string;
}

/** Reads store paths from the filesystem (local mode). Hard links come out as regular files. */
export class FsStoreReader implements StoreReader {
  readonly storeDir: string;

  constructor(opts: FsStoreReaderOptions = {}) {
    this.storeDir = path.resolve(opts.storeDir ?? STORE_DIR);
  }

  /** The host path of an image path inside the store. */
  hostPath(imagePath: string): string {
    checkImagePath(imagePath);
    if (!imagePath.startsWith(`${STORE_DIR}/`)) throw new Error(`not inside ${STORE_DIR}: ${imagePath}`);
    return path.join(this.storeDir, imagePath.slice(STORE_DIR.length + 1));
  }

  async *read(storePaths: readonly string[], signal?: AbortSignal): AsyncGenerator<TarEntryIn> {
    const sorted = [...new Set(storePaths)].sort(comparePaths);
    for (const p of sorted) {
      storePathName(p);
      yield* this.walk(p, signal);
    }
  }

  private async *walk(imagePath: string, signal?: AbortSignal): AsyncGenerator<TarEntryIn> {
    signal?.throwIfAborted();
    const host = this.hostPath(imagePath);
    const st = await lstat(host);
    if (st.isDirectory()) {
      yield { type: 'directory', path: imagePath };
      const names = (await readdir(host)).sort(compareNames);
      for (const name of names) yield* this.walk(`${imagePath}/${name}`, signal);
    } else if (st.isFile()) {
      yield { type: 'file', path: imagePath, size: st.size, executable: (st.mode & 0o111) !== 0, open: () => createReadStream(host) };
    } else if (st.isSymbolicLink()) {
      yield { type: 'symlink', path: imagePath, target: await readlink(host) };
    } else {
      throw new Error(`${imagePath} is neither a file, a directory nor a symlink; a store path cannot hold it`);
    }
  }

  async list(dir: string, signal?: AbortSignal): Promise<StoreDirEntry[]> {
    let imagePath = dir;
    for (let hops = 0; ; hops++) {
      signal?.throwIfAborted();
      let host: string;
      try {
        host = this.hostPath(imagePath);
      } catch {
        return []; // a link out of the store
      }
      const st = await lstat(host).catch(() => null);
      if (!st) return [];
      if (st.isSymbolicLink() && hops < 8) {
        imagePath = path.posix.resolve(path.posix.dirname(imagePath), await readlink(host));
        continue;
      }
      if (!st.isDirectory()) return [];
      const names = (await readdir(host)).sort(compareNames);
      const out: StoreDirEntry[] = [];
      for (const name of names) {
        const s = await lstat(path.join(host, name));
        if (s.isDirectory()) out.push({ name, type: 'directory', executable: false });
        else if (s.isFile()) out.push({ name, type: 'file', executable: (s.mode & 0o111) !== 0 });
        else if (s.isSymbolicLink()) out.push({ name, type: 'symlink', executable: false, target: await readlink(path.join(host, name)) });
      }
      return out;
    }
  }
}

export interface NormalizeTarOptions {
  /** The image directory the tar's names are relative to; `/nix/store` for an archive of `/nix/store/X`. */
  parent: string;
  /** When given, every entry must be this path or lie under it. */
  within?: string;
  /** A directory for the spooled content; a fresh subdirectory is made and removed. */
  spoolDir: string;
  signal?: AbortSignal;
}

type TarMember = Extract extends AsyncIterable<infer M> ? M : never;

type Spooled = { type: 'directory' } | { type: 'symlink'; target: string } | { type: 'file'; size: number; executable: boolean; file: string };

/**
 * Entries from any incoming tar stream, normalised and in canonical order.
 * The stream is spooled to disk first: an engine's archive need not come in
 * our order, and a hard link needs the content of a file already passed.
 * Missing parent directories (below `within`) are added, so the result is
 * what FsStoreReader gives for the same tree.
 */
export function normalizeTar(input: Readable, opts: NormalizeTarOptions): AsyncGenerator<TarEntryIn> {
  checkImagePath(opts.parent);
  // Attach everything now, not at the first `next()`: tar-stream drops entries
  // that arrive before its iterator exists, and an unread stream may be gone.
  const extract = tarStream().extract();
  const members = extract[Symbol.asyncIterator]();
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract);
  return spooled(input, extract, members, opts);
}

async function* spooled(
  input: Readable,
  extract: Extract,
  members: AsyncIterator<TarMember>,
  opts: NormalizeTarOptions,
): AsyncGenerator<TarEntryIn> {
  let spool: string | undefined;
  try {
    await mkdir(opts.spoolDir, { recursive: true });
    spool = await mkdtemp(path.join(opts.spoolDir, 'tar-'));
    const entries = new Map<string, Spooled>();
    let files = 0;
    for await (const entry of { [Symbol.asyncIterator]: () => members }) {
      opts.signal?.throwIfAborted();
      const h = entry.header;
      const p = imagePathOf(h.name, opts.parent);
      if (p === null) {
        await drain(entry);
        continue;
      }
      if (opts.within !== undefined && p !== opts.within && !p.startsWith(`${opts.within}/`)) {
        throw new Error(`tar entry ${p} lies outside ${opts.within}`);
      }
      switch (h.type) {
        case 'directory':
          entries.set(p, { type: 'directory' });
          await drain(entry);
          break;
        case 'symlink':
          entries.set(p, { type: 'symlink', target: h.linkname ?? '' });
          await drain(entry);
          break;
        case 'link': {
          const target = imagePathOf(h.linkname ?? '', opts.parent);
          const t = target === null ? undefined : entries.get(target);
          if (!t || t.type !== 'file') throw new Error(`tar entry ${p} is a hard link to ${h.linkname}, which is not a file seen before it`);
          entries.set(p, t);
          await drain(entry);
          break;
        }
        case 'file':
        case 'contiguous-file': {
          const file = path.join(spool, String(files++));
          await pipeline(
            (async function* () {
              for await (const chunk of entry) yield chunk;
            })(),
            createWriteStream(file),
          );
          entries.set(p, { type: 'file', size: h.size ?? 0, executable: ((h.mode ?? 0) & 0o111) !== 0, file });
          break;
        }
        default:
          throw new Error(`tar entry ${p} has type ${h.type}, which a store path cannot hold`);
      }
    }
    addParents(entries, opts.within);
    for (const p of [...entries.keys()].sort(comparePaths)) {
      const e = entries.get(p)!;
      if (e.type === 'file') {
        const { file } = e;
        yield { type: 'file', path: p, size: e.size, executable: e.executable, open: () => createReadStream(file) };
      } else if (e.type === 'symlink') {
        yield { type: 'symlink', path: p, target: e.target };
      } else {
        yield { type: 'directory', path: p };
      }
    }
  } finally {
    input.destroy();
    extract.destroy();
    if (spool !== undefined) await rm(spool, { recursive: true, force: true });
  }
}

/** The image path of a tar member name, or null for the parent directory itself (`.`, `./`). */
/** The image path of a tar entry under `parent`, checked; null for the parent itself. */
export function imagePathOf(name: string, parent: string): string | null {
  const rel = path.posix.normalize(name.replace(/^\/+/, '')).replace(/\/+$/, '');
  if (rel === '.' || rel === '') return null;
  if (rel === '..' || rel.startsWith('../')) throw new Error(`tar entry ${JSON.stringify(name)} escapes ${parent}`);
  const p = `${parent}/${rel}`;
  checkImagePath(p);
  return p;
}

function addParents(entries: Map<string, Spooled>, within: string | undefined): void {
  if (within === undefined) return;
  for (const p of [...entries.keys()]) {
    for (let d = path.posix.dirname(p); d.length >= within.length && !entries.has(d); d = path.posix.dirname(d)) {
      entries.set(d, { type: 'directory' });
    }
  }
}

export async function drain(entry: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of entry) {
    // read to its end and dropped: the next entry comes only after it
  }
}
