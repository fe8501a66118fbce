import { cosmiconfig, getDefaultSearchPlaces } from 'cosmiconfig';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { formatJsonError } from '../util/json-syntax.js';
import { configWhere, isWithin, resolveInside } from './containment.js';
import { DEFAULTS } from './defaults.js';
import { validate } from './schema.js';
import { checkKeyDestinations, resolveHostPaths, TRUSTED_SETTINGS } from './trust.js';
import { readUserConfig, userConfigPath } from './user-config.js';
import { PROTOTYPE_FILE, readPrototypeConfig, REGISTRY_CONTAINER_NOTE } from './prototype.js';
import type { Config, ConfigInput, PlatformSpec, PlatformTarget } from './types.js';
import { formatPlatform, parsePlatform, platformSlug } from './platform.js';

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
 * `nixdocker`), validates it whole, merges it over the user config
 * (user-config.ts) and the defaults, applies the trust rule (trust.ts) and
 * returns it normalised.
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
    // A config written as code may import a package the project lacks (typescript for a .ts file, nixdocker for defineConfig).
    const missing = /Cannot find (?:package|module) '([^']+)'/.exec((err as Error)?.message ?? '')?.[1];
    if (missing && !missing.startsWith('.') && !path.isAbsolute(missing)) {
      throw new UserError(
        `Cannot read the nixdocker config${file ? ` in ${file}` : ''}: it needs the package ${missing}, which the project does not have.`,
        `install it in the project: npm install --save-dev ${missing}${missing === 'typescript' ? ' (or write the config as nixdocker.config.mjs)' : ''}`,
        { cause: err },
      );
    }
    throw new UserError(
      `Cannot read the nixdocker config${file ? ` in ${file}` : ''}: ${syntaxProblem(file, err)}`,
      'fix the syntax of that file (JSON files allow no comments or trailing commas)',
      { cause: err },
    );
  }
  // cosmiconfig reports a file holding `null` (or nothing) as no config at all.
  const empty = found ? null : emptyConfigFile(root);
  if (empty) {
    throw new UserError(
      `The nixdocker config ${path.relative(root, empty)} holds no settings object (it is empty or null).`,
      `write the settings as an object, e.g. {} for all defaults, or remove ${path.relative(root, empty)}`,
    );
  }
  // No nixdocker config: a project of the prototype still works from its config.json.
  const prototype = found ? null : readPrototypeConfig(root);
  const file = found?.filepath ?? prototype?.file ?? null;
  const raw: unknown = prototype ? prototype.input : found && !found.isEmpty ? found.config : {};
  const where = configWhere(root, file);

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
  if (prototype) {
    warnings.push(
      `Using the prototype's ${PROTOTYPE_FILE} (${prototype.converted.map((c) => c.split(' → ')[0]).join(', ') || 'no settings nixdocker uses'}); \`nixdocker init\` converts it to .nixdockerrc.json.`,
      ...prototype.notes.filter((n) => n !== REGISTRY_CONTAINER_NOTE || !env.DOCKER_REGISTRY_CONTAINER),
    );
  }
  // defaults < the user's config < the project's < the environment.
  const user = readUserConfig(env);
  const registry = { ...DEFAULTS.registry, ...user?.input.registry, ...input.registry };
  if (env.DOCKER_REGISTRY_HOST) registry.host = env.DOCKER_REGISTRY_HOST;
  if (env.DOCKER_REGISTRY_CONTAINER) {
    warnings.push(
      'DOCKER_REGISTRY_CONTAINER is set but not needed: nixdocker pushes from the host, so only DOCKER_REGISTRY_HOST (or registry.host) matters.',
    );
  }

  const userBuilder = withoutNulls(user?.input.builder);
  const projectBuilder = withoutNulls(input.builder);
  const origins: Config['origins'] = {};
  for (const setting of TRUSTED_SETTINGS) {
    const key = setting.slice('builder.'.length) as keyof Config['builder'];
    if (key in projectBuilder) origins[setting] = { file: where, trusted: false };
    else if (user && key in userBuilder) origins[setting] = { file: user.file, trusted: true };
  }
  const userConfigFile = userConfigPath(env).file;
  const config: Config = {
    projectDir: root,
    configFile: file,
    userConfigFile,
    origins,
    envDir: normalizeRel(input.envDir ?? DEFAULTS.envDir),
    userConfig: (input.userConfig ?? DEFAULTS.userConfig).map(normalizeRel),
    workdir: normalizeRel(input.workdir ?? DEFAULTS.workdir),
    registry,
    // A setting is taken whole from the file that sets it: builder.cache's URL and key always come together.
    builder: resolveHostPaths({ ...DEFAULTS.builder, ...userBuilder, ...projectBuilder }, origins, { root, userConfigFile, env }),
    image: { ...DEFAULTS.image, ...withoutNulls(input.image) },
    platforms: null,
    cache: { ...DEFAULTS.cache, ...withoutNulls(input.cache) },
    watch: { ...DEFAULTS.watch, ...input.watch },
    plugins: input.plugins ?? DEFAULTS.plugins,
    cacheDir: checkCacheDir(root, input.cacheDir ?? DEFAULTS.cacheDir, where),
  };

  config.platforms = input.platforms ? input.platforms.map((spec) => platformTarget(spec, config.builder, where)) : null;
  checkVolumesApart(config.platforms, where);
  checkKeyDestinations(config);
  resolveInside(root, config.envDir, 'envDir', where, opts.skipFileChecks ? null : 'directory');
  config.userConfig.forEach((f, i) => resolveInside(root, f, `userConfig[${i}]`, where, opts.skipFileChecks ? null : 'file'));
  resolveInside(root, config.workdir, 'workdir', where, null);
  return { config, warnings };
}

