import { realpathSync, statSync, type Dirent } from 'node:fs';
import { configWhere, isWithin, resolveInside } from './config/containment.js';
import type { Config } from './config/types.js';
import { UserError } from './errors.js';
import { isIgnoredDir, isIgnoredFile } from './ignore.js';
import type { InputFile } from './identity.js';
import { describeType, HeldDir, readOnce, ReadRefused, Slicer } from './util/read-once.js';

/**
 * Reading the inputs of the identity: every file under envDir and each
 * userConfig file, each exactly once per build. Every directory and file is
 * resolved again at each read (a symlink can be swapped in under a running
 * daemon at any time) and refused, before a byte of it is read, when it
 * resolves outside the project or is not a regular file.
 */

/** Most bytes of one input file: inputs are Nix files and small data, read into memory. */
export const INPUT_FILE_LIMIT = 128 * 1024 * 1024;
/** Most bytes of all inputs together. */
export const INPUT_TOTAL_LIMIT = 1024 * 1024 * 1024;

/** The bytes of each input as hashed, by project-relative path. */
export class InputContents {
  private readonly bytes = new Map<string, Buffer>();

  set(rel: string, bytes: Buffer): void {
    this.bytes.set(rel, bytes);
  }

  private released = false;

  /** The bytes `rel` had when the identity was computed. */
  get(rel: string): Buffer {
    const b = this.bytes.get(rel);
    if (!b) throw new Error(`no bytes were ${this.released ? 'kept after the build for' : 'kept for'} the input ${rel}`);
    return b;
  }

  /** Drops the bytes once they are staged (the daemon keeps identities to compare them). */
  release(): void {
    this.released = true;
    this.bytes.clear();
  }

  /** Never in JSON (state files, --json output, plugins' logs). */
  toJSON(): undefined {
    return undefined;
  }
}

export interface ReadInputsResult {
  env: InputFile[];
  user: InputFile[];
  contents?: InputContents;
}

/** Reads and hashes every input once; keeps the bytes when `keep`. */
export async function readInputs(config: Config, opts: { signal?: AbortSignal; keep: boolean }): Promise<ReadInputsResult> {
  const root = config.projectDir;
  const where = configWhere(root, config.configFile);
  const slicer = new Slicer(opts.signal);
  const scratch = Buffer.allocUnsafe(opts.keep ? 0 : 1 << 20);
  const contents = opts.keep ? new InputContents() : undefined;
  let total = 0;

  const read = (rel: string, file: string, role: InputFile['role'], how: { listedRegular?: boolean; held?: boolean } = {}): InputFile | null => {
    let r;
    try {
      r = readOnce(file, { root, limit: INPUT_FILE_LIMIT, keep: opts.keep, scratch, ...how });
    } catch (err) {
      if (err instanceof ReadRefused) {
        if (err.code === 'missing' && role === 'env') return null; // removed since the listing: the next change says so
        throw refused(rel, err);
      }
      // The path opened may be /proc/self/fd/N/NAME: name the input instead.
      const message = (err as Error).message.replaceAll(file, rel);
      throw new UserError(`Cannot read the input file ${rel}: ${message}`, `restore ${rel}, or remove it from the configuration`);
    }
    total += r.size;
    if (total > INPUT_TOTAL_LIMIT) {
      throw new UserError(
        `The inputs are larger than ${INPUT_TOTAL_LIMIT / 2 ** 20} MiB together (reached at ${rel}); nixdocker reads them into memory to stage exactly what it hashed.`,
        'keep large data out of envDir and the user files: fetch it in Nix (builtins.fetchurl or a fixed-output derivation)',
      );
    }
    if (contents && r.bytes) contents.set(rel, r.bytes);
    return { path: rel, role, sha256: r.sha256, size: r.size };
  };

  const envReal = resolveInside(root, config.envDir, 'envDir', where, 'directory');
  const env = await readEnv(root, config.envDir, envReal, slicer, read);
  const user: InputFile[] = [];
  for (const [i, rel] of config.userConfig.entries()) {
    await slicer.tick();
    const real = resolveInside(root, rel, `userConfig[${i}]`, where, 'file');
    user.push(read(rel, real, 'user')!);
  }
  return { env, user, contents };
}

function refused(rel: string, err: ReadRefused): UserError {
  switch (err.code) {
    case 'not-regular':
      return new UserError(`The input ${rel} ${err.message}, not a regular file; nixdocker reads only regular files and did not read it.`, `replace ${rel} with a regular file, or remove it`);
    case 'too-large':
      return new UserError(
        `The input ${rel} is larger than ${INPUT_FILE_LIMIT / 2 ** 20} MiB, the most nixdocker reads of one input file.`,
        'keep large data out of envDir and the user files: fetch it in Nix (builtins.fetchurl or a fixed-output derivation)',
      );
    case 'escaped':
      return new UserError(`The input ${rel} resolves outside the project directory; nothing of it was read.`, `replace ${rel} with a file inside the project directory`);
    case 'symlink':
    case 'missing':
      return new UserError(`The input ${rel} changed while nixdocker read it (it ${err.message} now); nothing of it was read.`, `save ${rel} again as a regular file: the next change builds`);
  }
}

