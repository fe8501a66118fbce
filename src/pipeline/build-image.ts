import path from 'node:path';
import { ContainerStoreReader } from '../image/container-store-reader.js';
import { ContainerRunner } from '../builder/container-runner.js';
import type { NixProgress } from '../nix/commands.js';
import type { NixRunner } from '../builder/runner.js';
import type { BuildResult } from '../nix/types.js';
import { enginePlatform, hasImage } from '../engine/engine.js';
import { formatPlatform, nixSystemOf, platformOfNixSystem } from '../config/platform.js';
import { loadArchive } from '../engine/load.js';
import { isUserError, UserError } from '../errors.js';
import type { BuildTrigger, Destination, ImageDescription, PushReport } from '../hooks.js';
import { repositoryPath, type Identity } from '../identity.js';
import { assembleImage, type AssembledImage, type AssembleProgress } from '../image/assemble.js';
import { settleAll } from '../util/settle-all.js';
import { dockerArchiveStream } from '../image/docker-archive.js';
import { ListingCache } from '../image/listing-cache.js';
import { FsStoreReader, type StoreDirEntry, type StoreReader } from '../image/store-reader.js';
import { processTmpDir } from '../util/process-tmp.js';
import { nixStep } from './nix-step.js';
import { uploadBuild } from './cache-upload.js';
import { pruneBlobs, pruneCache } from './disk-cache.js';
import type { UploadProgress, UploadReport } from '../nix/binary-cache.js';
import type { FailedPhase, Pipeline } from './pipeline.js';
import { pushStep } from './push-step.js';
import type { PushProgress } from './push.js';
import { missingPlatforms, readTag } from './platform-index.js';
import { buildTargets, checkBuiltSystem, engineTargets, expectedPlatform, type BuildTarget } from './targets.js';

export interface BuildRequest {
  /** Increasing per process; only the newest build may announce imageReady. */
  buildId: number;
  /** From Pipeline.identify() already (the daemon has it); else identified here. */
  identity?: Identity;
  /** Inputs that changed, when the caller knows (the daemon does). */
  changed?: string[];
  /** Build even when the image exists. */
  force?: boolean;
  /** Load into the engine only (the destinations hook is not asked). */
  load?: boolean;
  signal?: AbortSignal;
  /** Live progress of the long phases (Nix build, assembly, push, cache upload), for a terminal or the log. */
  onProgress?: (p: BuildProgress) => void;
}

/** Progress of one phase; `platform` is set when a build makes several. */
export type BuildProgress = (
  | ({ phase: 'build' } & NixProgress)
  | ({ phase: 'assemble' } & AssembleProgress)
  | ({ phase: 'push' } & PushProgress)
  | ({ phase: 'upload'; url: string } & UploadProgress)
) & {
  platform?: string | null;
};

export type BuildOutcome =
  | { status: 'up-to-date'; identity: Identity; where: Destination[]; durations: Record<string, number> }
  | { status: 'skipped'; identity: Identity; reason: string }
  | {
      status: 'built';
      identity: Identity;
      image: ImageDescription;
      /** Every platform built, in config order. */
      builds: PlatformBuild[];
      /** The first platform's image and Nix result (the only one without `platforms`). */
      assembled: AssembledImage;
      /** True when no platform ran Nix (every result was remembered). */
      nixCached: boolean;
      result: BuildResult;
      push: PushReport | null;
      /** The upload to builder.cache; absent when none is configured or Nix did not run. */
      upload?: UploadOutcome;
    };

export type UploadOutcome = ({ ok: true } & UploadReport) | { ok: false; url: string; message: string };

/** One platform's part of a build. */
export interface PlatformBuild {
  target: BuildTarget;
  /** "linux/arm64": what Nix built for. */
  platform: string;
  result: BuildResult;
  assembled: AssembledImage;
  nixCached: boolean;
  /** Milliseconds of this platform's phases (evaluate, build, closure when Nix ran; assemble). */
  durations: Record<string, number>;
  /** Its builder, kept for the upload to builder.cache after imageReady; released by buildImage. */
  runner?: NixRunner;
}

