import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import type { BuildResult, BuiltPackage, StorePathInfo } from '../../src/nix/types.js';
import { isAbortError } from '../../src/errors.js';
import { LAYOUT_DATE, VERSION } from '../../src/version.js';
import { assembleImage, type AssembledImage } from '../../src/image/assemble.js';
import { dockerArchiveStream } from '../../src/image/docker-archive.js';
import { canonicalJson, MEDIA_TYPE, sha256Digest } from '../../src/image/oci.js';
import { FsStoreReader, type StoreReader } from '../../src/image/store-reader.js';
import type { ImageSettings } from '../../src/config/types.js';

const test = suite('image-assemble');
const made: string[] = [];
test.after(async () => {
  await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function tmp(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'nixdocker-assemble-'));
  made.push(d);
  return d;
}

const H = (c: string) => c.repeat(32);
const BUSYBOX = `/nix/store/${H('a')}-busybox-1.36`;
const LIBC = `/nix/store/${H('b')}-libc-2.40`;
const HELLO = `/nix/store/${H('c')}-hello-2.12`;
const COREUTILS = `/nix/store/${H('d')}-coreutils-9.5`;

interface FakePkg {
  path: string;
  /** relative path → content (a string), or `-> target` for a symlink; `*` suffix on the key makes it executable. */
  files: Record<string, string>;
  refs?: string[];
}

const PKGS: FakePkg[] = [
  { path: LIBC, files: { 'lib/libc.so': 'libc'.repeat(5000) } },
  { path: BUSYBOX, files: { 'bin/busybox*': '#!busybox\n', 'bin/sh': '-> busybox', 'bin/ls': '-> busybox', 'bin/env': '-> busybox', 'bin/README': 'not executable' }, refs: [LIBC] },
  { path: HELLO, files: { 'bin/hello*': '#!/bin/sh\necho hello\n', 'bin/ls*': 'shadowed by busybox', 'share/doc/hello': 'doc' }, refs: [LIBC, BUSYBOX] },
  { path: COREUTILS, files: { 'bin/env*': 'coreutils env', 'bin/cp*': 'cp' }, refs: [LIBC] },
];

async function fakeStore(pkgs: FakePkg[] = PKGS): Promise<string> {
  const store = path.join(await tmp(), 'store');
  for (const pkg of pkgs) {
    const root = path.join(store, path.basename(pkg.path));
    for (const [key, content] of Object.entries(pkg.files)) {
      const exec = key.endsWith('*');
      const file = path.join(root, exec ? key.slice(0, -1) : key);
      await mkdir(path.dirname(file), { recursive: true });
      if (content.startsWith('-> ')) await symlink(content.slice(3), file);
      else {
        await writeFile(file, content);
        await chmod(file, exec ? 0o555 : 0o444);
      }
    }
  }
  return store;
}

function buildResult(pkgs: FakePkg[], base: string[], user: string[], image: BuildResult['image'] = {}): BuildResult {
  const closure: Record<string, StorePathInfo> = {};
  for (const p of pkgs) closure[p.path] = { path: p.path, narSize: JSON.stringify(p.files).length * 100, references: [p.path, ...(p.refs ?? [])] };
  const pkg = (p: string): BuiltPackage => ({ name: p.replace(/^.*?-/, '').replace(/-[0-9.]+$/, ''), drvPath: `${p}.drv`, outPath: p, source: 'env/default.nix' });
  return { name: 'n'.repeat(32), tag: 't'.repeat(32), system: 'x86_64-linux', base: base.map(pkg), user: user.map(pkg), closure, image, phases: {}, built: [] };
}

const SETTINGS: ImageSettings = { maxLayers: 10 };

/** A reader that counts what it is asked to read. */
function counting(inner: StoreReader): StoreReader & { reads: number } {
  const r = {
    reads: 0,
    read(paths: readonly string[], signal?: AbortSignal) {
      r.reads++;
      return inner.read(paths, signal);
    },
    list: (dir: string, signal?: AbortSignal) => inner.list(dir, signal),
  };
  return r;
}

