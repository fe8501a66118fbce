import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { ContainerStoreReader } from '../../src/image/container-store-reader.js';
import { writeLayerBlob } from '../../src/image/blob.js';
import { tarChunks } from '../../src/image/tar.js';
import { BUILDER_IMAGE, requireParts } from '../helpers/services.js';

const test = suite('container store reader (podman, test builder image)');
const VOLUME = `nixdocker-test-reader-${process.pid}`;
const docker = new Docker();
let container: Docker.Container;
let dir: string;

/** Fake store paths with what real ones hold: nested dirs, executables, symlinks, hard links, long names, empty dirs. */
const MAKE = `set -e
mkdir -p /nix/store && cd /nix/store
for i in $(seq 1 40); do
  p=aaaa$(printf %04d $i)zzzzzzzzzzzzzzzzzzzzzzzzzzzz-pkg-$i
  mkdir -p $p/bin $p/share/empty $p/lib/a/b/c
  printf 'echo %s\\n' $i > $p/bin/run-$i; chmod 555 $p/bin/run-$i
  head -c $((i * 3000)) /dev/urandom > $p/lib/a/b/c/data
  ln $p/lib/a/b/c/data $p/lib/hardlinked
  ln -s ../lib/a/b/c/data $p/bin/link
  long=$p/share/$(printf 'x%.0s' $(seq 1 120))
  mkdir -p $long; echo long > $long/$(printf 'y%.0s' $(seq 1 90))
  printf B > $p/share/B; printf a > $p/share/a; printf dot > $p/share/.hidden; printf z > $p/share/a-b
  chmod -R a-w $p
done
mkdir -p single-file-dir; printf 'just a file' > ffff0000zzzzzzzzzzzzzzzzzzzzzzzzzzzz-plain-file
mkdir -p eeee0001zzzzzzzzzzzzzzzzzzzzzzzzzzzz-linked eeee0002zzzzzzzzzzzzzzzzzzzzzzzzzzzz-outside
ln -s /nix/store/aaaa0001zzzzzzzzzzzzzzzzzzzzzzzzzzzz-pkg-1/bin eeee0001zzzzzzzzzzzzzzzzzzzzzzzzzzzz-linked/bin
ln -s /usr/bin eeee0002zzzzzzzzzzzzzzzzzzzzzzzzzzzz-outside/bin
`;

const paths = (n: number) => Array.from({ length: n }, (_, i) => `/nix/store/aaaa${String(i + 1).padStart(4, '0')}${'z'.repeat(28)}-pkg-${i + 1}`);

async function layerOf(reader: ContainerStoreReader, storePaths: string[]) {
  return writeLayerBlob(tarChunks(reader.read(storePaths)), dir);
}

if (await requireParts(test, ['engine', 'builder-image'])) {
  test.before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'nixdocker-reader-'));
    await docker.createVolume({ Name: VOLUME });
    container = await docker.createContainer({
      Image: BUILDER_IMAGE,
      Cmd: ['sh', '-c', 'while :; do sleep 3600; done'],
      HostConfig: { Mounts: [{ Type: 'volume', Source: VOLUME, Target: '/nix' }], Init: true },
    });
    await container.start();
    const exec = await container.exec({ Cmd: ['bash', '-c', MAKE], AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({ hijack: true, stdin: false });
    stream.resume();
    await new Promise((resolve) => stream.on('end', resolve));
    assert.is((await exec.inspect()).ExitCode, 0);
  });
  test.after(async () => {
    await container?.remove({ force: true }).catch(() => {});
    await docker.getVolume(VOLUME).remove().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });

  test('one streamed exec gives the same layer bytes as one archive request per path', async () => {
    const want = [...paths(40), '/nix/store/ffff0000zzzzzzzzzzzzzzzzzzzzzzzzzzzz-plain-file'];
    const streamed = await layerOf(new ContainerStoreReader(container, dir), want);
    const perPath = await layerOf(new ContainerStoreReader(container, dir, { exec: false }), want);
    assert.is(streamed.diffId, perPath.diffId);
    assert.is(streamed.digest, perPath.digest);
    // Order of the request does not matter; a subset is a different layer.
    assert.is((await layerOf(new ContainerStoreReader(container, dir), [...want].reverse())).diffId, streamed.diffId);
    assert.is.not((await layerOf(new ContainerStoreReader(container, dir), want.slice(1))).diffId, streamed.diffId);
  });

  test('listMany in one exec lists what list lists one by one: symlinked folders inside the store followed, outside not', async () => {
    const reader = new ContainerStoreReader(container, dir);
    const dirs = [
      ...paths(3).map((p) => `${p}/bin`),
      `${paths(1)[0]}/share`,
      '/nix/store/eeee0001zzzzzzzzzzzzzzzzzzzzzzzzzzzz-linked/bin',
      '/nix/store/eeee0002zzzzzzzzzzzzzzzzzzzzzzzzzzzz-outside/bin',
      '/nix/store/00000000000000000000000000000000-not-there/bin',
    ];
    const many = await reader.listMany(dirs);
    // podman's archive API follows a link out of the store (so `list` shows the builder's /usr/bin); listMany does not.
    for (const d of dirs.filter((x) => !x.includes('-outside'))) assert.equal(many.get(d), await reader.list(d), d);
    assert.equal(many.get(dirs[0]!)!.map((e) => [e.name, e.type, e.executable]), [['link', 'symlink', false], ['run-1', 'file', true]]);
    assert.equal(many.get(dirs[4]!), many.get(dirs[0]!));
    assert.equal(many.get(dirs[5]!), []);
  });

  test('a store path missing from the builder fails the layer, naming it', async () => {
    const missing = '/nix/store/00000000000000000000000000000000-not-there';
    try {
      await layerOf(new ContainerStoreReader(container, dir), [...paths(2), missing]);
      assert.unreachable('should fail');
    } catch (err) {
      assert.match((err as Error).message, 'not-there');
    }
  });

  test('a path missing from the first of two layers in one stream fails that layer: no incomplete layer is handed on', async () => {
    const missing = '/nix/store/00000000000000000000000000000000-not-there';
    const reader = new ContainerStoreReader(container, dir);
    let complete = 0;
    try {
      for await (const layer of reader.readLayers([[...paths(2), missing], paths(4).slice(2)])) {
        for await (const _ of layer) {
          // drain
        }
        complete++;
      }
      assert.unreachable('should fail');
    } catch (err) {
      assert.match((err as Error).message, 'not-there');
      assert.is(complete, 0, 'the layer that lacks a path never completes');
    }
  });

  test('a cancelled read stops with the abort reason', async () => {
    const ac = new AbortController();
    const reader = new ContainerStoreReader(container, dir);
    let n = 0;
    try {
      for await (const _ of reader.read(paths(40), ac.signal)) {
        if (++n === 5) ac.abort(new Error('stop now'));
      }
      assert.unreachable('should stop');
    } catch (err) {
      assert.match((err as Error).message, 'stop now');
    }
  });
}

test.run();
