import { readFile } from 'node:fs/promises';
import { UserError } from '../errors.js';
import type { BinaryCacheSettings } from '../config/types.js';
import type { NixRunner } from '../builder/runner.js';
import { mapPaths, networkFailure } from './commands.js';

const NIX_COMMAND = ['nix', '--extra-experimental-features', 'nix-command'];

/** What one upload did. */
export interface UploadReport {
  url: string;
  /** Paths of the closure. */
  paths: number;
  /** Paths copied now; the rest were in the cache already. */
  uploaded: number;
  /** NAR bytes of the copied paths, as Nix reports them. */
  bytes: number;
  ms: number;
}

export interface UploadProgress {
  uploaded: number;
  /** Paths Nix said it will copy. */
  total: number;
  bytes: number;
  current: string | null;
}

/**
 * Reads the signing key on the host. The bytes stay in this process and reach
 * Nix only through a command's stdin: never an argument, an environment
 * variable, a file in the builder or a log line. Errors name the file, never
 * its content.
 */
export async function readSigningKey(cache: BinaryCacheSettings): Promise<Buffer> {
  let key: Buffer;
  try {
    key = await readFile(cache.secretKeyFile);
  } catch (err) {
    throw new UserError(
      `Cannot read the binary cache signing key ${cache.secretKeyFile} (builder.cache.secretKeyFile): ${(err as NodeJS.ErrnoException).code ?? 'error'}.`,
      'make one with `nix-store --generate-binary-cache-key NAME-1 secret.key public.key` and point builder.cache.secretKeyFile at the secret one',
    );
  }
  // name:base64 of 64 bytes (ed25519 seed and public key), as nix-store writes it.
  const m = /^([^\s:]+):([A-Za-z0-9+/]+={0,2})\s*$/.exec(key.toString('latin1'));
  if (!m || Buffer.from(m[2]!, 'base64').length !== 64) {
    throw new UserError(
      `The file ${cache.secretKeyFile} (builder.cache.secretKeyFile) is not a Nix secret key.`,
      'use the secret key written by `nix-store --generate-binary-cache-key` (not the public one)',
    );
  }
  return key;
}

/**
 * Signs the paths (and the closure they are) with the key, then copies them
 * to the cache: `nix store sign -k /dev/stdin`, the key on stdin, then
 * `nix copy --to URL`. Paths the cache has already are not sent again.
 */
export async function uploadClosure(
  runner: NixRunner,
  paths: string[],
  cache: BinaryCacheSettings,
  key: Buffer,
  opts: { signal?: AbortSignal; onLog?: (line: string) => void; onProgress?: (p: UploadProgress) => void },
): Promise<UploadReport> {
  const t0 = performance.now();
  const sign = await runner.run([...NIX_COMMAND, 'store', 'sign', '--key-file', '/dev/stdin', ...paths], {
    signal: opts.signal,
    stdin: key,
    onStderrLine: opts.onLog,
  });
  if (sign.exitCode !== 0) throw nixFailure(`Nix could not sign the closure for ${cache.url}`, sign.stderrTail, runner.root);

  const progress: UploadProgress = { uploaded: 0, total: 0, bytes: 0, current: null };
  const copy = await runner.run([...NIX_COMMAND, 'copy', '-v', '--to', cache.url, ...paths], {
    signal: opts.signal,
    onStderrLine: (line) => {
      opts.onLog?.(line);
      const count = /^copying (\d+) paths?\.\.\./.exec(line);
      if (count) progress.total = Number(count[1]);
      // -v: "copying path '/nix/store/…' (120 bytes, compressed 3.3% in 0 ms) to binary cache"
      const done = /^copying path '(\/nix\/store\/[^']+)' \((\d+) bytes/.exec(line);
      if (!done) return;
      progress.uploaded++;
      progress.bytes += Number(done[2]);
      progress.current = done[1]!;
      opts.onProgress?.({ ...progress });
    },
  });
  if (copy.exitCode !== 0) throw uploadError(cache.url, copy.stderrTail, runner.root);
  return { url: cache.url, paths: paths.length, uploaded: progress.uploaded, bytes: progress.bytes, ms: Math.round(performance.now() - t0) };
}

/** Nix's own words, from its first error line on (or the last lines). */
function quote(tail: string[], root: string): string {
  const lines = mapPaths(tail.join('\n'), root).split('\n');
  const at = lines.findIndex((l) => l.startsWith('error:'));
  return (at < 0 ? lines.slice(-8) : lines.slice(at, at + 8)).join('\n').trim();
}

const indent = (text: string) => text.split('\n').map((l) => `    ${l}`).join('\n');
const RETRY = '`nixdocker cache push` tries again';
const NEEDS_PUT = `serve builder.cache.url from a server that takes PUT there (WebDAV: nginx with \`dav_methods PUT; create_full_put_path on; client_max_body_size 0;\`, or Apache mod_dav), or set it to a file:// directory or an s3:// bucket; ${RETRY}`;

function nixFailure(what: string, tail: string[], root: string): UserError {
  return new UserError(
    `${what}:\n${indent(quote(tail, root))}`,
    `check builder.cache.url (a file:// directory, an http(s) server that accepts PUT, or s3://) and that the builder can reach it; ${RETRY}`,
  );
}

/**
 * Why `nix copy --to URL` failed, in the user's terms. Nix 2.8 says an HTTP
 * cache refused a PUT in two ways: "unable to upload 'FILE': HTTP error 405
 * ('Not Allowed')" for a NAR or narinfo, and, when the cache has no
 * nix-cache-info yet and the PUT of one fails, only "'URL' does not appear to
 * be a binary cache" after "uploading 'URL/nix-cache-info'".
 */
export function uploadError(url: string, tail: string[], root: string): UserError {
  const text = tail.join('\n');
  const refused = /unable to upload '([^']+)': HTTP error (\d+)(?: \('([^']*)'\))?/.exec(text);
  if (refused) {
    const [, file, code, reason] = refused;
    const status = `HTTP ${code}${reason ? ` ${reason}` : ''}`;
    const hint =
      code === '401' || code === '403'
        ? `the server wants credentials or forbids writing there, and nixdocker passes no cache credentials (builder.cache.url holds none); let the builder's address PUT to that path, or set builder.cache.url to a file:// directory or an s3:// bucket; ${RETRY}`
        : code === '413'
          ? `the server limits the size of an upload: allow any size there (nginx: \`client_max_body_size 0;\`); ${RETRY}`
          : code === '405' || code === '501'
            ? NEEDS_PUT
            : `check the server's log for the PUT of ${file}; ${RETRY}`;
    return new UserError(`The binary cache ${url} (builder.cache.url) refused the upload: ${status} on PUT ${file}.`, hint);
  }
  if (/does not appear to be a binary cache/.test(text) && /uploading '[^']*\/nix-cache-info'/.test(text)) {
    return new UserError(
      `The binary cache ${url} (builder.cache.url) refused the upload: it has no nix-cache-info, and the PUT of one failed (a server that only serves files, or a path it does not let you write).`,
      NEEDS_PUT,
    );
  }
  const network = /^https?:\/\//.test(url) ? networkFailure(text) : null;
  if (network) {
    return new UserError(
      `The builder could not reach the binary cache ${url} (builder.cache.url): ${network.reason}.`,
      `start the server or fix builder.cache.url; the builder shares the host's network, so 127.0.0.1 there is this host's loopback; ${RETRY}`,
    );
  }
  return nixFailure(`Nix could not upload to the binary cache ${url}`, tail, root);
}
