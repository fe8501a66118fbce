import { UserError } from '../errors.js';
import type { BuiltPackage, NixImageSettings, StorePathInfo } from './types.js';
import { ENTRY_PATH, PROJECT_SUBDIR } from './inputs.js';
import type { NixRunner, RunResult } from '../builder/runner.js';

/** Progress of `nix-store --realise`, parsed from its log. */
export interface NixProgress {
  /** Derivations Nix said it will build. */
  total: number;
  /** Derivations started so far. */
  started: number;
  /** The derivation building (or path fetched) now, by name. */
  current: string | null;
  /** Store paths Nix said it will fetch from a binary cache, and fetched so far. */
  fetchTotal: number;
  fetched: number;
}

export interface NixStepOptions {
  signal?: AbortSignal;
  /** Every line Nix writes to stderr. */
  onLog?: (line: string) => void;
}

export interface Evaluation {
  /** The Nix system the builder builds for (builtins.currentSystem), e.g. aarch64-linux. */
  system: string;
  base: BuiltPackage[];
  user: BuiltPackage[];
  image: NixImageSettings;
}

/** Evaluates the contract and writes the .drv files (entry.nix returns plain data). */
export async function evaluate(runner: NixRunner, manifest: string, opts: NixStepOptions): Promise<Evaluation> {
  const r = await runner.run(
    [
      'nix-instantiate', '--eval', '--strict', '--json', '--read-write-mode',
      `${runner.root}/${ENTRY_PATH}`,
      '--argstr', 'root', `${runner.root}/${PROJECT_SUBDIR}`,
      '--argstr', 'manifest', manifest,
    ],
    { signal: opts.signal, onStderrLine: opts.onLog },
  );
  if (r.exitCode !== 0) throw nixError('evaluate', r, runner.root);
  type Raw = { name: string; drv: string; out: string; source: string };
  const parsed = JSON.parse(r.stdout) as { system: string; base: Raw[]; user: Raw[]; image?: NixImageSettings };
  const pkg = (p: Raw): BuiltPackage => ({ name: p.name, drvPath: p.drv, outPath: p.out, source: p.source });
  return { system: parsed.system, base: parsed.base.map(pkg), user: parsed.user.map(pkg), image: parsed.image ?? {} };
}

/** What `nix-store --realise` did, read from its log. */
export interface RealiseReport {
  /** Derivations built here or on a remote builder. */
  built: string[];
  /** Store paths fetched from a substituter. */
  fetched: string[];
  /** Derivations a remote builder built (a subset of built), with the builder. */
  builtRemotely: { drv: string; builder: string }[];
  /** Substitutes refused for a bad or unknown signature (then built here). */
  refused: { path: string; substituter: string }[];
  /** Remote builders Nix could not use, with Nix's reason. */
  unreachable: { builder: string; reason: string }[];
}

export interface RealiseOptions extends NixStepOptions {
  onProgress?: (p: NixProgress) => void;
  /** `--option` arguments (substituters, keys, builders). */
  nixArgs?: string[];
  env?: Record<string, string>;
  /** Remote builders as Nix names them: their outputs come back as copies, which are not fetches. */
  remoteBuilders?: string[];
}

