import { createHash } from 'node:crypto';
import { open, readdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from './config/types.js';
import { UserError } from './errors.js';
import { formatVersion, imageCreated } from './version.js';
import { isIgnoredDir, isIgnoredFile } from './ignore.js';
import { isWithin } from './config/load.js';

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
export async function computeIdentity(config: Config): Promise<Identity> {
  const envFiles = await listEnvFiles(config);
  const [env, user] = await Promise.all([
    hashFiles(config.projectDir, envFiles, 'env'),
    hashFiles(config.projectDir, config.userConfig, 'user'),
  ]);

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
  return { name, tag, repository, image: `${repository}:${tag}`, inputs: [...env, ...user] };
}

export function repositoryFor(config: Config, name: string): string {
  return [config.registry.host, config.registry.namespace, name].filter(Boolean).join('/');
}

/** Repository path inside the registry (no host): NAMESPACE/NAME. */
export function repositoryPath(config: Config, name: string): string {
  return [config.registry.namespace, name].filter(Boolean).join('/');
}

/** Every file under envDir, project-relative, sorted by code unit so the order never depends on locale. */
export async function listEnvFiles(config: Config): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(path.join(config.projectDir, rel), { withFileTypes: true });
    for (const e of entries) {
      const childRel = `${rel}/${e.name}`;
      if (e.isDirectory()) {
        if (!isIgnoredDir(e.name)) await walk(childRel);
      } else if (!isIgnoredFile(e.name)) {
        if (e.isSymbolicLink()) {
          const real = await realpath(path.join(config.projectDir, childRel)).catch(() => null);
          if (!real || !isWithin(config.projectDir, real)) {
            throw new UserError(
              `${childRel} is a symlink that points outside the project directory (or nowhere).`,
              `replace ${childRel} with a copy of the file, or remove it`,
            );
          }
        }
        out.push(childRel);
      }
    }
  };
  try {
    await walk(config.envDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new UserError(`The environment directory ${config.envDir} does not exist.`, 'run `nixdocker init`, or set "envDir" to your Nix environment directory');
    }
    throw err;
  }
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

const CONCURRENCY = 16;

async function hashFiles(root: string, files: string[], role: InputFile['role']): Promise<InputFile[]> {
  const out = new Array<InputFile>(files.length);
  let next = 0;
  const worker = async () => {
    // One buffer per worker, reused for every file: hashing a thousand files
    // then costs no more memory than hashing one (the daemon hashes often).
    const buf = Buffer.allocUnsafe(CHUNK);
    while (next < files.length) {
      const i = next++;
      const rel = files[i]!;
      try {
        out[i] = { path: rel, role, ...(await hashFile(path.join(root, rel), buf)) };
      } catch (err) {
        throw new UserError(`Cannot read the input file ${rel}: ${(err as Error).message}`, `restore ${rel}, or remove it from the configuration`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, files.length) }, worker));
  return out;
}

const CHUNK = 256 * 1024;

async function hashFile(file: string, buf: Buffer): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  const fh = await open(file, 'r');
  let size = 0;
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return { sha256: h.digest('hex'), size };
}