interface Member {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  linkname: string | null;
  body: Buffer;
}

async function members(tar: Buffer): Promise<Member[]> {
  const extract = tarStream.extract();
  const out: Member[] = [];
  const done = (async () => {
    for await (const e of extract) {
      const parts: Buffer[] = [];
      for await (const c of e) parts.push(c as Buffer);
      const h = e.header;
      out.push({ name: h.name, type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, linkname: h.linkname ?? null, body: Buffer.concat(parts) });
    }
  })();
  extract.end(tar);
  await done;
  return out;
}

async function assemble(store: string, cacheDir: string, result = buildResult(PKGS, [BUSYBOX], [HELLO, COREUTILS]), settings = SETTINGS, reader: StoreReader = new FsStoreReader({ storeDir: store })): Promise<AssembledImage> {
  return assembleImage({ result, settings, reader, cacheDir });
}

test('manifest and config: canonical OCI JSON whose digests, sizes and diff_ids match the layers', async () => {
  const store = await fakeStore();
  const img = await assemble(store, await tmp());
  assert.equal(img.layers.map((l) => l.kind).slice(-1), ['customisation']);
  assert.match(img.layers.map((l) => l.kind).join(' '), /^(base )+(user )+customisation$/);
  const manifest = JSON.parse(img.manifest.toString());
  assert.is(img.manifest.toString(), canonicalJson(manifest));
  assert.is(img.manifestDigest, sha256Digest(img.manifest));
  assert.is(manifest.schemaVersion, 2);
  assert.is(manifest.mediaType, MEDIA_TYPE.manifest);
  assert.equal(manifest.config, { digest: img.configDigest, mediaType: MEDIA_TYPE.config, size: img.config.length });
  assert.equal(manifest.layers, img.layers.map((l) => ({ digest: l.digest, mediaType: MEDIA_TYPE.layer, size: l.size })));

  const config = JSON.parse(img.config.toString());
  assert.is(img.config.toString(), canonicalJson(config));
  assert.is(img.configDigest, sha256Digest(img.config));
  assert.equal(config.rootfs, { diff_ids: img.layers.map((l) => l.diffId), type: 'layers' });
  assert.is(config.architecture, 'amd64');
  assert.is(config.os, 'linux');
  assert.is(config.created, LAYOUT_DATE, 'a fixed date tied to the layout version, not 1970');
  assert.ok(Date.parse(config.created) > Date.parse('2020-01-01T00:00:00Z'));
  assert.is(config.history, undefined);
  assert.equal(config.config, {
    Cmd: ['/bin/sh'],
    Env: ['PATH=/bin:/usr/bin'],
    Labels: { 'org.nixdocker.name': 'n'.repeat(32), 'org.nixdocker.tag': 't'.repeat(32), 'org.nixdocker.version': VERSION },
    WorkingDir: '/work',
  });
  for (const l of img.layers) {
    const blob = await readFile(l.file);
    assert.is(blob.length, l.size);
    assert.is(sha256Digest(blob), l.digest);
    assert.is(sha256Digest(gunzipSync(blob)), l.diffId);
  }
  // The base holds busybox and libc, the user layers only what the user adds.
  const base = img.layers.filter((l) => l.kind === 'base').flatMap((l) => l.paths).sort();
  const user = img.layers.filter((l) => l.kind === 'user').flatMap((l) => l.paths).sort();
  assert.equal(base, [BUSYBOX, LIBC].sort());
  assert.equal(user, [HELLO, COREUTILS].sort());
});

