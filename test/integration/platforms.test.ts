import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cleanupProjects, runCli } from '../helpers/project.js';
import { ARM64_BUILDER_IMAGE, offlineProject, removeVolume, requireParts } from '../helpers/services.js';
import { cleanupDirs } from '../helpers/registry.js';
import { copyPlatform, elfMachine, E_MACHINE } from '../helpers/oci-layout.js';

// Emulated arm64 Nix is slow: every build here uses the tiny offline fixture.
const test = suite('platforms (podman, registry, arm64 under qemu)');
const VOLUME = `nixdocker-test-platforms-${process.pid}`;
const env = () => ({ DOCKER_HOST: process.env.DOCKER_HOST });
// A tag of this suite's own (the tag names the user files), so no other suite's image is touched.
const LOCAL = (what: string) => ({ 'workdir/local.nix': `# platforms test ${what} ${process.pid}\n{ pkgs, ... }: [ pkgs.greet ]\n` });
const BUSYBOX = /^\/?nix\/store\/[a-z0-9]{32}-busybox\/bin\/busybox$/;

if (await requireParts(test, ['engine', 'registry', 'arm64-builder'])) {
  test.after(async () => {
    await removeVolume(VOLUME);
    await cleanupProjects();
    await cleanupDirs();
  });

  test('an arm64-only builder on this amd64 machine labels its image arm64, and the binaries are arm64', async () => {
    const dir = await offlineProject({ volume: VOLUME, image: ARM64_BUILDER_IMAGE, files: LOCAL('arm64-only') });
    const create = await runCli(['-C', dir, 'builder', 'create'], { env: env() });
    assert.is(create.exitCode, 0, create.stderr);
    const r = await runCli(['-C', dir, 'build', '--json', '--force'], { env: env(), timeoutMs: 300_000 });
    assert.is(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { reference: string };
    const img = await copyPlatform(out.reference, 'arm64');
    assert.is(img.config.architecture, 'arm64');
    assert.is(img.config.os, 'linux');
    const busybox = await img.file(BUSYBOX);
    assert.ok(busybox, 'busybox is in the image');
    assert.is(elfMachine(busybox!.body), E_MACHINE.arm64);
  });
}

test.run();
