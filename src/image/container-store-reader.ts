import { UserError } from '../errors.js';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { once } from 'node:events';
import type Docker from 'dockerode';
import { tarStream } from '../util/tar-stream.js';
import { comparePaths, compareNames } from './tar.js';
import { drain, imagePathOf, normalizeTar, STORE_DIR, storePathName, type StoreDirEntry, type StoreReader } from './store-reader.js';
import type { TarEntryIn } from './tar.js';
import { execStream } from '../engine/exec-stream.js';

/** Prints each directory argument's entries; see ContainerStoreReader.listMany. */
const LIST_SCRIPT = `for d in "$@"; do
  printf 'D %s\\0' "$d"
  r=$(readlink -f "$d" 2>/dev/null) || continue
  case "$r" in /nix/store/*) ;; *) continue ;; esac
  [ -d "$r" ] || continue
  for f in "$r"/* "$r"/.[!.]* "$r"/..?*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    n=\${f##*/}
    if [ -L "$f" ]; then printf 'l %s\\0%s\\0' "$n" "$(readlink "$f")"
    elif [ -d "$f" ]; then printf 'd %s\\0' "$n"
    elif [ -f "$f" ] && [ -x "$f" ]; then printf 'x %s\\0' "$n"
    elif [ -f "$f" ]; then printf 'f %s\\0' "$n"
    fi
  done
done`;

/** GNU tar in the canonical order (see comparePaths), hard links as files, no owner names to vary. */
const TAR = ['tar', '--sort=name', '--hard-dereference', '--numeric-owner', '--format=gnu'];

/**
 * Reads store paths out of a builder container, so a remote engine works like
 * a local one. The container must have the store volume mounted at /nix.
 *
 * A layer's paths come in one stream: one exec of GNU tar in the builder
 * (`--sort=name`, so its order is already ours, and `--hard-dereference`, so
 * the store's optimised hard links come out as files) read through the exec's
 * attach stream, entry by entry, never spooled. A builder without a tar that
 * sorts falls back to the engine's archive API, one request per store path
 * (~80 ms each on podman). Both give the same entries, so the same layers.
 */
export class ContainerStoreReader implements StoreReader {
  private streaming: Promise<boolean> | null = null;

  constructor(
    private readonly container: Docker.Container,
    /** Where archives of the fallback are spooled before they are put in order. */
    private readonly spoolDir: string,
    /** Tests turn the exec path off to compare both. */
    private readonly opts: { exec?: boolean } = {},
  ) {}

  async *read(storePaths: readonly string[], signal?: AbortSignal): AsyncGenerator<TarEntryIn> {
    const sorted = [...new Set(storePaths)].sort(comparePaths);
    const names = sorted.map(storePathName);
    if (sorted.length === 0) return;
    if (await this.canStream(signal)) {
      yield* this.readStreamed(names, signal);
      return;
    }
    for (const p of sorted) {
      const stream = (await this.container.getArchive({ path: p })) as unknown as Readable;
      yield* normalizeTar(stream, { parent: STORE_DIR, within: p, spoolDir: this.spoolDir, signal });
    }
  }

  /** Whether the builder's tar can stream a layer (GNU tar 1.28 or later); asked once. */
  private canStream(signal?: AbortSignal): Promise<boolean> {
    if (this.opts.exec === false) return Promise.resolve(false);
    this.streaming ??= (async () => {
      try {
        const probe = await execStream(this.container, [...TAR, '-cf', '-', '-T', '/dev/null'], signal);
        probe.stdout.resume();
        return (await probe.done).exitCode === 0;
      } catch (err) {
        if (signal?.aborted) throw err;
        return false;
      }
    })();
    return this.streaming;
  }

  /**
   * Several layers through one exec: tar gets every set's names, set after
   * set (each sorted), and the stream is split where an entry's store path
   * belongs to the next set. Assembly reads its layers in a few such streams
   * rather than one exec per layer (~0.1–0.5 s each on a busy podman).
   */
  async *readLayers(pathSets: readonly (readonly string[])[], signal?: AbortSignal): AsyncGenerator<AsyncIterable<TarEntryIn>> {
    if (!(await this.canStream(signal))) {
      for (const set of pathSets) yield this.read(set, signal);
      return;
    }
    const sets = pathSets.map((set) => [...new Set(set)].sort(comparePaths).map(storePathName));
    const owner = new Map<string, number>();
    sets.forEach((names, i) => names.forEach((n) => owner.set(n, i)));
    const entries = this.readStreamed(sets.flat(), signal)[Symbol.asyncIterator]();
    let pending: IteratorResult<TarEntryIn> | null = null;
    const next = async () => (pending ??= await entries.next());
    try {
      for (let i = 0; i < sets.length; i++) {
        const index = i;
        yield (async function* () {
          // A layer is whole or it fails: a path of this set that never came must not end in a cached layer.
          const want = new Set(sets[index]);
          for (;;) {
            const r = await next();
            const top = r.done ? null : r.value.path.slice(STORE_DIR.length + 1).split('/')[0]!;
            if (r.done || owner.get(top!) !== index) {
              if (want.size > 0) throw missingPaths([...want]);
              return;
            }
            want.delete(top!);
            pending = null;
            yield r.value;
          }
        })();
      }
      // Reach the stream's end, so that a failed tar or a missing path is reported.
      const r = await next();
      if (!r.done) throw new Error(`tar sent ${r.value.path}, which no layer asked for`);
    } finally {
      await entries.return?.(undefined);
    }
  }

