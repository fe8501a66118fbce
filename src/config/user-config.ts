import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../errors.js';
import { formatJsonError } from '../util/json-syntax.js';
import { validate } from './schema.js';
import type { ConfigInput } from './types.js';

/**
 * The user-level config: settings that belong to the person, not to a
 * project (which may be a fresh clone of anyone's repository). It is the one
 * place a host path outside the project may come from (see trust.ts).
 * A single JSON file at a known place, not a cosmiconfig search: nothing to
 * discover, and no code to run.
 */

/** The sections a user config may hold: the builder (with its keys and caches) and the registry. */
const SECTIONS = ['builder', 'registry'];

export interface UserConfig {
  /** Absolute path of the file. */
  file: string;
  input: Pick<ConfigInput, 'builder' | 'registry'>;
}

/** $HOME of `env`, or the process's home when `env` has none. */
export function homeDir(env: NodeJS.ProcessEnv): string {
  return env.HOME || os.homedir();
}

/**
 * `$NIXDOCKER_USER_CONFIG`, else `$XDG_CONFIG_HOME/nixdocker/config.json`,
 * else `~/.config/nixdocker/config.json`.
 */
export function userConfigPath(env: NodeJS.ProcessEnv): { file: string; explicit: boolean } {
  if (env.NIXDOCKER_USER_CONFIG) return { file: path.resolve(env.NIXDOCKER_USER_CONFIG), explicit: true };
  // The XDG spec says a relative XDG_CONFIG_HOME is invalid and to be ignored.
  const base = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(homeDir(env), '.config');
  return { file: path.join(base, 'nixdocker', 'config.json'), explicit: false };
}

/**
 * Reads and validates the user config; null when there is none. A file named
 * by NIXDOCKER_USER_CONFIG must exist (a typo there would otherwise drop the
 * user's keys without a word).
 */
export function readUserConfig(env: NodeJS.ProcessEnv): UserConfig | null {
  const { file, explicit } = userConfigPath(env);
  const named = `your nixdocker user config ${file}${explicit ? ' (NIXDOCKER_USER_CONFIG)' : ''}`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !explicit) return null;
    throw new UserError(
      `Cannot read ${named}: ${code === 'ENOENT' ? 'it does not exist' : code === 'EISDIR' ? 'it is a directory' : code ?? 'error'}.`,
      explicit ? 'point NIXDOCKER_USER_CONFIG at a JSON file of your settings, or unset it' : `make ${file} a readable JSON file, or remove it`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    // Line and column only: the file may hold paths of keys, and its text is not ours to print.
    throw new UserError(`Cannot read ${named}: ${formatJsonError(text, err)}.`, 'fix the syntax of that file (JSON allows no comments or trailing commas)');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new UserError(`${capital(named)} holds no settings object.`, `write the settings as an object, e.g. { "builder": { … } }, or remove ${file}`);
  }
  const others = Object.keys(raw).filter((k) => k !== '$schema' && !SECTIONS.includes(k));
  if (others.length > 0) {
    const list = others.map((k) => `"${k}"`).join(', ');
    throw new UserError(
      `${capital(named)} sets ${list}, which describe${others.length === 1 ? 's' : ''} one project: a user config holds only your "builder" and "registry" settings, which apply to every project you build.`,
      `move ${list} to the project's .nixdockerrc.json`,
    );
  }
  const problems = validate(raw);
  if (problems.length > 0) {
    throw new UserError(
      `Invalid settings in ${named}: ${problems.map((p) => `"${p.key}" ${p.problem}`).join('; ')}.`,
      'correct those keys; nixdockerrc.example.json lists every setting with its default',
    );
  }
  return { file, input: raw as UserConfig['input'] };
}

function capital(s: string): string {
  return s[0]!.toUpperCase() + s.slice(1);
}
