import { cosmiconfig } from 'cosmiconfig';
import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { DEFAULTS } from './defaults.js';
import { validate } from './schema.js';
import type { Config, ConfigInput } from './types.js';

export const MODULE_NAME = 'nixdocker';

export interface LoadedConfig {
  config: Config;
  /** Things the user should hear once (deprecated variables and the like). */
  warnings: string[];
}

export interface LoadOptions {
  /** Environment to read overrides from; process.env by default. */
  env?: NodeJS.ProcessEnv;
  /** Skip the checks that files exist (for `init`, which creates them). */
  skipFileChecks?: boolean;
}

/**
 * Finds the config of the project in `projectDir` (cosmiconfig, module name
 * `nixdocker`), validates it whole and returns it normalised with defaults.
 */
export async function loadConfig(projectDir: string, opts: LoadOptions = {}): Promise<LoadedConfig> {
  const env = opts.env ?? process.env;
  let root: string;
  try {
    root = realpathSync(path.resolve(projectDir));
    if (!statSync(root).isDirectory()) throw new Error('not a directory');
  } catch {
    throw new UserError(`The project directory ${projectDir} does not exist or is not a directory.`, 'pass an existing directory with -C DIR');
  }

  const explorer = cosmiconfig(MODULE_NAME, { searchStrategy: 'none', cache: false });
  let found: { config: unknown; filepath: string; isEmpty?: boolean } | null;
  try {
    found = await explorer.search(root);
  } catch (err) {
    const file = (err as { filepath?: string }).filepath ?? guessFile(err);
    throw new UserError(
      `Cannot read the nixdocker config${file ? ` in ${file}` : ''}: ${firstLine(err)}`,
      'fix the syntax of that file (JSON files allow no comments or trailing commas)',
      { cause: err },
    );
  }
  const file = found?.filepath ?? null;
  const raw: unknown = found && !found.isEmpty ? found.config : {};
  const where = file ? path.relative(root, file) || file : 'the defaults';

  const problems = validate(raw);
  if (problems.length > 0) {
    const list = problems.map((p) => `"${p.key}" ${p.problem}`).join('; ');
    throw new UserError(
      `Invalid nixdocker config in ${where}: ${list}.`,
      'correct those keys; nixdockerrc.example.json lists every setting with its default',
    );
  }

  const input = raw as ConfigInput;
  const warnings: string[] = [];
  const registry = { ...DEFAULTS.registry, ...input.registry };
  if (env.DOCKER_REGISTRY_HOST) registry.host = env.DOCKER_REGISTRY_HOST;
  if (env.DOCKER_REGISTRY_CONTAINER) {
    warnings.push(
      'DOCKER_REGISTRY_CONTAINER is set but not needed: nixdocker pushes from the host, so only DOCKER_REGISTRY_HOST (or registry.host) matters.',
    );
  }

  const config: Config = {
    projectDir: root,
    configFile: file,
    envDir: normalizeRel(input.envDir ?? DEFAULTS.envDir),
    userConfig: (input.userConfig ?? DEFAULTS.userConfig).map(normalizeRel),
    workdir: normalizeRel(input.workdir ?? DEFAULTS.workdir),
    registry,
    builder: { ...DEFAULTS.builder, ...input.builder },
    image: { ...DEFAULTS.image, ...withoutNulls(input.image) },
    watch: { ...DEFAULTS.watch, ...input.watch },
    plugins: input.plugins ?? DEFAULTS.plugins,
    cacheDir: path.resolve(root, input.cacheDir ?? DEFAULTS.cacheDir),
  };

  checkInside(root, config.envDir, 'envDir', where, opts.skipFileChecks ? null : 'directory');
  config.userConfig.forEach((f, i) => checkInside(root, f, `userConfig[${i}]`, where, opts.skipFileChecks ? null : 'file'));
  checkInside(root, config.workdir, 'workdir', where, null);
  return { config, warnings };
}

/** `null` marks an optional setting as unset (the example config shows them that way). */
function withoutNulls<T extends object>(o: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== null)) as Partial<T>;
}

function normalizeRel(p: string): string {
  return p.split(path.sep).join('/').replace(/\/+$/, '');
}

/**
 * A project path must stay inside the project: no absolute paths, no `..`, no
 * symlink that resolves outside. Otherwise the identity would depend on files
 * the project does not hold, and the same name:tag could mean two images.
 */
function checkInside(root: string, rel: string, key: string, where: string, mustBe: 'file' | 'directory' | null): void {
  const fix = `set "${key}" in ${where} to a path inside the project directory ${root}`;
  if (path.isAbsolute(rel) || path.win32.isAbsolute(rel)) {
    throw new UserError(`The setting "${key}" in ${where} is the absolute path ${rel}; it must be relative to the project directory.`, fix);
  }
  const abs = path.resolve(root, rel);
  if (!isWithin(root, abs)) throw new UserError(`The setting "${key}" in ${where} (${rel}) points outside the project directory.`, fix);
  if (!mustBe) return;
  let real: string;
  try {
    real = realpathSync(abs);
  } catch {
    throw new UserError(
      `The ${mustBe} ${rel} named by "${key}" in ${where} does not exist.`,
      mustBe === 'file' ? `create ${rel} (it may be an empty list: [ ]) or remove it from "${key}"` : `create ${rel}/default.nix or run \`nixdocker init\``,
    );
  }
  if (!isWithin(root, real)) throw new UserError(`The ${mustBe} ${rel} named by "${key}" in ${where} is a symlink to ${real}, outside the project directory.`, fix);
  const st = statSync(real);
  if (mustBe === 'file' ? !st.isFile() : !st.isDirectory()) {
    throw new UserError(`"${key}" in ${where} names ${rel}, which is not a ${mustBe}.`, fix);
  }
}

export function isWithin(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split('\n')[0]!;
}

function guessFile(err: unknown): string | null {
  const m = /(\/\S+?(?:\.nixdockerrc[\w.]*|nixdocker\.config\.\w+|package\.json))/.exec(String((err as Error)?.message ?? ''));
  return m ? m[1]! : null;
}
