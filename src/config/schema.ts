/**
 * The config schema: every key, its type and a one-line description. The
 * validator reports every problem at once, each naming the key and what is
 * expected, so one run shows a user everything to fix.
 */
import { formatPlatform, parsePlatform, platformProblem } from './platform.js';

type Check = (value: unknown) => string | null; // null when valid, else what is expected

export interface KeySpec {
  check: Check;
  doc: string;
  /** Has no default; `null` means unset. */
  optional?: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const string: Check = (v) => (typeof v === 'string' && v.length > 0 ? null : 'a non-empty string');
const boolean: Check = (v) => (typeof v === 'boolean' ? null : 'true or false');
const intRange = (min: number, max: number): Check => (v) =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? null : `an integer from ${min} to ${max}`;
const oneOf = (...values: string[]): Check => (v) => (typeof v === 'string' && values.includes(v) ? null : values.map((x) => JSON.stringify(x)).join(' or '));
const stringArray = (nonEmpty: boolean): Check => (v) =>
  Array.isArray(v) && v.every((x) => typeof x === 'string' && x.length > 0) && (!nonEmpty || v.length > 0)
    ? null
    : `${nonEmpty ? 'a non-empty' : 'an'} array of strings`;
const stringMap: Check = (v) => (isObject(v) && Object.values(v).every((x) => typeof x === 'string') ? null : 'an object of string values');
const pattern = (re: RegExp, what: string): Check => (v) => (typeof v === 'string' && re.test(v) ? null : what);
const platforms: Check = (v) => {
  const what = 'a non-empty array of platforms like "linux/amd64", or {"platform": "linux/arm64", "image"?, "volume"?, "dockerHost"?} objects';
  if (!Array.isArray(v) || v.length === 0) return what;
  const seen = new Set<string>();
  for (const entry of v) {
    const name = typeof entry === 'string' ? entry : isObject(entry) ? entry.platform : undefined;
    if (typeof name !== 'string') return what;
    if (isObject(entry)) {
      const extra = Object.keys(entry).filter((k) => !['platform', 'image', 'volume', 'dockerHost'].includes(k));
      if (extra.length > 0) return `${what} (unknown key "${extra[0]}" in the entry for ${name})`;
      for (const k of ['image', 'volume', 'dockerHost'] as const) {
        if (entry[k] !== undefined && (typeof entry[k] !== 'string' || entry[k] === '')) return `${what} ("${k}" of ${name} must be a non-empty string)`;
      }
      if (typeof entry.volume === 'string' && !VOLUME.test(entry.volume)) return `${what} ("volume" of ${name} must be a volume name of letters, digits, "_", "." and "-")`;
    }
    const problem = platformProblem(name);
    if (problem) return `${what}; ${problem}`;
    const key = formatPlatform(parsePlatform(name, 'platforms'));
    if (seen.has(key)) return `${what}; ${name} is listed twice`;
    seen.add(key);
  }
  return null;
};
const plugins: Check = (v) => {
  const entry = (x: unknown) =>
    (typeof x === 'string' && x.length > 0) || (Array.isArray(x) && x.length === 2 && typeof x[0] === 'string' && isObject(x[1]));
  return Array.isArray(v) && v.every(entry) ? null : 'an array of plugin names or [name, {options}] pairs';
};

// Registry references: host[:port], and a lowercase repository path for the namespace.
const HOST = /^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9a-fA-F:]+\](:[0-9]{1,5})?$/;
const NAMESPACE = /^$|^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const VOLUME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

// Nix splits these settings on whitespace, so an entry may hold none.
const STORE_URL = /^(?:https?|file|s3):\/\/\S+$/;
const SUBSTITUTER = /^[a-z][a-z0-9+.-]*:\/\/\S+$/;
/** user:password@ in a store URL: it would reach logs, the status file and Nix's command line. */
const USERINFO = /^[a-z][a-z0-9+.-]*:\/\/[^/\s]*@/i;
const NO_CREDENTIALS = 'without user:password@ (nixdocker logs store URLs and shows them in status; it passes no cache credentials yet)';
/** A Nix public key: name:base64 of 32 bytes, as `nix-store --generate-binary-cache-key` writes it. */
export const PUBLIC_KEY = /^[^\s:]+:[A-Za-z0-9+/]{43}=$/;
const nullOr = (check: Check): Check => (v) => (v === null ? null : check(v));
const urlList = (re: RegExp, what: string): Check => (v) =>
  Array.isArray(v) && v.every((x) => typeof x === 'string' && re.test(x))
    ? v.some((x) => USERINFO.test(x as string)) ? `an array of ${what}, ${NO_CREDENTIALS}` : null
    : `an array of ${what}`;

