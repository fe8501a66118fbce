import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import type { Config } from './types.js';

/**
 * Project paths stay inside the project: no absolute paths, no `..`, no
 * symlink that resolves outside. Checked at config load and again at every
 * read or mount (a symlink can be swapped in at any time under a running
 * daemon), with the same message both times.
 */

export function isWithin(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** How messages name where the config came from: the file, relative to the project. */
export function configWhere(root: string, file: string | null): string {
  return file ? path.relative(root, file) || file : 'the defaults';
}

export type PathKind = 'file' | 'directory';

/**
 * The real path of the project path `rel` (the setting `key`), checked to be
 * inside `root` and of the kind asked for; a UserError naming the setting and
 * the fix otherwise. `mustBe` null checks the lexical path only (it may not
 * exist yet).
 */
export function resolveInside(root: string, rel: string, key: string, where: string, mustBe: PathKind | null): string {
  const fix = `set "${key}" in ${where} to a path inside the project directory ${root}`;
  if (path.isAbsolute(rel) || path.win32.isAbsolute(rel)) {
    throw new UserError(`The setting "${key}" in ${where} is the absolute path ${rel}; it must be relative to the project directory.`, fix);
  }
  const abs = path.resolve(root, rel);
  if (!isWithin(root, abs)) throw new UserError(`The setting "${key}" in ${where} (${rel}) points outside the project directory.`, fix);
  if (!mustBe) return abs;
  let real: string;
  try {
    real = realpathSync(abs);
  } catch {
    throw new UserError(
      `The ${mustBe} ${rel} named by "${key}" in ${where} does not exist.`,
      mustBe === 'file' ? `create ${rel} (it may be an empty list: [ ]) or remove it from "${key}"` : `create ${rel}/default.nix or run \`nixdocker init\``,
    );
  }
  if (!isWithin(root, real)) throw outsideError(rel, key, where, real, mustBe, fix);
  const st = statSync(real);
  if (mustBe === 'file' ? !st.isFile() : !st.isDirectory()) {
    throw new UserError(`"${key}" in ${where} names ${rel}, which is not a ${mustBe}.`, fix);
  }
  return real;
}

function outsideError(rel: string, key: string, where: string, real: string, kind: PathKind, fix: string): UserError {
  return new UserError(`The ${kind} ${rel} named by "${key}" in ${where} is a symlink to ${real}, outside the project directory.`, fix);
}

/**
 * The directory `run` and autorun mount as the working directory: the real
 * path of WORKDIR/user when it exists and resolves inside the project, null
 * when it does not exist; a UserError when it (or WORKDIR) resolves outside,
 * so a cloned project can never mount /etc.
 */
export function userDirToMount(config: Config): string | null {
  const where = configWhere(config.projectDir, config.configFile);
  const rel = `${config.workdir}/user`;
  resolveInside(config.projectDir, config.workdir, 'workdir', where, null);
  let real: string;
  try {
    real = realpathSync(path.resolve(config.projectDir, rel));
  } catch {
    return null;
  }
  if (!isWithin(config.projectDir, real)) {
    throw outsideError(rel, 'workdir', where, real, 'directory', `make ${rel} a directory inside the project directory ${config.projectDir}, or set "workdir" in ${where}`);
  }
  return statSync(real).isDirectory() ? real : null;
}
