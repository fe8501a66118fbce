import type { BuildResult } from '../nix/types.js';
import type { ImageSettings } from '../config/types.js';
import { platformOfNixSystem } from '../config/platform.js';
import { silentLogger, type Logger } from '../log.js';
import { writeLayerBlob, blobPath } from './blob.js';
import { customisationEntries } from './customisation.js';
import { LayerCache, type LayerSource } from './layer-cache.js';
import { planLayers, type LayerPlan } from './layering.js';
import { mapLimit } from '../util/map-limit.js';
import { imageConfig, imageManifest, resolveImageSettings, sha256Digest } from './oci.js';
import { STORE_DIR, type StoreReader } from './store-reader.js';
import { tarBuffer, tarChunks, type TarEntryIn } from './tar.js';

export interface AssembleOptions {
  result: BuildResult;
  /** The config's `image.*`; they override envDir/image.nix. */
  settings: ImageSettings;
  reader: StoreReader;
  /** Holds `blobs/sha256/<hex>`, `layers/*.json` and `tmp/`. */
  cacheDir: string;
  signal?: AbortSignal;
  log?: Logger;
  /**
   * The reader a layer made again later (see AssembledLayer.regenerate) reads
   * through, and what to let go of after; `reader` when not given. A builder
   * released after assembly needs this.
   */
  laterReader?: () => Promise<{ reader: StoreReader; release(): Promise<void> }>;
  /** Layers built at once (gzip runs on libuv's thread pool); 4 by default. */
  concurrency?: number;
  /** Called as store bytes are read and as each layer is done. */
  onProgress?: (p: AssembleProgress) => void;
  /**
   * Called once the layers to build are known, before any is written: the
   * cached layers this image uses, and about how many bytes the new ones
   * will add at most, so the caller can make room in the cache.
   */
  beforeWrite?: (cached: { digest: string; size: number }[], incomingBytes: number) => Promise<void>;
}

/** How far an assembly is. */
export interface AssembleProgress {
  /** Store layers done (built or from the cache) of all store layers. */
  layersDone: number;
  layersTotal: number;
  layersCached: number;
  /** Uncompressed store bytes read so far for the layers built in this run. */
  bytesRead: number;
}

export interface AssembledLayer {
  /** Of the gzip blob. */
  digest: string;
  /** Of the uncompressed tar. */
  diffId: string;
  /** Bytes of the gzip blob. */
  size: number;
  /** Store paths, sorted; empty for the customisation layer. */
  paths: string[];
  kind: 'base' | 'user' | 'customisation';
  /** The blob file, `<cacheDir>/blobs/sha256/<hex>`. */
  file: string;
  /** Taken from the layer cache rather than built in this run. */
  cached: boolean;
  /**
   * Writes the blob file again (a store layer from the store, its bytes
   * checked), for a blob the cache pruned before it was pushed or loaded.
   */
  regenerate?: (signal?: AbortSignal) => Promise<void>;
}

export interface AssembledImage {
  /** Canonical JSON of the OCI manifest. */
  manifest: Buffer;
  manifestDigest: string;
  config: Buffer;
  configDigest: string;
  /** In image order: base, user, customisation. */
  layers: AssembledLayer[];
  stats: {
    layersBuilt: number;
    layersCached: number;
    /** Compressed bytes of the layers built in this run. */
    bytes: number;
  };
}

/**
 * Builds an image from a build result: plans the store layers, builds those
 * the layer cache does not know (reading them through `reader`), adds the
 * customisation layer, and writes config and manifest. Layer blobs stay in
 * the cache directory for pushing or loading.
 */