test('settings: defaults < image.nix < config, env merged per variable', async () => {
  const store = await fakeStore();
  const result = buildResult(PKGS, [BUSYBOX], [HELLO], { cmd: ['hello'], env: { A: 'nix', B: 'nix' }, workingDir: '/srv/app', user: 'nixdocker' });
  const img = await assemble(store, await tmp(), result, { maxLayers: 10, env: { B: 'config', PATH: '/custom' }, user: 'root' });
  const c = JSON.parse(img.config.toString()).config;
  assert.equal(c.Cmd, ['hello']);
  assert.equal(c.Env, ['A=nix', 'B=config', 'PATH=/custom']);
  assert.is(c.WorkingDir, '/srv/app');
  assert.is(c.User, 'root');
  const custom = await members(gunzipSync(await readFile(img.layers.at(-1)!.file)));
  const byName = new Map(custom.map((m) => [m.name, m]));
  assert.equal([byName.get('srv/')?.uid, byName.get('srv/app/')?.uid], [0, 1000]);
});

test('reproducible, and cached: a second assembly reads and hashes nothing; a deleted blob is re-created', async () => {
  const store = await fakeStore();
  const a = await assemble(store, await tmp());
  const cacheDir = await tmp();
  const reader = counting(new FsStoreReader({ storeDir: store }));
  const b = await assemble(store, cacheDir, undefined, undefined, reader);
  assert.is(b.manifestDigest, a.manifestDigest, 'same image from another cache');
  assert.equal(b.stats, { layersBuilt: b.layers.length, layersCached: 0, bytes: b.layers.reduce((s, l) => s + l.size, 0) });
  const storeReads = reader.reads;
  assert.is(storeReads, b.layers.length - 1);

  const c = await assemble(store, cacheDir, undefined, undefined, reader);
  assert.is(c.manifestDigest, a.manifestDigest);
  assert.equal(c.stats, { layersBuilt: 0, layersCached: c.layers.length, bytes: 0 });
  assert.is(reader.reads, storeReads, 'no store layer read again');

  const victim = c.layers[0]!;
  await rm(victim.file);
  const d = await assemble(store, cacheDir, undefined, undefined, reader);
  assert.is(d.manifestDigest, a.manifestDigest);
  assert.is(d.stats.layersBuilt, 1);
  assert.is((await readFile(victim.file)).length, victim.size);
  assert.equal(await tmpFiles(path.join(cacheDir, 'tmp')), []);
});

test('created: SOURCE_DATE_EPOCH when set, the same digest on every run with it; a bad value names the variable', async () => {
  const store = await fakeStore();
  const saved = process.env.SOURCE_DATE_EPOCH;
  try {
    process.env.SOURCE_DATE_EPOCH = '1700000000';
    const a = await assemble(store, await tmp());
    const b = await assemble(store, await tmp());
    assert.is(JSON.parse(a.config.toString()).created, '2023-11-14T22:13:20Z');
    assert.is(a.manifestDigest, b.manifestDigest);
    delete process.env.SOURCE_DATE_EPOCH;
    const c = await assemble(store, await tmp());
    assert.is(JSON.parse(c.config.toString()).created, LAYOUT_DATE);
    assert.is.not(c.manifestDigest, a.manifestDigest, 'created is part of the image');
    assert.equal(c.layers.map((l) => l.digest), a.layers.map((l) => l.digest), 'layers do not depend on it');
    process.env.SOURCE_DATE_EPOCH = 'yesterday';
    try {
      await assemble(store, await tmp());
      assert.unreachable('a bad SOURCE_DATE_EPOCH is refused');
    } catch (err) {
      assert.match((err as Error).message, /SOURCE_DATE_EPOCH="yesterday" is not a whole number/);
    }
  } finally {
    if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = saved;
  }
});

