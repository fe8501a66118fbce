import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { chmod, chown, link, lutimes, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
import { writeLayerBlob } from '../../src/image/blob.js';
import { FsStoreReader, normalizeTar } from '../../src/image/store-reader.js';
import { comparePaths, tarBuffer, tarChunks, type TarEntryIn } from '../../src/image/tar.js';

const test = suite('image-tar');
const made: string[] = [];
test.after(async () => {
  await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function tmp(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'nixdocker-tar-'));
  made.push(d);
  return d;
}

const FOO = '0123456789abcdfghijklmnpqrsvwxyz-foo';
const BAR = 'zyxwvsrqpnmlkjihgfdcba9876543210-bar';
const LONG = 'd'.repeat(120);

/**
 * A fake store with two store paths. `variant` changes everything a layer must
 * not depend on: creation order, mtimes, owners and permission bits.
 */
async function fakeStore(variant: 0 | 1): Promise<string> {
  const store = path.join(await tmp(), 'store');
  const foo = path.join(store, FOO);
  const files: [string, string, boolean][] = [
    ['bin/foo', '#!/bin/sh\necho foo\n', true],
    ['lib/libfoo.so', 'ELF'.repeat(400), false],
    ['a/x', 'x', false],
    ['a-b', 'ab', false],
    [`share/${LONG}/${'f'.repeat(90)}`, 'deep', false],
  ];
  if (variant === 1) files.reverse();
  for (const [rel, content, exec] of files) {
    await mkdir(path.dirname(path.join(foo, rel)), { recursive: true });
    await writeFile(path.join(foo, rel), content);
    await chmod(path.join(foo, rel), exec ? (variant ? 0o700 : 0o755) : variant ? 0o600 : 0o644);
  }
  await link(path.join(foo, 'bin/foo'), path.join(foo, 'bin/foo-hardlink'));
  await symlink('foo', path.join(foo, 'bin/foo-link'));
  await symlink(`/nix/store/${BAR}/${'t'.repeat(100)}`, path.join(foo, 'share/long-link'));
  await writeFile(path.join(store, BAR), 'a store path that is a single file\n');
  if (variant === 1) {
    const t = new Date('2021-05-05T05:05:05Z');
    for (const rel of ['', 'bin', 'bin/foo', 'a', 'a/x', 'lib', 'share']) {
      await utimes(path.join(foo, rel), t, t);
      await chown(path.join(foo, rel), 1234, 5678);
    }
    await lutimes(path.join(foo, 'bin/foo-link'), t, t);
    await chmod(path.join(foo, 'lib'), 0o700);
  }
  return store;
}

async function layerOf(reader: FsStoreReader, paths: string[]): Promise<Buffer> {
  return tarBuffer(reader.read(paths));
}

const PATHS = [`/nix/store/${FOO}`, `/nix/store/${BAR}`];

test('the same tree gives byte-identical tars and digests, whatever its mtimes, owners, modes and creation order', async () => {
  const [s0, s1] = [await fakeStore(0), await fakeStore(1)];
  const a = await layerOf(new FsStoreReader({ storeDir: s0 }), PATHS);
  const b = await layerOf(new FsStoreReader({ storeDir: s1 }), [...PATHS].reverse());
  assert.ok(a.equals(b), 'tars differ');
  const cache = await tmp();
  const ba = await writeLayerBlob(tarChunks(new FsStoreReader({ storeDir: s0 }).read(PATHS)), cache);
  const bb = await writeLayerBlob(tarChunks(new FsStoreReader({ storeDir: s1 }).read(PATHS)), await tmp());
  assert.equal({ ...ba, file: '' }, { ...bb, file: '' });
  assert.is(ba.file, path.join(cache, 'blobs', 'sha256', ba.digest.slice(7)));
  const blob = await readFile(ba.file);
  assert.is(blob.length, ba.size);
  assert.ok(gunzipSync(blob).equals(a), 'the blob is the gzip of the tar');
  // gzip header: no mtime, no file name, OS byte "Unix".
  assert.equal([...blob.subarray(0, 10)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
  assert.equal(await tmpFiles(path.join(cache, 'tmp')), [], 'no temporary file left');
});

test('GNU tar reads the normalised metadata: sorted, root-owned, mtime 1, Nix modes, hard links as files', async () => {
  const store = await fakeStore(1);
  const dir = await tmp();
  await writeFile(path.join(dir, 'l.tar'), await layerOf(new FsStoreReader({ storeDir: store }), PATHS));
  const { stdout } = await execa('tar', ['--numeric-owner', '--full-time', '-tvf', path.join(dir, 'l.tar')], { env: { TZ: 'UTC' } });
  const lines = stdout.split('\n').map((l) => l.replace(/\s+/g, ' '));
  const f = `nix/store/${FOO}`;
  const expected = [
    `dr-xr-xr-x 0/0 0 1970-01-01 00:00:01 ${f}/`,
    `dr-xr-xr-x 0/0 0 1970-01-01 00:00:01 ${f}/a/`,
    `-r--r--r-- 0/0 1 1970-01-01 00:00:01 ${f}/a/x`,
    `-r--r--r-- 0/0 2 1970-01-01 00:00:01 ${f}/a-b`,
    `dr-xr-xr-x 0/0 0 1970-01-01 00:00:01 ${f}/bin/`,
    `-r-xr-xr-x 0/0 19 1970-01-01 00:00:01 ${f}/bin/foo`,
    `-r-xr-xr-x 0/0 19 1970-01-01 00:00:01 ${f}/bin/foo-hardlink`,
    `lrwxrwxrwx 0/0 0 1970-01-01 00:00:01 ${f}/bin/foo-link -> foo`,
    `dr-xr-xr-x 0/0 0 1970-01-01 00:00:01 ${f}/lib/`,
    `-r--r--r-- 0/0 1200 1970-01-01 00:00:01 ${f}/lib/libfoo.so`,
    `dr-xr-xr-x 0/0 0 1970-01-01 00:00:01 ${f}/share/`,
    `dr-xr-xr-x 0/0 0 1970-01-01 00:00:01 ${f}/share/${LONG}/`,
    `-r--r--r-- 0/0 4 1970-01-01 00:00:01 ${f}/share/${LONG}/${'f'.repeat(90)}`,
    `lrwxrwxrwx 0/0 0 1970-01-01 00:00:01 ${f}/share/long-link -> /nix/store/${BAR}/${'t'.repeat(100)}`,
    `-r--r--r-- 0/0 35 1970-01-01 00:00:01 nix/store/${BAR}`,
  ];
  assert.equal(lines, expected);
  // Owner names are empty (GNU tar shows the numbers only) and no PAX header carries host data.
  const raw = await readFile(path.join(dir, 'l.tar'));
  assert.not.match(raw.toString('latin1'), /atime|ctime|PaxHeaders\.\d/);
  const { stdout: names } = await execa('tar', ['-tvf', path.join(dir, 'l.tar')]);
  assert.not.match(names, /root|[a-z]+\/[a-z]+ /);
});

test('normalizeTar: any tar of the same tree (unsorted, hard links, PAX times, owners) gives the same entries as the filesystem', async () => {
  const store = await fakeStore(0);
  const fromFs = await layerOf(new FsStoreReader({ storeDir: store }), [`/nix/store/${FOO}`]);
  for (const format of ['gnu', 'posix']) {
    const spoolDir = await tmp(); // before execa: it drains a stdout nobody reads by the next tick
    // Like the engine's archive endpoint: names relative to /nix/store, here in readdir order.
    const tar = execa('tar', ['-C', store, `--format=${format}`, '--owner=alice', '--group=staff', '-cf', '-', FOO], { buffer: false });
    const entries = normalizeTar(tar.stdout!, { parent: '/nix/store', within: `/nix/store/${FOO}`, spoolDir });
    const fromTar = await tarBuffer(entries);
    await tar;
    assert.ok(fromTar.equals(fromFs), `${format}: normalised tar differs from the filesystem's`);
  }
});

test('normalizeTar adds missing parents, rejects entries outside the store path, and removes its spool', async () => {
  const store = await fakeStore(0);
  const spool = await tmp();
  // Only the file: parents must be synthesised.
  const only = execa('tar', ['-C', store, '-cf', '-', `${FOO}/bin/foo`], { buffer: false });
  const got: string[] = [];
  for await (const e of normalizeTar(only.stdout!, { parent: '/nix/store', within: `/nix/store/${FOO}`, spoolDir: spool })) got.push(`${e.type} ${e.path}`);
  await only;
  assert.equal(got, [`directory /nix/store/${FOO}`, `directory /nix/store/${FOO}/bin`, `file /nix/store/${FOO}/bin/foo`]);
  assert.equal(await readdir(spool), []);

  const other = execa('tar', ['-C', store, '-cf', '-', BAR], { buffer: false });
  try {
    for await (const _ of normalizeTar(other.stdout!, { parent: '/nix/store', within: `/nix/store/${FOO}`, spoolDir: spool })) {
      // consume
    }
    assert.unreachable('should reject');
  } catch (err) {
    assert.match(String(err), 'outside');
  }
  await other.catch(() => undefined);
  assert.equal(await readdir(spool), []);
});

test('the writer refuses out-of-order or duplicate entries and content of the wrong size', async () => {
  const dir = (p: string): TarEntryIn => ({ type: 'directory', path: p });
  const file = (p: string, content: string, size = content.length): TarEntryIn => ({ type: 'file', path: p, size, executable: false, open: () => [Buffer.from(content)] });
  await assert.not.throws(() => tarBuffer([dir('/a'), file('/a/x', 'x'), file('/a-b', 'y')]));
  for (const bad of [
    [file('/a-b', 'y'), dir('/a')],
    [dir('/a'), dir('/a')],
    [file('/a', 'abc', 2)],
    [file('/a', 'abc', 4)],
    [dir('a')],
    [dir('/a/../b')],
  ]) {
    try {
      await tarBuffer(bad);
      assert.unreachable(`accepted ${bad.map((e) => e.path).join(' ')}`);
    } catch (err) {
      assert.instance(err, Error);
      assert.not.match((err as Error).message, 'accepted');
    }
  }
});

test('comparePaths: a directory right before its content, component by component', () => {
  const sorted = ['/a-b', '/a/x', '/a', '/a/x/y', '/a.c', '/b', '/a0'].sort(comparePaths);
  assert.equal(sorted, ['/a', '/a/x', '/a/x/y', '/a-b', '/a.c', '/a0', '/b']);
});

test('a large layer streams through without being held in memory', async () => {
  const store = path.join(await tmp(), 'store');
  const p = path.join(store, FOO);
  await mkdir(p, { recursive: true });
  const chunk = Buffer.alloc(1 << 20); // zeros: gzip is quick, and a buffered layer would still show
  const big = path.join(p, 'big');
  for (let i = 0; i < 160; i++) await writeFile(big, chunk, { flag: 'a' });
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  const blob = await writeLayerBlob(tarChunks(new FsStoreReader({ storeDir: store }).read([`/nix/store/${FOO}`])), await tmp());
  clearInterval(timer);
  assert.ok(peak - before < 100 * 1024 * 1024, `rss grew by ${Math.round((peak - before) / 1048576)} MiB for a 160 MiB layer`);
  // The diffID matches an independent hash of the decompressed blob.
  const { stdout } = await execa('sh', ['-c', 'gzip -dc "$1" | sha256sum', 'sh', blob.file]);
  assert.is(`sha256:${stdout.split(' ')[0]}`, blob.diffId);
});

/** Files (not folders: each process has its own under tmp/) left in a cache's tmp/. */
async function tmpFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => !e.isDirectory()).map((e) => e.name);
}

test.run();
