import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ImageDescription, Plugin, PluginContext } from '../src/index.js';

/**
 * gc: after each new image, keeps the newest `keep` tags of its repository and
 * removes the older ones from the registry and from the engine.
 *
 * Which tags are newest: a registry keeps no dates, so the plugin keeps a
 * history per repository in `<cacheDir>/gc/<name>.json` (newest last; a tag
 * built again moves to the end). Only tags in that history are ever removed:
 * tags pushed from another machine or cache directory are left alone.
 *
 * Registry: a tag names an image index; an old tag goes with its index, the
 * platform manifests the index lists and its platform tags (TAG-linux-arm64).
 * A manifest is deleted by digest, which removes every tag on it,
 * so an old tag is deleted only when no other tag of the repository (kept,
 * unknown, or the one just built) points at the same digest; otherwise it
 * stays and is tried again after the next build. Finding that out costs one
 * HEAD per tag of the repository. The registry must allow deletes
 * (storage.delete.enabled). Deleting manifests frees no disk by itself: the
 * registry's own `garbage-collect` removes the unreferenced blobs.
 * Engine: the images REGISTRY/NAMESPACE/NAME:TAG of the old tags are removed
 * when present (pulled or loaded); one a container uses stays until later.
 *
 * Nix (`nix: true`, container mode only): each build roots its own image's
 * packages (under /nix/var/nix/gcroots/nixdocker/<project>/current), so the
 * current image survives any collection. Before collecting, the core also
 * roots the Nix outputs of the newest `keep` images of each of this
 * project's repositories (their remembered build results) beside it, in
 * /nix/var/nix/gcroots/nixdocker/<project>/keep.
 * Everything else in builder.volume is deleted, which costs later builds:
 * - .drv files and build-time-only inputs, fetched sources included (the
 *   nixpkgs tarball of env/pkgs.nix is downloaded again at the next evaluation);
 * - the packages of the removed images: going back to such an image builds
 *   them again (and if its layers are no longer in the layer cache, its
 *   remembered result points at deleted paths: `nixdocker build --force`);
 * - the store paths of every other project sharing the volume (the default
 *   "nixdocker-store") other than its current image's, and the fresh,
 *   not-yet-read outputs of a build such a project runs meanwhile.
 * Give a project with `nix: true` a builder.volume of its own. The collection
 * runs inside imageReady, so this project's next build waits for it.
 *
 * A gc failure is logged and never fails a build; what could not be removed
 * stays in the history and is tried again after the next build.
 */
export interface GcOptions {
  /** How many of the newest tags to keep, the one just built included. Default 5. */
  keep?: number;
  /** Delete old tags from the registry. Default true. */
  registry?: boolean;
  /** Remove old tags' images from the engine. Default true. */
  engine?: boolean;
  /** Collect the builder's Nix store garbage (see above). Default false. */
  nix?: boolean;
}

interface Normalized {
  keep: number;
  registry: boolean;
  engine: boolean;
  nix: boolean;
}

/** HEAD requests in flight at once while reading the digests of a repository's tags. */
const HEAD_CONCURRENCY = 8;

function normalizeOptions(raw: GcOptions | Record<string, unknown>): Normalized {
  const o = raw as Record<string, unknown>;
  const bool = (key: string, dflt: boolean): boolean => {
    const v = o[key];
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') throw new TypeError(`gc plugin: option "${key}" must be true or false, not ${JSON.stringify(v)}`);
    return v;
  };
  const keep = o.keep ?? 5;
  if (typeof keep !== 'number' || !Number.isInteger(keep) || keep < 1) {
    throw new TypeError(`gc plugin: option "keep" must be a whole number of tags, at least 1, not ${JSON.stringify(o.keep)}`);
  }
  return { keep, registry: bool('registry', true), engine: bool('engine', true), nix: bool('nix', false) };
}

/** Creates the gc plugin; `options` come from the config's plugin entry. */
export default function gc(options: GcOptions | Record<string, unknown> = {}): Plugin {
  const opts = normalizeOptions(options);
  return {
    name: 'gc',
    apply(hooks, context) {
      const warned = new Set<string>();
      /** One warning per kind of trouble, later ones at debug level. */
      const warnOnce = (kind: string, message: string) => {
        if (warned.has(kind)) return context.log.debug(message);
        warned.add(kind);
        context.log.warn(`${message} (further ones are logged at debug level)`);
      };
      let chain = Promise.resolve();
      hooks.imageReady.tapPromise('gc', (image) => {
        chain = chain.then(() => collect(image, opts, context, warnOnce)).catch((err) => warnOnce('gc', `gc failed: ${message(err)}`));
        return chain;
      });
    },
  };
}

type Warn = (kind: string, message: string) => void;

async function collect(image: ImageDescription, opts: Normalized, context: PluginContext, warn: Warn): Promise<void> {
  const suffix = `:${image.tag}`;
  if (!image.image.endsWith(suffix)) {
    warn('reference', `gc skipped ${image.image}: it does not end with its tag ${image.tag}`);
    return;
  }
  /** REGISTRY/NAMESPACE/NAME, and NAMESPACE/NAME inside the registry. */
  const ref = image.image.slice(0, -suffix.length);
  const repo = ref.slice(ref.indexOf('/') + 1);

  const file = historyFile(context.cacheDir, image.name);
  const tags = [...(await readHistory(file)).filter((t) => t !== image.tag), image.tag];
  const kept = tags.slice(-opts.keep);
  const old = tags.slice(0, Math.max(0, tags.length - opts.keep));
  /** Old tags that could not be removed everywhere: they stay in the history. */
  const left = new Set<string>();

  if (old.length > 0 && opts.registry && image.destinations.includes('registry')) {
    for (const t of await registryGc(image, repo, old, context, warn)) left.add(t);
  }
  if (old.length > 0 && opts.engine) {
    for (const t of await engineGc(ref, old, context, warn)) left.add(t);
  }
  await writeHistory(file, [...old.filter((t) => left.has(t)), ...kept]);

  if (opts.nix) await nixGc(opts, context, warn);
}

