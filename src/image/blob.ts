import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { ensureProcessTmpDir } from '../util/process-tmp.js';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

/** Part of the layer format: changing it changes every blob digest. */
export const GZIP_LEVEL = 6;
/** Bytes of tar handed to gzip at once. */
const COALESCE = 64 * 1024;
/** The gzip header's OS byte, fixed to "Unix": zlib writes another on some platforms (19 on macOS). */
const GZIP_OS_UNIX = 3;

export interface LayerBlob {
  /** sha256 of the compressed blob, `sha256:HEX`. */
  digest: string;
  /** sha256 of the uncompressed tar, `sha256:HEX`. */
  diffId: string;
  /** Bytes of the compressed blob. */
  size: number;
  /** The blob file, content-addressed under the cache directory. */
  file: string;
}

/** The folder of every cached blob. */
export function blobDir(cacheDir: string): string {
  return path.join(cacheDir, 'blobs', 'sha256');
}

/** Where a blob with this digest lives: `<cacheDir>/blobs/sha256/<hex>`. */
export function blobPath(cacheDir: string, digest: string): string {
  const [algo, hex] = digest.split(':');
  if (algo !== 'sha256' || !hex || !/^[0-9a-f]{64}$/.test(hex)) throw new Error(`not a sha256 digest: ${digest}`);
  return path.join(blobDir(cacheDir), hex);
}

/** True when the blob file exists with the expected size. */
export async function hasBlob(cacheDir: string, digest: string, size: number): Promise<boolean> {
  try {
    const s = await stat(blobPath(cacheDir, digest));
    return s.isFile() && s.size === size;
  } catch {
    return false;
  }
}

/**
 * Gzips a tar stream into a blob file under `cacheDir`, computing the diffID
 * (sha256 of the tar) and the digest and size of the compressed blob on the
 * way, without holding the layer in memory. The file is written under a
 * temporary name and renamed into place, so a blob file is always complete.
 *
 * The compressed bytes are reproducible for a given zlib (Node bundles its
 * own); the diffID is reproducible everywhere.
 */
export async function writeLayerBlob(tar: AsyncIterable<Buffer> | Iterable<Buffer>, cacheDir: string, signal?: AbortSignal): Promise<LayerBlob> {
  // This process's own folder: what a killed process leaves there is removed at the next start.
  const tmpDir = await ensureProcessTmpDir(cacheDir);
  const tmp = path.join(tmpDir, `blob-${randomBytes(6).toString('hex')}`);
  const diff = createHash('sha256');
  const blob = createHash('sha256');
  let size = 0;
  try {
    await pipeline(
      Readable.from(tar, { objectMode: false }),
      async function* hashTar(source: AsyncIterable<Buffer>) {
        // Each write to gzip is a trip to the thread pool: hand it 64 KiB at a
        // time, not a 512-byte header per entry (deflate's output does not
        // depend on how its input is cut).
        let parts: Buffer[] = [];
        let held = 0;
        for await (const chunk of source) {
          diff.update(chunk);
          parts.push(chunk);
          held += chunk.length;
          if (held >= COALESCE) {
            yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, held);
            parts = [];
            held = 0;
          }
        }
        if (held > 0) yield Buffer.concat(parts, held);
      },
      createGzip({ level: GZIP_LEVEL }),
      async function* hashBlob(source: AsyncIterable<Buffer>) {
        for await (let chunk of source) {
          if (size < 10 && size + chunk.length > 9) {
            chunk = Buffer.from(chunk); // zlib may reuse its buffer; patch a copy
            chunk[9 - size] = GZIP_OS_UNIX;
          }
          size += chunk.length;
          blob.update(chunk);
          yield chunk;
        }
      },
      createWriteStream(tmp, { flags: 'wx' }),
      { signal },
    );
    const digest = `sha256:${blob.digest('hex')}`;
    const file = blobPath(cacheDir, digest);
    await mkdir(path.dirname(file), { recursive: true });
    await rename(tmp, file);
    return { digest, diffId: `sha256:${diff.digest('hex')}`, size, file };
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
