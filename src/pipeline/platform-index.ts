import { formatPlatform, parsePlatform, platformProblem, platformSlug, samePlatform, type Platform } from '../config/platform.js';
import type { AssembledImage } from '../image/assemble.js';
import { imageIndex, MEDIA_TYPE, type IndexEntry } from '../image/oci.js';
import type { RegistryClient } from '../registry/index.js';
import { MEDIA_TYPES } from '../registry/types.js';

/**
 * How a tag comes to name one index of every platform, with more than one
 * writer (a laptop building linux/arm64, CI building linux/amd64, each from
 * the same files, so the same tag):
 *
 * 1. Each writer pushes its platform's manifest by digest, then tags it
 *    `TAG-linux-arm64`. Platform tags are the source of truth: one per
 *    platform, and only its own writer ever moves it.
 * 2. Then it lists the repository's tags, reads every `TAG-*` platform tag and
 *    puts the index of all of them under TAG. Every manifest the index names
 *    was pushed before its platform tag, so the tag never names a manifest
 *    that is missing.
 * 3. Then it lists the tags again: a platform tag that appeared meanwhile
 *    (another writer between steps 2 and 3) makes it write the index again.
 *    A writer whose platform tag comes later writes its index later too, so
 *    the last index written holds every platform. (The registry API has no
 *    compare-and-swap: between a slower writer's step 2 and its step 3 the
 *    tag can briefly name an index without the other writer's platform;
 *    never one with a manifest missing.)
 */

/** The platform tag of `tag`: `TAG-linux-arm64`. */
export function platformTag(tag: string, platform: Platform): string {
  return `${tag}-${platformSlug(platform)}`;
}

/** The platform a platform tag of `tag` stands for, or null for any other tag. */
export function platformOfTag(tag: string, candidate: string): Platform | null {
  if (!candidate.startsWith(`${tag}-`)) return null;
  const name = candidate.slice(tag.length + 1).replace(/-/g, '/');
  return platformProblem(name) ? null : parsePlatform(name, candidate);
}

export interface TagContents {
  /** The digest the tag names, or null when there is no such tag. */
  digest: string | null;
  /** The platforms of its index; [] for a plain manifest (an image from before indexes) or no tag. */
  platforms: { platform: Platform; digest: string }[];
}

/** The skip check: one GET of the tag, and which platforms its index holds. */
export async function readTag(registry: RegistryClient, repo: string, tag: string, signal?: AbortSignal): Promise<TagContents> {
  const m = await registry.getManifest(repo, tag, { signal });
  if (!m) return { digest: null, platforms: [] };
  const body = JSON.parse(m.body.toString('utf8')) as { manifests?: { digest: string; platform?: Platform }[] };
  const isIndex = m.mediaType === MEDIA_TYPES.ociIndex || m.mediaType === MEDIA_TYPES.dockerManifestList;
  const platforms = isIndex ? (body.manifests ?? []).filter((e) => e.platform).map((e) => ({ platform: e.platform!, digest: e.digest })) : [];
  return { digest: m.digest, platforms };
}

export function missingPlatforms(have: TagContents, want: readonly Platform[]): Platform[] {
  return want.filter((w) => !have.platforms.some((h) => samePlatform(h.platform, w)));
}

/** Step 1, once the platform's manifest is up by its digest: its platform tag. */
export async function tagPlatform(registry: RegistryClient, repo: string, tag: string, platform: Platform, image: AssembledImage, signal?: AbortSignal): Promise<void> {
  await registry.putManifest(repo, platformTag(tag, platform), image.manifest, MEDIA_TYPE.manifest, { signal });
}

export interface PublishedIndex {
  digest: string;
  entries: IndexEntry[];
  /** Index writes it took (more than one when another writer added a platform meanwhile). */
  writes: number;
}

const MAX_ROUNDS = 5;

/** Steps 2 and 3: the index of every platform tag under TAG, written again while new platform tags appear. */
export async function publishIndex(registry: RegistryClient, repo: string, tag: string, signal?: AbortSignal): Promise<PublishedIndex> {
  let written: { digest: string; entries: IndexEntry[] } | null = null;
  for (let round = 1; round <= MAX_ROUNDS; round++) {
    const tags = (await registry.listTags(repo, { signal })).filter((t) => platformOfTag(tag, t));
    const known = new Set(written?.entries.map((e) => platformTag(tag, e.platform)) ?? []);
    if (written && tags.every((t) => known.has(t))) return { ...written, writes: round - 1 };
    const entries: IndexEntry[] = [];
    for (const t of tags) {
      const m = await registry.getManifest(repo, t, { signal });
      if (m) entries.push({ digest: m.digest, size: m.body.length, platform: platformOfTag(tag, t)! });
    }
    const body = imageIndex(entries);
    signal?.throwIfAborted();
    const digest = await registry.putManifest(repo, tag, body, MEDIA_TYPE.index, { signal });
    written = { digest, entries };
  }
  throw new Error(`the platform tags of ${repo}:${tag} kept changing over ${MAX_ROUNDS} index writes`);
}

/** For messages: "linux/amd64, linux/arm64". */
export function platformList(entries: readonly { platform: Platform }[]): string {
  return entries.length > 0 ? entries.map((e) => formatPlatform(e.platform)).join(', ') : 'none';
}