/**
 * One build, start to end: identity → destinations → registry (or engine)
 * check → Nix and image assembly for each platform the tag lacks, all at
 * once, each in its own builder → push (each platform's manifest, then the
 * index) and/or load → imageReady. Fires the hooks in that order; a failure
 * of any platform cancels the others, fires buildFailed naming it and is
 * rethrown, leaving the tag as it was (nothing is tagged before every
 * platform is built).
 */
export async function buildImage(p: Pipeline, req: BuildRequest): Promise<BuildOutcome> {
  const { hooks, config } = p;
  const durations: Record<string, number> = {};
  let phase: FailedPhase | null = 'hash';
  let failedPlatform: string | null = null;
  let identity: Identity | null = null;
  const timed = async <T>(name: FailedPhase, fn: () => Promise<T>): Promise<T> => {
    phase = name;
    hooks.buildPhase.call(req.buildId, name, null);
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      durations[name] = Math.round(performance.now() - t0);
    }
  };
  // One failing platform stops the others: their builders are killed through this signal.
  const local = new AbortController();
  /** Builders kept for the cache upload, released at the end whatever happens. */
  const held: PlatformBuild[] = [];
  const signal = req.signal ? AbortSignal.any([req.signal, local.signal]) : local.signal;
  p.buildSignal = req.signal;
  // Alongside the identity and registry check; awaited before returning.
  const leftovers = p.removeLeftovers();

  try {
    identity = await timed('hash', async () => req.identity ?? (await p.identify({ signal: req.signal })));
    const id = identity;
    const destinations = req.load ? (['engine'] as Destination[]) : await chooseDestinations(p, id);
    const all = buildTargets(config);
    // The engine takes one platform: its own. A registry takes every platform configured.
    let targets = destinations.includes('registry') ? all : await engineTargets(p, all);
    const repo = repositoryPath(config, id.name);
    if (!req.force) {
      const missing = await timed('registryCheck', async () => {
        const want = await Promise.all(targets.map((t) => expectedPlatform(p, t)));
        let lacking: BuildTarget[] = [];
        if (destinations.includes('registry')) {
          // The skip check stays one request: GET the tag, read its index's platforms.
          const absent = missingPlatforms(await readTag(p.registryClient(), repo, id.tag, req.signal), want);
          lacking = targets.filter((_, i) => absent.includes(want[i]!));
        }
        // The engine holds one platform, its own: lacking the image, it lacks every target asked of it.
        if (destinations.includes('engine') && lacking.length < targets.length && !(await hasImage(p.engine(), id.image))) lacking = targets;
        return lacking;
      });
      if (missing.length === 0) return { status: 'up-to-date', identity: id, where: destinations, durations };
      targets = missing;
    }
    const changed = req.changed ?? (await p.changedSinceLast(id));
    const trigger: BuildTrigger = { buildId: req.buildId, identity: id, changed, force: Boolean(req.force) };
    const veto = await hooks.beforeBuild.promise(trigger);
    if (veto) return { status: 'skipped', identity: id, reason: veto.reason };

    // Every platform settles before this goes on: a failed one aborts the others, and their builders are held or released before `finally`.
    const builds = await settleAll(
      targets.map((target) =>
        buildPlatform(p, id, target, { ...req, signal }).then((b) => (b.runner && held.push(b), b)).catch((err) => {
          if (!signal.aborted) {
            failedPlatform ??= targets.length > 1 || target.platform ? target.key : null;
            phase = (err as { phase?: FailedPhase }).phase ?? phase;
            local.abort(err);
          }
          throw err;
        }),
      ),
    );
    // Platforms run side by side: a phase took as long as its slowest platform.
    for (const b of builds) {
      for (const [k, v] of Object.entries(b.durations)) durations[k] = Math.max(durations[k] ?? 0, v);
    }

    const first = builds[0]!;
    const desc: ImageDescription = {
      buildId: req.buildId,
      name: id.name,
      tag: id.tag,
      image: id.image,
      digest: first.assembled.manifestDigest,
      platforms: builds.map((b) => ({ platform: b.platform, digest: b.assembled.manifestDigest, built: true })),
      layers: first.assembled.layers.map((l) => ({ digest: l.digest, size: l.size, kind: l.kind === 'customisation' ? 'custom' : l.kind })),
      size: builds.reduce((s, b) => s + b.assembled.layers.reduce((t, l) => t + l.size, 0), 0),
      durations,
      changed,
      // Filled in as each destination is reached: nothing is announced that did not happen.
      destinations: [],
    };
    await hooks.built.promise(desc);
    let push: PushReport | null = null;
    if (destinations.includes('registry')) {
      phase = 'push';
      push = await pushStep(p, desc, builds, {
        signal,
        phase: timed,
        onProgress: req.onProgress && ((x, platform) => req.onProgress!({ phase: 'push', platform: builds.length > 1 ? platform : null, ...x })),
      });
    }
    if (destinations.includes('engine')) {
      const native = await engineBuild(p, builds);
      await timed('load', () => loadArchive(p.engine(), dockerArchiveStream(native.assembled, [id.image]), id.image, signal));
      desc.destinations.push('engine');
    }
    signal.throwIfAborted();
    await p.rememberInputs(id);
    await keepCacheBounded(p, id, builds.map((b) => b.assembled));
    phase = null;
    await hooks.imageReady.promise(desc);
    // The upload to the binary cache reads each builder's store after the image is ready.
    let upload: UploadOutcome | undefined;
    for (const b of builds) {
      if (!b.runner) continue;
      const one = await uploadAfterBuild(p, b.runner, b.result, req, durations, b.target.platform ? b.target.key : null);
      upload = !upload ? one : upload.ok && one.ok ? { ...upload, paths: upload.paths + one.paths, uploaded: upload.uploaded + one.uploaded, bytes: upload.bytes + one.bytes } : upload.ok ? one : upload;
    }
    return {
      status: 'built',
      identity: id,
      image: desc,
      builds,
      assembled: first.assembled,
      nixCached: builds.every((b) => b.nixCached),
      result: first.result,
      push,
      upload,
    };
  } catch (err) {
    // Whatever a cancelled build throws on its way out (a killed Nix, a dropped stream), it was cancelled.
    const cancelled = Boolean(req.signal?.aborted);
    const cause = local.signal.aborted ? local.signal.reason : err;
    if (!cancelled) {
      const text = isUserError(cause) ? cause.format() : (cause as Error)?.message ?? String(cause);
      const message = failedPlatform ? `${failedPlatform}: ${text}` : text;
      await hooks.buildFailed.promise({ buildId: req.buildId, identity, message, error: cause, phase, platform: failedPlatform });
    }
    throw cancelled ? req.signal!.reason ?? err : cause;
  } finally {
    await leftovers;
    p.buildSignal = undefined;
    for (const b of held) await p.releaseRunner(b.runner!, b.target);
  }
}

