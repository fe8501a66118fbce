import path from 'node:path';
import type { BuiltPackage } from '../nix/types.js';
import { STORE_DIR, storePathName, type StoreDirEntry, type StoreReader } from './store-reader.js';
import { comparePaths, type TarEntryIn } from './tar.js';

/** The non-root user every image has. */
export const IMAGE_USER = { name: 'nixdocker', uid: 1000, gid: 1000, home: '/home/nixdocker' } as const;
export const DEFAULT_WORKING_DIR = '/work';

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  `${IMAGE_USER.name}:x:${IMAGE_USER.uid}:${IMAGE_USER.gid}:${IMAGE_USER.name}:${IMAGE_USER.home}:/bin/sh`,
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
].join('\n') + '\n';

const GROUP = ['root:x:0:', `${IMAGE_USER.name}:x:${IMAGE_USER.gid}:`, 'nogroup:x:65534:'].join('\n') + '\n';

export interface CustomisationOptions {
  base: readonly BuiltPackage[];
  user: readonly BuiltPackage[];
  /** Absolute path inside the image. */
  workingDir: string;
  reader: StoreReader;
  signal?: AbortSignal;
}

/**
 * The entries of the customisation layer, the image's last layer, in
 * canonical order. It is small and built in memory on every assembly:
 *
 * - `/bin/NAME` and `/usr/bin/NAME`: a symlink to `<outPath>/bin/NAME` for
 *   every executable file or symlink in the packages' `bin` directories. On a
 *   name conflict the first package wins, base packages first, then user
 *   packages, each in the order they were listed.
 * - `env`: when a coreutils package provides `bin/env`, `/bin/env` and
 *   `/usr/bin/env` point to it whatever the order; otherwise `env` follows the
 *   rule above, and without any `bin/env` there is none (a dangling link
 *   would fail the same way as a missing one).
 * - `/etc/passwd`, `/etc/group`: root and `nixdocker` (1000:1000, home
 *   `/home/nixdocker`, owned by it), and nobody.
 * - `/tmp` (1777), `/root` (0700), the working directory (owned by
 *   `nixdocker`, 0755, with root-owned parents), `/nix` and `/nix/store` (0555,
 *   as in the store layers).
 */
export async function customisationEntries(opts: CustomisationOptions): Promise<TarEntryIn[]> {
  const entries = new Map<string, TarEntryIn>();
  const dir = (p: string, mode: number, owner?: { uid: number; gid: number }) => entries.set(p, { type: 'directory', path: p, mode, ...owner });
  const file = (p: string, content: string) => {
    const buf = Buffer.from(content);
    entries.set(p, { type: 'file', path: p, size: buf.length, executable: false, open: () => [buf] });
  };
  const owner = { uid: IMAGE_USER.uid, gid: IMAGE_USER.gid };

  dir('/bin', 0o755);
  dir('/etc', 0o755);
  dir('/home', 0o755);
  dir(IMAGE_USER.home, 0o755, owner);
  dir('/nix', 0o555);
  dir(STORE_DIR, 0o555);
  dir('/root', 0o700);
  dir('/tmp', 0o1777);
  dir('/usr', 0o755);
  dir('/usr/bin', 0o755);
  file('/etc/passwd', PASSWD);
  file('/etc/group', GROUP);

  const workingDir = path.posix.normalize(opts.workingDir).replace(/(.)\/+$/, '$1');
  if (!path.posix.isAbsolute(workingDir)) throw new Error(`working directory must be absolute: ${opts.workingDir}`);
  if (workingDir !== '/' && !entries.has(workingDir)) {
    for (let d = path.posix.dirname(workingDir); d !== '/'; d = path.posix.dirname(d)) if (!entries.has(d)) dir(d, 0o755);
    dir(workingDir, 0o755, owner);
  }

  for (const [name, target] of await binaries(opts)) {
    for (const d of ['/bin', '/usr/bin']) {
      entries.set(`${d}/${name}`, { type: 'symlink', path: `${d}/${name}`, target });
    }
  }
  return [...entries.values()].sort((a, b) => comparePaths(a.path, b.path));
}

/** Executable name → the store path it links to, by the rules above. */
async function binaries(opts: CustomisationOptions): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let coreutilsEnv: string | undefined;
  const seen = new Set<string>();
  const pkgs = [...opts.base, ...opts.user];
  // One request for all bin/ folders where the reader can (through an engine, one each costs ~25 ms).
  const listed = opts.reader.listMany ? await opts.reader.listMany([...new Set(pkgs.map((p) => `${p.outPath}/bin`))], opts.signal) : new Map<string, StoreDirEntry[]>();
  for (const pkg of pkgs) {
    if (seen.has(pkg.outPath)) continue;
    seen.add(pkg.outPath);
    storePathName(pkg.outPath);
    const bin = `${pkg.outPath}/bin`;
    for (const e of listed.get(bin) ?? (await opts.reader.list(bin, opts.signal))) {
      const runnable = (e.type === 'file' && e.executable) || e.type === 'symlink';
      if (!runnable) continue;
      const target = `${bin}/${e.name}`;
      if (!out.has(e.name)) out.set(e.name, target);
      if (e.name === 'env' && coreutilsEnv === undefined && isCoreutils(pkg)) coreutilsEnv = target;
    }
  }
  if (coreutilsEnv !== undefined) out.set('env', coreutilsEnv);
  return out;
}

function isCoreutils(pkg: BuiltPackage): boolean {
  const storeName = storePathName(pkg.outPath).replace(/^[0-9a-z]{32}-/, '');
  return /^coreutils(-|$)/.test(pkg.name) || /^coreutils(-|$)/.test(storeName);
}
