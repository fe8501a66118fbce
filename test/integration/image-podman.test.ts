import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createWriteStream } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import type { BuildResult, BuiltPackage } from '../../src/nix/types.js';
import { assembleImage } from '../../src/image/assemble.js';
import { dockerArchiveStream } from '../../src/image/docker-archive.js';
import { FsStoreReader } from '../../src/image/store-reader.js';

// podman loads the docker-archive (gzipped layers) and runs the image built
// from a fake store holding Debian's static busybox.
const test = suite('image-podman');
const made: string[] = [];
const images: string[] = [];

const BUSYBOX = `/nix/store/${'0'.repeat(32)}-busybox-1.36.1`;
const HELLO = `/nix/store/${'1'.repeat(32)}-hello-script`;
const NAME = 'imagetest'.padEnd(32, '0');
const TAG = `t${process.pid}`.padEnd(32, '0');
const REF = `localhost/nixdocker-test/${NAME}:${TAG}`;

async function podmanMissing(): Promise<string | null> {
  try {
    await execa('podman', ['--version']);
    await stat('/bin/busybox');
    return null;
  } catch (err) {
    return (err as Error).message.split('\n')[0]!;
  }
}

async function podman(args: string[]) {
  return execa('podman', args, { reject: false, timeout: 120_000 });
}

const missing = await podmanMissing();
if (missing && !process.env.CI) {
  process.stderr.write(`\n[skip] image-podman: ${missing}\n`);
  test.skip('podman and /bin/busybox are available', () => {});
} else {
  test.after(async () => {
    for (const ref of images) await podman(['rmi', '--force', ref]);
    await Promise.all(made.map((d) => rm(d, { recursive: true, force: true })));
  });

  test('podman loads the docker-archive and runs the image', async () => {
    assert.is(missing, null);
    const dir = await mkdtemp(path.join(tmpdir(), 'nixdocker-podman-'));
    made.push(dir);
    const store = path.join(dir, 'store');
    const bb = path.join(store, path.basename(BUSYBOX), 'bin');
    await mkdir(bb, { recursive: true });
    await copyFile('/bin/busybox', path.join(bb, 'busybox'));
    await chmod(path.join(bb, 'busybox'), 0o555);
    for (const applet of ['sh', 'echo', 'id', 'stat', 'ls', 'cat', 'env', 'touch']) await symlink('busybox', path.join(bb, applet));
    const hb = path.join(store, path.basename(HELLO), 'bin');
    await mkdir(hb, { recursive: true });
    await writeFile(path.join(hb, 'hello'), `#!${BUSYBOX}/bin/sh\necho "hello from the store"\n`);
    await chmod(path.join(hb, 'hello'), 0o555);

    const pkg = (p: string): BuiltPackage => ({ name: p.replace(/^.*?-/, ''), drvPath: `${p}.drv`, outPath: p, source: 'env/default.nix' });
    const result: BuildResult = {
      name: NAME,
      tag: TAG,
      system: 'x86_64-linux', // the host's busybox-static
      base: [pkg(BUSYBOX)],
      user: [pkg(HELLO)],
      closure: {
        [BUSYBOX]: { path: BUSYBOX, narSize: 2_000_000, references: [] },
        [HELLO]: { path: HELLO, narSize: 1_000, references: [HELLO, BUSYBOX] },
      },
      image: { env: { GREETING: 'hi' } },
      phases: {},
      built: [],
    };
    const img = await assembleImage({ result, settings: { maxLayers: 10 }, reader: new FsStoreReader({ storeDir: store }), cacheDir: path.join(dir, 'cache') });
    assert.equal(img.layers.map((l) => l.kind), ['base', 'user', 'customisation']);

    const archive = path.join(dir, 'image.tar');
    await pipeline(dockerArchiveStream(img, [REF]), createWriteStream(archive));
    images.push(REF);
    const load = await podman(['load', '-i', archive]);
    assert.is(load.exitCode, 0, load.stderr);
    assert.match(load.stdout, REF);

    const inspect = await podman(['image', 'inspect', REF, '--format', '{{.Digest}} {{json .RootFS.Layers}} {{json .Config.Labels}}']);
    assert.is(inspect.exitCode, 0, inspect.stderr);
    assert.match(inspect.stdout, JSON.stringify(img.layers.map((l) => l.diffId)));
    assert.match(inspect.stdout, `"org.nixdocker.tag":"${TAG}"`);

    const hi = await podman(['run', '--rm', REF, '/bin/busybox', 'echo', 'hi']);
    assert.is(hi.exitCode, 0, hi.stderr);
    assert.is(hi.stdout, 'hi');

    // PATH, the user package through its store shebang, image env, working directory, /tmp.
    const script = 'hello; echo "$GREETING $(pwd) $(id -un) $(stat -c %a /tmp)"';
    const run = await podman(['run', '--rm', REF, 'sh', '-c', script]);
    assert.is(run.exitCode, 0, run.stderr);
    assert.is(run.stdout, 'hello from the store\nhi /work root 1777');

    // The non-root user exists and owns its home and the working directory; the store is read-only to it.
    const user = await podman(['run', '--rm', '--user', 'nixdocker', REF, 'sh', '-c', 'id -u; touch /work/x ~/y && echo writable; touch /nix/store/z 2>/dev/null || echo store-ro']);
    assert.is(user.exitCode, 0, user.stderr);
    assert.is(user.stdout, '1000\nwritable\nstore-ro');
  });
}

test.run();