/** Builds (or finds in the store, or fetches) every derivation; reports what it really did. */
export async function realise(runner: NixRunner, drvPaths: string[], opts: RealiseOptions): Promise<RealiseReport> {
  const report: RealiseReport = { built: [], fetched: [], builtRemotely: [], refused: [], unreachable: [] };
  if (drvPaths.length === 0) return report;
  const progress: NixProgress = { total: 0, started: 0, current: null, fetchTotal: 0, fetched: 0 };
  // Rooted in a fresh folder that replaces the project's roots only once the build succeeded, so a
  // failed or cancelled build leaves the last image's roots (and Nix's --add-root warning is gone).
  const roots = runner.gcRoots;
  // Roots outside gcroots/ (local mode) are indirect: Nix remembers the link's path under gcroots/auto, so the
  // links are registered again at their final place after the move, or the next collection drops them as stale.
  const script =
    'r=$1; shift; rm -rf "$r.new" && mkdir -p "$r.new" || exit 1; "$@" || exit $?; rm -rf "$r" && mv "$r.new" "$r" || exit 1; ' +
    'case "$r" in /nix/var/nix/gcroots/*) ;; *) for l in "$r"/*; do [ -L "$l" ] || continue; nix-store --realise --add-root "$l" "$(readlink "$l")" >/dev/null || exit 1; done ;; esac';
  const cmd = ['nix-store', '--realise', '--add-root', `${roots}.new/out`, ...(opts.nixArgs ?? []), ...unique(drvPaths)];
  const r = await runner.run(['sh', '-c', script, 'sh', roots, ...cmd], {
    signal: opts.signal,
    env: opts.env,
    onStderrLine: (line) => {
      const fetched = /^copying path '(\/nix\/store\/[^']+)' from '([^']+)'/.exec(line);
      if (fetched && !opts.remoteBuilders?.includes(fetched[2]!)) report.fetched.push(fetched[1]!);
      const refused = /^warning: the substitute for '([^']+)' from '([^']+)' is not signed by any of the keys/.exec(line);
      if (refused) report.refused.push({ path: refused[1]!, substituter: refused[2]! });
      const down = /cannot build on '([^']+)': (.*)$/.exec(line);
      if (down) report.unreachable.push({ builder: down[1]!, reason: down[2]!.replace(/^error: /, '') });
      const will = /^these (\d+) derivations? will be built/.exec(line);
      if (will) progress.total = Number(will[1]);
      else if (/^this derivation will be built/.test(line)) progress.total = 1;
      const fetch = /^these (\d+) paths? will be fetched/.exec(line);
      if (fetch) progress.fetchTotal = Number(fetch[1]);
      else if (/^this path will be fetched/.test(line)) progress.fetchTotal = 1;
      const building = /^building '(\/nix\/store\/[^']+\.drv)'(?: on '([^']+)')?/.exec(line);
      if (fetched) {
        progress.fetched++;
        progress.current = fetched[1]!.replace(/^\/nix\/store\/[a-z0-9]{32}-/, '');
      } else if (building) {
        report.built.push(building[1]!);
        if (building[2]) report.builtRemotely.push({ drv: building[1]!, builder: building[2] });
        progress.started++;
        progress.current = building[1]!.replace(/^\/nix\/store\/[a-z0-9]{32}-/, '').replace(/\.drv$/, '');
      }
      // Progress before the line: a terminal draws its status again under the line, naming what the line says.
      if (fetched || building || will || fetch || /^this (?:derivation|path) will be/.test(line)) opts.onProgress?.({ ...progress });
      opts.onLog?.(line);
    },
  });
  if (r.exitCode !== 0) throw nixError('build', r, runner.root);
  return report;
}

/** The full closure of the out paths with references and NAR sizes. */
export async function queryClosure(runner: NixRunner, outPaths: string[], opts: NixStepOptions): Promise<Record<string, StorePathInfo>> {
  if (outPaths.length === 0) return {};
  const r = await runner.run(
    ['nix', '--extra-experimental-features', 'nix-command', 'path-info', '--json', '--recursive', ...unique(outPaths)],
    { signal: opts.signal, onStderrLine: opts.onLog },
  );
  if (r.exitCode !== 0) throw nixError('closure', r, runner.root);
  return parsePathInfo(r.stdout);
}

