import { createHash } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, lstatSync, openSync, readSync, readlinkSync, type Stats } from 'node:fs';

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

// /proc/self/fd/N names what an open descriptor really is, whatever was swapped meanwhile.
const PROC_FD = existsSync('/proc/self/fd') ? '/proc/self/fd' : null;

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
    if (PROC_FD) {
      let real = readlinkSync(`${PROC_FD}/${fd}`);
      if (real.endsWith(' (deleted)')) real = real.slice(0, -' (deleted)'.length);
      // root is a real path, and so is the link: a prefix test is exact (and cheaper than path.relative).
      if (!real.startsWith(opts.root.endsWith('/') ? opts.root : `${opts.root}/`)) throw new ReadRefused('escaped', 'resolves outside the project directory');
    }
    return readFd(fd, st.size, opts);
  } finally {
    closeSync(fd);
  }
}

function readFd(fd: number, statSize: number, opts: ReadOnceOptions): ReadOnce {
  const h = createHash('sha256');
  const tooLarge = () => new ReadRefused('too-large', `is larger than ${opts.limit} bytes`);
  if (statSize > opts.limit) throw tooLarge();
  if (!opts.keep) {
    let size = 0;
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
  h.update(bytes);
  return { sha256: h.digest('hex'), size, bytes };
}

/**
 * Cooperative slicing of synchronous work: `tick()` yields to the event loop
 * once `sliceMs` have passed since the last yield, and throws when the signal
 * is aborted, so a SIGTERM handler runs and ends the work within a slice.
 */
export class Slicer {
  private since = performance.now();
  constructor(
    private readonly signal?: AbortSignal,
    private readonly sliceMs = 8,
  ) {}

  async tick(): Promise<void> {
    if (performance.now() - this.since < this.sliceMs) {
      this.signal?.throwIfAborted();
      return;
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.signal?.throwIfAborted();
    this.since = performance.now();
  }
}
