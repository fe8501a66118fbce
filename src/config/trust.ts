import { lstatSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { isWithin } from './containment.js';
import { homeDir } from './user-config.js';
import type { Config, SettingOrigin, TrustedSetting } from './types.js';

/**
 * The trust rule. A project's config belongs to the project, which may be a
 * fresh clone of anyone's repository, and the project's Nix code runs as root
 * in the builder. So the settings that reach into the host, when a project
 * config sets them, may name only paths inside the project (real paths,
 * through symlinks): the key files, and the directories of file:// caches and
 * substituters, which are mounted into the builder. A path outside the
 * project (absolute, `~/`, `..`, a symlink out) is taken only from the user
 * config. `builder.cache` is one value, taken whole from one file, so a
 * project can never send its own URL with the user's signing key. And a
 * project config may not ask for `builder.mode: "local"`, which would run its
 * Nix code on the host as the user.
 */

/** The builder settings that name host paths, as config keys. */
export const TRUSTED_SETTINGS: readonly TrustedSetting[] = ['builder.cache', 'builder.substituters', 'builder.sshKeyFile', 'builder.sshKnownHostsFile', 'builder.mode'];

/** The directory of a file:// store URL (query parameters dropped), else null. */
export function fileStoreDir(url: string): string | null {
  if (!url.startsWith('file://')) return null;
  const dir = decodeURIComponent(url.slice('file://'.length).split('?')[0]!);
  return path.posix.normalize(dir).replace(/\/+$/, '') || '/';
}

export interface TrustContext {
  root: string;
  /** The user config file a fix should name (it may not exist yet). */
  userConfigFile: string;
  env: NodeJS.ProcessEnv;
}

/**
 * The builder settings with every host path absolute: checked to lie inside
 * the project when the project's config set them, `~/` and relative paths
 * (to the file) expanded when the user config did.
 */
export function resolveHostPaths(b: Config['builder'], origins: Config['origins'], ctx: TrustContext): Config['builder'] {
  const resolve = (setting: TrustedSetting, p: string, what: string): string => {
    const origin = origins[setting]!;
    if (origin.trusted) {
      if (p === '~' || p.startsWith('~/')) return path.join(homeDir(ctx.env), p.slice(2));
      return path.resolve(path.dirname(origin.file), p);
    }
    return insideProject(ctx.root, p, setting, what, origin, ctx.userConfigFile);
  };
  if (b.mode === 'local' && origins['builder.mode'] && !origins['builder.mode'].trusted) {
    throw new UserError(
      `"builder.mode": "local" in ${origins['builder.mode'].file} would run the project's Nix code on this host as you, where it can read any file you can; a project's config may not ask for that.`,
      `if you trust every project you build, set "builder": { "mode": "local" } in your user config ${ctx.userConfigFile}; else remove "mode" from ${origins['builder.mode'].file}`,
    );
  }
  if (b.cache) {
    const dir = fileStoreDir(b.cache.url);
    if (dir) resolve('builder.cache', dir, 'the directory of builder.cache.url');
  }
  for (const s of b.substituters) {
    const dir = fileStoreDir(s);
    if (dir) resolve('builder.substituters', dir, `the directory of the substituter ${s}`);
  }
  return {
    ...b,
    cache: b.cache ? { url: b.cache.url, secretKeyFile: resolve('builder.cache', b.cache.secretKeyFile, 'builder.cache.secretKeyFile') } : null,
    sshKeyFile: b.sshKeyFile ? resolve('builder.sshKeyFile', b.sshKeyFile, 'builder.sshKeyFile') : null,
    sshKnownHostsFile: b.sshKnownHostsFile ? resolve('builder.sshKnownHostsFile', b.sshKnownHostsFile, 'builder.sshKnownHostsFile') : null,
  };
}

/**
 * The host path to mount or read for `setting`, checked again at that moment when the
 * project set it (the project's code may have swapped a symlink in since the
 * config was loaded): the real path, which is what the engine will mount.
 */
export function hostPathNow(config: Config, setting: TrustedSetting, p: string): string {
  const origin = config.origins[setting];
  if (!origin || origin.trusted) return p;
  return insideProject(config.projectDir, p, setting, setting, origin, config.userConfigFile);
}

/**
 * The real path of `p` (relative to the project, or absolute), which must be
 * inside `root`; the part that does not exist yet is kept as written.
 */
function insideProject(root: string, p: string, setting: TrustedSetting, what: string, origin: SettingOrigin, userFile: string): string {
  const refuse = (why: string) =>
    new UserError(
      `The setting "${setting}" in ${origin.file} names ${why}, outside the project directory ${root}. A project's config may name host paths only inside the project: its Nix code runs as root in the builder, where ${what === setting ? 'this path' : what} is mounted or used.`,
      `move "${setting}" to your user config ${userFile} (yours, not the project's), or point it inside the project`,
    );
  // `~` is the shell's; in a project config it is not expanded, and a home directory is never inside the project.
  if (p === '~' || p.startsWith('~/')) throw refuse(`${p}, a path in your home directory`);
  const abs = path.resolve(root, p);
  if (!isWithin(root, abs)) throw refuse(p);
  // The longest part that exists, a dangling symlink included (lstat), so that none is skipped over.
  let existing = abs;
  while (!lstatOrNull(existing) && path.dirname(existing) !== existing) existing = path.dirname(existing);
  let real: string;
  try {
    real = realpathSync(existing);
  } catch {
    throw refuse(`${p}, a symlink to a path that does not exist`);
  }
  if (!isWithin(root, real)) throw refuse(`${p}, which resolves (through a symlink) to ${path.join(real, path.relative(existing, abs))}`);
  return path.join(real, path.relative(existing, abs));
}

function lstatOrNull(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}

/**
 * The signing key goes to the engine that runs `nix store sign` (on its
 * standard input). A project's config may pick a platform's engine, but then
 * not with the user's key: the key goes only to engines the user chose
 * (DOCKER_HOST).
 */
export function checkKeyDestinations(config: Config): void {
  const cache = config.origins['builder.cache'];
  if (!cache?.trusted || !config.platforms) return;
  const remote = config.platforms.find((t) => t.dockerHost);
  if (!remote) return;
  const where = config.configFile ? path.relative(config.projectDir, config.configFile) : 'the project config';
  throw new UserError(
    `"platforms" in ${where} builds ${remote.name} on the engine ${remote.dockerHost}, and your signing key (builder.cache in ${cache.file}) would be sent there to sign the upload; a project's config may not choose where your key goes.`,
    `remove "dockerHost" from that entry of "platforms" (DOCKER_HOST picks the engine), or build this project with NIXDOCKER_USER_CONFIG naming a config without builder.cache`,
  );
}
