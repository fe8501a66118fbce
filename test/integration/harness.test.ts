import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Docker from 'dockerode';
import { PassThrough } from 'node:stream';
import { BUILDER_IMAGE, REGISTRY, requireParts } from '../helpers/services.js';

const test = suite('harness (real podman, registry, nix)');
const VOLUME = `nixdocker-test-harness-${process.pid}`;

/** Runs a container to completion and returns its exit code and stdout. */
async function runToEnd(docker: Docker, cmd: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const c = await docker.createContainer({
    Image: BUILDER_IMAGE,
    Cmd: cmd,
    Tty: false,
    HostConfig: { Mounts: [{ Type: 'volume', Source: VOLUME, Target: '/nix' }] },
  });
  try {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const stream = await c.attach({ stream: true, stdout: true, stderr: true });
    const ended = new Promise((r) => stream.on('end', r));
    docker.modem.demuxStream(stream, new PassThrough().on('data', (b: Buffer) => out.push(b)), new PassThrough().on('data', (b: Buffer) => err.push(b)));
    await c.start();
    const { StatusCode } = (await c.wait()) as { StatusCode: number };
    await Promise.race([ended, new Promise((r) => setTimeout(r, 2000))]);
    return { code: StatusCode, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
  } finally {
    await c.remove({ force: true });
  }
}

if (await requireParts(test, ['engine', 'builder-image', 'registry'])) {
  const docker = new Docker();
  test.after(async () => {
    await docker.getVolume(VOLUME).remove().catch(() => {});
  });

  test('nix-build in a builder container writes a store path that persists in the volume', async () => {
    await docker.createVolume({ Name: VOLUME });
    const expr = `derivation { name = "harness-${process.pid}"; system = builtins.currentSystem; builder = "/bin/busybox"; args = [ "sh" "-c" "echo built-by-harness > $out" ]; }`;
    const build = await runToEnd(docker, ['nix-build', '--no-out-link', '-E', expr]);
    assert.is(build.code, 0, build.stderr);
    const storePath = build.stdout.trim().split('\n').pop()!;
    assert.match(storePath, /^\/nix\/store\/[a-z0-9]{32}-harness-\d+$/);
    // A second container on the same volume sees the path: the store survived the first one.
    const read = await runToEnd(docker, ['cat', storePath]);
    assert.is(read.code, 0, read.stderr);
    assert.is(read.stdout.trim(), 'built-by-harness');
  });

  test('the registry answers the distribution API', async () => {
    const r = await fetch(`http://${REGISTRY}/v2/`);
    assert.is(r.status, 200);
    assert.match(r.headers.get('docker-distribution-api-version') ?? '', 'registry/2.0');
  });
}

test.run();