  private async *readStreamed(names: string[], signal?: AbortSignal): AsyncGenerator<TarEntryIn> {
    // `--` ends the options: a store path name cannot start with `-`, but no name is taken as one.
    const { stdout, done } = await execStream(this.container, [...TAR, '-cf', '-', '-C', STORE_DIR, '--', ...names], signal);
    const seen = new Set<string>();
    try {
      for await (const entry of streamedEntries(stdout, STORE_DIR, signal)) {
        const top = entry.path.slice(STORE_DIR.length + 1).split('/')[0]!;
        seen.add(top);
        yield entry;
      }
    } finally {
      stdout.destroy();
    }
    const { exitCode, stderr } = await done;
    const missing = names.filter((n) => !seen.has(n));
    if (exitCode !== 0 || missing.length > 0) {
      throw new Error(`reading ${names.length} store paths from the builder failed (tar exit ${exitCode}${missing.length ? `, missing ${missing.slice(0, 3).join(', ')}` : ''}): ${stderr.trim().split('\n').slice(-3).join(' / ')}`);
    }
  }

  /**
   * Many listings in one exec: a POSIX sh loop in the builder prints, per
   * directory, `D dir` and one record per entry, NUL-separated. Like `list`,
   * a directory that is a symlink is followed only when it resolves inside
   * the store; anything else lists as empty.
   */
  async listMany(dirs: readonly string[], signal?: AbortSignal): Promise<Map<string, StoreDirEntry[]>> {
    const out = new Map<string, StoreDirEntry[]>();
    const wanted = dirs.filter((d) => d.startsWith(`${STORE_DIR}/`));
    for (const d of dirs) out.set(d, []);
    if (wanted.length === 0) return out;
    if (!(await this.canStream(signal))) {
      for (const d of wanted) out.set(d, await this.list(d, signal));
      return out;
    }
    const { stdout, done } = await execStream(this.container, ['sh', '-c', LIST_SCRIPT, 'sh', ...wanted], signal);
    const chunks: Buffer[] = [];
    for await (const c of stdout) chunks.push(c as Buffer);
    const { exitCode, stderr } = await done;
    if (exitCode !== 0) throw new Error(`listing ${wanted.length} store directories in the builder failed (exit ${exitCode}): ${stderr.trim().slice(-500)}`);
    const fields = Buffer.concat(chunks).toString('utf8').split('\0');
    let current: StoreDirEntry[] | undefined;
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i]!;
      if (f === '') continue;
      const kind = f[0];
      const name = f.slice(2);
      if (kind === 'D') {
        current = [];
        out.set(name, current);
      } else if (current && kind === 'l') current.push({ name, type: 'symlink', executable: false, target: fields[++i] ?? '' });
      else if (current && kind === 'd') current.push({ name, type: 'directory', executable: false });
      else if (current && (kind === 'x' || kind === 'f')) current.push({ name, type: 'file', executable: kind === 'x' });
    }
    for (const list of out.values()) list.sort((a, b) => compareNames(a.name, b.name));
    return out;
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

type TarMember = AsyncIterable<Buffer> & { header: { name: string; type: string | null; mode?: number; size?: number; linkname?: string | null } };

/**
 * Entries of a tar stream in the order they come (the sender sorts; tarChunks
 * checks the order), each file's content read straight from the stream when
 * the entry is written. A file must be read, or skipped, before the next
 * entry is asked for; the layer writer does exactly that.
 */
export async function* streamedEntries(input: Readable, parent: string, signal?: AbortSignal): AsyncGenerator<TarEntryIn> {
  const extract = tarStream().extract();
  // Ask for the iterator now: tar-stream drops entries that arrive before it exists.
  const members = extract[Symbol.asyncIterator]() as AsyncIterator<TarMember>;
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract);
  let complete = false;
  try {
    for (;;) {
      signal?.throwIfAborted();
      const next = await members.next();
      if (next.done) {
        // tar-stream stops at the first end block; the sender may still write padding: read it to its end.
        complete = true;
        break;
      }
      const entry = next.value;
      const h = entry.header;
      // The same path rules as the per-path reader: no escape from the parent, no unsafe name.
      const p = imagePathOf(h.name, parent);
      if (p === null) {
        await drain(entry); // the parent directory itself: nothing to keep
        continue;
      }
      if (h.type === 'directory' || h.type === 'symlink') {
        await drain(entry);
        yield h.type === 'directory' ? { type: 'directory', path: p } : { type: 'symlink', path: p, target: h.linkname ?? '' };
      } else if (h.type === 'file' || h.type === 'contiguous-file') {
        let opened = false;
        yield { type: 'file', path: p, size: h.size ?? 0, executable: ((h.mode ?? 0) & 0o111) !== 0, open: () => ((opened = true), entry) };
        if (!opened) await drain(entry); // skipped by the consumer: drain it to reach the next entry
      } else {
        throw new Error(`tar entry ${p} has type ${h.type}, which a store path cannot hold`);
      }
    }
  } finally {
    if (!complete) input.destroy();
    extract.destroy();
  }
  if (!input.readableEnded) {
    input.unpipe(extract);
    input.resume();
    await once(input, 'end');
  }
}

function missingPaths(names: string[]): UserError {
  return new UserError(
    `The builder's Nix store no longer holds ${names.slice(0, 3).map((n) => `${STORE_DIR}/${n}`).join(', ')}${names.length > 3 ? ` and ${names.length - 3} more` : ''}, which this image needs.`,
    'run `nixdocker build --force` to build it again (a garbage collection or `builder rm --volume` removed it)',
  );
}