/**
 * Nix and assembly for one platform, in its own builder: its phases fire
 * buildPhase with the platform's name. A failure carries its phase.
 */
async function buildPlatform(
  p: Pipeline,
  id: Identity,
  target: BuildTarget,
  req: BuildRequest & { signal: AbortSignal },
): Promise<PlatformBuild> {
  const { hooks, config, log } = p;
  const platformName = target.platform ? target.key : null;
  const durations: Record<string, number> = {};
  let phase: FailedPhase = 'evaluate';
  let runner: NixRunner | null = null;
  const open = async () => (runner ??= await p.acquireRunner(id, target, req.signal));
  try {
    const expected = target.platform ? nixSystemOf(target.platform) : undefined;
    const nix = await nixStep(config, id, {
      open,
      log,
      signal: req.signal,
      force: req.force,
      cacheKey: target.platform ? target.key : undefined,
      system: expected,
      onLog: (line) => hooks.buildLog.call(req.buildId, line),
      onPhase: (ph) => {
        phase = ph;
        hooks.buildPhase.call(req.buildId, ph, platformName);
      },
      onProgress: req.onProgress && ((n) => req.onProgress!({ phase: 'build', platform: platformName, ...n })),
      nixArgs: p.nixSettings().args,
      nixEnv: (root) => p.nixSettings().env(root),
      remoteNames: p.nixSettings().remoteNames,
    });
    Object.assign(durations, nix.cached ? {} : nix.result.phases);
    await checkBuiltSystem(p, target, nix.result.system);

    // A remembered Nix result needs the builder only if a layer is not cached: open it on first read.
    const reader = new ListingCache(
      new LazyReader(async () => readerFor(await open(), config.cacheDir)),
      config.cacheDir,
    );
    phase = 'assemble';
    hooks.buildPhase.call(req.buildId, 'assemble', platformName);
    const t0 = performance.now();
    // A layer whose blob the cache pruned before the push is made again through a builder of its own.
    const laterReader = async () => {
      const r = await p.acquireRunner(id, target);
      return { reader: readerFor(r, config.cacheDir), release: () => p.releaseRunner(r, target) };
    };
    const assembled = await assembleImage({
      result: nix.result,
      settings: config.image,
      reader,
      laterReader,
      cacheDir: config.cacheDir,
      signal: req.signal,
      log,
      onProgress: req.onProgress && ((a) => req.onProgress!({ phase: 'assemble', platform: platformName, ...a })),
      beforeWrite: (cached, incoming) => makeRoom(p, cached, incoming),
    });
    durations.assemble = Math.round(performance.now() - t0);
    await reader.save();
    const platform = formatPlatform(platformOfNixSystem(nix.result.system));
    // The upload to the binary cache reads the store after the image is ready: keep the builder for it.
    const keep = config.builder.cache !== null && !nix.cached ? runner : null;
    if (keep) runner = null;
    return { target, platform, result: nix.result, assembled, nixCached: nix.cached, durations, ...(keep ? { runner: keep } : {}) };
  } catch (caught) {
    // A store read (or any step) that failed because the builder container vanished says so.
    // (`runner` is set inside the open() closure: TypeScript cannot see that.)
    const used = runner as NixRunner | null;
    const err = !req.signal.aborted && used instanceof ContainerRunner ? await used.explain(caught) : caught;
    if (err !== null && typeof err === 'object' && !('phase' in err)) Object.assign(err, { phase });
    throw err;
  } finally {
    if (runner) await p.releaseRunner(runner, target);
  }
}

