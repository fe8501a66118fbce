import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { cleanupProjects, runCli } from '../helpers/project.js';
import { ARM64_BUILDER_IMAGE, BUILDER_IMAGE, offlineProject, REGISTRY, removeVolume, requireParts } from '../helpers/services.js';
import { cleanupDirs } from '../helpers/registry.js';
import { copyPlatform, elfMachine, E_MACHINE } from '../helpers/oci-layout.js';

// Emulated arm64 Nix is slow: every build here uses the tiny offline fixture,
// whose base packages stay in the suite's store volumes after the first build.
const test = suite('platforms (podman, registry, arm64 under qemu)');
const VOLUME = `nixdocker-test-platforms-${process.pid}`;
const env = () => ({ DOCKER_HOST: process.env.DOCKER_HOST });
// A tag of each test's own (the tag names the user files), so no other suite's image is touched.
const LOCAL = (what: string) => ({ 'workdir/local.nix': `# platforms test ${what} ${process.pid} ${Date.now()}\n{ pkgs, ... }: [ pkgs.greet ]\n` });
const BUSYBOX = /^\/?nix\/store\/[a-z0-9]{32}-busybox\/bin\/busybox$/;
const AMD64 = { platform: 'linux/amd64', image: BUILDER_IMAGE };
const ARM64 = { platform: 'linux/arm64', image: ARM64_BUILDER_IMAGE };

interface BuildOut {
  status: string;
  reference: string;
  image?: { digest: string; platforms: { platform: string; digest: string; built: boolean }[] };
  builds?: { platform: string }[];
}

async function build(dir: string, args: string[] = [], extraEnv: Record<string, string> = {}): Promise<BuildOut> {
  const r = await runCli(['-C', dir, 'build', '--json', ...args], { env: { ...env(), ...extraEnv }, timeoutMs: 300_000 });
  assert.is(r.exitCode, 0, r.stderr);
  return JSON.parse(r.stdout) as BuildOut;
}

interface RawIndex {
  mediaType: string;
  manifests: { digest: string; size: number; platform: { os: string; architecture: string } }[];
}

