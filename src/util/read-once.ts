import { createHash, hash } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, lstatSync, openSync, readdirSync, readSync, readlinkSync, type Dirent, type Stats } from 'node:fs';

/**
 * Reading a file exactly once, safely: the bytes returned are the bytes
 * hashed, and nothing but a regular file below `root` is ever read.
 *
 * Synchronous on purpose: an async open/fstat/read/close costs four hops
 * through libuv's thread pool per file (about 50 µs on 2 cores), four sync
 * calls about 10 µs, and hashing thousands of small files is all per-file
 * cost. Each call is short (a regular file, bounded); callers yield to the
 * event loop between files (see Slicer), so signals are still handled.
 */

/** Why a file was not read; `code` says which rule refused it. */
export class ReadRefused extends Error {
  constructor(
    readonly code: 'symlink' | 'not-regular' | 'too-large' | 'escaped' | 'missing',
    message: string,
  ) {
    super(message);
    this.name = 'ReadRefused';
  }
}

export interface ReadOnceOptions {
  /** Refuse a file whose real path is not below this (a real path itself). */
  root: string;
  /** Most bytes to read; a longer file is refused, whatever its size said. */
  limit: number;
  /** Keep the bytes (to stage them); false hashes through `scratch` only. */
  keep: boolean;
  /** Reused buffer for hashing without keeping. */
  scratch: Buffer;
  /**
   * The caller's directory listing said "regular file": skip the lstat. The
   * open (no final symlink, no blocking) and fstat below still refuse a file
   * swapped meanwhile, before any read.
   */
  listedRegular?: boolean;
  /**
   * `file` is an entry of a HeldDir (`dir.entry(name)`): it opens inside
   * that very directory, whose place was checked when it was opened, so the
   * check of this file's place is skipped.
   */
  held?: boolean;
}

export interface ReadOnce {
  sha256: string;
  size: number;
  /** Exactly the bytes hashed, when kept. */
  bytes: Buffer | null;
}

/** What a non-regular file is, for messages. */
export function describeType(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symlink';
  return 'not a regular file';
}

// /proc/self/fd/N names what an open descriptor really is, whatever was swapped meanwhile;
// /proc/self/fd/N/NAME opens NAME inside that very directory, as openat(2) would.
const PROC_FD = existsSync('/proc/self/fd') ? '/proc/self/fd' : null;

/** The real path of an open descriptor, or null where /proc cannot say. */
function placeOf(fd: number): string | null {
  if (!PROC_FD) return null;
  const real = readlinkSync(`${PROC_FD}/${fd}`);
  return real.endsWith(' (deleted)') ? real.slice(0, -' (deleted)'.length) : real;
}

/** `real` (a real path) is `root` or below it; both real paths, so a prefix test is exact (and cheaper than path.relative). */
function isBelow(root: string, real: string, orAt = false): boolean {
  return (orAt && real === root) || real.startsWith(root.endsWith('/') ? root : `${root}/`);
}

/**
 * Opens `file` without following a final symlink and without blocking (a
 * FIFO would block open()), refuses anything but a regular file by its type
 * before reading a byte, checks that the opened file lies below `root`, and
 * reads and hashes it in one pass, at most `limit` bytes.
 */
export function readOnce(file: string, opts: ReadOnceOptions): ReadOnce {
  if (!opts.listedRegular) {
    // lstat first: a device node is never even opened (opening some has effects).
    let lst: Stats;
    try {
      lst = lstatSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ReadRefused('missing', 'does not exist');
      throw err;
    }
    if (lst.isSymbolicLink()) throw new ReadRefused('symlink', 'is a symlink');
    if (!lst.isFile()) throw new ReadRefused('not-regular', `is ${describeType(lst)}`);
  }

  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new ReadRefused('symlink', 'is a symlink');
    if (code === 'ENOENT') throw new ReadRefused('missing', 'does not exist');
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ReadRefused('not-regular', `is ${describeType(st)}`);
    if (!opts.held) {
      const real = placeOf(fd);
      if (real !== null && !isBelow(opts.root, real)) throw new ReadRefused('escaped', 'resolves outside the project directory');
    }
    return readFd(fd, st.size, opts);
  } finally {
    closeSync(fd);
  }
}

