/**
 * The OCI distribution API of one registry: manifests, blobs and tags. Every
 * call takes an AbortSignal; failures a user can fix are UserErrors naming the
 * host and the setting; `stats` counts what was done.
 */
import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { resolveCredentials } from './credentials.js';
import { deleteDisabled, describeErrorBody, digestMismatch, RegistryError } from './errors.js';
import { discard, header, readBody } from './http.js';
import { DIGEST, checkRepository } from './reference.js';
import { Transport } from './transport.js';
import { blobExists, pushBlob } from './upload.js';
import {
  MANIFEST_ACCEPT,
  type BlobSource,
  type ManifestResponse,
  type PushBlobOptions,
  type PushBlobResult,
  type RegistryClientOptions,
  type RegistryStats,
  type RequestOptions,
} from './types.js';

const pull = (repo: string) => [`repository:${repo}:pull`];
const push = (repo: string) => [`repository:${repo}:pull,push`];

export class RegistryClient {
  readonly host: string;
  readonly stats: RegistryStats = { blobsChecked: 0, blobsSkipped: 0, blobsMounted: 0, blobsUploaded: 0, bytesUploaded: 0, requests: 0, retries: 0 };
  private readonly t: Transport;

  constructor(opts: RegistryClientOptions) {
    this.host = opts.host;
    const env = opts.env ?? process.env;
    this.t = new Transport({
      host: opts.host,
      insecure: opts.insecure ?? false,
      credentials: () => resolveCredentials(opts.host, opts.credentials, env),
      stats: this.stats,
      logger: opts.logger,
      retry: opts.retry,
      idleTimeoutMs: opts.idleTimeoutMs,
    });
  }

  /** `http://HOST` or `https://HOST`, as decided by registry.insecure and loopback. */
  get origin(): string {
    return this.t.origin;
  }

  /** GET /v2/: the registry answers and our credentials (if it wants any) work. */
  async ping(opts: RequestOptions = {}): Promise<void> {
    const res = await this.t.request({ method: 'GET', path: '/v2/', scopes: [], repo: '(any)', signal: opts.signal });
    if (res.status !== 200) throw await this.t.unexpected(res, 'GET', '/v2/');
    discard(res);
  }

  /** The digest `tag` points at, or null when there is no such tag (or repository). */
  async getManifestDigest(repo: string, tag: string, opts: RequestOptions = {}): Promise<string | null> {
    const path = `/v2/${checkRepository(repo)}/manifests/${encodeURIComponent(tag)}`;
    const res = await this.t.request({ method: 'HEAD', path, headers: { accept: MANIFEST_ACCEPT }, scopes: pull(repo), repo, signal: opts.signal });
    discard(res);
    if (res.status === 404) return null;
    if (res.status !== 200) throw await this.t.unexpected(res, 'HEAD', path);
    const digest = header(res, 'docker-content-digest');
    if (digest) return digest;
    // Registries need not send the header on HEAD; the body's hash is the digest.
    return (await this.getManifest(repo, tag, opts))?.digest ?? null;
  }

  /** The manifest at a tag or digest, or null; a digest reference is verified against the body. */
  async getManifest(repo: string, ref: string, opts: RequestOptions = {}): Promise<ManifestResponse | null> {
    const path = `/v2/${checkRepository(repo)}/manifests/${encodeURIComponent(ref)}`;
    const res = await this.t.request({ method: 'GET', path, headers: { accept: MANIFEST_ACCEPT }, scopes: pull(repo), repo, signal: opts.signal });
    if (res.status === 404) {
      discard(res);
      return null;
    }
    if (res.status !== 200) throw await this.t.unexpected(res, 'GET', path);
    const body = await readBody(res);
    const digest = digestOf(body, DIGEST.test(ref) ? ref : 'sha256:');
    if (DIGEST.test(ref) && digest !== ref) throw digestMismatch(this.host, `the manifest ${repo}@${ref} it sent`, ref, digest);
    const mediaType = (header(res, 'content-type') ?? '').split(';')[0]!.trim() || mediaTypeOf(body);
    return { body, mediaType, digest };
  }

  /** Uploads a manifest under `tag` (or a digest reference); returns its digest. */
  async putManifest(repo: string, tag: string, body: Buffer, mediaType: string, opts: RequestOptions = {}): Promise<string> {
    const path = `/v2/${checkRepository(repo)}/manifests/${encodeURIComponent(tag)}`;
    const digest = digestOf(body, 'sha256:');
    const res = await this.t.request({ method: 'PUT', path, headers: { 'content-type': mediaType }, body, scopes: push(repo), repo, signal: opts.signal });
    if (res.status !== 201) {
      const text = await readBody(res, 64 * 1024).catch(() => Buffer.alloc(0));
      const { text: why, codes } = describeErrorBody(text);
      if (codes.includes('DIGEST_INVALID')) throw digestMismatch(this.host, `the manifest for ${repo}:${tag}`, digest);
      throw new RegistryError(`PUT ${path} on ${this.host} answered ${res.status}${why ? `: ${why}` : ''}`, res.status, codes);
    }
    discard(res);
    const got = header(res, 'docker-content-digest');
    if (got && got !== digest) throw digestMismatch(this.host, `the manifest for ${repo}:${tag}`, digest, got);
    return digest;
  }

