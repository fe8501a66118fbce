import type { Platform } from './platform.js';

/** A plugin entry as written in the config: a name, or a name with options. */
export type PluginSpec = string | [string, Record<string, unknown>];

/** Image settings; `envDir/image.nix` may give them too (the config wins). */
export interface ImageSettings {
  /** Most layers an image may have, the customisation layer included. */
  maxLayers: number;
  cmd?: string[];
  env?: Record<string, string>;
  workingDir?: string;
  user?: string;
}

/** `builder.cache`: a Nix store URL and the key that signs what goes there. */
export interface BinaryCacheSettings {
  url: string;
  /** Absolute path on the host; read only when uploading, never copied into the builder. */
  secretKeyFile: string;
}

/**
 * One platform to build for, with the builder that builds it: its own store
 * volume (a volume is seeded from its image's /nix, so two platforms never
 * share one), and optionally its own image and engine.
 */
export interface PlatformTarget {
  /** "linux/arm64": the form users write and read. */
  name: string;
  platform: Platform;
  /** builder.image unless the entry names its own; the engine starts it for this platform. */
  image: string;
  /** `<builder.volume>-<arch>` unless the entry names its own. */
  volume: string;
  /** An engine of its own (a native machine, `ssh://arm-box`); unset: DOCKER_HOST. */
  dockerHost?: string;
}

/** A `platforms` entry as written: a name, or a name with its own builder settings. */
export type PlatformSpec = string | { platform: string; image?: string; volume?: string; dockerHost?: string };

/** The settings that reach into the host, which the trust rule (config/trust.ts) watches. */
export type TrustedSetting = 'builder.cache' | 'builder.substituters' | 'builder.sshKeyFile' | 'builder.sshKnownHostsFile' | 'builder.mode';

/** Which file set a setting, and whether it is the user's own config (trusted) or the project's. */
export interface SettingOrigin {
  /** As messages name it: relative to the project for the project's config, absolute for the user config. */
  file: string;
  trusted: boolean;
}

/** The normalised configuration every module below the CLI works with. */
export interface Config {
  /** Absolute, real path of the project directory. */
  projectDir: string;
  /** The file the config came from, or null when defaults were used. */
  configFile: string | null;
  /** Where the user-level config is looked for (it need not exist); messages name it as the fix. */
  userConfigFile: string;
  /** The file each host-reaching builder setting came from; absent: the default. */
  origins: Partial<Record<TrustedSetting, SettingOrigin>>;
  /** Project-relative, POSIX separators. */
  envDir: string;
  /** Project-relative user files, in the order given. */
  userConfig: string[];
  workdir: string;
  registry: {
    host: string;
    namespace: string;
    insecure: boolean;
  };
  builder: {
    image: string;
    volume: string;
    mode: 'container' | 'local';
    /** Binary caches to fetch from (replace the builder's own); empty keeps the builder's. */
    substituters: string[];
    trustedPublicKeys: string[];
    /** Where new builds are uploaded; the secret key file is an absolute host path. */
    cache: BinaryCacheSettings | null;
    /** Nix builders lines. */
    remoteBuilders: string[];
    useSubstitutesOnRemote: boolean;
    /** Absolute host paths, mounted read-only into the builder for remote builds. */
    sshKeyFile: string | null;
    sshKnownHostsFile: string | null;
    /** Seconds a builder container lives on without a heartbeat from its owner. */
    idleSeconds: number;
  };
  image: ImageSettings;
  /**
   * The platforms the tag's index must hold, each with its builder; null when
   * unset: then the configured builder's own platform (the engine's native one
   * for an ordinary builder image) is the one platform.
   */
  platforms: PlatformTarget[] | null;
  /** Bounds of cacheDir. */
  cache: {
    /** Most bytes of layer blobs; undefined: the larger of 2 GiB and twice the current image. */
    maxBytes?: number;
    /** Build results kept besides the current identity's. */
    keepResults: number;
  };
  watch: {
    debounceMs: number;
    cancelSuperseded: boolean;
  };
  plugins: PluginSpec[];
  /** Absolute path of the project's cache directory. */
  cacheDir: string;
}

/** What a config file may contain: every key optional. */
export type ConfigInput = {
  [K in keyof Omit<Config, 'projectDir' | 'configFile' | 'userConfigFile' | 'origins' | 'cacheDir' | 'platforms'>]?: Config[K] extends object
    ? Config[K] extends unknown[] ? Config[K] : Partial<Config[K]>
    : Config[K];
} & { cacheDir?: string; platforms?: PlatformSpec[] };
