import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Docker from 'dockerode';
import { runCaptured } from '../../src/engine/run.js';
import { ARM64_BUILDER_IMAGE, BUILDER_IMAGE, DOCKERD_HOST, dockerAt, requireParts } from '../helpers/services.js';

// The parts services.sh starts in the background: the emulated arm64 builder and dockerd.
const arm64 = suite('harness: arm64 builder under qemu (podman)');

if (await requireParts(arm64, ['engine', 'arm64-builder'])) {
  arm64('the arm64 test builder runs aarch64 code and its Nix builds for aarch64-linux', async () => {
    const docker = new Docker();
    const info = await docker.getImage(ARM64_BUILDER_IMAGE).inspect();
    assert.is(info.Architecture, 'arm64');
    const r = await runCaptured(docker, {
      image: ARM64_BUILDER_IMAGE,
      cmd: ['sh', '-c', 'uname -m; nix-instantiate --eval -E builtins.currentSystem'],
    });
    assert.is(r.exitCode, 0, r.output);
    assert.equal(r.output.trim().split('\n'), ['aarch64', '"aarch64-linux"']);
  });
}
arm64.run();

const dockerd = suite('harness: dockerd as a second engine');

if (await requireParts(dockerd, ['dockerd'])) {
  dockerd('dockerd runs the amd64 test builder on its own socket, apart from podman', async () => {
    const docker = dockerAt(DOCKERD_HOST);
    const version = await docker.version();
    assert.not.match(JSON.stringify(version.Components ?? []), /podman/i);
    const r = await runCaptured(docker, { image: BUILDER_IMAGE, cmd: ['nix-build', '--version'] });
    assert.is(r.exitCode, 0, r.output);
    assert.match(r.output, /Nix\) 2\./);
  });
}
dockerd.run();