/** The build the engine can run: its own platform's. */
async function engineBuild(p: Pipeline, builds: PlatformBuild[]): Promise<PlatformBuild> {
  if (builds.length === 1) return builds[0]!;
  const native = formatPlatform(await enginePlatform(p.engine()));
  const mine = builds.find((b) => b.platform === native);
  if (!mine) throw new UserError(`None of the platforms built (${builds.map((b) => b.platform).join(', ')}) is the engine's own (${native}).`, `add "${native}" to "platforms"`);
  return mine;
}

/**
 * Asks the destinations hook where this image goes (the push plugin answers
 * 'registry'); no answer means the engine. What the plugins return is
 * checked here, since the whole build depends on it.
 */
async function chooseDestinations(p: Pipeline, id: Identity): Promise<Destination[]> {
  const chosen: unknown = await p.hooks.destinations.promise([], id);
  if (!Array.isArray(chosen) || !chosen.every((d) => d === 'registry' || d === 'engine')) {
    throw new UserError(
      `A plugin answered the destinations hook with ${JSON.stringify(chosen)}, not a list of "registry" and "engine".`,
      'fix the plugin that taps destinations (docs/plugins.md shows what it may return), or remove it from "plugins"',
    );
  }
  const unique = [...new Set(chosen as Destination[])];
  return unique.length > 0 ? unique : ['engine'];
}

/**
 * The image is out already, so a failed upload is a warning, not a failed
 * build; `nixdocker cache push` tries again. Cancelling still cancels.
 */
