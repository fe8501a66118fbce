import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createGunzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { execa } from 'execa';
import tarStream from 'tar-stream';
import { tmpDir } from './registry.js';

/** ELF e_machine values of the architectures the tests build for. */
export const E_MACHINE = { amd64: 0x3e, arm64: 0xb7 } as const;

export interface CopiedImage {
  config: { architecture: string; os: string; variant?: string };
  /** Reads one file of the image's filesystem (the last layer that holds it), or null. */
  file(match: RegExp): Promise<{ name: string; body: Buffer } | null>;
}

/**
 * Copies one platform of a registry image into an OCI layout with skopeo (an
 * independent client: it picks the platform from an index by itself) and
 * opens it, so that a test can compare the config's label with the binaries.
 */
export async function copyPlatform(reference: string, arch: string): Promise<CopiedImage> {
  const dir = await tmpDir('nixdocker-oci-');
  await execa('skopeo', ['copy', '--src-tls-verify=false', '--override-arch', arch, '--override-os', 'linux', `docker://${reference}`, `oci:${dir}:img`]);
  const blob = (digest: string) => path.join(dir, 'blobs', ...digest.split(':'));
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const manifest = JSON.parse(await readFile(blob(index.manifests[0]!.digest), 'utf8')) as { config: { digest: string }; layers: { digest: string }[] };
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8'));
  return {
    config,
    async file(match) {
      let found: { name: string; body: Buffer } | null = null;
      for (const layer of manifest.layers) {
        const extract = tarStream.extract();
        Readable.from(await readFile(blob(layer.digest))).pipe(createGunzip()).pipe(extract);
        for await (const entry of extract) {
          const chunks: Buffer[] = [];
          for await (const c of entry) chunks.push(c as Buffer);
          if (entry.header.type === 'file' && match.test(entry.header.name)) found = { name: entry.header.name, body: Buffer.concat(chunks) };
        }
      }
      return found;
    },
  };
}

/** e_machine of an ELF file (little-endian, offset 18). */
export function elfMachine(body: Buffer): number {
  if (body.subarray(0, 4).toString('latin1') !== '\x7fELF') throw new Error('not an ELF file');
  return body.readUInt16LE(18);
}
