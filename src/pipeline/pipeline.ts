import { userDirToMount } from '../config/containment.js';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import type { ContainerRunner } from '../builder/container-runner.js';
import type { NixRunner } from '../builder/runner.js';
import type { BuildPhase } from '../nix/types.js';
import type { Config } from '../config/types.js';
import { connectEngine } from '../engine/engine.js';
import { createHooks, isolatePlugins, tapOnly, type Hooks, type PluginContext } from '../hooks.js';
import { UserError } from '../errors.js';
import type { Identity, IdentityOptions, InputFile } from '../identity.js';
import type { Logger } from '../log.js';
import { readJson, writeJson } from '../util/json-file.js';
import { loadPlugins } from '../plugin-loader.js';
import { buildTargets, type BuildTarget } from './targets.js';
import { RegistryClient } from '../registry/index.js';
import { nixBuildSettings, type NixBuildSettings } from './nix-settings.js';
import { identify } from './identify.js';

// What only building, running and cleaning up need is loaded on first use:
// `hash` (and every command) makes a Pipeline for the plugins' hooks, and
// these modules (execa, the builder, staging) were a sixth of its start-up.
const containerRunner = () => import('../builder/container-runner.js');
const openRunner = async (...args: Parameters<typeof import('../builder/open-runner.js').openRunner>) => (await import('../builder/open-runner.js')).openRunner(...args);
const stageInputs = async (identity: Identity) => (await import('../nix/inputs.js')).stageInputs(identity);
const engineRun = () => import('../engine/run.js');

/**
 * What one project's builds share: config, hooks with the plugins applied,
 * and lazily made clients for the engine and the registry. One per process:
 * `nixdocker build` makes one for a single build, the daemon keeps it.
 */
export class Pipeline {
  readonly hooks: Hooks = createHooks();
  private docker: Docker | null = null;
  private registry: RegistryClient | null = null;
  /** The daemon keeps one builder container between builds (see ContainerRunner.stage). */
  keepWarm = false;
  private settings: NixBuildSettings | null = null;
  /** One warm builder container per build target (platform). */
  private readonly warm = new Map<string, ContainerRunner>();
  /** Engines of platforms that name their own (`dockerHost`). */
  private readonly engines = new Map<string, Docker>();
  /**
   * The signal of the build under way (builds never overlap in one pipeline):
   * plugin work inside its hooks, such as gc's nix-collect-garbage, stops with it.
   */
  buildSignal: AbortSignal | undefined;

  private constructor(
    readonly config: Config,
    readonly log: Logger,
  ) {
    isolatePlugins(this.hooks, log);
  }

  /**
   * Loads and applies the configured plugins, then fires configLoaded. A
   * plugin whose apply() throws stops the start: a pipeline missing one of its
   * plugins (the push plugin, say) would quietly do less than the config says.
   */
  static async create(config: Config, log: Logger, opts: { plugins?: boolean } = {}): Promise<Pipeline> {
    const p = new Pipeline(config, log);
    if (opts.plugins !== false) {
      const view = tapOnly(p.hooks);
      for (const { plugin, where } of await loadPlugins(config)) {
        try {
          await plugin.apply(view, p.pluginContext(plugin.name));
        } catch (err) {
          // The plugins applied before it may hold something: let them release it.
          await p.hooks.shutdown.promise();
          const reason = err instanceof Error ? err.message : String(err);
          throw new UserError(
            `The plugin "${plugin.name}" (${where}) failed to start: its apply() threw: ${reason}`,
            `fix the plugin or its options, or remove it from "plugins"; nixdocker does not run with a plugin half set up`,
            { cause: err },
          );
        }
      }
    }
    await p.hooks.configLoaded.promise(config);
    return p;
  }

  /** The identity of the inputs as they are now, after the plugins' identity hook (see identify.ts). */
  identify(opts?: IdentityOptions): Promise<Identity> {
    return identify(this.config, this.hooks, opts);
  }

  engine(): Docker {
    this.docker ??= connectEngine();
    return this.docker;
  }

  /** The engine a build target's builder runs in: its own `dockerHost`, else DOCKER_HOST's. */
  engineFor(target: { dockerHost?: string }): Docker {
    if (!target.dockerHost) return this.engine();
    let docker = this.engines.get(target.dockerHost);
    if (!docker) this.engines.set(target.dockerHost, (docker = connectEngine(target.dockerHost)));
    return docker;
  }

  registryClient(): RegistryClient {
    this.registry ??= new RegistryClient({ host: this.config.registry.host, insecure: this.config.registry.insecure, logger: this.log });
    return this.registry;
  }

