import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { mapLimit } from '../util/map-limit.js';
import { readJson, writeJson } from '../util/json-file.js';
import path from 'node:path';
import type { AssembledImage, AssembledLayer } from '../image/assemble.js';
import { hasBlob } from '../image/blob.js';
import { MEDIA_TYPE } from '../image/oci.js';
import type { RegistryClient } from '../registry/index.js';

export interface PushStats {
  uploaded: number;
  skipped: number;
  mounted: number;
  bytesUploaded: number;
}

const CONCURRENCY = 4;

/** How far a push is; bytes count as they leave, so a rate can be shown. */
export interface PushProgress {
  blobsDone: number;
  blobsTotal: number;
  skipped: number;
  mounted: number;
  /** Bytes sent so far (an upload retried counts again). */
  bytesSent: number;
  /** Bytes of every blob of the image, whether sent or not. */
  bytesTotal: number;
}

/**
 * Pushes an assembled image: every blob the registry lacks (mounted from
 * another nixdocker repository when one is known to hold it), then the
 * manifest under `reference`, last, so it never names a partial image. The
 * push step passes the manifest's own digest: no tag moves here; the platform
 * tag and the tag's index follow (platform-index.ts).
 */
export async function pushImage(
  registry: RegistryClient,
  repo: string,
  reference: string,
  image: AssembledImage,
  opts: { cacheDir: string; signal?: AbortSignal; onProgress?: (p: PushProgress) => void },
): Promise<PushStats> {
  const known = await BlobHomes.open(opts.cacheDir, registry.host);
  const stats: PushStats = { uploaded: 0, skipped: 0, mounted: 0, bytesUploaded: 0 };
  const blobs = [
    ...image.layers.map((l) => ({ digest: l.digest, size: l.size, open: () => layerStream(l, opts.cacheDir, opts.signal) })),
    { digest: image.configDigest, size: image.config.length, open: () => Readable.from([image.config]) },
  ];
  const unique = [...new Map(blobs.map((b) => [b.digest, b])).values()];
  const progress: PushProgress = { blobsDone: 0, blobsTotal: unique.length, skipped: 0, mounted: 0, bytesSent: 0, bytesTotal: unique.reduce((n, b) => n + b.size, 0) };
  const report = () => opts.onProgress?.({ ...progress });
  report();
  await mapLimit(unique, CONCURRENCY, opts.signal, async (blob, signal) => {
    const home = known.get(blob.digest);
    const open = opts.onProgress
      ? () => blob.open().on('data', (c: Buffer) => {
          progress.bytesSent += c.length;
          report();
        })
      : blob.open;
    const result = await registry.pushBlob(repo, { ...blob, open }, { mountFrom: home && home !== repo ? [home] : [], signal });
    if (result === 'uploaded') {
      stats.uploaded++;
      stats.bytesUploaded += blob.size;
    } else if (result === 'mounted') stats.mounted++;
    else stats.skipped++;
    progress.blobsDone++;
    progress.skipped = stats.skipped;
    progress.mounted = stats.mounted;
    report();
    known.set(blob.digest, repo);
  });
  await known.save();
  opts.signal?.throwIfAborted();
  await registry.putManifest(repo, reference, image.manifest, MEDIA_TYPE.manifest, { signal: opts.signal });
  return stats;
}

/**
 * The blob file of a layer; one the cache pruned meanwhile (another build of
 * the project, a small cache.maxBytes) is written again from the store first.
 */
function layerStream(layer: AssembledLayer, cacheDir: string, signal?: AbortSignal): Readable {
  return Readable.from(
    (async function* () {
      if (!(await hasBlob(cacheDir, layer.digest, layer.size))) {
        if (!layer.regenerate) throw new Error(`the blob of layer ${layer.digest} is gone from the cache and cannot be made again`);
        await layer.regenerate(signal);
      }
      yield* createReadStream(layer.file);
    })(),
    { objectMode: false },
  );
}

/**
 * Which repository of a registry last received each blob, so the next push
 * to another repository can mount instead of upload. Advisory: a wrong entry
 * costs one failed mount, after which the blob is uploaded.
 */
class BlobHomes {
  private constructor(
    private readonly file: string,
    private readonly map: Record<string, string>,
  ) {}

  static async open(cacheDir: string, host: string): Promise<BlobHomes> {
    const file = path.join(cacheDir, 'registries', `${host.replace(/[^A-Za-z0-9.-]/g, '_')}.json`);
    return new BlobHomes(file, (await readJson<Record<string, string>>(file)) ?? {});
  }

  get(digest: string): string | undefined {
    return this.map[digest];
  }

  set(digest: string, repo: string): void {
    this.map[digest] = repo;
  }

  async save(): Promise<void> {
    await writeJson(this.file, this.map);
  }
}
