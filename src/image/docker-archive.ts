import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { AssembledImage } from './assemble.js';
import { tarChunks, type TarEntryIn } from './tar.js';

/**
 * The image in `docker save` format, for `docker load` / `podman load`:
 * `manifest.json` (Config, RepoTags, Layers), the config and each layer under
 * `blobs/sha256/<hex>`. Layers stay gzipped, as in the cache; both engines
 * decompress them on load. The stream reads the blob files as it goes.
 */
export function dockerArchiveStream(image: AssembledImage, repoTags: string[]): Readable {
  const hex = (digest: string) => digest.slice('sha256:'.length);
  const name = (digest: string) => `blobs/sha256/${hex(digest)}`;
  const manifest = Buffer.from(
    `${JSON.stringify([{ Config: name(image.configDigest), RepoTags: repoTags, Layers: image.layers.map((l) => name(l.digest)) }])}\n`,
  );

  const blobs = new Map<string, TarEntryIn>();
  const config = image.config;
  blobs.set(hex(image.configDigest), { type: 'file', path: `/${name(image.configDigest)}`, size: config.length, executable: false, mode: 0o644, open: () => [config] });
  for (const l of image.layers) {
    // The same blob twice (possible in principle) is stored once and listed twice.
    blobs.set(hex(l.digest), { type: 'file', path: `/${name(l.digest)}`, size: l.size, executable: false, mode: 0o644, open: () => createReadStream(l.file) });
  }
  const entries: TarEntryIn[] = [
    { type: 'directory', path: '/blobs', mode: 0o755 },
    { type: 'directory', path: '/blobs/sha256', mode: 0o755 },
    ...[...blobs.keys()].sort().map((k) => blobs.get(k)!),
    { type: 'file', path: '/manifest.json', size: manifest.length, executable: false, mode: 0o644, open: () => [manifest] },
  ];
  return Readable.from(tarChunks(entries), { objectMode: false });
}