/** Deletes the old tags' manifests; returns the tags still there. */
async function registryGc(image: ImageDescription, repo: string, old: string[], context: PluginContext, warn: Warn): Promise<string[]> {
  const client = context.registry();
  const left = new Set(old);
  try {
    const listed = await client.listTags(repo);
    // A platform tag (TAG-linux-arm64) belongs to its tag: old with it, staying with it.
    // Longest known tag first: an identity plugin may suffix tags (HASH-main), and HASH-main-linux-amd64 is HASH-main's.
    const known = [...old, image.tag].sort((a, b) => b.length - a.length);
    const ownerOf = (t: string) => known.find((o) => t === o || t.startsWith(`${o}-`)) ?? t;
    const oldSet = new Set(old);
    const digests = await mapLimit(listed, HEAD_CONCURRENCY, async (t) => [t, await client.getManifestDigest(repo, t)] as const);
    // Every digest some staying tag points at, and the new image's own (its index and platforms).
    const protectedDigests = new Set<string>([image.digest, ...(image.platforms ?? []).map((p) => p.digest)]);
    for (const [t, d] of digests) if (d && !oldSet.has(ownerOf(t))) protectedDigests.add(d);
    const byTag = new Map(digests);
    const deleted = new Set<string>();
    const remove = async (d: string) => {
      if (deleted.has(d) || protectedDigests.has(d)) return;
      await client.deleteManifest(repo, d);
      deleted.add(d);
    };
    for (const t of old) {
      const d = byTag.get(t);
      if (!d || deleted.has(d)) {
        left.delete(t); // not in the registry, or gone with an earlier delete of the same manifest
        continue;
      }
      if (protectedDigests.has(d)) {
        context.log.debug(`gc left ${repo}:${t} in the registry: a tag that stays points at the same manifest ${d}`);
        continue;
      }
      // The index first (the tag stops naming anything at once), then what it held.
      const index = await client.getManifest(repo, d);
      const listedIn = index ? ((JSON.parse(index.body.toString('utf8')) as { manifests?: { digest: string }[] }).manifests ?? []).map((m) => m.digest) : [];
      await remove(d);
      for (const m of listedIn) await remove(m);
      for (const [pt, pd] of digests) if (pd && ownerOf(pt) === t && pt !== t) await remove(pd);
      left.delete(t);
    }
    if (deleted.size > 0) context.log.info(`gc deleted ${deleted.size} old manifest(s) of ${repo} from ${client.host}`);
  } catch (err) {
    warn('registry', `gc could not delete old tags of ${repo} from the registry: ${message(err)}`);
  }
  return [...left];
}

/** Removes the old tags' images from the engine; returns the tags it could not remove. */
async function engineGc(ref: string, old: string[], context: PluginContext, warn: Warn): Promise<string[]> {
  const docker = context.engine();
  const left: string[] = [];
  let removed = 0;
  for (const t of old) {
    try {
      await docker.getImage(`${ref}:${t}`).remove();
      removed++;
    } catch (err) {
      const status = (err as { statusCode?: number }).statusCode;
      if (status === 404) continue;
      left.push(t);
      if (status === 409) context.log.debug(`gc left ${ref}:${t} in the engine: a container uses it`);
      else warn('engine', `gc could not remove ${ref}:${t} from the engine: ${message(err)}`);
    }
  }
  if (removed > 0) context.log.info(`gc removed ${removed} old image(s) of ${ref} from the engine`);
  return left;
}

async function nixGc(opts: Normalized, context: PluginContext, warn: Warn): Promise<void> {
  if (context.config.builder.mode !== 'container') {
    warn('nix-local', 'gc option "nix" works with builder.mode "container" only: the host\'s own store is left alone');
    return;
  }
  // Root the newest images of every repository of the project, not only this one.
  const keep: { name: string; tag: string }[] = [];
  const dir = path.join(context.cacheDir, 'gc');
  for (const f of (await readdir(dir)).filter((n) => n.endsWith('.json'))) {
    const name = f.slice(0, -'.json'.length);
    for (const tag of (await readHistory(path.join(dir, f))).slice(-opts.keep)) keep.push({ name, tag });
  }
  const t0 = performance.now();
  const r = await context.collectGarbage(keep);
  const lines = r.output.trim().split('\n');
  if (r.exitCode !== 0) {
    warn('nix', `nix-collect-garbage failed with exit code ${r.exitCode}: ${lines.slice(-3).join(' / ')}`);
    return;
  }
  context.log.info(`gc collected the builder store in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${lines.at(-1) ?? ''}`);
}

function historyFile(cacheDir: string, name: string): string {
  return path.join(cacheDir, 'gc', `${name}.json`);
}

async function readHistory(file: string): Promise<string[]> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as { tags?: unknown };
    return Array.isArray(parsed.tags) ? parsed.tags.filter((t): t is string => typeof t === 'string') : [];
  } catch {
    return [];
  }
}

async function writeHistory(file: string, tags: string[]): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  // Write then rename: a crash never leaves half a history behind.
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(tmp, `${JSON.stringify({ tags }, null, 2)}\n`);
  await rename(tmp, file);
}

/** `fn` over `items`, at most `limit` at a time, results in order. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function message(err: unknown): string {
  return (err as Error)?.message ?? String(err);
}
