/**
 * Deterministic tar: the same entries give the same bytes on any machine.
 * We encode headers ourselves rather than through a library, because these
 * bytes decide every layer digest: a dependency upgrade must not move them
 * without a LAYOUT_VERSION bump.
 *
 * Normalisation: mtime 1, uid/gid 0 (unless an entry says otherwise), empty
 * uname/gname, modes as in the Nix store (directories and executables 0555,
 * other files 0444, symlinks 0777), no hard links, no device numbers, and PAX
 * headers only for names, link targets or sizes ustar cannot hold, under the
 * fixed name `././@PaxHeader`.
 */

/** Mode bits a directory, executable or plain file gets unless the entry gives its own. */
export const DIR_MODE = 0o555;
export const EXEC_MODE = 0o555;
export const FILE_MODE = 0o444;
export const SYMLINK_MODE = 0o777;
/** Seconds since the epoch written as every entry's mtime. */
export const TAR_MTIME = 1;

interface EntryBase {
  /** Absolute, normalised path inside the image: `/nix/store/HASH-NAME/bin/x`. */
  path: string;
  /** Permission bits (sticky included) overriding the normalised ones. */
  mode?: number;
  uid?: number;
  gid?: number;
}

export interface TarDirectory extends EntryBase {
  type: 'directory';
}

export interface TarFile extends EntryBase {
  type: 'file';
  size: number;
  executable: boolean;
  /** The content, opened when the entry is written (at most once). It must be exactly `size` bytes. */
  open(): AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

export interface TarSymlink extends EntryBase {
  type: 'symlink';
  target: string;
}

/** An entry as a reader hands it over, before normalisation. */
export type TarEntryIn = TarDirectory | TarFile | TarSymlink;

const BLOCK = 512;
const ZEROS = Buffer.alloc(2 * BLOCK);
const MAX_OCTAL_11 = 8 ** 11 - 1;

/**
 * Canonical entry order: component by component, each compared by UTF-8
 * bytes; a directory comes right before its content. This is the order of a
 * depth-first walk with sorted names (Go's filepath.Walk, so also what Docker's
 * and podman's archive endpoints send).
 */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(sortKey(a), sortKey(b));
}

/** Compares names of one directory (no `/`) by UTF-8 bytes. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function sortKey(p: string): Buffer {
  const b = Buffer.from(p);
  // '/' ranks below every byte a name can hold (names never contain NUL).
  for (let i = 0; i < b.length; i++) if (b[i] === 0x2f) b[i] = 0;
  return b;
}

/** Throws unless `p` is absolute and normalised (no empty, `.` or `..` parts, no trailing `/`), and not `/`. */
export function checkImagePath(p: string): void {
  const parts = p.split('/');
  if (parts[0] !== '' || parts.length < 2 || parts.slice(1).some((x) => x === '' || x === '.' || x === '..' || x.includes('\0'))) {
    throw new Error(`not a normalised absolute path inside the image: ${JSON.stringify(p)}`);
  }
}

/**
 * The tar stream of `entries`, which must come in canonical order (see
 * comparePaths) without duplicates; a reader that breaks this is a bug and
 * fails the layer rather than making it non-reproducible. Ends with the two
 * zero blocks.
 */
export async function* tarChunks(entries: AsyncIterable<TarEntryIn> | Iterable<TarEntryIn>, signal?: AbortSignal): AsyncGenerator<Buffer> {
  let prev: string | undefined;
  for await (const e of entries) {
    signal?.throwIfAborted();
    checkImagePath(e.path);
    if (prev !== undefined && comparePaths(prev, e.path) >= 0) {
      throw new Error(`tar entries out of order: ${e.path} after ${prev}`);
    }
    prev = e.path;
    const name = e.path.slice(1);
    const owner = { uid: e.uid ?? 0, gid: e.gid ?? 0 };
    switch (e.type) {
      case 'directory':
        yield* headers({ name: `${name}/`, type: '5', mode: e.mode ?? DIR_MODE, size: 0, linkname: '', ...owner });
        break;
      case 'symlink':
        yield* headers({ name, type: '2', mode: e.mode ?? SYMLINK_MODE, size: 0, linkname: e.target, ...owner });
        break;
      case 'file': {
        yield* headers({ name, type: '0', mode: e.mode ?? (e.executable ? EXEC_MODE : FILE_MODE), size: e.size, linkname: '', ...owner });
        let n = 0;
        for await (const chunk of e.open()) {
          n += chunk.byteLength;
          if (n > e.size) break;
          yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        }
        if (n !== e.size) throw new Error(`${e.path} changed while being read: expected ${e.size} bytes, got ${n > e.size ? 'more' : n}`);
        const pad = padding(n);
        if (pad > 0) yield ZEROS.subarray(0, pad);
        break;
      }
      default:
        throw new Error(`unsupported tar entry type ${(e as { type: string }).type} at ${(e as { path: string }).path}`);
    }
  }
  yield ZEROS;
}