type ReadFn = (rel: string, file: string, role: 'env', how?: { listedRegular?: boolean; held?: boolean }) => InputFile | null;

/**
 * Every file under envDir, read and hashed as the walk finds it (one
 * directory descriptor open per level, never a list of all files first),
 * then sorted by path in code units so the order never depends on locale
 * or on the walk. Each directory is held open by descriptor (HeldDir): it is
 * listed, and its files opened, inside that very directory, so a parent
 * swapped for a symlink meanwhile cannot lead the reads out of the project.
 * Names are read as UTF-8; one that is not valid UTF-8 is an error naming it
 * (as a string it would turn into another name that does not exist).
 */
async function readEnv(root: string, envDir: string, envReal: string, slicer: Slicer, read: ReadFn): Promise<InputFile[]> {
  const out: InputFile[] = [];
  const walk = async (rel: string, dir: HeldDir): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = dir.list();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return; // gone since its parent was listed
      throw err;
    }
    if (entries.some((e) => e.name.includes('\uFFFD'))) checkNames(rel, dir);
    for (const e of entries) {
      if (slicer.due()) await slicer.yield();
      const name = e.name;
      const childRel = `${rel}/${name}`;
      if (e.isDirectory()) {
        if (!isIgnoredDir(name)) await walkSub(childRel, dir, name);
      } else if (isIgnoredFile(name)) {
        continue;
      } else if (e.isSymbolicLink()) {
        const f = read(childRel, followInside(root, childRel, dir.entry(name)), 'env');
        if (f) out.push(f);
      } else if (e.isFile()) {
        const f = read(childRel, dir.entry(name), 'env', { listedRegular: true, held: true });
        if (f) out.push(f);
      } else {
        // Refused by type from the listing: a FIFO is never opened (open would block).
        const kind = e.isFIFO() ? 'a FIFO (named pipe)' : e.isSocket() ? 'a socket' : e.isCharacterDevice() || e.isBlockDevice() ? 'a device' : 'not a regular file';
        throw new UserError(`The input ${childRel} is ${kind}, not a regular file; nixdocker reads only regular files and did not read it.`, `replace ${childRel} with a regular file, or remove it`);
      }
    }
  };
  const walkSub = async (rel: string, parent: HeldDir, name: string): Promise<void> => {
    let dir: HeldDir;
    try {
      dir = parent.sub(name, root);
    } catch (err) {
      if (err instanceof ReadRefused) {
        if (err.code === 'missing') return; // gone since its parent was listed
        throw refused(rel, err);
      }
      throw err;
    }
    try {
      await walk(rel, dir);
    } finally {
      dir.close();
    }
  };

  let top: HeldDir;
  try {
    top = HeldDir.open(envReal, root);
  } catch (err) {
    if (err instanceof ReadRefused) throw refused(envDir, err);
    throw err;
  }
  try {
    await walk(envDir, top);
  } finally {
    top.close();
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Throws for the first name in `dir` that is not valid UTF-8 (a valid name may hold U+FFFD too). */
function checkNames(rel: string, dir: HeldDir): void {
  for (const e of dir.listBytes()) {
    const name = e.name.toString('utf8');
    if (name.includes('\uFFFD') && !Buffer.from(name, 'utf8').equals(e.name)) {
      const shown = `${rel}/${escapeName(e.name)}`;
      throw new UserError(
        `The file name ${shown} is not valid UTF-8; nixdocker names inputs (and image paths) in UTF-8 and cannot read it.`,
        `rename ${shown} to a UTF-8 name (convmv -f latin1 -t utf8 does it), or remove it`,
      );
    }
  }
}

/** A symlink inside envDir: allowed when it resolves to a regular file inside the project. */
function followInside(root: string, rel: string, link: string): string {
  let real: string | null = null;
  try {
    real = realpathSync(link);
  } catch {
    real = null;
  }
  if (!real || !isWithin(root, real)) {
    throw new UserError(`${rel} is a symlink that points outside the project directory (or nowhere).`, `replace ${rel} with a copy of the file, or remove it`);
  }
  const st = statSync(real);
  if (!st.isFile()) {
    throw new UserError(`The input ${rel} is a symlink to ${describeType(st)}; nixdocker follows symlinks to files only and did not read it.`, `replace ${rel} with a regular file, or remove it`);
  }
  return real;
}

/** Bytes that are not printable ASCII as \xNN, so the name is shown without mangling the terminal. */
function escapeName(name: Buffer): string {
  let s = '';
  for (const b of name) s += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return s;
}
