import path from 'node:path';
import { ContainerStoreReader } from '../image/container-store-reader.js';
import { ContainerRunner } from '../builder/container-runner.js';
import type { NixProgress } from '../nix/commands.js';
import type { NixRunner } from '../builder/runner.js';
import type { BuildResult } from '../nix/types.js';
import { hasImage } from '../engine/engine.js';
import { loadArchive } from '../engine/load.js';
import { isUserError, UserError } from '../errors.js';
import type { BuildTrigger, Destination, ImageDescription, PushReport } from '../hooks.js';
import { computeIdentity, repositoryPath, type Identity } from '../identity.js';
import { assembleImage, type AssembledImage } from '../image/assemble.js';
import { dockerArchiveStream } from '../image/docker-archive.js';
import { ListingCache } from '../image/listing-cache.js';
import { FsStoreReader, type StoreReader } from '../image/store-reader.js';
import { nixStep } from './nix-step.js';
import { uploadBuild } from './cache-upload.js';
import type { UploadReport } from '../nix/binary-cache.js';
import type { FailedPhase, Pipeline } from './pipeline.js';
import { pushStep } from './push-step.js';

export interface BuildRequest {
  /** Increasing per process; only the newest build may announce imageReady. */
  buildId: number;
  /** Computed already (the daemon has it); else computed here. */
  identity?: Identity;
  /** Inputs that changed, when the caller knows (the daemon does). */
  changed?: string[];
  /** Build even when the image exists. */
  force?: boolean;
  /** Load into the engine only (the destinations hook is not asked). */
  load?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: NixProgress) => void;
}

export type BuildOutcome =
  | { status: 'up-to-date'; identity: Identity; where: Destination[]; durations: Record<string, number> }
  | { status: 'skipped'; identity: Identity; reason: string }
  | {
      status: 'built';
      identity: Identity;
      image: ImageDescription;
      assembled: AssembledImage;
      nixCached: boolean;
      result: BuildResult;
      push: PushReport | null;
      /** The upload to builder.cache; absent when none is configured or Nix did not run. */
      upload?: UploadOutcome;
    };

export type UploadOutcome = ({ ok: true } & UploadReport) | { ok: false; url: string; message: string };

/**
 * One build, start to end: identity → destinations → registry (or engine)
 * check → Nix → image assembly → push and/or load → imageReady. Fires the
 * hooks in that order; a failure fires buildFailed and is rethrown, leaving
 * the last good image as it was (nothing is tagged before the manifest).
 */
