/**
 * A Nix binary cache over plain HTTP for tests: a small static server on a
 * loopback port that serves a directory (GET, HEAD) and stores what Nix
 * uploads (PUT), which is all `nix copy --to http://…` and a substituter need.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { BUILDER_IMAGE } from './services.js';
import { freePort, tmpDir } from './registry.js';

export interface CacheServer {
  url: string;
  dir: string;
  /** Request lines seen, e.g. "PUT /nar/….nar.xz 201". */
  requests: string[];
  close(): Promise<void>;
}

export async function startCacheServer(dir?: string): Promise<CacheServer> {
  const root = dir ?? (await tmpDir('nixdocker-cache-'));
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = path.join(root, path.posix.normalize(rel));
    const done = (code: number) => {
      requests.push(`${req.method} ${rel} ${code}`);
      res.statusCode = code;
      res.end();
    };
    if (!file.startsWith(root)) return done(403);
    if (req.method === 'PUT') {
      const tmp = `${file}.part${process.pid}`;
      mkdir(path.dirname(file), { recursive: true })
        .then(() => pipeline(req, createWriteStream(tmp)))
        .then(() => rename(tmp, file))
        .then(() => done(201), () => done(500));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return done(405);
    stat(file).then(
      (st) => {
        if (!st.isFile()) return done(404);
        requests.push(`${req.method} ${rel} 200`);
        res.writeHead(200, { 'content-length': st.size });
        if (req.method === 'HEAD') return res.end();
        createReadStream(file).pipe(res);
      },
      () => done(404),
    );
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    dir: root,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** A real key pair from `nix-store --generate-binary-cache-key`, written into dir. */
export async function generateCacheKey(dir: string, name: string): Promise<{ secretKeyFile: string; publicKey: string }> {
  const secretKeyFile = path.join(dir, `${name}.secret`);
  const publicFile = path.join(dir, `${name}.public`);
  await execa('nix-store', ['--generate-binary-cache-key', name, secretKeyFile, publicFile]);
  const { readFile } = await import('node:fs/promises');
  return { secretKeyFile, publicKey: (await readFile(publicFile, 'utf8')).trim() };
}

