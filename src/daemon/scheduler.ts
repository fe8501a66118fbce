import { EventEmitter } from 'node:events';

/** The daemon's phases: what `status` shows and tests wait for. */
export type SchedulerState = 'idle' | 'pending' | 'building' | 'stopping';

export interface BuildJob<Id> {
  buildId: number;
  identity: Id;
  /** Inputs that changed since the previous build started. */
  changed: string[];
  signal: AbortSignal;
}

export interface SchedulerOptions<Id> {
  debounceMs: number;
  /** Cancel a running build as soon as newer inputs have another identity. */
  cancelSuperseded: boolean;
  /** Computes the identity of the inputs as they are now. */
  identify(): Promise<Id>;
  /** Two identities name the same image. */
  same(a: Id, b: Id): boolean;
  /** Runs one build; throws on failure (the scheduler reports it and goes on). */
  build(job: BuildJob<Id>): Promise<void>;
  /** An error outside a build (identity of broken inputs, say). */
  onError(err: unknown): void;
}

export interface SchedulerEvents<Id> {
  state: [SchedulerState];
  /** A build ended: ok, failed or cancelled. */
  buildEnd: [{ buildId: number; identity: Id; outcome: 'ok' | 'failed' | 'cancelled'; error?: unknown }];
  /** Changes settled on the identity already built or building: nothing to do. */
  unchanged: [Id];
  /**
   * One settle (identity computed after a batch) ended with this decision:
   * `start` a build, `rerun` after the running one, `unchanged`, `stale`
   * (a newer settle began meanwhile and decides instead), `stopping`, `error`.
   * Tests wait on it instead of on time.
   */
  settled: [{ identity: Id | null; action: 'start' | 'rerun' | 'unchanged' | 'stale' | 'stopping' | 'error' }];
}

/**
 * Debounce, coalesce, cancel: webpack's Watching loop with an AbortSignal.
 * Changes arriving within `debounceMs` of each other form one batch; a batch
 * whose identity is the one already built (or building) does nothing; a batch
 * arriving during a build marks it superseded, cancels it when asked to, and
 * leads to exactly one follow-up build of the newest inputs. Builds never
 * overlap, so a slow old build can never finish after a newer one.
 */
export class Scheduler<Id> extends EventEmitter<SchedulerEvents<Id>> {
  state: SchedulerState = 'idle';
  private timer: NodeJS.Timeout | null = null;
  private changed = new Set<string>();
  private running: { identity: Id; controller: AbortController; done: Promise<void> } | null = null;
  /** The identity of the last build that ran to an end (ok or failed). */
  private settled: Id | null = null;
  /** A batch arrived during the running build: run again when it ends. */
  private rerun = false;
  private nextId = 1;
  /** Increases with each settle; only the newest one in flight may act on its identity. */
  private settles = 0;

  constructor(private readonly opts: SchedulerOptions<Id>) {
    super();
  }

  /** Inputs changed (project-relative paths). */
  notify(paths: Iterable<string>): void {
    if (this.state === 'stopping') return;
    for (const p of paths) this.changed.add(p);
    if (this.timer) clearTimeout(this.timer);
    if (!this.running) this.setState('pending');
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.settle();
    }, this.opts.debounceMs);
  }

  /** Starts a build now, as if inputs had changed (the daemon's first build). */
  kick(): void {
    void this.settle();
  }

  /** Stops: cancels a running build and waits for it to end. */
  async stop(): Promise<void> {
    this.setState('stopping');
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.rerun = false;
    if (this.running) {
      this.running.controller.abort(new Error('the daemon is stopping'));
      await this.running.done;
    }
  }

  private async settle(): Promise<void> {
    if (this.state === 'stopping') return;
    // Settles overlap (a timer and a kick, or a rerun): an older identify() may
    // finish after a newer one, and its identity describes older inputs.
    const seq = ++this.settles;
    let identity: Id;
    try {
      identity = await this.opts.identify();
    } catch (err) {
      if (seq !== this.settles || this.stopping) return this.decided(null, seq !== this.settles ? 'stale' : 'stopping');
      this.opts.onError(err);
      if (!this.running) this.setState('idle');
      return this.decided(null, 'error');
    }
    // stop() may have returned while identify() ran: no build may start after it.
    if (this.stopping) return this.decided(identity, 'stopping');
    if (seq !== this.settles) return this.decided(identity, 'stale');
    if (this.running) {
      if (this.opts.same(identity, this.running.identity)) {
        if (this.running.controller.signal.aborted) {
          // Back to the identity of a build already cancelled: it will not
          // finish, so build it again once it has wound down.
          this.rerun = true;
          return this.decided(identity, 'rerun');
        }
        this.rerun = false;
        this.emit('unchanged', identity);
        return this.decided(identity, 'unchanged');
      }
      this.rerun = true;
      if (this.opts.cancelSuperseded) this.running.controller.abort(new Error('superseded by newer inputs'));
      return this.decided(identity, 'rerun');
    }
    if (this.settled !== null && this.opts.same(identity, this.settled)) {
      this.changed.clear();
      this.setState(this.timer ? 'pending' : 'idle');
      this.emit('unchanged', identity);
      return this.decided(identity, 'unchanged');
    }
    this.start(identity);
    this.decided(identity, 'start');
  }

  /** A getter: TypeScript would narrow `this.state` across an await, yet stop() changes it meanwhile. */
  private get stopping(): boolean {
    return this.state === 'stopping';
  }

  private decided(identity: Id | null, action: SchedulerEvents<Id>['settled'][0]['action']): void {
    this.emit('settled', { identity, action });
  }

  private start(identity: Id): void {
    const controller = new AbortController();
    const buildId = this.nextId++;
    const changed = [...this.changed].sort();
    this.changed.clear();
    this.rerun = false;
    this.setState('building');
    const done = (async () => {
      let outcome: 'ok' | 'failed' | 'cancelled' = 'ok';
      let error: unknown;
      try {
        await this.opts.build({ buildId, identity, changed, signal: controller.signal });
      } catch (err) {
        error = err;
        // Whatever a cancelled build throws on its way out, it was cancelled.
        outcome = controller.signal.aborted ? 'cancelled' : 'failed';
      }
      if (outcome !== 'cancelled') this.settled = identity;
      this.running = null;
      this.emit('buildEnd', { buildId, identity, outcome, error });
      if (this.state === 'stopping') return;
      if (this.rerun) {
        this.rerun = false;
        void this.settle();
      } else {
        this.setState(this.timer ? 'pending' : 'idle');
      }
    })();
    this.running = { identity, controller, done };
  }

  private setState(s: SchedulerState): void {
    if (this.state === s || (this.state === 'stopping' && s !== 'stopping')) return;
    this.state = s;
    this.emit('state', s);
  }
}
