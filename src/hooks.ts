import type { PublishedPort } from './engine/run-options.js';
import { AsyncSeriesBailHook, AsyncSeriesHook, AsyncSeriesWaterfallHook, SyncHook } from 'tapable';
import type { Config } from './config/types.js';
import type { BuildPhase } from './nix/types.js';
import type { Identity } from './identity.js';
import type { Logger } from './log.js';
import type { RegistryClient } from './registry/index.js';
import type Docker from 'dockerode';

/** Why a build is starting. */
export interface BuildTrigger {
  /** Increasing per daemon (1 for a one-shot build). */
  buildId: number;
  identity: Identity;
  /** Project-relative paths that changed since the last build, if known. */
  changed: string[];
  /** True when the image is rebuilt although it exists (`--force`). */
  force: boolean;
}

/** What a bail hook before a build may answer to stop it. */
export interface BuildVeto {
  /** Shown to the user. */
  reason: string;
}

export interface LayerDescription {
  digest: string;
  size: number;
  /** `base` layers hold the envDir closure, `user` layers what userConfig adds, `custom` the links and /etc. */
  kind: 'base' | 'user' | 'custom';
}

/** A built image, as every hook after a build sees it. */
export interface ImageDescription {
  buildId: number;
  name: string;
  tag: string;
  /** REGISTRY/NAMESPACE/NAME:TAG */
  image: string;
  /**
   * What the tag names, sha256:…: the image index once pushed (the index of
   * every platform the registry holds for this tag); before that, and for an
   * image only loaded into the engine, the manifest of its one platform.
   */
  digest: string;
  /**
   * The platforms built by this build ("linux/arm64"), each with its
   * manifest's digest; after a push also the platforms other writers put
   * under the same tag (built: false).
   */
  platforms: { platform: string; digest: string; built: boolean }[];
  /** The layers of the first platform built (every platform has its own). */
  layers: LayerDescription[];
  /** Compressed bytes of the layers of every platform built. */
  size: number;
  /** Milliseconds per phase (hash, registryCheck, evaluate, build, closure, assemble, push, load). */
  durations: Record<string, number>;
  /** Project-relative inputs that changed since the previous build. */
  changed: string[];
  /**
   * Where the image is so far: empty in `built` and `beforePush`, `registry`
   * once pushed, `engine` once loaded. `imageReady` lists exactly the
   * destinations reached, never one a plugin vetoed.
   */
  destinations: Destination[];
}

/** Where a built image goes: a registry (registry.host) or the engine (DOCKER_HOST). */
export type Destination = 'registry' | 'engine';

export interface PushReport {
  image: string;
  /** Blobs uploaded, found in the registry, and mounted from another repository. */
  uploaded: number;
  skipped: number;
  mounted: number;
  bytesUploaded: number;
  ms: number;
}

export interface BuildFailure {
  buildId: number;
  identity: Identity | null;
  /** The message shown to the user (a UserError's text, or the bug's message). */
  message: string;
  error: unknown;
  /** The platform whose build failed ("linux/arm64"), or null when the failure was not one platform's. */
  platform: string | null;
  phase: BuildPhase | 'assemble' | 'push' | 'load' | null;
}

export interface CommandResult {
  image: string;
  command: string[];
  exitCode: number | null;
  /** Combined output, truncated to its last 64 KiB. */
  output: string;
  /** True when a newer image cancelled it. */
  cancelled: boolean;
}

/**
 * Every hook of nixdocker, in the order they fire for one build:
 * configLoaded → inputsChanged → identity → destinations → beforeBuild →
 * buildPhase/buildLog… → built → beforePush → pushed → imageReady (or
 * buildFailed), then the cacheUpload phase when builder.cache is set, and
 * shutdown at exit. Only the core calls them; plugins get a
 * tap-only view (see PluginHooks). Four hooks can change what happens:
 * `identity` (the name and tag), `destinations` (where images go),
 * `beforeBuild` (skip a build) and `beforePush` (keep an image out of the
 * registry); every other hook only observes.
 */
