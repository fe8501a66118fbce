import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Docker from 'dockerode';
import { existsSync } from 'node:fs';
import { cp, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { cleanupProjects, runCli, userConfigFile } from '../helpers/project.js';
import { inVolume, leftoverContainers, offlineProject, removeVolume, requireParts } from '../helpers/services.js';
import { cleanupDirs, freePort, tmpDir, waitUntil } from '../helpers/registry.js';
import { generateCacheKey, startCacheServer, type CacheServer } from '../helpers/binary-cache.js';
import { WatchProcess } from '../helpers/watch.js';

const test = suite('binary cache (real nix, signed http cache)');
const VOL = (s: string) => `nixdocker-test-cache-${s}-${process.pid}`;
const VOLUMES = ['a', 'b', 'wrongkey', 'tampered', 'refused'].map(VOL);
/** Each project's environment: its user config (NIXDOCKER_USER_CONFIG) holds what lies outside the project. */
const envs = new Map<string, NodeJS.ProcessEnv>();
const envOf = (dir: string) => envs.get(dir) ?? { DOCKER_HOST: process.env.DOCKER_HOST };

interface BuildJson {
  reference: string;
  image: { digest: string };
  nix: { built: number; fetched: number; remote: number };
  upload: { ok: boolean; url: string; uploaded: number; bytes: number; message?: string } | null;
  result: { closure: Record<string, unknown>; built: string[]; fetched: string[] };
}

// The fixture with a package of its own, so no earlier run's registry image makes the daemon skip the build.
const NONCE = `${process.pid}${Date.now()}`;
const LOCAL_NIX = `{ pkgs, ... }: [ pkgs.greet (pkgs.writeScriptBin "shared-${NONCE}" "echo shared ${NONCE}") ]\n`;

/** `builder` goes into the project's config, `user` (the signing key, a file:// cache) into a user config of its own. */
async function project(volume: string, builder: Record<string, unknown>, user?: Record<string, unknown>): Promise<string> {
  const dir = await offlineProject({ volume, config: { builder }, files: { 'workdir/local.nix': LOCAL_NIX } });
  if (user) envs.set(dir, { DOCKER_HOST: process.env.DOCKER_HOST, NIXDOCKER_USER_CONFIG: await userConfigFile({ builder: user }) });
  return dir;
}

async function build(dir: string, extra: string[] = ['--force', '--load']): Promise<{ json: BuildJson; stderr: string }> {
  const r = await runCli(['-C', dir, 'build', '--json', ...extra], { env: envOf(dir) });
  assert.is(r.exitCode, 0, r.stderr);
  return { json: JSON.parse(r.stdout) as BuildJson, stderr: r.stderr };
}

async function builderCreate(dir: string): Promise<void> {
  const r = await runCli(['-C', dir, 'builder', 'create'], { env: envOf(dir) });
  assert.is(r.exitCode, 0, r.stderr);
}

/** Every file under dir, gzip blobs unpacked, as one buffer per file. */
async function filesUnder(dir: string): Promise<{ file: string; bytes: Buffer }[]> {
  const out: { file: string; bytes: Buffer }[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const file = path.join(e.parentPath, e.name);
    let bytes = await readFile(file);
    if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
    out.push({ file, bytes });
  }
  return out;
}

async function imageBytes(ref: string): Promise<Buffer> {
  const stream = await new Docker().getImage(ref).get();
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  let server: CacheServer;
  let key: { secretKeyFile: string; publicKey: string };
  let otherKey: { publicKey: string };
  let secretText: string;
  let secretRaw: Buffer;
  let dirA: string;
  let closure: string[];
  const logs: string[] = [];

  test.before(async () => {
    server = await startCacheServer();
    const keys = await tmpDir('nixdocker-keys-');
    key = await generateCacheKey(keys, 'cache-test-1');
    otherKey = await generateCacheKey(keys, 'cache-test-1-other');
    secretText = (await readFile(key.secretKeyFile, 'utf8')).trim();
    secretRaw = Buffer.from(secretText.split(':')[1]!, 'base64');
  });

  test.after(async () => {
    await server?.close();
    for (const v of VOLUMES) await removeVolume(v);
    await cleanupProjects();
    await cleanupDirs();
  });

  test('A: the daemon builds, signs and uploads the closure; status shows built, fetched and the upload', async () => {
    dirA = await project(VOL('a'), {}, { cache: { url: server.url, secretKeyFile: key.secretKeyFile } });
    await builderCreate(dirA);
    const w = new WatchProcess(dirA, { NIXDOCKER_USER_CONFIG: envOf(dirA).NIXDOCKER_USER_CONFIG });
    try {
      await w.waitFor((e) => typeof e.msg === 'string' && e.msg.startsWith('uploaded '), 180_000);
      const status = await waitUntil('the status file to show the upload', async () => {
        const s = JSON.parse(await runCli(['-C', dirA, 'status', '--json'], { env: envOf(dirA) }).then((r) => r.stdout));
        return Boolean(s.status?.lastUpload);
      }).then(() => runCli(['-C', dirA, 'status'], { env: envOf(dirA) }));
      assert.match(status.stdout, /nix +5 derivation\(s\) built, 0 path\(s\) fetched/);
      assert.match(status.stdout, new RegExp(`cache +uploaded 5 path\\(s\\), [0-9.]+ MiB to ${server.url.replace(/\./g, '\\.')}`));
    } finally {
      await w.stop();
      logs.push(w.stderr);
    }
    // Nix's own format: a signed narinfo per path of the closure.
    const narinfos = (await readdir(server.dir)).filter((f) => f.endsWith('.narinfo'));
    assert.is(narinfos.length, 5, narinfos.join(', '));
    for (const f of narinfos) assert.match(await readFile(path.join(server.dir, f), 'utf8'), /^Sig: cache-test-1:/m);
    assert.ok(server.requests.some((r) => /^PUT \/nar\/.+ 201$/.test(r)), 'NARs went up with PUT');
  });

  test('B: a fresh volume builds the same fixture with nothing built and every path fetched', async () => {
    const dirB = await project(VOL('b'), { substituters: [server.url], trustedPublicKeys: [key.publicKey] });
    await builderCreate(dirB);
    const { json, stderr } = await build(dirB);
    logs.push(stderr);
    closure = Object.keys(json.result.closure).sort();
    assert.is(closure.length, 5);
    assert.equal(json.result.built, []);
    assert.equal([...json.result.fetched].sort(), closure);
    assert.equal(json.nix, { built: 0, fetched: 5, remote: 0 });
    // The same store paths give the same image.
    const a = await build(dirA, ['--force', '--load']);
    logs.push(a.stderr);
    assert.is(a.json.image.digest, json.image.digest);
    assert.is(a.json.reference, json.reference);
    const text = await runCli(['-C', dirB, 'build', '--force', '--load'], { env: envOf(dirB) });
    assert.match(text.stdout, 'Nix built 0 derivation(s), fetched 0 path(s)'); // all in B's store now
  });

  test('a wrong public key: every substitute is refused and built locally, with a warning', async () => {
    const dir = await project(VOL('wrongkey'), { substituters: [server.url], trustedPublicKeys: [otherKey.publicKey] });
    await builderCreate(dir);
    const { json, stderr } = await build(dir);
    assert.equal(json.result.fetched, []);
    assert.is(json.nix.built, 5);
    assert.match(stderr, `5 substitute(s) from ${server.url} were refused: not signed by a key in builder.trustedPublicKeys`);
  });

  test('a tampered narinfo is refused and that path is built locally; the others are fetched', async () => {
    const copy = await tmpDir('nixdocker-tampered-');
    await cp(server.dir, copy, { recursive: true });
    const hello = closure.find((p) => p.endsWith('-hello'))!;
    const file = path.join(copy, `${path.basename(hello).slice(0, 32)}.narinfo`);
    const original = await readFile(file, 'utf8');
    const narSize = /^NarSize: (\d+)$/m.exec(original)![1]!;
    await writeFile(file, original.replace(`NarSize: ${narSize}`, `NarSize: ${Number(narSize) + 1}`));
    const tampered = await startCacheServer(copy);
    try {
      const dir = await project(VOL('tampered'), { substituters: [tampered.url], trustedPublicKeys: [key.publicKey] });
      await builderCreate(dir);
      const { json, stderr } = await build(dir);
      assert.equal(json.result.built.map((d) => d.replace(/^\/nix\/store\/[a-z0-9]{32}-/, '')), ['hello.drv']);
      assert.equal([...json.result.fetched].sort(), closure.filter((p) => p !== hello));
      assert.match(stderr, `1 substitute(s) from ${tampered.url} were refused`);
    } finally {
      await tampered.close();
    }
  });

  test('cache push uploads the current image on demand (file:// cache); a failed upload does not fail the build', async () => {
    const target = await tmpDir('nixdocker-filecache-');
    const env = envOf(dirA);
    const user = env.NIXDOCKER_USER_CONFIG!;
    await writeFile(user, JSON.stringify({ builder: { cache: { url: `file://${target}`, secretKeyFile: key.secretKeyFile } } }));
    const r = await runCli(['-C', dirA, 'cache', 'push'], { env });
    assert.is(r.exitCode, 0, r.stderr);
    logs.push(r.stdout, r.stderr);
    assert.match(r.stdout, `uploaded to file://${target}: 5 path(s)`);
    assert.is((await readdir(target)).filter((f) => f.endsWith('.narinfo')).length, 5);
    const again = await runCli(['-C', dirA, 'cache', 'push', '--json'], { env });
    assert.is(JSON.parse(again.stdout).uploaded, 0, 'nothing twice');

    await writeFile(user, JSON.stringify({ builder: { cache: { url: `http://127.0.0.1:${await freePort()}`, secretKeyFile: key.secretKeyFile } } }));
    const failed = await runCli(['-C', dirA, 'build', '--force', '--load'], { env });
    logs.push(failed.stdout, failed.stderr);
    assert.is(failed.exitCode, 0, failed.stderr);
    assert.match(failed.stdout, 'loaded into the engine');
    assert.match(failed.stdout, /upload to http:\/\/127\.0\.0\.1:\d+ FAILED \(the image is fine/);
    assert.match(failed.stderr, 'its upload to the binary cache failed');
  });

  test('a project config naming the signing key or a file:// cache outside the project is refused before any container starts', async () => {
    const target = path.join(await tmpDir('nixdocker-outside-'), 'cache');
    const requests = server.requests.length;
    for (const cache of [{ url: `file://${target}`, secretKeyFile: 'cache.secret' }, { url: server.url, secretKeyFile: key.secretKeyFile }]) {
      const dir = await project(VOL('refused'), { cache });
      for (const cmd of [['builder', 'create'], ['build', '--force', '--load'], ['cache', 'push']]) {
        const r = await runCli(['-C', dir, ...cmd], { env: envOf(dir) });
        logs.push(r.stdout, r.stderr);
        assert.is(r.exitCode, 1, `${cmd.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, `The setting "builder.cache" in .nixdockerrc.json names ${cache.url.startsWith('file:') ? target : key.secretKeyFile}, outside the project directory`);
        assert.match(r.stderr, 'fix: move "builder.cache" to your user config');
      }
    }
    assert.not.ok(existsSync(target), 'the file:// directory was never made');
    assert.equal(await leftoverContainers(VOL('refused')), []);
    assert.ok(await new Docker().getVolume(VOL('refused')).inspect().then(() => false, () => true), 'no store volume was made');
    assert.is(server.requests.length, requests, 'nothing reached the cache');
  });

  test("the secret key's bytes appear in no log, status or cache file, image or store volume", async () => {
    assert.ok(logs.join('').length > 10_000, 'debug logs were collected');
    const needles = [secretText, secretText.split(':')[1]!];
    for (const n of needles) assert.not.ok(logs.join('\n').includes(n), 'a log holds the secret key');
    for (const { file, bytes } of await filesUnder(path.join(dirA, '.nixdocker'))) {
      for (const n of [...needles.map((x) => Buffer.from(x)), secretRaw]) assert.is(bytes.indexOf(n), -1, `${file} holds the secret key`);
    }
    const ref = JSON.parse((await runCli(['-C', dirA, 'hash', '--json'], { env: envOf(dirA) })).stdout).image as string;
    const image = await imageBytes(ref);
    assert.ok(image.length > 1_000_000);
    for (const n of [...needles.map((x) => Buffer.from(x)), secretRaw]) assert.is(image.indexOf(n), -1, 'the image holds the secret key');
    for (const v of [VOL('a'), VOL('b')]) {
      const grep = await inVolume(v, ['grep', '-rlF', needles[1]!, '/nix']);
      assert.is(grep.exitCode, 1, `volume ${v}: ${grep.output}`);
    }
  });
}

test.run();