function httpHost(url: string): string | null {
  // WHATWG URL reads "http:///cache" as the host "cache"; Nix's curl does not.
  if (!/^https?:\/\/[^/?#]/.test(url)) return null;
  try {
    return new URL(url).hostname || null;
  } catch {
    return null;
  }
}

/** `builder.cache`: where finished builds go and the key that signs them. */
const cacheSetting: Check = (v) => {
  const what = 'an object { "url": "file:///DIR" | "http(s)://HOST/PATH" | "s3://BUCKET", "secretKeyFile": "PATH" } or null';
  if (v === null) return null;
  if (!isObject(v)) return what;
  const extra = Object.keys(v).filter((k) => k !== 'url' && k !== 'secretKeyFile');
  if (extra.length > 0) return `${what} (unknown key ${JSON.stringify(extra[0])})`;
  if (typeof v.url !== 'string' || !STORE_URL.test(v.url)) return `${what} ("url" must be a file://, http://, https:// or s3:// store URL)`;
  if (USERINFO.test(v.url)) return `${what} ("url" ${NO_CREDENTIALS})`;
  // Nix would take "http:///cache" and fail only at the upload, after the image is out.
  if (/^https?:/.test(v.url) && !httpHost(v.url)) return `${what} ("url" must name a server: http(s)://HOST[:PORT]/PATH, which takes PUT)`;
  if (typeof v.secretKeyFile !== 'string' || v.secretKeyFile.length === 0) {
    return `${what} ("secretKeyFile" names the key from \`nix-store --generate-binary-cache-key\` that signs uploads)`;
  }
  return null;
};

/**
 * A Nix `builders` line: URI, then optional systems, SSH key, max jobs, speed,
 * features, mandatory features and host key. The SSH key comes from
 * builder.sshKeyFile (mounted into the builder), so the third field stays "-".
 */
const builderLines: Check = (v) => {
  const what = 'an array of Nix builders lines like "ssh://root@build1.example x86_64-linux - 4"';
  if (!Array.isArray(v)) return what;
  for (const line of v) {
    if (typeof line !== 'string') return what;
    const fields = line.trim().split(/\s+/);
    if (!/^ssh(?:-ng)?:\/\/[^\s/]+$/.test(fields[0] ?? '')) return `${what} (${JSON.stringify(line)} does not start with ssh://HOST or ssh-ng://HOST)`;
    if (line.includes(';')) return `${what}, one builder per entry (${JSON.stringify(line)} holds a ";")`;
    if (fields[2] !== undefined && fields[2] !== '-') return `${what}, with "-" as the third field: the SSH key comes from builder.sshKeyFile`;
  }
  return null;
};

/** Nested keys as `section.key`; sections are objects of their own. */
export const SCHEMA: Record<string, KeySpec> = {
  envDir: { check: string, doc: 'directory of the predefined Nix files; its content names the image repository' },
  userConfig: { check: stringArray(false), doc: 'the user Nix files, in order; their content names the tag' },
  workdir: { check: string, doc: 'directory mounted as the working directory by `nixdocker run` (its user/ subfolder)' },
  cacheDir: { check: string, doc: 'where nixdocker keeps build results, layer digests and daemon state (inside the project)' },
  'registry.host': { check: pattern(HOST, 'host or host:port, without a scheme'), doc: 'registry to push to and pull from (env DOCKER_REGISTRY_HOST overrides)' },
  'registry.namespace': { check: (v) => (typeof v === 'string' ? pattern(NAMESPACE, 'lowercase path components like "team/envs", or ""')(v) : 'a string'), doc: 'repository path prefix inside the registry' },
  'registry.insecure': { check: boolean, doc: 'allow plain http for a registry that is not on localhost' },
  'builder.image': { check: string, doc: 'image with Nix that runs the builds' },
  'builder.volume': { check: pattern(VOLUME, 'a volume name of letters, digits, "_", "." and "-"'), doc: 'named volume kept at /nix so the store survives between builds' },
  'builder.mode': { check: oneOf('container', 'local'), doc: '"container" builds in the builder container, "local" with the host\'s nix-build' },
  'builder.substituters': { check: urlList(SUBSTITUTER, 'store URLs without spaces'), doc: 'binary caches builds fetch from; replaces the builder\'s own list' },
  'builder.trustedPublicKeys': { check: urlList(PUBLIC_KEY, 'public keys like "name-1:BASE64=" (nix-store --generate-binary-cache-key)'), doc: 'keys whose signatures make a substitute acceptable; replaces the builder\'s own list' },
  'builder.cache': { check: cacheSetting, doc: 'binary cache that every new build\'s closure is signed and uploaded to: { url, secretKeyFile }' },
  'builder.remoteBuilders': { check: builderLines, doc: 'Nix remote builders (builders lines, ssh:// or ssh-ng://) the builder sends builds to' },
  'builder.useSubstitutesOnRemote': { check: boolean, doc: 'let remote builders fetch dependencies from their substituters (builders-use-substitutes)' },
  'builder.sshKeyFile': { check: nullOr(string), doc: 'SSH private key for the remote builders, mounted read-only into the builder', optional: true },
  'builder.sshKnownHostsFile': { check: nullOr(string), doc: 'known_hosts with the remote builders\' host keys, mounted read-only into the builder', optional: true },
  'builder.idleSeconds': { check: intRange(2, 86_400), doc: 'seconds a builder container outlives its nixdocker process (killed, crashed) before it stops on its own' },
  'image.maxLayers': { check: intRange(2, 125), doc: 'most layers per image, the customisation layer included' },
  'image.cmd': { check: stringArray(true), doc: 'default command of the image', optional: true },
  'image.env': { check: stringMap, doc: 'extra environment variables of the image', optional: true },
  'image.workingDir': { check: pattern(/^\//, 'an absolute path inside the image'), doc: 'working directory inside the image', optional: true },
  'image.user': { check: string, doc: 'user the image runs as', optional: true },
  platforms: { check: platforms, doc: 'platforms the tag\'s image index holds, each built by its own builder; default: the builder\'s own (the engine\'s native platform)', optional: true },
  'cache.maxBytes': { check: intRange(0, Number.MAX_SAFE_INTEGER), doc: 'most bytes cacheDir holds, kept by pruning layer blobs least recently used first, also while a build writes its layers (unset: the larger of 2 GiB and twice the current image)', optional: true },
  'cache.keepResults': { check: intRange(0, 100_000), doc: 'build results kept in cacheDir besides the current identity\'s (the last N tags)' },
  'watch.debounceMs': { check: intRange(0, 60_000), doc: 'quiet time after the last change before a build starts' },
  'watch.cancelSuperseded': { check: boolean, doc: 'cancel a running build when newer inputs arrive' },
  plugins: { check: plugins, doc: 'plugins to load: built-in names, npm packages or ./relative paths' },
};

const SECTIONS = new Set(Object.keys(SCHEMA).filter((k) => k.includes('.')).map((k) => k.split('.')[0]!));

export interface SchemaProblem {
  key: string;
  problem: string;
}

/** Every problem in a raw config object; an empty array when it is valid. */
export function validate(raw: unknown): SchemaProblem[] {
  if (!isObject(raw)) return [{ key: '(top level)', problem: 'expected an object of settings' }];
  const problems: SchemaProblem[] = [];
  const check = (key: string, value: unknown) => {
    const spec = SCHEMA[key];
    if (!spec) {
      problems.push({ key, problem: `is not a known setting${suggest(key)}` });
      return;
    }
    if (value === null && spec.optional) return;
    const expected = spec.check(value);
    if (expected) problems.push({ key, problem: `expected ${expected}, got ${describe(value)}` });
  };
  for (const [key, value] of Object.entries(raw)) {
    if (key === '$schema') continue;
    if (SECTIONS.has(key)) {
      if (!isObject(value)) {
        problems.push({ key, problem: `expected an object with keys ${sectionKeys(key).join(', ')}, got ${describe(value)}` });
        continue;
      }
      for (const [sub, v] of Object.entries(value)) check(`${key}.${sub}`, v);
    } else {
      check(key, value);
    }
  }
  return problems;
}

function sectionKeys(section: string): string[] {
  return Object.keys(SCHEMA).filter((k) => k.startsWith(`${section}.`));
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/** "did you mean" for a misspelt key: the known key at the smallest edit distance. */
function suggest(key: string): string {
  let best: string | null = null;
  let bestDist = Infinity;
  // A top-level key is compared with top-level names, a nested key with nested ones.
  const candidates = key.includes('.') ? Object.keys(SCHEMA) : [...Object.keys(SCHEMA).filter((k) => !k.includes('.')), ...SECTIONS];
  for (const known of candidates) {
    const d = editDistance(key.toLowerCase(), known.toLowerCase());
    if (d < bestDist) [best, bestDist] = [known, d];
  }
  return best && bestDist <= Math.max(2, Math.floor(key.length / 4)) ? ` (did you mean "${best}"?)` : '';
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
