/**
 * Pushing one blob: skip it when the registry has it, mount it from another
 * repository when one holds it, else upload it in one streamed PUT. An upload
 * that breaks midway starts again from a fresh session with a freshly opened
 * stream; the registry checks the digest.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { UserError } from '../errors.js';
import { describeErrorBody, digestMismatch, RegistryError } from './errors.js';
import { discard, header, readBody, type HttpResponse } from './http.js';
import { isTransient, retry } from './retry.js';
import type { Transport } from './transport.js';
import type { BlobSource, PushBlobOptions, PushBlobResult, RegistryStats } from './types.js';

const pushScope = (repo: string) => `repository:${repo}:pull,push`;

export async function blobExists(t: Transport, repo: string, digest: string, scopes: string[], signal?: AbortSignal): Promise<boolean> {
  const res = await t.request({ method: 'HEAD', path: `/v2/${repo}/blobs/${digest}`, scopes, repo, signal });
  discard(res);
  if (res.status === 200) return true;
  if (res.status === 404) return false;
  throw await t.unexpected(res, 'HEAD', `/v2/${repo}/blobs/${digest}`);
}

export async function pushBlob(t: Transport, stats: RegistryStats, repo: string, blob: BlobSource, opts: PushBlobOptions = {}): Promise<PushBlobResult> {
  const { signal } = opts;
  const scopes = [pushScope(repo)];
  stats.blobsChecked++;
  if (await blobExists(t, repo, blob.digest, scopes, signal)) {
    stats.blobsSkipped++;
    return 'exists';
  }

  let session: URL | undefined;
  for (const from of opts.mountFrom ?? []) {
    if (from === repo) continue;
    const path = `/v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(blob.digest)}&from=${encodeURIComponent(from)}`;
    const res = await t.request({ method: 'POST', path, scopes: [...scopes, `repository:${from}:pull`], repo, signal });
    discard(res);
    if (res.status === 201) {
      stats.blobsMounted++;
      return 'mounted';
    }
    if (res.status !== 202) throw await t.unexpected(res, 'POST', path);
    // Not in `from`: the registry opened an upload session instead. Keep only the last one.
    if (session) cancelUpload(t, repo, session);
    session = uploadLocation(t, res);
  }

  // Attempts alone bound this loop: one upload of a large blob may outlast totalMs.
  await retry(
    async (attempt) => {
      // After a dropped connection the registry may have stored the blob anyway.
      if (attempt > 1 && (await blobExists(t, repo, blob.digest, scopes, signal))) return;
      const location = session ?? (await startUpload(t, repo, signal));
      session = undefined;
      try {
        await putBlob(t, stats, repo, blob, location, signal);
      } catch (err) {
        cancelUpload(t, repo, location);
        throw err;
      }
    },
    { ...t.retryOptions, totalMs: Infinity },
    {
      ...(signal && { signal }),
      shouldRetry: isTransient,
      onRetry: () => {
        stats.retries++;
      },
    },
  ).catch((err: unknown) => {
    throw t.describe('PUT', t.url(`/v2/${repo}/blobs/uploads/`), err);
  });
  stats.blobsUploaded++;
  return 'uploaded';
}

async function startUpload(t: Transport, repo: string, signal?: AbortSignal): Promise<URL> {
  const path = `/v2/${repo}/blobs/uploads/`;
  const res = await t.request({ method: 'POST', path, scopes: [pushScope(repo)], repo, signal });
  if (res.status !== 202) throw await t.unexpected(res, 'POST', path);
  discard(res);
  return uploadLocation(t, res);
}

function uploadLocation(t: Transport, res: HttpResponse): URL {
  const location = header(res, 'location');
  if (!location) throw new RegistryError(`the registry at ${t.host} opened an upload session without a Location header`, res.status);
  return new URL(location, t.origin);
}

/** The whole blob in one PUT (a "monolithic" upload), streamed with its Content-Length. */
async function putBlob(t: Transport, stats: RegistryStats, repo: string, blob: BlobSource, location: URL, signal?: AbortSignal): Promise<void> {
  const url = new URL(location);
  url.searchParams.set('digest', blob.digest);
  const source = await blob.open();
  const counter = new ByteCounter(blob, stats, t.host);
  pipeline(source, counter).catch((err: Error) => counter.destroy(err));
  const res = await t
    .request({
      method: 'PUT',
      path: url,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
      body: counter,
      scopes: [pushScope(repo)],
      repo,
      signal,
    })
    .catch((err: unknown) => {
      counter.destroy(); // closes the source too, if the request never got to read it
      throw err;
    });
  if (res.status === 201) {
    discard(res);
    const got = header(res, 'docker-content-digest');
    if (got && got !== blob.digest) throw digestMismatch(t.host, `blob ${blob.digest} in ${repo}`, blob.digest, got);
    return;
  }
  const body = await readBody(res, 64 * 1024).catch(() => Buffer.alloc(0));
  const { text, codes } = describeErrorBody(body);
  if (codes.includes('DIGEST_INVALID') || codes.includes('SIZE_INVALID')) throw digestMismatch(t.host, `blob ${blob.digest} (${blob.size} bytes) pushed to ${repo}`, blob.digest);
  throw new RegistryError(`PUT of blob ${blob.digest} to ${t.host}/${repo} answered ${res.status}${text ? `: ${text}` : ''}`, res.status, codes);
}

/** Best effort, in the background: a failed or cancelled upload leaves no session behind. */
function cancelUpload(t: Transport, repo: string, location: URL): void {
  void t
    .attempt({ method: 'DELETE', path: location, scopes: [pushScope(repo)], repo, signal: AbortSignal.timeout(5_000) })
    .then(discard, () => undefined);
}

/** Counts bytes on their way out and stops a stream whose length is not the blob's size. */
class ByteCounter extends Transform {
  private seen = 0;
  constructor(
    private readonly blob: BlobSource,
    private readonly stats: RegistryStats,
    private readonly host: string,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.blob.size) return done(this.sizeError());
    this.stats.bytesUploaded += chunk.length;
    done(null, chunk);
  }
  override _flush(done: TransformCallback): void {
    done(this.seen === this.blob.size ? null : this.sizeError());
  }
  private sizeError(): UserError {
    return new UserError(
      `The blob ${this.blob.digest} for the registry at ${this.host} (setting registry.host) should have ${this.blob.size} bytes, but its stream gave ${this.seen > this.blob.size ? 'more' : this.seen}.`,
      'the data changed after its digest was computed; clear the cache directory (cacheDir) and build again',
    );
  }
}
