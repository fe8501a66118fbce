import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { cacheStatus, pruneBlobs, pruneCache } from '../../src/pipeline/disk-cache.js';

const test = suite('disk-cache');
let dir: string;

const hex = (i: number) => String(i).padStart(64, '0');

/** Blob i of `size` bytes, last used `age` seconds ago. */
async function blob(i: number, size: number, age: number): Promise<void> {
  const file = path.join(dir, 'blobs', 'sha256', hex(i));
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, Buffer.alloc(size));
  const t = new Date(Date.now() - age * 1000);
  await utimes(file, t, t);
}

async function result(name: string, tag: string, age: number): Promise<void> {
  const file = path.join(dir, 'results', name, `${tag}.json`);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, '{}');
  const t = new Date(Date.now() - age * 1000);
  await utimes(file, t, t);
}

test.before.each(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nixdocker-disk-cache-'));
});
test.after.each(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('blobs over the cap go least recently used first; the current image keeps its blobs, even the oldest', async () => {
  await blob(1, 1000, 500); // oldest, but in the current image
  await blob(2, 1000, 400);
  await blob(3, 1000, 300);
  await blob(4, 1000, 200);
  await blob(5, 1000, 100);
  const r = await pruneCache(dir, { digests: [`sha256:${hex(1)}`, `sha256:${hex(5)}`], imageBytes: 2000 }, { maxBytes: 3000, keepResults: 10 });
  assert.equal((await readdir(path.join(dir, 'blobs', 'sha256'))).sort(), [hex(1), hex(4), hex(5)]);
  assert.is(r.blobsRemoved, 2);
  assert.is(r.blobBytes, 3000);
  // Used now: the current image's blobs are the most recent in LRU order.
  const s = await cacheStatus(dir);
  assert.is(s.blobs.count, 3);
  assert.ok(Date.parse(s.blobs.newest!) > Date.now() - 60_000);
});

test('the whole directory fits the cap: layer records and results count against it too', async () => {
  for (let i = 1; i <= 3; i++) await blob(i, 1000, 100 * (4 - i));
  await mkdir(path.join(dir, 'layers'), { recursive: true });
  await writeFile(path.join(dir, 'layers', 'x.json'), Buffer.alloc(1500));
  const r = await pruneCache(dir, { digests: [], imageBytes: 0 }, { maxBytes: 4000, keepResults: 10 });
  assert.is(r.blobsRemoved, 1);
  assert.equal((await readdir(path.join(dir, 'blobs', 'sha256'))).sort(), [hex(2), hex(3)]);
  assert.ok((await cacheStatus(dir)).totalBytes <= 4000);
});

test('before layers are written, room is made for them: the bytes to come count against the cap', async () => {
  for (let i = 1; i <= 5; i++) await blob(i, 1000, 100 * (6 - i));
  const r = await pruneBlobs(dir, { digests: [`sha256:${hex(1)}`], imageBytes: 3000 }, { maxBytes: 5000 }, 2000);
  assert.is(r.blobsRemoved, 2);
  // The oldest stays (the image being assembled uses it); the next two oldest go.
  assert.equal((await readdir(path.join(dir, 'blobs', 'sha256'))).sort(), [hex(1), hex(4), hex(5)]);
});

test('the automatic cap is the larger of 2 GiB and twice the current image', async () => {
  await blob(1, 100, 10);
  const small = await pruneCache(dir, { digests: [], imageBytes: 10 }, { maxBytes: null, keepResults: 10 });
  assert.is(small.cap, 2 * 1024 ** 3);
  const big = await pruneCache(dir, { digests: [], imageBytes: 3 * 1024 ** 3 }, { maxBytes: null, keepResults: 10 });
  assert.is(big.cap, 6 * 1024 ** 3);
  assert.is(big.blobsRemoved, 0);
});

test('results: the newest N are kept, and the current identity whatever its age', async () => {
  for (let i = 0; i < 6; i++) await result('envA', `t${i}`, 100 - i * 10);
  await result('envB', 'old', 1000);
  const r = await pruneCache(dir, { digests: [], imageBytes: 0, result: { name: 'envB', tag: 'old' } }, { maxBytes: null, keepResults: 2 });
  assert.is(r.resultsRemoved, 4);
  assert.equal((await readdir(path.join(dir, 'results', 'envA'))).sort(), ['t4.json', 't5.json']);
  assert.equal(await readdir(path.join(dir, 'results', 'envB')), ['old.json']);
});

test('an empty or missing cache directory is fine', async () => {
  const r = await pruneCache(path.join(dir, 'none'), { digests: [], imageBytes: 0 }, { maxBytes: 0, keepResults: 0 });
  assert.is(r.blobsRemoved, 0);
  const s = await cacheStatus(path.join(dir, 'none'));
  assert.is(s.totalBytes, 0);
  assert.is(s.blobs.oldest, null);
});

test.run();