/** A whole (small) tar in memory. */
export async function tarBuffer(entries: AsyncIterable<TarEntryIn> | Iterable<TarEntryIn>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of tarChunks(entries)) parts.push(c);
  return Buffer.concat(parts);
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

interface Header {
  name: string;
  type: '0' | '2' | '5' | 'x';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linkname: string;
}

/** The header block of an entry, preceded by a PAX header when ustar cannot hold it. */
function* headers(h: Header): Generator<Buffer> {
  const name = Buffer.from(h.name);
  const link = Buffer.from(h.linkname);
  const split = splitName(name);
  const pax: [string, string][] = [];
  if (!split) pax.push(['path', h.name]);
  if (link.length > 100) pax.push(['linkpath', h.linkname]);
  if (h.size > MAX_OCTAL_11) pax.push(['size', String(h.size)]);
  if (pax.length > 0) {
    const body = Buffer.from(pax.map(([k, v]) => paxRecord(k, v)).join(''));
    yield block({ name: Buffer.from('././@PaxHeader'), prefix: Buffer.alloc(0), type: 'x', mode: 0o644, uid: 0, gid: 0, size: body.length, linkname: Buffer.alloc(0) });
    yield body;
    const pad = padding(body.length);
    if (pad > 0) yield ZEROS.subarray(0, pad);
  }
  yield block({
    name: split ? split.name : name.subarray(0, 100),
    prefix: split ? split.prefix : Buffer.alloc(0),
    type: h.type,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    size: h.size > MAX_OCTAL_11 ? 0 : h.size,
    linkname: link.subarray(0, 100),
  });
}

/** ustar's name/prefix split, with the longest prefix that fits (as Go's archive/tar does). */
function splitName(name: Buffer): { name: Buffer; prefix: Buffer } | null {
  if (name.length <= 100) return { name, prefix: Buffer.alloc(0) };
  // The last '/' may be a directory's trailing slash; the name part must not be empty.
  for (let i = Math.min(name.length - 2, 155); i > 0; i--) {
    if (name[i] !== 0x2f) continue;
    if (name.length - i - 1 > 100) return null;
    return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
  }
  return null;
}

function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  const restLen = Buffer.byteLength(rest);
  // The length counts its own digits.
  let len = restLen + 1;
  while (String(len).length + restLen !== len) len = String(len).length + restLen;
  return `${len}${rest}`;
}

function block(h: { name: Buffer; prefix: Buffer; type: string; mode: number; uid: number; gid: number; size: number; linkname: Buffer }): Buffer {
  const b = Buffer.alloc(BLOCK);
  h.name.copy(b, 0);
  octal(b, 100, 8, h.mode & 0o7777);
  octal(b, 108, 8, h.uid);
  octal(b, 116, 8, h.gid);
  octal(b, 124, 12, h.size);
  octal(b, 136, 12, TAR_MTIME);
  b.fill(0x20, 148, 156); // checksum counts as spaces while computing it
  b.write(h.type, 156, 'latin1');
  h.linkname.copy(b, 157);
  b.write('ustar\0' + '00', 257, 'latin1');
  // uname and gname stay empty (all zero).
  octal(b, 329, 8, 0);
  octal(b, 337, 8, 0);
  h.prefix.copy(b, 345);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

/** Zero-padded octal in `width - 1` digits and a NUL. */
function octal(b: Buffer, offset: number, width: number, value: number): void {
  const s = value.toString(8).padStart(width - 1, '0');
  if (s.length > width - 1) throw new Error(`value ${value} does not fit a tar header field`);
  b.write(s + '\0', offset, 'latin1');
}
