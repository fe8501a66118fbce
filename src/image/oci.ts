import { createHash } from 'node:crypto';
import type { NixImageSettings } from '../nix/types.js';
import type { ImageSettings } from '../config/types.js';
import type { Platform } from '../config/platform.js';
import { imageCreated, VERSION } from '../version.js';
import { DEFAULT_WORKING_DIR } from './customisation.js';

export const MEDIA_TYPE = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

export const DEFAULT_CMD: readonly string[] = ['/bin/sh'];
export const DEFAULT_PATH = '/bin:/usr/bin';

/** Image settings after merging defaults < envDir/image.nix < the config's `image.*`. */
export interface ResolvedImageSettings {
  cmd: string[];
  /** PATH and the merged variables; a later level overrides single variables, not the whole map. */
  env: Record<string, string>;
  workingDir: string;
  /** Unset: the engine's default (root). */
  user?: string;
}

export function resolveImageSettings(nix: NixImageSettings, config: ImageSettings): ResolvedImageSettings {
  const user = config.user ?? nix.user;
  return {
    cmd: [...(config.cmd ?? nix.cmd ?? DEFAULT_CMD)],
    env: { PATH: DEFAULT_PATH, ...nix.env, ...config.env },
    workingDir: config.workingDir ?? nix.workingDir ?? DEFAULT_WORKING_DIR,
    ...(user !== undefined ? { user } : {}),
  };
}

/**
 * JSON with object keys sorted (by UTF-16 code unit, which is byte order for
 * the ASCII keys used here) and no whitespace, so equal values give equal
 * bytes and digests.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortKeys(x);
    }
    return out;
  }
  return v;
}

export function sha256Digest(buf: Buffer): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

export interface ImageConfigInput {
  settings: ResolvedImageSettings;
  diffIds: string[];
  /** Identity of the image, recorded in its labels. */
  name: string;
  tag: string;
  /** What the binaries inside run on: the system Nix built for. */
  platform: Platform;
  /** The image's `created`; imageCreated() (SOURCE_DATE_EPOCH or the layout's date) by default. */
  created?: string;
}

/** The OCI image config, canonical JSON. No history: it would only carry timestamps. */
export function imageConfig(input: ImageConfigInput): Buffer {
  const { settings } = input;
  const env = Object.keys(settings.env)
    .sort()
    .map((k) => `${k}=${settings.env[k]}`);
  return Buffer.from(
    canonicalJson({
      os: input.platform.os,
      architecture: input.platform.architecture,
      variant: input.platform.variant,
      created: input.created ?? imageCreated(),
      config: {
        Env: env,
        Cmd: settings.cmd,
        WorkingDir: settings.workingDir,
        User: settings.user,
        Labels: {
          'org.nixdocker.version': VERSION,
          'org.nixdocker.name': input.name,
          'org.nixdocker.tag': input.tag,
        },
      },
      rootfs: { type: 'layers', diff_ids: input.diffIds },
    }),
  );
}

export interface Descriptor {
  digest: string;
  size: number;
}

/** The OCI image manifest, canonical JSON. */
export function imageManifest(config: Descriptor, layers: readonly Descriptor[]): Buffer {
  return Buffer.from(
    canonicalJson({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE.manifest,
      config: { mediaType: MEDIA_TYPE.config, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: MEDIA_TYPE.layer, digest: l.digest, size: l.size })),
    }),
  );
}

/** One platform's manifest in an image index. */
export interface IndexEntry extends Descriptor {
  platform: Platform;
}

/**
 * The OCI image index, canonical JSON, entries sorted by platform so that the
 * same platforms give the same bytes whoever writes it.
 */
export function imageIndex(entries: readonly IndexEntry[]): Buffer {
  const key = (e: IndexEntry) => [e.platform.os, e.platform.architecture, e.platform.variant ?? ''].join('/');
  return Buffer.from(
    canonicalJson({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE.index,
      manifests: [...entries]
        .sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0))
        .map((e) => ({ mediaType: MEDIA_TYPE.manifest, digest: e.digest, size: e.size, platform: e.platform })),
    }),
  );
}
