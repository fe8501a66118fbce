/** Public types of the registry client, in one place. */
import type { Logger } from '../log.js';

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

/** Accept header for manifest requests: every manifest type we can read. */
export const MANIFEST_ACCEPT = [MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList].join(', ');

/** A username with a password, or an identity (refresh) token from `docker login`. */
export interface Credentials {
  username: string;
  password?: string;
  /** OAuth2 refresh token; sent to a bearer realm instead of the password. */
  identityToken?: string;
  /** Where they came from, for error messages ("env NIXDOCKER_REGISTRY_USER", a config path). Never secret. */
  source: string;
}

export interface RetryOptions {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Delay before the second attempt; doubles each time, with jitter. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** No retry starts after this much time since the first attempt. */
  totalMs: number;
}

export interface RegistryClientOptions {
  /** host or host:port, without a scheme (the `registry.host` setting). */
  host: string;
  /** Allow plain http for a host that is not loopback (`registry.insecure`). */
  insecure?: boolean;
  /** Explicit credentials; otherwise env vars, then the docker config file. */
  credentials?: Omit<Credentials, 'source'> & { source?: string };
  /** Environment for credential lookup (NIXDOCKER_REGISTRY_*, DOCKER_CONFIG, HOME, PATH); process.env by default. */
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
  retry?: Partial<RetryOptions>;
  /** A socket quiet for this long fails the request (retried like a dropped connection). */
  idleTimeoutMs?: number;
}

/** A blob to push: `open()` is called again for every fresh attempt. */
export interface BlobSource {
  digest: string;
  size: number;
  open(): NodeJS.ReadableStream | Promise<NodeJS.ReadableStream>;
}

export type PushBlobResult = 'exists' | 'mounted' | 'uploaded';

export interface PushBlobOptions {
  /** Repositories in the same registry that may hold the blob, tried in order. */
  mountFrom?: string[];
  signal?: AbortSignal;
}

export interface ManifestResponse {
  body: Buffer;
  mediaType: string;
  digest: string;
}

/** Counters since the client was made. */
export interface RegistryStats {
  /** pushBlob calls. */
  blobsChecked: number;
  /** pushBlob calls that found the blob already there ("exists"): nothing sent. */
  blobsSkipped: number;
  blobsMounted: number;
  blobsUploaded: number;
  /** Blob bytes sent, attempts that failed and were restarted included. */
  bytesUploaded: number;
  /** HTTP requests sent, token requests and retries included. */
  requests: number;
  retries: number;
}

export interface RequestOptions {
  signal?: AbortSignal;
}