function readFd(fd: number, statSize: number, opts: ReadOnceOptions): ReadOnce {
  const tooLarge = () => new ReadRefused('too-large', `is larger than ${opts.limit} bytes`);
  if (statSize > opts.limit) throw tooLarge();
  if (!opts.keep) {
    // A file shorter than scratch (nearly all inputs) is one read and a one-shot hash.
    const first = readSync(fd, opts.scratch, 0, opts.scratch.length, null);
    if (first > opts.limit) throw tooLarge();
    if (first < opts.scratch.length) return { sha256: hash('sha256', opts.scratch.subarray(0, first), 'hex'), size: first, bytes: null };
    const h = createHash('sha256').update(opts.scratch);
    let size = first;
    for (;;) {
      const n = readSync(fd, opts.scratch, 0, opts.scratch.length, null);
      if (n === 0) break;
      size += n;
      if (size > opts.limit) throw tooLarge();
      h.update(opts.scratch.subarray(0, n));
      if (n < opts.scratch.length) break; // short read of a regular file: the end
    }
    return { sha256: h.digest('hex'), size, bytes: null };
  }
  // One buffer one byte larger than the file: a short read is the end (regular
  // files only return short at EOF), so a small file costs a single read.
  const chunks: Buffer[] = [];
  let size = 0;
  let buf = Buffer.allocUnsafe(statSize + 1);
  let at = 0;
  for (;;) {
    const n = readSync(fd, buf, at, buf.length - at, null);
    if (n === 0) break;
    at += n;
    size += n;
    if (size > opts.limit) throw tooLarge();
    if (at < buf.length) break; // short read of a regular file: the end
    if (at === buf.length) {
      // It grew while we read: go on in chunks.
      chunks.push(buf);
      buf = Buffer.allocUnsafe(1 << 20);
      at = 0;
    }
  }
  if (at > 0 || chunks.length === 0) chunks.push(buf.subarray(0, at));
  const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
  return { sha256: hash('sha256', bytes, 'hex'), size, bytes };
}

/**
 * A directory held open by its descriptor, so that its entries are listed
 * and opened inside this very directory: /proc/self/fd/N/NAME resolves N to
 * the open directory itself (as openat(2) would), whatever symlink replaces
 * its path or a parent's meanwhile. Its place is checked once, when it is
 * opened, instead of once per file: that readlink was a third of the cost
 * of hashing a small file. Without /proc (not Linux), entries are opened by
 * path, and nothing can be checked (as readOnce alone).
 */
export class HeldDir {
  private constructor(
    private readonly fd: number | null,
    /** What entries are opened below: `/proc/self/fd/N`, or the real path. */
    private readonly base: string,
  ) {}

  /** Opens the directory `dir` (a real path) and refuses it unless it is `root` or below it. */
  static open(dir: string, root: string): HeldDir {
    return HeldDir.hold(dir, root, 0);
  }

  /** Opens the subdirectory `name` of this one, never through a symlink. */
  sub(name: string, root: string): HeldDir {
    return HeldDir.hold(this.entry(name), root, constants.O_NOFOLLOW);
  }

  private static hold(dir: string, root: string, flags: number): HeldDir {
    if (!PROC_FD) return new HeldDir(null, dir);
    let fd: number;
    try {
      fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY | flags);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new ReadRefused('missing', 'does not exist');
      if (code === 'ENOTDIR') {
        // O_DIRECTORY | O_NOFOLLOW says ENOTDIR for a symlink too: that is refused;
        // anything else is no directory any more (gone, for this walk).
        let symlink = false;
        try {
          symlink = lstatSync(dir).isSymbolicLink();
        } catch {
          // gone altogether
        }
        throw symlink ? new ReadRefused('symlink', 'is a symlink') : new ReadRefused('missing', 'is no directory any more');
      }
      throw err;
    }
    const real = placeOf(fd);
    if (real !== null && !isBelow(root, real, true)) {
      closeSync(fd);
      throw new ReadRefused('escaped', 'resolves outside the project directory');
    }
    return new HeldDir(fd, `${PROC_FD}/${fd}`);
  }

  /** The entries, names decoded as UTF-8 (an invalid byte becomes U+FFFD: see `listBytes`). */
  list(): Dirent[] {
    return readdirSync(this.base, { withFileTypes: true });
  }

  /** The entries with their names as bytes. */
  listBytes(): Dirent<Buffer>[] {
    return readdirSync(this.base, { withFileTypes: true, encoding: 'buffer' });
  }

  /** A path that opens the entry `name` of this directory (for readOnce with `held`, or realpath). */
  entry(name: string): string {
    return `${this.base}/${name}`;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
  }
}

/**
 * Cooperative slicing of synchronous work: `due()` says when `sliceMs` have
 * passed since the last yield, `yield()` gives the event loop its turn; both
 * throw once the signal is aborted, so a SIGTERM handler runs and ends the
 * work within a slice. A caller awaits only when due: an await per file
 * costs more than the file's hashing.
 */
export class Slicer {
  private since = performance.now();
  constructor(
    private readonly signal?: AbortSignal,
    private readonly sliceMs = 8,
  ) {}

  due(): boolean {
    this.signal?.throwIfAborted();
    return performance.now() - this.since >= this.sliceMs;
  }

  async yield(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.signal?.throwIfAborted();
    this.since = performance.now();
  }

  /** `due()` then, when it is, `yield()`. */
  async tick(): Promise<void> {
    if (this.due()) await this.yield();
  }
}