/**
 * The cache directory is a project path like the others (the README's rule):
 * inside the project, also through symlinks, so that two projects never share
 * one daemon lock, one result cache or one state file by accident.
 */
function checkCacheDir(root: string, rel: string, where: string): string {
  const abs = resolveInside(root, normalizeRel(rel), 'cacheDir', where, null);
  // It may not exist yet: check the real path of the part that does.
  let existing = abs;
  while (!existsSync(existing) && path.dirname(existing) !== existing) existing = path.dirname(existing);
  const real = realpathSync(existing);
  if (!isWithin(root, real)) {
    throw new UserError(
      `The setting "cacheDir" in ${where} (${rel}) resolves to ${real}, outside the project directory.`,
      `set "cacheDir" in ${where} to a directory inside the project directory ${root} (the default is ".nixdocker")`,
    );
  }
  return path.join(real, path.relative(existing, abs));
}

/** A dedicated config file (not package.json) that cosmiconfig skipped as empty. */
function emptyConfigFile(root: string): string | null {
  for (const place of getDefaultSearchPlaces(MODULE_NAME)) {
    if (place === 'package.json') continue;
    const file = path.join(root, place);
    if (!existsSync(file)) continue;
    if (!/\.(?:[cm]?js|ts)$/.test(place)) {
      // YAML allows an empty file to mean "no settings"; JSON and `null` say nothing at all.
      const text = readFileSync(file, 'utf8').trim();
      if (text !== 'null' && text !== '' && text !== '~') continue;
    }
    return file;
  }
  return null;
}

/**
 * Where the syntax error is: line and column, without quoting the file (a
 * JSON file is parsed again here because cosmiconfig's first line says
 * neither, and its code frame quotes the text).
 */
function syntaxProblem(file: string | null, err: unknown): string {
  if (file && /(?:\.json|rc)$/.test(file)) {
    try {
      const text = readFileSync(file, 'utf8');
      try {
        JSON.parse(text);
      } catch (jsonErr) {
        // .nixdockerrc may be YAML: only trust our parse when the text looks like JSON.
        if (file.endsWith('.json') || /^\s*[[{]/.test(text)) return formatJsonError(text, jsonErr);
      }
    } catch {
      // unreadable: fall back to cosmiconfig's message
    }
  }
  const yamlPos = /\((\d+):(\d+)\)/.exec(String((err as Error)?.message ?? ''));
  return yamlPos ? `line ${yamlPos[1]}, column ${yamlPos[2]}: ${firstLine(err).replace(/\s*\(\d+:\d+\)\s*$/, '')}` : firstLine(err);
}

function platformTarget(spec: PlatformSpec, builder: Config['builder'], where: string): PlatformTarget {
  const entry = typeof spec === 'string' ? { platform: spec } : spec;
  const platform = parsePlatform(entry.platform, `"platforms" in ${where}`);
  return {
    name: formatPlatform(platform),
    platform,
    image: entry.image ?? builder.image,
    // Per platform: a volume is seeded from its image's /nix, so two platforms never share one.
    volume: entry.volume ?? `${builder.volume}-${platformSlug(platform).replace(/^linux-/, '')}`,
    ...(entry.dockerHost ? { dockerHost: entry.dockerHost } : {}),
  };
}

/**
 * Two platforms on one engine may not share a volume: it is seeded from the
 * first image's /nix, so the second platform's builder would run the first
 * one's Nix, and each build's leftovers check would take the other's
 * containers for its own.
 */
function checkVolumesApart(platforms: PlatformTarget[] | null, where: string): void {
  const owner = new Map<string, string>();
  for (const t of platforms ?? []) {
    const key = `${t.dockerHost ?? ''}\0${t.volume}`;
    const other = owner.get(key);
    if (other) {
      throw new UserError(
        `The platforms ${other} and ${t.name} in ${where} use the same builder volume ${t.volume}.`,
        `give each platform its own "volume" in "platforms" in ${where}, or leave "volume" out to get one per platform`,
      );
    }
    owner.set(key, t.name);
  }
}

/** `null` marks an optional setting as unset (the example config shows them that way). */
function withoutNulls<T extends object>(o: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== null)) as Partial<T>;
}

function normalizeRel(p: string): string {
  return p.split(path.sep).join('/').replace(/\/+$/, '');
}


function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split('\n')[0]!;
}

function guessFile(err: unknown): string | null {
  const m = /(\/\S+?(?:\.nixdockerrc[\w.]*|nixdocker\.config\.\w+|package\.json))/.exec(String((err as Error)?.message ?? ''));
  return m ? m[1]! : null;
}