/** `nix path-info --json` is an array up to Nix 2.18 and an object keyed by path after. */
export function parsePathInfo(json: string): Record<string, StorePathInfo> {
  const raw = JSON.parse(json) as unknown;
  const entries: [string, { narSize?: number; references?: string[] }][] = Array.isArray(raw)
    ? (raw as { path: string; narSize?: number; references?: string[] }[]).map((e) => [e.path, e])
    : Object.entries(raw as Record<string, { narSize?: number; references?: string[] }>);
  const out: Record<string, StorePathInfo> = {};
  for (const [p, info] of entries) {
    out[p] = {
      path: p,
      narSize: info.narSize ?? 0,
      // Newer Nix lists references as base names in some outputs; keep them absolute.
      references: (info.references ?? []).map((r) => (r.startsWith('/') ? r : `/nix/store/${r}`)).sort(),
    };
  }
  return out;
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

const STEP_TEXT = {
  evaluate: 'Nix could not evaluate the environment',
  build: 'Nix could not build the environment',
  closure: 'Nix could not list the closure of the environment',
} as const;

/**
 * A Nix failure as a UserError quoting Nix's own message, with the staged
 * paths turned back into the project paths the user edits.
 */
export function nixError(step: keyof typeof STEP_TEXT, r: RunResult, root: string): UserError {
  const lines = mapPaths(r.stderrTail.join('\n'), root).split('\n');
  const errAt = lines.findIndex((l) => l.startsWith('error:'));
  let picked = errAt < 0 ? lines.slice(-15) : lines.slice(errAt);
  if (step === 'build' && errAt > 0) {
    // nix-store prints the failing builder's output before its error line: keep its last lines.
    const start = lines.slice(0, errAt).findLastIndex((l) => l.startsWith('building '));
    picked = [...lines.slice(Math.max(start, 0), errAt).filter((l) => l.trim() !== '').slice(-15), ...picked];
  }
  const quoted = picked
    .filter((l, i, all) => !(l.trim() === '' && all[i - 1]?.trim() === ''))
    .slice(0, 40)
    .join('\n')
    .trim();
  const at = /at (?:«[^»]+»|([^\s:]+)):(\d+):(\d+)/.exec(quoted);
  const where = at?.[1] && !at[1].startsWith('/') && !at[1].startsWith('<nixdocker>') ? `${at[1]} line ${at[2]}` : null;
  const network = networkFailure(r.stderrTail.join('\n'));
  const hint = network
    ? networkHint(network)
    : where
    ? `fix ${where}, then build again`
    : step === 'build'
      ? 'read the build log above (--log-level debug shows all of it) and fix the derivation'
      : 'fix the Nix file named in the error, then build again';
  const what = network ? `${STEP_TEXT[step]}: the builder could not download ${network.url ?? 'what it needed'}` : `${STEP_TEXT[step]}${where ? ` (${where})` : ''}`;
  return new UserError(`${what}:\n${indent(quoted || `exit code ${r.exitCode}`)}`, hint);
}

/**
 * What Nix says when a download or substitution fails for a network reason
 * (DNS, refused or timed-out connections, TLS, a proxy), as curl words it.
 * The Nix files are fine then; the builder's network is not.
 */
const NETWORK_TEXT =
  /unable to download|unable to fetch|Couldn't resolve (?:host|proxy)|Could not resolve (?:host|proxy)|Couldn't connect to server|Failed to connect|Connection refused|Connection timed out|Timeout was reached|Operation timed out|SSL (?:certificate|connect)|certificate (?:problem|verify)|Proxy CONNECT|substitutes for the outputs of derivation .* failed|Network is unreachable/i;

export interface NetworkFailure {
  /** The address Nix tried, when it says. */
  url: string | null;
  /** curl's words, e.g. "Couldn't resolve host name". */
  reason: string;
}

/** The first network failure in Nix's output, or null when the failure is something else. */
export function networkFailure(stderr: string): NetworkFailure | null {
  const lines = stderr.split('\n');
  // The error line first: warnings about a cache Nix then did without are not the cause.
  const line = lines.find((l) => l.startsWith('error:') && NETWORK_TEXT.test(l)) ?? lines.find((l) => NETWORK_TEXT.test(l));
  if (!line) return null;
  const url = /'((?:https?|ftp|s3):\/\/[^']+)'/.exec(line)?.[1] ?? null;
  const reason = /':\s*(.+?)(?:\s*\(\d+\))?(?:;.*)?$/.exec(line)?.[1] ?? line.replace(/^(?:error|warning):\s*/, '');
  return { url, reason };
}

export function networkHint(f: NetworkFailure): string {
  const host = f.url ? (() => { try { return new URL(f.url!).host; } catch { return null; } })() : null;
  return [
    `the Nix files are fine; the builder container cannot reach ${host ?? 'the network'} (${f.reason}).`,
    'Check the network the engine gives containers (DNS, firewall).',
    'Behind a proxy, set HTTP_PROXY/HTTPS_PROXY/NO_PROXY in this shell: nixdocker passes them into the builder (a proxy on 127.0.0.1 is the host\'s loopback, which a container cannot reach: use the host\'s address).',
    'Without internet, build only what needs no download (examples/offline shows how)',
  ].join(' ');
}

/** /nixdocker/project/workdir/local.nix → workdir/local.nix; the entry point gets a name of its own. */
export function mapPaths(text: string, root: string): string {
  return text
    .split(`${root}/${PROJECT_SUBDIR}/`).join('')
    .split(`${root}/${ENTRY_PATH}`).join('<nixdocker>/entry.nix');
}

function indent(s: string): string {
  return s.split('\n').map((l) => `    ${l}`).join('\n');
}