/** The tag as skopeo reads it, raw: an independent client's view of the index. */
async function rawIndex(reference: string): Promise<RawIndex> {
  const r = await execa('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${reference}`]);
  return JSON.parse(r.stdout) as RawIndex;
}

/** Every manifest the index names is in the registry (the tag never names an incomplete index). */
async function assertComplete(reference: string, index: RawIndex): Promise<void> {
  const repo = reference.slice(REGISTRY.length + 1, reference.lastIndexOf(':'));
  for (const m of index.manifests) {
    const r = await fetch(`http://${REGISTRY}/v2/${repo}/manifests/${m.digest}`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.is(r.status, 200, `${m.platform.architecture} manifest ${m.digest} is in the registry`);
  }
}

const archs = (index: RawIndex) => index.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`).sort();

async function project(what: string, platforms: object[], files: Record<string, string> = LOCAL(what)): Promise<string> {
  return offlineProject({ volume: VOLUME, files, config: { platforms } });
}

if (await requireParts(test, ['engine', 'registry', 'nix', 'arm64-builder'])) {
  test.before(async () => {
    const dir = await project('create', [AMD64, ARM64]);
    const r = await runCli(['-C', dir, 'builder', 'create'], { env: env(), timeoutMs: 300_000 });
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, `linux/arm64: volume  ${VOLUME}-arm64`);
    const status = await runCli(['-C', dir, 'builder', 'status', '--json'], { env: env(), timeoutMs: 300_000 });
    assert.is(status.exitCode, 0, status.stderr);
    const each = JSON.parse(status.stdout) as { platform: string; image: { name: string; present: boolean }; volume: { name: string; present: boolean } }[];
    assert.equal(
      each.map((s) => [s.platform, s.image.name, s.image.present, s.volume.name, s.volume.present]),
      [
        ['linux/amd64', BUILDER_IMAGE, true, `${VOLUME}-amd64`, true],
        ['linux/arm64', ARM64_BUILDER_IMAGE, true, `${VOLUME}-arm64`, true],
      ],
    );
  });
  test.after(async () => {
    for (const v of [VOLUME, `${VOLUME}-amd64`, `${VOLUME}-arm64`]) await removeVolume(v);
    await cleanupProjects();
    await cleanupDirs();
  });

  test('harness: the arm64 test builder runs aarch64 code under qemu and its Nix builds for aarch64-linux', async () => {
    const Docker = (await import('dockerode')).default;
    const { runCaptured } = await import('../../src/engine/run.js');
    const docker = new Docker();
    assert.is((await docker.getImage(ARM64_BUILDER_IMAGE).inspect()).Architecture, 'arm64');
    const r = await runCaptured(docker, { image: ARM64_BUILDER_IMAGE, cmd: ['sh', '-c', 'uname -m; nix-instantiate --eval -E builtins.currentSystem'] });
    assert.is(r.exitCode, 0, r.output);
    assert.equal(r.output.trim().split('\n'), ['aarch64', '"aarch64-linux"']);
  });

  test('an arm64-only builder on this amd64 machine labels its image arm64, and the binaries are arm64', async () => {
    const dir = await offlineProject({ volume: VOLUME, image: ARM64_BUILDER_IMAGE, files: LOCAL('arm64-only') });
    const create = await runCli(['-C', dir, 'builder', 'create'], { env: env() });
    assert.is(create.exitCode, 0, create.stderr);
    const out = await build(dir, ['--force']);
    const img = await copyPlatform(out.reference, 'arm64');
    assert.is(img.config.architecture, 'arm64');
    assert.is(img.config.os, 'linux');
    const busybox = await img.file(BUSYBOX);
    assert.ok(busybox, 'busybox is in the image');
    assert.is(elfMachine(busybox!.body), E_MACHINE.arm64);
  });

  test('two platforms: one tag, an index of both; each platform holds binaries of its label; run --platform', async () => {
    const dir = await project('two', [AMD64, ARM64]);
    // A builder container that an older nixdocker left running on the second platform's volume
    // (unlabelled owner: its keep-alive never ends) is removed by the build like the first platform's.
    const Docker = (await import('dockerode')).default;
    const docker = new Docker();
    const leftover = await docker.createContainer({
      Image: BUILDER_IMAGE,
      Cmd: ['sleep', '600'],
      Labels: { 'org.nixdocker.role': 'build', 'org.nixdocker.volume': `${VOLUME}-arm64` },
      HostConfig: { Init: true },
    });
    await leftover.start();
    const out = await build(dir);
    assert.is(out.status, 'built');
    const gone = await leftover.inspect().then(() => false, (err: { statusCode?: number }) => err.statusCode === 404);
    if (!gone) await leftover.remove({ force: true });
    assert.ok(gone, 'the leftover builder container on the arm64 volume was removed');
    assert.equal(out.builds!.map((b) => b.platform).sort(), ['linux/amd64', 'linux/arm64']);
    const index = await rawIndex(out.reference);
    assert.is(index.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.equal(archs(index), ['linux/amd64', 'linux/arm64']);
    await assertComplete(out.reference, index);
    const inspect = await execa('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${out.reference}`]);
    assert.is(out.image!.digest, `sha256:${(await import('node:crypto')).createHash('sha256').update(inspect.stdout).digest('hex')}`);

    for (const [arch, machine] of [['arm64', E_MACHINE.arm64], ['amd64', E_MACHINE.amd64]] as const) {
      const img = await copyPlatform(out.reference, arch);
      assert.is(img.config.architecture, arch);
      const busybox = await img.file(BUSYBOX);
      assert.ok(busybox, `busybox is in the ${arch} image`);
      assert.is(elfMachine(busybox!.body), machine, `${arch} busybox e_machine`);
    }

    const pull = await runCli(['-C', dir, 'pull', '--platform', 'linux/arm64'], { env: env() });
    assert.is(pull.exitCode, 0, pull.stderr);
    const run = await runCli(['-C', dir, 'run', '--platform', 'linux/arm64', 'uname', '-m'], { env: env() });
    assert.is(run.exitCode, 0, run.stderr);
    assert.is(run.stdout.trim(), 'aarch64');
    // The engine's own platform by default: run pulls amd64 over the arm64 image it holds.
    const native = await runCli(['-C', dir, 'run', '--platform', 'linux/amd64', 'uname', '-m'], { env: env() });
    assert.is(native.exitCode, 0, native.stderr);
    assert.is(native.stdout.trim(), 'x86_64');
    // `pull --platform P run` is `run --platform P --pull always`: pull's own option before `run` is not taken for the subcommand.
    const pullRun = await runCli(['-C', dir, 'pull', '--platform', 'linux/arm64', 'run', 'uname', '-m'], { env: env() });
    assert.is(pullRun.exitCode, 0, pullRun.stderr);
    assert.is(pullRun.stdout.trim(), 'aarch64');

    // A no-op on a complete index asks the registry only: with no engine at all it still answers.
    const again = await build(dir, [], { DOCKER_HOST: 'unix:///nonexistent/engine.sock' });
    assert.is(again.status, 'up-to-date');
  });

  test('two writers: projects with different platforms build the same inputs; the tag ends with one index of both', async () => {
    const files = LOCAL('two-writers');
    const amd = await project('w-amd', [AMD64], files);
    const arm = await project('w-arm', [ARM64], files);
    const first = await build(amd);
    assert.equal(first.builds!.map((b) => b.platform), ['linux/amd64']);
    let index = await rawIndex(first.reference);
    assert.equal(archs(index), ['linux/amd64']);
    await assertComplete(first.reference, index);

    const second = await build(arm);
    assert.is(second.reference, first.reference, 'the platforms are not part of the tag');
    assert.equal(second.builds!.map((b) => b.platform), ['linux/arm64']);
    assert.equal(second.image!.platforms.map((p) => [p.platform, p.built]).sort(), [['linux/amd64', false], ['linux/arm64', true]]);
    index = await rawIndex(second.reference);
    assert.equal(archs(index), ['linux/amd64', 'linux/arm64']);
    await assertComplete(second.reference, index);

    // Each writer's own platform is there: both are no-ops now.
    assert.is((await build(amd)).status, 'up-to-date');
    assert.is((await build(arm)).status, 'up-to-date');

    // The engine (amd64) is told which platforms a tag has when its own is missing.
    const armOnly = await project('arm-only-pull', [ARM64]);
    const built = await build(armOnly);
    assert.equal(archs(await rawIndex(built.reference)), ['linux/arm64']);
    const pull = await runCli(['-C', armOnly, 'pull'], { env: env() });
    assert.is(pull.exitCode, 1);
    assert.match(pull.stderr, /holds linux\/arm64, not linux\/amd64 \(the engine's platform\)/);
    assert.match(pull.stderr, /add "linux\/amd64" to "platforms"/);
  });

  test('two writers at once end with one index of both, and a platform missing from the tag is built alone', async () => {
    const files = LOCAL('race');
    const amd = await project('r-amd', [AMD64], files);
    const arm = await project('r-arm', [ARM64], files);
    const [a, b] = await Promise.all([build(amd), build(arm)]);
    assert.is(a.reference, b.reference);
    const index = await rawIndex(a.reference);
    assert.equal(archs(index), ['linux/amd64', 'linux/arm64']);
    await assertComplete(a.reference, index);

    // A third copy wanting both builds nothing: the index holds both.
    const both = await project('r-both', [AMD64, ARM64], files);
    assert.is((await build(both)).status, 'up-to-date');

    // New inputs built for amd64 first; then a project wanting both builds arm64 alone.
    const files2 = LOCAL('missing-one');
    const first = await build(await project('m-amd', [AMD64], files2));
    assert.equal(first.builds!.map((x) => x.platform), ['linux/amd64']);
    const rest = await build(await project('m-both', [AMD64, ARM64], files2));
    assert.equal(rest.builds!.map((x) => x.platform), ['linux/arm64']);
    assert.equal(archs(await rawIndex(rest.reference)), ['linux/amd64', 'linux/arm64']);
  });

  test('the daemon\'s pipeline: platforms side by side, one warm builder each, imageReady once; a failing platform is named and moves no tag', async () => {
    const { loadConfig } = await import('../../src/config/load.js');
    const { Pipeline } = await import('../../src/pipeline/pipeline.js');
    const { buildImage } = await import('../../src/pipeline/build-image.js');
    const { silentLogger } = await import('../../src/log.js');
    const Docker = (await import('dockerode')).default;
    const dir = await project('daemon', [AMD64, ARM64]);
    const pipeline = await Pipeline.create((await loadConfig(dir)).config, silentLogger);
    pipeline.keepWarm = true;
    const ready: string[][] = [];
    const failed: { platform: string | null; message: string }[] = [];
    const phases = new Set<string>();
    pipeline.hooks.imageReady.tap('test', (d) => void ready.push(d.platforms.map((x) => x.platform).sort()));
    pipeline.hooks.buildFailed.tap('test', (f) => void failed.push({ platform: f.platform, message: f.message }));
    pipeline.hooks.buildPhase.tap('test', (_id, phase, platform) => void (platform && phases.add(`${platform} ${phase}`)));
    try {
      const out = await buildImage(pipeline, { buildId: 1 });
      assert.is(out.status, 'built');
      assert.equal(ready, [['linux/amd64', 'linux/arm64']], 'imageReady once, after the index of both');
      for (const p of ['linux/amd64', 'linux/arm64']) assert.ok(phases.has(`${p} build`), `${p} reports its own phases`);
      // Kept warm for the next build: one builder container per platform, on its own volume.
      const warm = await new Docker().listContainers({ filters: { label: ['org.nixdocker.role=build'] } });
      const volumes = warm.map((c) => c.Labels['org.nixdocker.volume']);
      assert.ok(volumes.includes(`${VOLUME}-amd64`) && volumes.includes(`${VOLUME}-arm64`), `warm builders: ${volumes.join(', ')}`);

      // Only aarch64 fails to evaluate: the arm64 build fails, amd64 is cancelled, nothing is tagged.
      const { writeFile } = await import('node:fs/promises');
      const path = (await import('node:path')).default;
      await writeFile(
        path.join(dir, 'workdir/local.nix'),
        `# ${process.pid} ${Date.now()}\n{ pkgs, ... }: if builtins.currentSystem == "aarch64-linux" then throw "no arm64 for this one" else [ pkgs.greet ]\n`,
      );
      const err = await buildImage(pipeline, { buildId: 2 }).then(() => null, (e: unknown) => e as Error);
      assert.ok(err, 'the build fails');
      assert.is(failed.length, 1);
      assert.is(failed[0]!.platform, 'linux/arm64');
      assert.match(failed[0]!.message, /^linux\/arm64: Nix could not evaluate/);
      assert.match(failed[0]!.message, 'no arm64 for this one');
      const hash = await runCli(['-C', dir, 'hash'], { env: env() });
      const ref = hash.stdout.trim();
      const repo = ref.slice(REGISTRY.length + 1, ref.lastIndexOf(':'));
      const tags = (await (await fetch(`http://${REGISTRY}/v2/${repo}/tags/list`)).json()) as { tags: string[] | null };
      const tag = ref.slice(ref.lastIndexOf(':') + 1);
      assert.not.ok((tags.tags ?? []).some((t) => t.startsWith(tag)), 'no tag and no platform tag for the failed build');
      assert.equal(ready.length, 1, 'no imageReady for the failed build');
    } finally {
      await pipeline.shutdown();
    }
  });

  test('a builder that builds another platform than its entry says is a clear error naming the platform', async () => {
    // The amd64 test builder started "for" arm64: podman runs a local image as it is.
    const dir = await project('mismatch', [{ platform: 'linux/arm64', image: BUILDER_IMAGE, volume: `${VOLUME}-amd64` }]);
    const r = await runCli(['-C', dir, 'build'], { env: env(), timeoutMs: 300_000 });
    assert.is(r.exitCode, 1);
    assert.match(r.stderr, /builder for linux\/arm64 \(image [^)]+\) built for x86_64-linux, not aarch64-linux/);
  });
}

test.run();