export function createHooks() {
  return Object.freeze({
    /** Series. The config was loaded (at start, and when the daemon reloads it). */
    configLoaded: new AsyncSeriesHook<[Config]>(['config']),
    /** Series. The daemon saw input files change (project-relative paths, after debouncing). */
    inputsChanged: new AsyncSeriesHook<[string[]]>(['paths']),
    /**
     * Waterfall. The identity computed from the inputs; a plugin may return a
     * changed one (a tag suffix, say). Return the argument to leave it alone.
     */
    identity: new AsyncSeriesWaterfallHook<[Identity]>(['identity']),
    /**
     * Waterfall. Where a new image goes, decided before the registry (or
     * engine) is asked whether it has the image: start from `[]`, each tap
     * returns the list it wants (the push plugin adds 'registry'). An empty
     * result means the engine. Not fired for `build --load`, which loads only.
     */
    destinations: new AsyncSeriesWaterfallHook<[Destination[], Identity]>(['destinations', 'identity']),
    /** Bail. Before a build starts; return a BuildVeto to skip it, undefined to go on. */
    beforeBuild: new AsyncSeriesBailHook<[BuildTrigger], BuildVeto | undefined>(['trigger']),
    /**
     * Sync. A build phase starts (hash, registryCheck, evaluate, build, closure,
     * assemble, push, load, and cacheUpload: after imageReady, when builder.cache
     * is set, once per platform Nix built rather than remembered); `platform`
     * names the platform for the phases each platform runs on its own (evaluate
     * to assemble), else null.
     */
    buildPhase: new SyncHook<[number, string, string | null]>(['buildId', 'phase', 'platform']),
    /** Sync. One line of Nix's build log. Keep taps cheap: this fires for every line. */
    buildLog: new SyncHook<[number, string]>(['buildId', 'line']),
    /** Series. The image is assembled (not yet pushed or loaded). */
    built: new AsyncSeriesHook<[ImageDescription]>(['image']),
    /**
     * Bail. Before the push, when 'registry' is a destination; return false to
     * keep this image out of the registry (it is then not announced there).
     */
    beforePush: new AsyncSeriesBailHook<[ImageDescription], false | undefined>(['image']),
    /**
     * Series. The push finished: for each platform its blobs, its manifest (by
     * digest) and its platform tag (TAG-os-arch) are in the registry, and last
     * the tag's index of every platform tag, so TAG never names a partial image.
     */
    pushed: new AsyncSeriesHook<[ImageDescription, PushReport]>(['image', 'report']),
    /**
     * Series. The newest image is ready to use, with `destinations` listing
     * where it went (possibly none, when beforePush vetoed the only one).
     * Fires only for the newest build.
     */
    imageReady: new AsyncSeriesHook<[ImageDescription]>(['image']),
    /** Series. A build failed; the last good image is unchanged. */
    buildFailed: new AsyncSeriesHook<[BuildFailure]>(['failure']),
    /** Series. A command that a plugin ran in a new image ended (autorun). */
    commandFinished: new AsyncSeriesHook<[CommandResult]>(['result']),
    /** Series. The process is stopping; release what you hold. */
    shutdown: new AsyncSeriesHook<[]>([]),
  });
}

export type Hooks = ReturnType<typeof createHooks>;

/** What a plugin may do with a hook: tap it, never call it. */
export type TapOnly<H> = H extends { tap: infer T }
  ? { tap: T } & (H extends { tapPromise: infer P } ? { tapPromise: P } : object) & (H extends { tapAsync: infer A } ? { tapAsync: A } : object)
  : never;

export type PluginHooks = { readonly [K in keyof Hooks]: TapOnly<Hooks[K]> };