  pluginContext(name: string): PluginContext {
    return {
      config: this.config,
      log: this.log.child({ plugin: name }),
      cacheDir: this.config.cacheDir,
      runInImage: async (image, command, opts) => {
        const out = new PassThrough();
        out.on('data', (c: Buffer) => opts.onOutput?.(c.toString()));
        // Resolved at every run: mounted only while it resolves inside the project.
        const userDir = userDirToMount(this.config);
        const { imageWorkingDir, runContainer } = await engineRun();
        return runContainer(this.engine(), {
          image,
          cmd: command,
          interactive: false,
          mount: userDir ? { host: userDir, container: await imageWorkingDir(this.engine(), image) } : undefined,
          stdout: out,
          stderr: out,
          signal: opts.signal,
          env: opts.env,
          publish: opts.publish,
          labels: { 'org.nixdocker.project': this.config.projectDir },
        });
      },
      reportCommand: (result) => this.hooks.commandFinished.promise(result),
      pull: async (image) => (await engineRun()).pullImage(this.engine(), image),
      registry: () => this.registryClient(),
      engine: () => this.engine(),
      collectGarbage: async (keep, signal) => {
        if (this.config.builder.mode !== 'container') throw new Error('Nix garbage is collected only in the builder container (builder.mode "container")');
        const [{ ResultCache }, { collectGarbage }] = await Promise.all([import('../nix/result-cache.js'), import('../builder/garbage.js')]);
        const results = new ResultCache(this.config.cacheDir);
        const sig = signal && this.buildSignal ? AbortSignal.any([signal, this.buildSignal]) : signal ?? this.buildSignal;
        // Each platform's builder has a store of its own, holding that platform's outputs.
        let exitCode = 0;
        const output: string[] = [];
        for (const target of buildTargets(this.config)) {
          const key = target.platform ? target.key : undefined;
          const keepOutPaths: string[] = [];
          for (const { name, tag } of keep) {
            const r = await results.get(name, tag, key);
            for (const pkg of [...(r?.base ?? []), ...(r?.user ?? [])]) keepOutPaths.push(pkg.outPath);
          }
          const { image, volume } = target.builder;
          const r = await collectGarbage(this.engineFor(target), { image, volume, ...(target.builder.platform ? { platform: target.builder.platform } : {}) }, { projectDir: this.config.projectDir, keepOutPaths, signal: sig });
          output.push(key ? `${key}:\n${r.output}` : r.output);
          if (exitCode === 0) exitCode = r.exitCode;
        }
        return { exitCode, output: output.join('\n') };
      },
    };
  }

  /** Inputs that differ from the last successful build's (for notifications and logs). */
  async changedSinceLast(identity: Identity): Promise<string[]> {
    const prev = await readJson<InputFile[]>(this.stateFile('last-inputs.json'));
    if (!prev) return [];
    const before = new Map(prev.map((i) => [i.path, i.sha256]));
    const now = new Map(identity.inputs.map((i) => [i.path, i.sha256]));
    const changed = new Set<string>();
    for (const [p, d] of now) if (before.get(p) !== d) changed.add(p);
    for (const p of before.keys()) if (!now.has(p)) changed.add(p);
    return [...changed].sort();
  }

  async rememberInputs(identity: Identity): Promise<void> {
    await writeJson(this.stateFile('last-inputs.json'), identity.inputs);
  }

  stateFile(name: string): string {
    return path.join(this.config.cacheDir, 'state', name);
  }

  /** Substituters, keys and remote builders for Nix, worked out once per pipeline. */
  nixSettings(): NixBuildSettings {
    this.settings ??= nixBuildSettings(this.config);
    return this.settings;
  }

  /** A runner for `target` with the identity's inputs staged: its warm one when there is one, else a new one. */
  async acquireRunner(identity: Identity, target: BuildTarget, signal?: AbortSignal): Promise<NixRunner> {
    const files = [...(await stageInputs(identity)), ...this.nixSettings().files];
    const warm = this.warm.get(target.key);
    this.warm.delete(target.key);
    if (warm?.usable) {
      try {
        await warm.stage(files, signal);
        return warm;
      } catch (err) {
        await warm.close(); // gone or broken: a new one below
        if (signal?.aborted) throw err;
      }
    }
    const docker = this.config.builder.mode === 'container' ? this.engineFor(target) : null;
    return openRunner(this.config, target.builder, files, docker, signal);
  }

  /** Keeps a usable container runner warm for the target's next build (daemon only); closes anything else. */
  async releaseRunner(runner: NixRunner, target: BuildTarget): Promise<void> {
    const { ContainerRunner } = await containerRunner();
    if (this.keepWarm && runner instanceof ContainerRunner && runner.usable && !this.warm.has(target.key)) {
      this.warm.set(target.key, runner);
      return;
    }
    if (runner !== this.warm.get(target.key)) await runner.close();
  }

  /**
   * Removes what killed nixdocker processes left behind: this project's
   * builder containers whose owner is gone, and the temporary files of dead
   * processes under cacheDir/tmp. Never throws: it is housekeeping, and the
   * engine may not be needed by this command at all.
   */
  async removeLeftovers(): Promise<void> {
    try {
      const { removeDeadTmp } = await import('../util/process-tmp.js');
      const n = await removeDeadTmp(this.config.cacheDir);
      if (n > 0) this.log.debug(`removed ${n} temporary file(s) of nixdocker processes that are gone`);
    } catch (err) {
      this.log.debug(`could not clean ${this.config.cacheDir}/tmp: ${(err as Error).message}`);
    }
    if (this.config.builder.mode !== 'container') return;
    const { removeOrphans } = await import('../builder/ownership.js');
    // Every platform's builder has its own volume (config load refuses a shared one), and may run on an engine of its own.
    for (const target of buildTargets(this.config)) {
      try {
        const orphans = await removeOrphans(this.engineFor(target), this.config.projectDir, target.builder.volume);
        if (orphans.length > 0) {
          this.log.info(
            { event: 'orphansRemoved', containers: orphans.map((o) => o.id.slice(0, 12)), volume: target.builder.volume },
            `removed ${orphans.length} builder container(s) left by a nixdocker process that is gone`,
          );
        }
      } catch (err) {
        this.log.debug(`could not look for orphaned builder containers on volume ${target.builder.volume}: ${(err as Error).message}`);
      }
    }
  }

  async shutdown(): Promise<void> {
    await this.hooks.shutdown.promise();
    const warm = [...this.warm.values()];
    this.warm.clear();
    await Promise.allSettled(warm.map((r) => r.close()));
  }
}

export type FailedPhase = BuildPhase | 'assemble' | 'push' | 'load';
