import { createHash } from 'node:crypto';
import type { Config } from './config/types.js';
import { formatVersion, imageCreated } from './version.js';
import { readInputs, type InputContents } from './input-files.js';

/** Hex digits kept of each sha256: 128 bits, short enough to read, valid in a reference. */
const ID_HEX = 32;

export interface InputFile {
  /** Project-relative path with `/` separators. */
  path: string;
  /** `env` files name the repository, `user` files the tag. */
  role: 'env' | 'user';
  /** sha256 of the file's bytes, hex. */
  sha256: string;
  size: number;
}

export interface Identity {
  /** Repository name: hash of the predefined files. */
  name: string;
  /** Tag: hash of the user files, the image settings and nixdocker's format. */
  tag: string;
  /** Full reference: REGISTRY/NAMESPACE/NAME:TAG. */
  image: string;
  /** Repository with registry and namespace, without the tag. */
  repository: string;
  inputs: InputFile[];
  /**
   * The bytes each input had when it was hashed, by path: the build stages
   * exactly these (never a second read), so the tag always names what was
   * built. Absent when computed with `keepContents: false` (hash, run).
   */
  contents?: InputContents;
}

export interface IdentityOptions {
  /** Ends the reading (a signal, a stopping daemon) between two files. */
  signal?: AbortSignal;
  /** Keep the bytes for staging (default true); `hash` and `run` need only the digests. */
  keepContents?: boolean;
}

/** The settings that change what ends up in the image, and so belong in the tag. */
export function tagSettings(config: Config): Record<string, unknown> {
  const { maxLayers, cmd, env, workingDir, user } = config.image;
  return { maxLayers, cmd: cmd ?? null, env: env ?? null, workingDir: workingDir ?? null, user: user ?? null };
}

/**
 * Computes name and tag from file contents only: paths are project-relative,
 * and no mtime, mode or owner enters the hash, so the same inputs give the
 * same name:tag on every machine, and a touch changes nothing.
 */
export async function computeIdentity(config: Config, opts: IdentityOptions = {}): Promise<Identity> {
  const { env, user, contents } = await readInputs(config, { signal: opts.signal, keep: opts.keepContents ?? true });

  const nameHash = createHash('sha256').update('nixdocker-env-v1\n');
  for (const f of env) nameHash.update(`${f.path.slice(config.envDir.length + 1)}\0${f.sha256}\n`);
  const name = nameHash.digest('hex').slice(0, ID_HEX);

  // Canonical JSON: keys in a fixed order, user files in config order (it decides PATH precedence).
  const tagInput = JSON.stringify({
    format: formatVersion(),
    created: imageCreated(),
    user: user.map((f) => [f.path, f.sha256]),
    settings: tagSettings(config),
  });
  const tag = createHash('sha256').update('nixdocker-user-v1\n').update(tagInput).digest('hex').slice(0, ID_HEX);

  const repository = repositoryFor(config, name);
  return { name, tag, repository, image: `${repository}:${tag}`, inputs: [...env, ...user], ...(contents && { contents }) };
}

export function repositoryFor(config: Config, name: string): string {
  return [config.registry.host, config.registry.namespace, name].filter(Boolean).join('/');
}

/** Repository path inside the registry (no host): NAMESPACE/NAME. */
export function repositoryPath(config: Config, name: string): string {
  return [config.registry.namespace, name].filter(Boolean).join('/');
}

