import { tarStream } from '../util/tar-stream.js';

/** A file handed to a runner before Nix runs; the runner places it under its root. */
export interface StagedFile {
  /** Path inside the staging root, e.g. `project/env/default.nix`. */
  path: string;
  bytes: Buffer;
}

/** A tar of the staged files for the engine's archive API. */
export async function stagedTar(files: StagedFile[]): Promise<Buffer> {
  const p = tarStream().pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    p.on('end', resolve);
    p.on('error', reject);
  });
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!dirs.has(dir)) {
        dirs.add(dir);
        p.entry({ name: `${dir}/`, type: 'directory', mode: 0o755, mtime: new Date(0) });
      }
    }
    p.entry({ name: f.path, mode: 0o644, mtime: new Date(0), size: f.bytes.length }, f.bytes);
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}
