import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCaptured } from '../../src/engine/run.js';
import { BUILDER_IMAGE, DOCKERD_HOST, dockerAt, requireParts } from '../helpers/services.js';

// dockerd, which services.sh starts in the background. (The arm64 builder's own check is the
// first test of platforms.test.ts: that suite comes late, so a cold CI machine's arm64 rootfs
// has minutes to finish while the other suites run.)
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
