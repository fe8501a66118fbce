import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanupProjects, runCli, userConfigFile } from '../helpers/project.js';
import { DAV_DIR, DAV_URL, offlineProject, REGISTRY, removeVolume, requireParts, SERVICES_DIR } from '../helpers/services.js';
import { cleanupDirs, tmpDir } from '../helpers/registry.js';
import { generateCacheKey } from '../helpers/binary-cache.js';

/**
 * builder.cache = http://…: Nix's HttpBinaryCacheStore uploads with PUT, here
 * to nginx's WebDAV module (scripts/services.sh), which stores what it is sent
 * and serves it back. A second builder fetches everything from it; a location
 * that takes no PUT fails the upload, never the image.
 */
const test = suite('binary cache over http PUT (nginx WebDAV)');
const VOL = (s: string) => `nixdocker-test-davcache-${s}-${process.pid}`;
const VOLUMES = ['a', 'b'].map(VOL);
const RUN = `nixdocker-test-${process.pid}-${Date.now()}`;
/** This run's cache: a folder of the shared server of its own, made by the first PUT. */
const CACHE_URL = `${DAV_URL}/${RUN}`;
const CACHE_DIR = path.join(DAV_DIR, RUN);
/** nginx's /readonly/ location serves GET and HEAD and answers a PUT with 405. */
const READONLY_URL = `${DAV_URL}/readonly/${RUN}`;
const READONLY_DIR = path.join(DAV_DIR, 'readonly', RUN);
const ACCESS_LOG = path.join(SERVICES_DIR, 'dav', 'access.log');

// A package of this run's own, so no earlier run's cache or image holds the closure.
const NONCE = `${process.pid}${Date.now()}`;
const LOCAL_NIX = `{ pkgs, ... }: [ pkgs.greet (pkgs.writeScriptBin "dav-${NONCE}" "echo dav ${NONCE}") ]\n`;

interface BuildJson {
  reference: string;
  image: { digest: string; destinations: string[] };
  nix: { built: number; fetched: number; remote: number };
  upload: { ok: boolean; url: string; paths?: number; uploaded?: number; bytes?: number; message?: string } | null;
  result: { closure: Record<string, unknown>; built: string[]; fetched: string[] };
}

const envs = new Map<string, NodeJS.ProcessEnv>();
const envOf = (dir: string) => envs.get(dir) ?? { DOCKER_HOST: process.env.DOCKER_HOST };
const logs: string[] = [];

async function project(volume: string, builder: Record<string, unknown>, user?: Record<string, unknown>): Promise<string> {
  const dir = await offlineProject({ volume, config: { builder }, files: { 'workdir/local.nix': LOCAL_NIX } });
  if (user) envs.set(dir, { DOCKER_HOST: process.env.DOCKER_HOST, NIXDOCKER_USER_CONFIG: await userConfigFile({ builder: user }) });
  return dir;
}

async function setUserCache(dir: string, cache: { url: string; secretKeyFile: string }): Promise<void> {
  await writeFile(envOf(dir).NIXDOCKER_USER_CONFIG!, JSON.stringify({ builder: { cache } }));
}

/** `build --json` with debug JSON logs on stderr: the outcome and the log events. */
async function build(dir: string, extra: string[] = []): Promise<{ json: BuildJson; events: Record<string, unknown>[]; stderr: string }> {
  const r = await runCli(['-C', dir, '--log-level', 'debug', '--json-logs', 'build', '--json', '--force', ...extra], { env: envOf(dir), timeoutMs: 300_000 });
  logs.push(r.stdout, r.stderr);
  assert.is(r.exitCode, 0, r.stderr.slice(-4000));
  const events = r.stderr.split('\n').flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
  return { json: JSON.parse(r.stdout) as BuildJson, events, stderr: r.stderr };
}

async function builderCreate(dir: string): Promise<void> {
  const r = await runCli(['-C', dir, 'builder', 'create'], { env: envOf(dir) });
  logs.push(r.stdout, r.stderr);
  assert.is(r.exitCode, 0, r.stderr);
}