async function uploadAfterBuild(p: Pipeline, runner: NixRunner, result: BuildResult, req: BuildRequest, durations: Record<string, number>, platform: string | null): Promise<UploadOutcome> {
  const url = p.config.builder.cache!.url;
  p.hooks.buildPhase.call(req.buildId, 'cacheUpload', platform);
  const t0 = performance.now();
  try {
    const report = await uploadBuild(p, runner, result, {
      signal: req.signal,
      onLog: (line) => p.hooks.buildLog.call(req.buildId, line),
      onProgress: req.onProgress && ((u) => req.onProgress!({ phase: 'upload', url, platform, ...u })),
    });
    return { ok: true, ...report };
  } catch (err) {
    if (req.signal?.aborted) throw err;
    const message = isUserError(err) ? err.format() : (err as Error)?.message ?? String(err);
    p.log.warn({ url }, `the image is ready, but its upload to the binary cache failed: ${message}`);
    return { ok: false, url, message };
  } finally {
    durations.cacheUpload = Math.round(performance.now() - t0);
  }
}

/** Prunes the cache directory after a build; a failure to prune is logged, never fails the build. */
async function keepCacheBounded(p: Pipeline, id: Identity, images: AssembledImage[]): Promise<void> {
  try {
    const layers = images.flatMap((img) => img.layers);
    const report = await pruneCache(
      p.config.cacheDir,
      { digests: layers.map((l) => l.digest), imageBytes: layers.reduce((s, l) => s + l.size, 0), result: { name: id.name, tag: id.tag } },
      { maxBytes: p.config.cache.maxBytes ?? null, keepResults: p.config.cache.keepResults },
    );
    if (report.blobsRemoved > 0 || report.resultsRemoved > 0) p.log.debug(report, 'cache pruned');
  } catch (err) {
    p.log.warn({ err: (err as Error).message }, 'could not prune the cache directory');
  }
}

/**
 * Before an assembly writes its new layers: old blobs go so that the cache
 * stays under its cap while the layers are written, not only after the build.
 * Other platforms' builds may write meanwhile; the prune after the build is
 * the one that counts every platform's image. A failure is logged, never fails the build.
 */
async function makeRoom(p: Pipeline, cached: { digest: string; size: number }[], incoming: number): Promise<void> {
  try {
    const imageBytes = cached.reduce((s, l) => s + l.size, 0) + incoming;
    const report = await pruneBlobs(p.config.cacheDir, { digests: cached.map((l) => l.digest), imageBytes }, { maxBytes: p.config.cache.maxBytes ?? null }, incoming);
    if (report.blobsRemoved > 0) p.log.debug(report, 'cache pruned before writing layers');
  } catch (err) {
    p.log.warn({ err: (err as Error).message }, 'could not prune the cache directory');
  }
}

function readerFor(runner: NixRunner, cacheDir: string): StoreReader {
  if (runner instanceof ContainerRunner) return new ContainerStoreReader(runner.container, processTmpDir(cacheDir));
  return new FsStoreReader();
}

/** A StoreReader that makes its real reader on first use. */
class LazyReader implements StoreReader {
  private reader: Promise<StoreReader> | null = null;
  constructor(private readonly make: () => Promise<StoreReader>) {}

  private get(): Promise<StoreReader> {
    this.reader ??= this.make();
    return this.reader;
  }

  async *read(storePaths: readonly string[], signal?: AbortSignal) {
    yield* (await this.get()).read(storePaths, signal);
  }

  async list(dir: string, signal?: AbortSignal) {
    return (await this.get()).list(dir, signal);
  }

  async *readLayers(pathSets: readonly (readonly string[])[], signal?: AbortSignal) {
    const reader = await this.get();
    if (reader.readLayers) yield* reader.readLayers(pathSets, signal);
    else for (const set of pathSets) yield reader.read(set, signal);
  }

  async listMany(dirs: readonly string[], signal?: AbortSignal) {
    const reader = await this.get();
    return reader.listMany ? reader.listMany(dirs, signal) : new Map<string, StoreDirEntry[]>();
  }
}
