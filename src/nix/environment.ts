import type { Config } from '../config/types.js';
import type { Identity } from '../identity.js';
import type { Logger } from '../log.js';
import { nixManifest } from './inputs.js';
import { evaluate, queryClosure, realise, type NixProgress, type RealiseReport } from './commands.js';
import type { NixRunner } from '../builder/runner.js';
import type { BuildPhase, BuildResult } from './types.js';

export interface NixBuildOptions {
  log: Logger;
  signal?: AbortSignal;
  /** Each line of Nix's log, as it arrives. */
  onLog?: (line: string) => void;
  onProgress?: (p: NixProgress) => void;
  /** The phase that starts now. */
  onPhase?: (phase: BuildPhase) => void;
  /** `--option` arguments and environment for the build (substituters, keys, remote builders). */
  nixArgs?: string[];
  /** Given the staging root as Nix sees it. */
  nixEnv?: (root: string) => Record<string, string>;
  /** Remote builders as Nix names them → as configured (copies back from them are not fetches). */
  remoteNames?: Record<string, string>;
}

/** Evaluates, builds and queries the closure: everything image assembly needs. */
export async function buildEnvironment(runner: NixRunner, config: Config, identity: Identity, opts: NixBuildOptions): Promise<BuildResult> {
  const phases: BuildResult['phases'] = {};
  const timed = async <T>(phase: BuildPhase, fn: () => Promise<T>): Promise<T> => {
    opts.onPhase?.(phase);
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      phases[phase] = Math.round(performance.now() - t0);
    }
  };
  const step = { signal: opts.signal, onLog: opts.onLog };

  const ev = await timed('evaluate', () => evaluate(runner, nixManifest(config), step));
  const packages = [...ev.base, ...ev.user];
  const report = await timed('build', () =>
    realise(runner, packages.map((p) => p.drvPath), { ...step, onProgress: opts.onProgress, nixArgs: opts.nixArgs, env: opts.nixEnv?.(runner.root), remoteBuilders: Object.keys(opts.remoteNames ?? {}) }),
  );
  warnAbout(report, opts.log, opts.remoteNames ?? {});
  const closure = await timed('closure', () => queryClosure(runner, packages.map((p) => p.outPath), step));
  return {
    name: identity.name,
    tag: identity.tag,
    system: ev.system,
    base: ev.base,
    user: ev.user,
    closure,
    image: ev.image,
    phases,
    built: report.built,
    fetched: report.fetched,
    builtRemotely: report.builtRemotely.map((b) => b.drv),
  };
}

/** Nix carries on after these (it builds locally), but the user should know why it was slow. */
function warnAbout(report: RealiseReport, log: Logger, names: Record<string, string>): void {
  for (const u of uniqueBy(report.unreachable, (x) => x.builder)) {
    const name = names[u.builder] ?? u.builder;
    log.warn(
      { builder: name },
      `remote builder ${name} could not be used (${u.reason}); Nix built locally instead (check builder.remoteBuilders, builder.sshKeyFile and builder.sshKnownHostsFile)`,
    );
  }
  const refused = uniqueBy(report.refused, (x) => x.substituter);
  for (const r of refused) {
    const n = report.refused.filter((x) => x.substituter === r.substituter).length;
    log.warn(
      { substituter: r.substituter, paths: n },
      `${n} substitute(s) from ${r.substituter} were refused: not signed by a key in builder.trustedPublicKeys; Nix built them locally`,
    );
  }
}

function uniqueBy<T>(xs: T[], key: (x: T) => string): T[] {
  return [...new Map(xs.map((x) => [key(x), x])).values()];
}