export async function assembleImage(opts: AssembleOptions): Promise<AssembledImage> {
  const { result, reader, cacheDir, signal } = opts;
  const log = opts.log ?? silentLogger;
  const cache = new LayerCache(cacheDir);
  const settings = resolveImageSettings(result.image, opts.settings);
  const plans = planLayers(result, opts.settings.maxLayers);
  log.debug({ layers: plans.length, base: plans.filter((p) => p.kind === 'base').length }, 'layers planned');

  const progress: AssembleProgress = { layersDone: 0, layersTotal: plans.length, layersCached: 0, bytesRead: 0 };
  const report = () => opts.onProgress?.({ ...progress });
  report();
  const concurrency = opts.concurrency ?? 4;
  const regenerator = (plan: LayerPlan, digest: string) => async (again?: AbortSignal) => {
    const s = again ?? new AbortController().signal;
    const later = opts.laterReader ? await opts.laterReader() : { reader, release: async () => {} };
    let blob;
    try {
      blob = await writeLayerBlob(tarChunks(storeLayerEntries(later.reader.read(plan.paths, s)), s), cacheDir, s);
    } finally {
      await later.release();
    }
    if (blob.digest !== digest) throw new Error(`the layer of ${plan.paths.length} store paths came out as ${blob.digest} this time, not ${digest}`);
  };
  const storeLayers: AssembledLayer[] = new Array(plans.length);
  const misses: number[] = [];
  await mapLimit(plans, 16, signal, async (plan, _sig) => {
    const i = plans.indexOf(plan);
    const hit = await cache.get({ kind: 'store', paths: plan.paths });
    if (hit) {
      storeLayers[i] = { ...hit, paths: plan.paths, kind: plan.kind, file: blobPath(cacheDir, hit.digest), cached: true, regenerate: regenerator(plan, hit.digest) };
      progress.layersDone++;
      progress.layersCached++;
      report();
    } else misses.push(i);
  });
  misses.sort((a, b) => a - b);
  if (misses.length > 0 && opts.beforeWrite) {
    // Gzip adds a little to incompressible bytes, tar a header and padding per file: a bound, not a guess.
    const narBytes = misses.reduce((s, i) => s + plans[i]!.paths.reduce((t, p) => t + (result.closure[p]?.narSize ?? 0), 0), 0);
    await opts.beforeWrite(storeLayers.filter(Boolean).map((l) => ({ digest: l.digest, size: l.size })), Math.ceil(narBytes * 1.01) + 65_536 * (misses.length + 1));
  }
  const build = async (i: number, entries: AsyncIterable<TarEntryIn>, sig: AbortSignal) => {
    const plan = plans[i]!;
    const started = performance.now();
    const tar = tarChunks(storeLayerEntries(entries), sig);
    const blob = await writeLayerBlob(opts.onProgress ? counted(tar, (n) => { progress.bytesRead += n; report(); }) : tar, cacheDir, sig);
    await cache.put({ kind: 'store', paths: plan.paths }, blob);
    log.debug({ kind: plan.kind, paths: plan.paths.length, size: blob.size, ms: Math.round(performance.now() - started) }, 'layer built');
    progress.layersDone++;
    report();
    storeLayers[i] = { ...blob, paths: plan.paths, kind: plan.kind, cached: false, regenerate: regenerator(plan, blob.digest) };
  };
  if (reader.readLayers && misses.length > 1) {
    // A few streams, each carrying several layers one after the other (an exec per layer costs 0.1 s or more).
    const streams = splitBySize(misses, Math.min(concurrency, misses.length), (i) => plans[i]!.paths.reduce((s, p) => s + (result.closure[p]?.narSize ?? 0), 0));
    await mapLimit(streams, concurrency, signal, async (batch, sig) => {
      let k = 0;
      for await (const entries of reader.readLayers!(batch.map((i) => plans[i]!.paths), sig)) await build(batch[k++]!, entries, sig);
    });
  } else {
    await mapLimit(misses, concurrency, signal, (i, sig) => build(i, reader.read(plans[i]!.paths, sig), sig));
  }

  const custom = await tarBuffer(await customisationEntries({ base: result.base, user: result.user, workingDir: settings.workingDir, reader, signal }));
  const customSource: LayerSource = { kind: 'content', diffId: sha256Digest(custom) };
  let customLayer: AssembledLayer;
  const hit = await cache.get(customSource);
  if (hit) {
    customLayer = { ...hit, paths: [], kind: 'customisation', file: blobPath(cacheDir, hit.digest), cached: true, regenerate: async (s) => void (await writeLayerBlob([custom], cacheDir, s)) };
  } else {
    const blob = await writeLayerBlob([custom], cacheDir, signal);
    await cache.put(customSource, blob);
    customLayer = { ...blob, paths: [], kind: 'customisation', cached: false, regenerate: async (s) => void (await writeLayerBlob([custom], cacheDir, s)) };
  }

  const layers = [...storeLayers, customLayer];
  const config = imageConfig({ settings, diffIds: layers.map((l) => l.diffId), name: result.name, tag: result.tag, platform: platformOfNixSystem(result.system) });
  const configDigest = sha256Digest(config);
  const manifest = imageManifest({ digest: configDigest, size: config.length }, layers);
  const built = layers.filter((l) => !l.cached);
  const stats = { layersBuilt: built.length, layersCached: layers.length - built.length, bytes: built.reduce((s, l) => s + l.size, 0) };
  log.debug(stats, 'image assembled');
  return { manifest, manifestDigest: sha256Digest(manifest), config, configDigest, layers, stats };
}

/** Passes chunks on, telling `add` each one's size (progress without a second read). */
async function* counted(chunks: AsyncIterable<Buffer>, add: (n: number) => void): AsyncGenerator<Buffer> {
  for await (const c of chunks) {
    add(c.length);
    yield c;
  }
}

/** A store layer holds `/nix` and `/nix/store` too, so its directories' modes never depend on the engine. */
async function* storeLayerEntries(entries: AsyncIterable<TarEntryIn>): AsyncGenerator<TarEntryIn> {
  yield { type: 'directory', path: '/nix' };
  yield { type: 'directory', path: STORE_DIR };
  yield* entries;
}

/** `items` in `n` lists of about equal total `size`, each in the original order (largest first, to the lightest list). */
function splitBySize(items: number[], n: number, size: (i: number) => number): number[][] {
  const lists = Array.from({ length: n }, () => ({ items: [] as number[], total: 0 }));
  for (const i of [...items].sort((a, b) => size(b) - size(a) || a - b)) {
    const lightest = lists.reduce((best, l) => (l.total < best.total ? l : best));
    lightest.items.push(i);
    lightest.total += size(i);
  }
  return lists.map((l) => l.items.sort((a, b) => a - b)).filter((l) => l.length > 0);
}