test('customisation layer: bin links (base first, coreutils env), users, /tmp, working directory', async () => {
  const store = await fakeStore();
  const img = await assemble(store, await tmp());
  const m = await members(gunzipSync(await readFile(img.layers.at(-1)!.file)));
  const names = m.map((x) => x.name);
  assert.equal(names, [...names].sort((a, b) => Buffer.compare(Buffer.from(a.replaceAll('/', '\0')), Buffer.from(b.replaceAll('/', '\0')))), 'sorted');
  const get = (n: string) => m.find((x) => x.name === n);
  for (const d of ['bin', 'usr/bin']) {
    assert.is(get(`${d}/sh`)?.linkname, `${BUSYBOX}/bin/sh`);
    assert.is(get(`${d}/busybox`)?.linkname, `${BUSYBOX}/bin/busybox`);
    assert.is(get(`${d}/ls`)?.linkname, `${BUSYBOX}/bin/ls`, 'the base package wins a conflict');
    assert.is(get(`${d}/hello`)?.linkname, `${HELLO}/bin/hello`);
    assert.is(get(`${d}/env`)?.linkname, `${COREUTILS}/bin/env`, "coreutils' env wins");
    assert.is(get(`${d}/README`), undefined, 'not executable');
    assert.is(get(`${d}/hello`)?.mode, 0o777);
  }
  assert.is(get('tmp/')?.mode, 0o1777);
  assert.equal([get('home/nixdocker/')?.uid, get('home/nixdocker/')?.gid, get('home/nixdocker/')?.mode], [1000, 1000, 0o755]);
  assert.equal([get('work/')?.uid, get('work/')?.mode], [1000, 0o755]);
  assert.equal([get('nix/store/')?.mode, get('nix/store/')?.uid], [0o555, 0]);
  assert.match(get('etc/passwd')!.body.toString(), /^root:x:0:0:root:\/root:\/bin\/sh\nnixdocker:x:1000:1000:nixdocker:\/home\/nixdocker:\/bin\/sh\n/);
  assert.match(get('etc/group')!.body.toString(), /^root:x:0:\nnixdocker:x:1000:\n/);
  assert.is(get('etc/passwd')?.mode, 0o444);

  // Without coreutils, env follows the first-wins rule.
  const plain = await assemble(store, await tmp(), buildResult(PKGS, [BUSYBOX], [HELLO]));
  const p = await members(gunzipSync(await readFile(plain.layers.at(-1)!.file)));
  assert.is(p.find((x) => x.name === 'usr/bin/env')?.linkname, `${BUSYBOX}/bin/env`);
  // Without any env, there is no link.
  const none = await assemble(store, await tmp(), buildResult(PKGS, [LIBC], [HELLO]));
  const n = await members(gunzipSync(await readFile(none.layers.at(-1)!.file)));
  assert.is(n.find((x) => x.name.endsWith('bin/env')), undefined);
});

test('docker-archive: manifest.json, config and layer blobs by digest', async () => {
  const store = await fakeStore();
  const img = await assemble(store, await tmp());
  const parts: Buffer[] = [];
  for await (const c of dockerArchiveStream(img, ['localhost/x:y'])) parts.push(c as Buffer);
  const m = await members(Buffer.concat(parts));
  const files = new Map(m.filter((x) => x.type === 'file').map((x) => [x.name, x.body]));
  const manifest = JSON.parse(files.get('manifest.json')!.toString());
  const hex = (d: string) => d.slice(7);
  assert.equal(manifest, [{ Config: `blobs/sha256/${hex(img.configDigest)}`, RepoTags: ['localhost/x:y'], Layers: img.layers.map((l) => `blobs/sha256/${hex(l.digest)}`) }]);
  assert.ok(files.get(manifest[0].Config)!.equals(img.config));
  for (const l of img.layers) assert.ok(files.get(`blobs/sha256/${hex(l.digest)}`)!.equals(await readFile(l.file)));
});

test('an aborted assembly rejects with an AbortError and leaves no temporary file', async () => {
  const store = await fakeStore();
  const cacheDir = await tmp();
  const ctl = new AbortController();
  ctl.abort();
  try {
    await assembleImage({ result: buildResult(PKGS, [BUSYBOX], [HELLO]), settings: SETTINGS, reader: new FsStoreReader({ storeDir: store }), cacheDir, signal: ctl.signal });
    assert.unreachable('should reject');
  } catch (err) {
    assert.ok(isAbortError(err), String(err));
  }
  const left = await tmpFiles(path.join(cacheDir, 'tmp'));
  assert.equal(left, []);
});

/** Files (not folders: each process has its own under tmp/) left in a cache's tmp/. */
async function tmpFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => !e.isDirectory()).map((e) => e.name);
}

test.run();