/** What a plugin gets besides the hooks. */
export interface PluginContext {
  config: Config;
  /** A child logger that names the plugin. */
  log: Logger;
  /** Runs a command in an image through the engine, like `nixdocker run`. */
  runInImage(
    image: string,
    command: string[],
    opts: {
      signal?: AbortSignal;
      onOutput?: (chunk: string) => void;
      /** `KEY=VALUE` strings for the container, like `nixdocker run -e`. */
      env?: string[];
      /** Ports to publish on the host, like `nixdocker run -p` (see parsePublish). */
      publish?: PublishedPort[];
    },
  ): Promise<number>;
  /** The project's cache directory, for plugin state. */
  cacheDir: string;
  /** Fires commandFinished with a command's result (what autorun reports through). */
  reportCommand(result: CommandResult): Promise<void>;
  /** Pulls an image from the registry into the engine, like `nixdocker pull`. */
  pull(image: string): Promise<void>;
  /** The core's client of registry.host (auth and retries included). */
  registry(): RegistryClient;
  /** The core's engine client (DOCKER_HOST). */
  engine(): Docker;
  /**
   * Runs nix-collect-garbage in a builder container on builder.volume, after
   * rooting the Nix outputs of the images in `keep` (this project's roots
   * only; see plugins/gc.ts). Container mode only: rejects in local mode.
   */
  collectGarbage(keep: { name: string; tag: string }[], signal?: AbortSignal): Promise<{ exitCode: number; output: string }>;
}

/** A plugin: an object (or class instance) with a name and apply(). */
export interface Plugin {
  name: string;
  apply(hooks: PluginHooks, context: PluginContext): void | Promise<void>;
}

/** A plugin module's default export: a plugin, a class, or a factory taking the options. */
export type PluginModule = Plugin | (new (options: Record<string, unknown>) => Plugin) | ((options: Record<string, unknown>) => Plugin | Promise<Plugin>);

/**
 * Makes every tap fail safe: an exception in a plugin is logged with the
 * plugin's name and the hook goes on as if that tap had not answered
 * (a waterfall passes its input through, a bail hook does not bail).
 */
export function isolatePlugins(hooks: Hooks, log: Logger): void {
  for (const [hookName, hook] of Object.entries(hooks)) {
    // tapable's hook classes are factories (prototype null): compare constructors, not instanceof.
    const waterfall = (hook as { constructor: unknown }).constructor === AsyncSeriesWaterfallHook;
    (hook as { intercept(i: object): void }).intercept({
      register(tap: { name: string; type: string; fn: (...args: unknown[]) => unknown }) {
        const fn = tap.fn;
        const report = (err: unknown) => {
          log.error({ plugin: tap.name, hook: hookName, err: err instanceof Error ? err.message : String(err) }, `plugin ${tap.name} failed in ${hookName}: ${err instanceof Error ? err.message : String(err)}`);
        };
        const fallback = (args: unknown[]) => (waterfall ? args[0] : undefined);
        if (tap.type === 'promise') {
          tap.fn = async (...args: unknown[]) => {
            try {
              return await fn(...args);
            } catch (err) {
              report(err);
              return fallback(args);
            }
          };
        } else if (tap.type === 'async') {
          tap.fn = (...args: unknown[]) => {
            const cb = args.pop() as (err: unknown, result?: unknown) => void;
            try {
              fn(...args, (err: unknown, result?: unknown) => {
                if (err) {
                  report(err);
                  cb(null, fallback(args));
                } else cb(null, result);
              });
            } catch (err) {
              report(err);
              cb(null, fallback(args));
            }
          };
        } else {
          tap.fn = (...args: unknown[]) => {
            try {
              return fn(...args);
            } catch (err) {
              report(err);
              return fallback(args);
            }
          };
        }
        return tap;
      },
    });
  }
}

/** The tap-only view plugins receive: `call` and `promise` are not reachable from it. */
export function tapOnly(hooks: Hooks): PluginHooks {
  const view: Record<string, object> = {};
  for (const [name, hook] of Object.entries(hooks)) {
    const h = hook as unknown as Record<string, unknown>;
    const entry: Record<string, unknown> = { tap: (h.tap as (...a: unknown[]) => unknown).bind(hook) };
    if (typeof h.tapPromise === 'function') entry.tapPromise = (h.tapPromise as (...a: unknown[]) => unknown).bind(hook);
    if (typeof h.tapAsync === 'function') entry.tapAsync = (h.tapAsync as (...a: unknown[]) => unknown).bind(hook);
    view[name] = Object.freeze(entry);
  }
  return Object.freeze(view) as unknown as PluginHooks;
}