export async function buildImage(p: Pipeline, req: BuildRequest): Promise<BuildOutcome> {
  const { hooks, config, log } = p;
  const durations: Record<string, number> = {};
  let phase: FailedPhase | null = 'hash';
  let identity: Identity | null = null;
  const timed = async <T>(name: FailedPhase, fn: () => Promise<T>): Promise<T> => {
    phase = name;
    hooks.buildPhase.call(req.buildId, name);
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      durations[name] = Math.round(performance.now() - t0);
    }
  };
  let runner: NixRunner | null = null;

  try {
    identity = await timed('hash', async () => hooks.identity.promise(req.identity ?? (await computeIdentity(config, { signal: req.signal }))));
    const id = identity;
    const destinations = req.load ? (['engine'] as Destination[]) : await chooseDestinations(p, id);
    if (!req.force) {
      const has = (d: Destination) =>
        d === 'engine' ? hasImage(p.engine(), id.image) : p.registryClient().getManifestDigest(repositoryPath(config, id.name), id.tag, { signal: req.signal }).then(Boolean);
      const exists = await timed('registryCheck', async () => {
        for (const d of destinations) if (!(await has(d))) return false;
        return true;
      });
      if (exists) return { status: 'up-to-date', identity: id, where: destinations, durations };
    }
    const changed = req.changed ?? (await p.changedSinceLast(id));
    const trigger: BuildTrigger = { buildId: req.buildId, identity: id, changed, force: Boolean(req.force) };
    const veto = await hooks.beforeBuild.promise(trigger);
    if (veto) return { status: 'skipped', identity: id, reason: veto.reason };

    const open = async () => (runner ??= await p.acquireRunner(id, req.signal));
    const nix = await nixStep(config, id, {
      open,
      log,
      signal: req.signal,
      force: req.force,
      onLog: (line) => hooks.buildLog.call(req.buildId, line),
      onPhase: (ph) => {
        phase = ph;
        hooks.buildPhase.call(req.buildId, ph);
      },
      onProgress: req.onProgress,
      nixArgs: p.nixSettings().args,
      nixEnv: (root) => p.nixSettings().env(root),
    });
    Object.assign(durations, nix.cached ? {} : nix.result.phases);

    // A remembered Nix result needs the builder only if a layer is not cached: open it on first read.
    const reader = new ListingCache(
      new LazyReader(async () => readerFor(await open(), config.cacheDir)),
      config.cacheDir,
    );
    const assembled = await timed('assemble', () =>
      assembleImage({ result: nix.result, settings: config.image, reader, cacheDir: config.cacheDir, signal: req.signal, log }),
    );
    await reader.save();
    // The upload to the binary cache reads the store after the image is ready: keep the builder for it.
    const uploads = config.builder.cache !== null && !nix.cached;
    if (runner && !uploads) {
      await p.releaseRunner(runner);
      runner = null;
    }

    const desc: ImageDescription = {
      buildId: req.buildId,
      name: id.name,
      tag: id.tag,
      image: id.image,
      digest: assembled.manifestDigest,
      layers: assembled.layers.map((l) => ({ digest: l.digest, size: l.size, kind: l.kind === 'customisation' ? 'custom' : l.kind })),
      size: assembled.layers.reduce((s, l) => s + l.size, 0),
      durations,
      changed,
      // Filled in as each destination is reached: nothing is announced that did not happen.
      destinations: [],
    };
    await hooks.built.promise(desc);
    let push: PushReport | null = null;
    if (destinations.includes('registry')) {
      phase = 'push';
      push = await pushStep(p, desc, assembled, { signal: req.signal, phase: timed });
    }
    if (destinations.includes('engine')) {
      await timed('load', () => loadArchive(p.engine(), dockerArchiveStream(assembled, [id.image]), id.image, req.signal));
      desc.destinations.push('engine');
    }
    req.signal?.throwIfAborted();
    await p.rememberInputs(id);
    phase = null;
    await hooks.imageReady.promise(desc);
    const upload = uploads && runner ? await uploadAfterBuild(p, runner, nix.result, req, durations) : undefined;
    return { status: 'built', identity: id, image: desc, assembled, nixCached: nix.cached, result: nix.result, push, upload };
  } catch (err) {
    // Whatever a cancelled build throws on its way out (a killed Nix, a dropped stream), it was cancelled.
    const cancelled = Boolean(req.signal?.aborted);
    if (!cancelled) {
      const message = isUserError(err) ? err.format() : (err as Error)?.message ?? String(err);
      await hooks.buildFailed.promise({ buildId: req.buildId, identity, message, error: err, phase });
    }
    throw cancelled ? req.signal!.reason ?? err : err;
  } finally {
    if (runner) await p.releaseRunner(runner);
  }
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
async function uploadAfterBuild(p: Pipeline, runner: NixRunner, result: BuildResult, req: BuildRequest, durations: Record<string, number>): Promise<UploadOutcome> {
  const url = p.config.builder.cache!.url;
  p.hooks.buildPhase.call(req.buildId, 'cacheUpload');
  const t0 = performance.now();
  try {
    const report = await uploadBuild(p, runner, result, { signal: req.signal, onLog: (line) => p.hooks.buildLog.call(req.buildId, line) });
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

function readerFor(runner: NixRunner, cacheDir: string): StoreReader {
  if (runner instanceof ContainerRunner) return new ContainerStoreReader(runner.container, path.join(cacheDir, 'tmp'));
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
}
