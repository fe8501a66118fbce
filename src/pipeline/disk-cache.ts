import { readdir, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { blobDir } from '../image/blob.js';

/** The floor of the automatic blob cache cap: the larger of this and twice the current image. */
export const MIN_AUTO_CAP = 2 * 1024 ** 3;
/** Build results kept by default: the last this many tags (plus the current one). */
export const DEFAULT_KEEP_RESULTS = 20;

export interface CacheLimits {
  /** Most bytes the cache directory holds (blobs pruned to fit); null: the larger of 2 GiB and twice the current image. */
  maxBytes: number | null;
  /** Build results kept besides the current identity's. */
  keepResults: number;
}

export interface PruneReport {
  blobsRemoved: number;
  bytesRemoved: number;
  blobBytes: number;
  cap: number;
  resultsRemoved: number;
}

interface FileInfo {
  file: string;
  size: number;
  mtimeMs: number;
}

async function files(dir: string, depth: 1 | 2): Promise<FileInfo[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: FileInfo[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const s = await stat(file).catch(() => null);
    if (!s) continue;
    if (s.isDirectory() && depth === 2) out.push(...(await files(file, 1)));
    else if (s.isFile()) out.push({ file, size: s.size, mtimeMs: s.mtimeMs });
  }
  return out;
}


/**
 * Keeps the cache directory bounded. Blobs of the current image are marked
 * used (their mtime is the LRU clock) and never removed; other blobs go,
 * least recently used first, until the whole directory fits the cap (its
 * other files, layer records, results and state, count too). A layer whose
 * blob went is rebuilt from the store the next time it is needed (the layer
 * cache counts a missing blob as a miss, and a push re-creates it). Build
 * results beyond the newest `keepResults` go too, except the current identity's.
 */
export async function pruneCache(
  cacheDir: string,
  current: { digests: string[]; imageBytes: number; result?: { name: string; tag: string } },
  limits: CacheLimits,
): Promise<PruneReport> {
  const report = await pruneBlobs(cacheDir, current, limits);
  // The current identity's results: one per platform (`TAG.json`, `TAG@PLATFORM.json`).
  const cur = current.result;
  const isCurrent = (file: string) =>
    cur !== undefined && path.dirname(file) === path.join(cacheDir, 'results', cur.name) && (path.basename(file) === `${cur.tag}.json` || path.basename(file).startsWith(`${cur.tag}@`));
  const results = (await files(path.join(cacheDir, 'results'), 2)).filter((r) => !isCurrent(r.file)).sort((a, b) => b.mtimeMs - a.mtimeMs);
  for (const r of results.slice(limits.keepResults)) {
    await rm(r.file, { force: true });
    report.resultsRemoved++;
  }
  return report;
}

/**
 * Removes blobs, least recently used first, until the directory and
 * `incomingBytes` more fit the cap; `current.digests` stay (marked used).
 * Called before an assembly writes new layers (so the directory stays under
 * the cap while it builds, not only after) and after each build.
 */
export async function pruneBlobs(
  cacheDir: string,
  current: { digests: string[]; imageBytes: number },
  limits: Pick<CacheLimits, 'maxBytes'>,
  incomingBytes = 0,
): Promise<PruneReport> {
  const now = new Date();
  const keep = new Set(current.digests.map((d) => d.replace(/^sha256:/, '')));
  for (const hex of keep) await utimes(path.join(blobDir(cacheDir), hex), now, now).catch(() => {});
  const cap = limits.maxBytes ?? Math.max(MIN_AUTO_CAP, 2 * current.imageBytes);
  const blobs = (await files(blobDir(cacheDir), 1)).sort((a, b) => a.mtimeMs - b.mtimeMs);
  let total = blobs.reduce((s, b) => s + b.size, 0);
  // Everything else under the directory (tmp/ included: blobs being written) counts against the cap too.
  const others = Math.max(0, (await treeBytes(cacheDir)) - total);
  const budget = cap - others - incomingBytes;
  const report: PruneReport = { blobsRemoved: 0, bytesRemoved: 0, blobBytes: total, cap, resultsRemoved: 0 };
  for (const b of blobs) {
    if (total <= budget) break;
    if (keep.has(path.basename(b.file))) continue;
    await rm(b.file, { force: true });
    total -= b.size;
    report.blobsRemoved++;
    report.bytesRemoved += b.size;
  }
  report.blobBytes = total;
  return report;
}

export interface CacheStatus {
  cacheDir: string;
  blobs: { count: number; bytes: number; oldest: string | null; newest: string | null };
  layers: number;
  results: { count: number; bytes: number };
  /** Every file under the cache directory. */
  totalBytes: number;
}

/** What the cache directory holds, for `nixdocker cache status`. */
export async function cacheStatus(cacheDir: string): Promise<CacheStatus> {
  const blobs = await files(blobDir(cacheDir), 1);
  const results = await files(path.join(cacheDir, 'results'), 2);
  const layers = await files(path.join(cacheDir, 'layers'), 1);
  const when = (ms: number) => new Date(ms).toISOString();
  const times = blobs.map((b) => b.mtimeMs);
  return {
    cacheDir,
    blobs: {
      count: blobs.length,
      bytes: blobs.reduce((s, b) => s + b.size, 0),
      oldest: times.length ? when(Math.min(...times)) : null,
      newest: times.length ? when(Math.max(...times)) : null,
    },
    layers: layers.length,
    results: { count: results.length, bytes: results.reduce((s, r) => s + r.size, 0) },
    totalBytes: await treeBytes(cacheDir),
  };
}

async function treeBytes(dir: string): Promise<number> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  let total = 0;
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += await treeBytes(p);
    else if (e.isFile()) total += (await stat(p).catch(() => ({ size: 0 }))).size;
  }
  return total;
}