/** The registry has the manifest: the image went out even when its upload did not. */
async function inRegistry(reference: string, digest: string): Promise<boolean> {
  const repo = reference.slice(REGISTRY.length + 1).replace(/:[^:/]+$/, '');
  const r = await fetch(`http://${REGISTRY}/v2/${repo}/manifests/${digest}`, {
    method: 'HEAD',
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json' },
  });
  return r.status === 200;
}

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix', 'dav'])) {
  let key: { secretKeyFile: string; publicKey: string };
  let secretText: string;
  let dirA: string;
  let closure: string[];
  let digestA: string;

  test.before(async () => {
    key = await generateCacheKey(await tmpDir('nixdocker-davkeys-'), 'dav-test-1');
    secretText = (await readFile(key.secretKeyFile, 'utf8')).trim();
  });

  test.after(async () => {
    for (const v of VOLUMES) await removeVolume(v);
    await rm(CACHE_DIR, { recursive: true, force: true });
    await rm(READONLY_DIR, { recursive: true, force: true });
    await cleanupProjects();
    await cleanupDirs();
  });

  test('A builds the fixture and uploads its signed closure with PUT; progress and bytes are reported', async () => {
    dirA = await project(VOL('a'), {}, { cache: { url: CACHE_URL, secretKeyFile: key.secretKeyFile } });
    await builderCreate(dirA);
    const { json, events } = await build(dirA);
    closure = Object.keys(json.result.closure).sort();
    digestA = json.image.digest;
    assert.is(closure.length, 5, closure.join(', '));
    assert.is(json.nix.built, 5);
    assert.ok(json.image.destinations.includes('registry'), 'pushed');
    assert.ok(json.upload?.ok, JSON.stringify(json.upload));
    assert.is(json.upload!.url, CACHE_URL);
    assert.is(json.upload!.uploaded, 5);
    assert.ok(json.upload!.bytes! > 1_000_000, `bytes ${json.upload!.bytes}`);
    // The progress events off a terminal: the last one counts every path and every byte.
    const progress = events.map((e) => e.progress as { phase: string; uploaded: number; total: number; bytes: number; url: string } | undefined).filter((p) => p?.phase === 'upload');
    assert.ok(progress.length > 0, 'upload progress was reported');
    assert.equal({ ...progress.at(-1)!, current: undefined, bytesPerSecond: undefined }, { phase: 'upload', url: CACHE_URL, platform: null, uploaded: 5, total: 5, bytes: json.upload!.bytes, current: undefined, bytesPerSecond: undefined });

    // Nix's own format, as nginx stored it: nix-cache-info, a signed narinfo per path, the NARs.
    assert.match(await readFile(path.join(CACHE_DIR, 'nix-cache-info'), 'utf8'), 'StoreDir: /nix/store');
    const narinfos = (await readdir(CACHE_DIR)).filter((f) => f.endsWith('.narinfo')).sort();
    assert.equal(narinfos, closure.map((p) => `${path.basename(p).slice(0, 32)}.narinfo`).sort());
    for (const f of narinfos) {
      const text = await readFile(path.join(CACHE_DIR, f), 'utf8');
      assert.match(text, /^Sig: dav-test-1:/m);
      const nar = /^URL: (nar\/\S+)$/m.exec(text)![1]!;
      assert.ok(existsSync(path.join(CACHE_DIR, nar)), `${nar} was stored`);
    }
    // And they went up as PUTs that nginx accepted.
    const puts = (await readFile(ACCESS_LOG, 'utf8')).split('\n').filter((l) => l.includes(`"PUT /${RUN}/`));
    assert.ok(puts.some((l) => / 201 /.test(l) && l.includes('.narinfo HTTP')), 'narinfos PUT with 201');
    assert.ok(puts.some((l) => / 201 /.test(l) && l.includes('/nar/')), 'NARs PUT with 201');
  });

  test('B, on a fresh volume, builds the same fixture with nothing built and every path fetched from the WebDAV cache', async () => {
    const dirB = await project(VOL('b'), { substituters: [CACHE_URL], trustedPublicKeys: [key.publicKey] });
    await builderCreate(dirB);
    const { json } = await build(dirB);
    assert.equal(Object.keys(json.result.closure).sort(), closure);
    assert.equal(json.result.built, []);
    assert.equal([...json.result.fetched].sort(), closure);
    assert.equal(json.nix, { built: 0, fetched: 5, remote: 0 });
    assert.is(json.image.digest, digestA, 'the same store paths give the same image');
    const gets = (await readFile(ACCESS_LOG, 'utf8')).split('\n').filter((l) => l.includes(`"GET /${RUN}/nar/`) && / 200 /.test(l));
    assert.ok(gets.length >= 5, `NARs fetched with GET: ${gets.length}`);
  });

  test('a location that refuses PUT: the upload is reported as failed with the fix, the image is still pushed', async () => {
    // First with no nix-cache-info there (Nix says only "does not appear to be a binary cache"), then with one (the NAR's PUT gets the 405).
    for (const withInfo of [false, true]) {
      if (withInfo) {
        await mkdir(READONLY_DIR, { recursive: true });
        await writeFile(path.join(READONLY_DIR, 'nix-cache-info'), 'StoreDir: /nix/store\n');
      }
      await setUserCache(dirA, { url: READONLY_URL, secretKeyFile: key.secretKeyFile });
      const { json, stderr } = await build(dirA);
      assert.ok(json.image.destinations.includes('registry'));
      assert.ok(await inRegistry(json.reference, json.image.digest), 'the manifest is in the registry');
      assert.is(json.upload?.ok, false);
      assert.is(json.upload!.url, READONLY_URL);
      const refused = withInfo
        ? `The binary cache ${READONLY_URL} (builder.cache.url) refused the upload: HTTP 405 Not Allowed on PUT ${READONLY_URL}/nar/`
        : `The binary cache ${READONLY_URL} (builder.cache.url) refused the upload: it has no nix-cache-info, and the PUT of one failed`;
      assert.match(json.upload!.message!, refused);
      assert.match(json.upload!.message!, 'dav_methods PUT');
      assert.match(stderr, 'the image is ready, but its upload to the binary cache failed');
    }
    assert.equal((await readdir(READONLY_DIR)).sort(), ['nix-cache-info'], 'nginx stored nothing');

    // The text output says so in one line, and `cache push` fails with the same error and its fix.
    const text = await runCli(['-C', dirA, 'build', '--force'], { env: envOf(dirA), timeoutMs: 300_000 });
    logs.push(text.stdout, text.stderr);
    assert.is(text.exitCode, 0, text.stderr);
    assert.match(text.stdout, '  pushed; digest ');
    assert.match(text.stdout, `  upload to ${READONLY_URL} FAILED (the image is fine; \`nixdocker cache push\` tries again)`);
    const push = await runCli(['-C', dirA, 'cache', 'push'], { env: envOf(dirA) });
    logs.push(push.stdout, push.stderr);
    assert.is(push.exitCode, 1, push.stderr);
    assert.match(push.stderr, `refused the upload: HTTP 405 Not Allowed on PUT ${READONLY_URL}/nar/`);
    assert.match(push.stderr, /fix: serve builder\.cache\.url from a server that takes PUT there/);
    assert.not.match(push.stderr, /\n\s+at /, 'a UserError prints no stack');

    // Back to the WebDAV location: everything is there already.
    await setUserCache(dirA, { url: CACHE_URL, secretKeyFile: key.secretKeyFile });
    const again = await runCli(['-C', dirA, 'cache', 'push', '--json'], { env: envOf(dirA) });
    logs.push(again.stdout, again.stderr);
    assert.is(again.exitCode, 0, again.stderr);
    assert.equal({ ...JSON.parse(again.stdout), ms: 0 }, { reference: JSON.parse(again.stdout).reference, url: CACHE_URL, paths: 5, uploaded: 0, bytes: 0, ms: 0 });
  });

  test("the secret key's bytes appear in no log, status file or cache file", async () => {
    assert.ok(logs.join('').length > 10_000, 'debug logs were collected');
    const needles = [secretText, secretText.split(':')[1]!];
    for (const n of needles) assert.not.ok(logs.join('\n').includes(n), 'a log holds the secret key');
    const files = [
      ...(await readdir(path.join(dirA, '.nixdocker'), { recursive: true })).map((f) => path.join(dirA, '.nixdocker', f)),
      ...(await readdir(CACHE_DIR, { recursive: true })).map((f) => path.join(CACHE_DIR, f)),
    ];
    let read = 0;
    for (const f of files) {
      const bytes = await readFile(f).catch(() => null); // directories
      if (!bytes) continue;
      read++;
      for (const n of needles) assert.is(bytes.indexOf(n), -1, `${f} holds the secret key`);
    }
    assert.ok(read > 10, `${read} files read`);
  });
}

test.run();
