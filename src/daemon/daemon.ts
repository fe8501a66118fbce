import type { Config } from '../config/types.js';
import { isUserError } from '../errors.js';
import type { Identity } from '../identity.js';
import type { Logger } from '../log.js';
import { buildImage } from '../pipeline/build-image.js';
import { Pipeline } from '../pipeline/pipeline.js';
import { DaemonLock } from './lock.js';
import { collectIdleGarbage, limitYoungGeneration } from './memory.js';
import { Scheduler, type SchedulerState } from './scheduler.js';
import { StatusWriter } from './status.js';
import { InputWatcher } from './watcher.js';

export interface DaemonOptions {
  /** Called with each phase for a live terminal line. */
  onPhase?: (text: string) => void;
}

/**
 * `nixdocker watch`: one per project (a lock), it watches the inputs, and
 * through the scheduler builds each new identity once, newest wins. Every
 * event is a log line with an `event` field, so scripts and benchmarks can
 * follow it; the state file serves `nixdocker status`.
 */
export class Daemon {
  private lock: DaemonLock | null = null;
  private watcher: InputWatcher | null = null;
  private scheduler: Scheduler<Identity> | null = null;
  private pipeline: Pipeline | null = null;
  private readonly status: StatusWriter;
  /** Aborted when the daemon stops: ends an identity computation between two files. */
  private readonly stopping = new AbortController();

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly opts: DaemonOptions = {},
  ) {
    this.status = new StatusWriter(config.cacheDir, config.projectDir);
  }

  /** The scheduler's state, for tests. */
  get state(): SchedulerState {
    return this.scheduler?.state ?? 'idle';
  }

  async start(): Promise<void> {
    limitYoungGeneration();
    this.lock = await DaemonLock.acquire(this.config.cacheDir);
    try {
      this.pipeline = await Pipeline.create(this.config, this.log);
      const p = this.pipeline;
      // Builds follow one another: keep the builder container between them.
      p.keepWarm = true;
      await p.removeLeftovers();
      p.hooks.buildPhase.tap('daemon', (buildId, phase, platform) => {
        this.opts.onPhase?.(`build ${buildId}: ${platform ? `${platform} ` : ''}${phase}…`);
        void this.status.update((s) => {
          if (s.building?.buildId !== buildId) return;
          if (platform) s.building.platforms = { ...s.building.platforms, [platform]: phase };
          else s.building.phase = phase;
        });
      });
      p.hooks.buildLog.tap('daemon', (buildId, line) => this.log.debug({ buildId, nix: true }, line));

      this.scheduler = new Scheduler<Identity>({
        debounceMs: this.config.watch.debounceMs,
        cancelSuperseded: this.config.watch.cancelSuperseded,
        identify: () => p.identify({ signal: this.stopping.signal }),
        same: (a, b) => a.image === b.image,
        build: (job) => this.build(job.buildId, job.identity, job.changed, job.signal),
        onError: (err) => {
          if (!this.stopping.signal.aborted) this.report(err, null, 0);
        },
      });
      this.scheduler.on('state', (state) => {
        void this.status.update((s) => (s.state = state));
        if (state === 'idle') this.scheduleIdleGc();
      });
      this.scheduler.on('unchanged', (id) => this.log.debug({ event: 'unchanged', image: id.image }, `inputs changed but the image stays ${id.image}`));
      this.scheduler.on('buildEnd', (e) => {
        void this.status.update((s) => {
          s.builds[e.outcome === 'ok' ? 'ok' : e.outcome]++;
          s.building = null;
        });
        if (e.outcome === 'cancelled') {
          // The reason is the abort's: newer inputs, or the daemon stopping (Ctrl-C, SIGTERM).
          const reason = this.stopping.signal.aborted ? 'the daemon is stopping' : 'newer inputs arrived';
          this.log.info({ event: 'buildCancelled', buildId: e.buildId, image: e.identity.image, reason }, `build ${e.buildId} cancelled: ${reason}`);
        }
      });

      this.watcher = new InputWatcher(
        this.config,
        (rel) => {
          this.log.debug({ event: 'change', path: rel }, `changed: ${rel}`);
          this.scheduler?.notify([rel]);
        },
        // The daemon keeps running: the watcher polls after a watch limit, and goes on otherwise.
        (err) => {
          const code = ((err as { cause?: NodeJS.ErrnoException }).cause ?? (err as NodeJS.ErrnoException)).code;
          this.log.warn({ event: 'watchError', code }, `file watcher: ${isUserError(err) ? err.format() : err.message}`);
        },
      );
      await this.watcher.start();
      await this.status.update(() => {});
      this.log.info({ event: 'watching', envDir: this.config.envDir, userConfig: this.config.userConfig }, `watching ${[this.config.envDir, ...this.config.userConfig].join(', ')}`);
      this.scheduler.kick();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private idleGc: NodeJS.Timeout | null = null;

  /** Gives memory back a moment after the daemon went idle (see memory.ts). */
  private scheduleIdleGc(): void {
    if (this.idleGc) clearTimeout(this.idleGc);
    this.idleGc = setTimeout(() => {
      this.idleGc = null;
      if (this.scheduler?.state === 'idle') collectIdleGarbage();
    }, 2000);
    this.idleGc.unref();
  }

  private async build(buildId: number, identity: Identity, changed: string[], signal: AbortSignal): Promise<void> {
    const p = this.pipeline!;
    await this.status.update((s) => {
      s.current = identity.image;
      s.building = { buildId, image: identity.image, phase: null, startedAt: new Date().toISOString() };
    });
    if (changed.length > 0) await p.hooks.inputsChanged.promise(changed);
    this.log.info({ event: 'buildStart', buildId, image: identity.image, changed }, `build ${buildId}: ${identity.image}`);
    let outcome;
    try {
      outcome = await buildImage(p, { buildId, identity, changed: changed.length > 0 ? changed : undefined, signal });
    } catch (err) {
      if (!signal.aborted) this.report(err, identity, buildId);
      throw err;
    } finally {
      // Staged or not, these bytes are done with: a later build reads the files again.
      identity.contents?.release();
    }
    const at = new Date().toISOString();
    if (outcome.status === 'built') {
      const d = outcome.image;
      this.log.info(
        { event: 'imageReady', buildId, image: d.image, digest: d.digest, durations: d.durations, layers: d.layers.length, size: d.size },
        `image ready: ${d.image}`,
      );
      await this.status.update((s) => {
        s.lastImage = { image: d.image, digest: d.digest, at, status: 'built', platforms: d.platforms };
        s.lastDurations = d.durations;
        const r = outcome.result;
        if (!outcome.nixCached) s.lastNix = { built: r.built.length, fetched: r.fetched?.length ?? 0, remote: r.builtRemotely?.length ?? 0 };
        const up = outcome.upload;
        if (up) {
          s.lastUpload = up.ok
            ? { url: up.url, ok: true, uploaded: up.uploaded, bytes: up.bytes, message: null, at }
            : { url: up.url, ok: false, uploaded: 0, bytes: 0, message: up.message, at };
        }
        s.lastPlatformDurations = Object.fromEntries(outcome.builds.map((b) => [b.platform, b.durations]));
        s.lastError = null;
      });
    } else if (outcome.status === 'up-to-date') {
      this.log.info({ event: 'upToDate', buildId, image: identity.image }, `up to date: ${identity.image} is in the ${outcome.where.join(' and the ')}`);
      await this.status.update((s) => {
        s.lastImage = { image: identity.image, digest: null, at, status: 'up-to-date' };
        s.lastDurations = outcome.durations;
        s.lastError = null;
      });
    } else {
      this.log.info({ event: 'buildSkipped', buildId, reason: outcome.reason }, `build ${buildId} skipped: ${outcome.reason}`);
    }
  }

  /** A failed build: said once, kept in the status; the last good image stays. */
  private report(err: unknown, identity: Identity | null, buildId: number): void {
    const message = isUserError(err) ? err.format() : ((err as Error)?.stack ?? String(err));
    // No identity yet (inputs refused: a symlink outside, a FIFO; or an identity plugin's bad answer): say that the daemon goes on.
    const text = identity ? `build failed: ${message}` : `could not name the image, nothing built: ${message}\n  still watching: the next change is read again`;
    this.log.error({ event: 'buildFailed', buildId, image: identity?.image ?? null }, text);
    void this.status.update((s) => {
      s.lastError = { buildId, image: identity?.image ?? null, message, at: new Date().toISOString() };
    });
  }

  /** Stops cleanly: the running build is cancelled (its container removed), plugins shut down. */
  async stop(): Promise<void> {
    this.stopping.abort(new Error('the daemon is stopping'));
    if (this.idleGc) clearTimeout(this.idleGc);
    await this.scheduler?.stop();
    await this.watcher?.close();
    await Promise.allSettled([this.pipeline?.shutdown()]);
    await this.status.update((s) => {
      s.state = 'stopping';
      s.building = null;
    });
    await this.status.flush();
    await this.lock?.release();
    this.lock = null;
    this.log.info({ event: 'stopped' }, 'stopped');
  }
}