  /** Deletes a manifest by digest; false when it was not there. */
  async deleteManifest(repo: string, digest: string, opts: RequestOptions = {}): Promise<boolean> {
    const path = `/v2/${checkRepository(repo)}/manifests/${digest}`;
    const res = await this.t.request({ method: 'DELETE', path, scopes: [`repository:${repo}:delete`, ...pull(repo)], repo, signal: opts.signal });
    if (res.status === 202 || res.status === 200) {
      discard(res);
      return true;
    }
    if (res.status === 404) {
      discard(res);
      return false;
    }
    if (res.status === 405) {
      discard(res);
      throw deleteDisabled(this.host);
    }
    throw await this.t.unexpected(res, 'DELETE', path);
  }

  async hasBlob(repo: string, digest: string, opts: RequestOptions = {}): Promise<boolean> {
    return blobExists(this.t, checkRepository(repo), digest, pull(repo), opts.signal);
  }

  /** Skips, mounts or uploads a blob; see upload.ts. */
  pushBlob(repo: string, blob: BlobSource, opts: PushBlobOptions = {}): Promise<PushBlobResult> {
    return pushBlob(this.t, this.stats, checkRepository(repo), blob, opts);
  }

  /** The blob's bytes, or null when it is not there; the stream errors at its end if they do not match the digest. */
  async getBlob(repo: string, digest: string, opts: RequestOptions = {}): Promise<NodeJS.ReadableStream | null> {
    const path = `/v2/${checkRepository(repo)}/blobs/${digest}`;
    const res = await this.t.request({ method: 'GET', path, scopes: pull(repo), repo, signal: opts.signal, followRedirects: true });
    if (res.status === 404) {
      discard(res);
      return null;
    }
    if (res.status !== 200) throw await this.t.unexpected(res, 'GET', path);
    const verify = new DigestCheck(digest, () => digestMismatch(this.host, `the blob ${repo}@${digest} it sent`, digest));
    res.body.on('error', (err) => verify.destroy(err));
    return res.body.pipe(verify);
  }

  /** Every tag of `repo`, following the Link header across pages; [] when the repository does not exist. */
  async listTags(repo: string, opts: RequestOptions & { pageSize?: number } = {}): Promise<string[]> {
    const tags: string[] = [];
    let next: string | undefined = `/v2/${checkRepository(repo)}/tags/list${opts.pageSize ? `?n=${opts.pageSize}` : ''}`;
    while (next) {
      const url: URL = new URL(next, this.t.origin);
      if (url.origin !== this.t.origin) throw new RegistryError(`${this.host} sent a tag list Link to another origin (${url.origin})`, 200);
      const res = await this.t.request({ method: 'GET', path: url, scopes: pull(repo), repo, signal: opts.signal });
      if (res.status === 404) {
        discard(res);
        return tags;
      }
      if (res.status !== 200) throw await this.t.unexpected(res, 'GET', url.pathname);
      const page = JSON.parse((await readBody(res)).toString('utf8')) as { tags?: string[] | null };
      tags.push(...(page.tags ?? []));
      next = nextLink(header(res, 'link'));
    }
    return tags;
  }

  /** Closes idle keep-alive sockets. */
  close(): void {
    this.t.close();
  }
}

/** `<...>; rel="next"` from a Link header. */
export function nextLink(link: string | undefined): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(',')) {
    const m = /<([^>]*)>\s*(.*)/.exec(part.trim());
    if (m && /(^|;)\s*rel="?next"?/i.test(m[2]!)) return m[1];
  }
  return undefined;
}

/** `sha256:<hex>` of `body`, with the algorithm of `like` (a digest or just `alg:`). */
function digestOf(body: Buffer, like: string): string {
  const alg = like.slice(0, like.indexOf(':'));
  return `${alg}:${createHash(alg).update(body).digest('hex')}`;
}

function mediaTypeOf(body: Buffer): string {
  try {
    const mt = (JSON.parse(body.toString('utf8')) as { mediaType?: unknown }).mediaType;
    return typeof mt === 'string' ? mt : '';
  } catch {
    return '';
  }
}

/** Passes bytes through and fails at the end when their digest is not `digest`. */
class DigestCheck extends Transform {
  private readonly hash;
  constructor(
    private readonly digest: string,
    private readonly mismatch: () => Error,
  ) {
    super();
    this.hash = createHash(digest.slice(0, digest.indexOf(':')));
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    done(null, chunk);
  }
  override _flush(done: TransformCallback): void {
    const got = `${this.digest.slice(0, this.digest.indexOf(':'))}:${this.hash.digest('hex')}`;
    done(got === this.digest ? null : this.mismatch());
  }
}
