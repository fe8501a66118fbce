import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Docker from 'dockerode';
import { cleanupProjects, runCli } from '../helpers/project.js';
import { offlineProject, REGISTRY, removeVolume, requireParts } from '../helpers/services.js';
import { WatchProcess } from '../helpers/watch.js';

const test = suite('identity hook: hash, build, pull, run, the daemon and status agree (real nix, podman, registry)');
const VOLUME = `nixdocker-test-identity-${process.pid}`;
const env = () => ({ DOCKER_HOST: process.env.DOCKER_HOST });
let watcher: WatchProcess | null = null;

/** Suffixes the tag, as a team might mark images built from a dev branch. */
const SUFFIX = `export default { name: 'suffix', apply(hooks) { hooks.identity.tap('suffix', (id) => ({ ...id, tag: id.tag + '-dev' })); } };\n`;

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  test.before(async () => {
    const r = await runCli(['-C', await offlineProject({ volume: VOLUME }), 'builder', 'create'], { env: env() });
    assert.is(r.exitCode, 0, r.stderr);
  });
  test.after(async () => {
    await watcher?.stop('SIGTERM');
    await removeVolume(VOLUME);
    await cleanupProjects();
  });

  test('a plugin that suffixes the tag: all six name the same image', async () => {
    const dir = await offlineProject({
      volume: VOLUME,
      config: { plugins: ['push', './suffix.mjs'] },
      files: { 'suffix.mjs': SUFFIX, 'workdir/local.nix': `{ pkgs, ... }: [ pkgs.greet (pkgs.writeScriptBin "suffixed" "echo suffixed-${process.pid}") ]\n` },
    });
    // hash
    const hash = await runCli(['-C', dir, 'hash']);
    assert.is(hash.exitCode, 0, hash.stderr);
    const image = hash.stdout.trim();
    assert.match(image, /:[0-9a-f]{32}-dev$/);
    const [repo, tag] = [image.slice(REGISTRY.length + 1, image.lastIndexOf(':')), image.slice(image.lastIndexOf(':') + 1)];

    // build: pushes that very tag, and only it
    const build = await runCli(['-C', dir, 'build', '--json'], { env: env() });
    assert.is(build.exitCode, 0, build.stderr);
    const out = JSON.parse(build.stdout);
    assert.is(out.status, 'built');
    assert.is(out.reference, image);
    assert.is(out.image.tag, tag);
    // The shared test registry (the engine pulls from it) holds other suites' tags of this environment too.
    const listed = ((await (await fetch(`http://${REGISTRY}/v2/${repo}/tags/list`)).json()) as { tags: string[] }).tags;
    assert.ok(listed.includes(tag!), 'the suffixed tag is in the registry');
    assert.not.ok(listed.includes(tag!.slice(0, -'-dev'.length)), 'the unsuffixed one is not');
    // A second build asks the registry for the suffixed tag, finds it, and does nothing.
    const again = JSON.parse((await runCli(['-C', dir, 'build', '--json'], { env: env() })).stdout);
    assert.is(again.status, 'up-to-date');
    assert.is(again.reference, image);

    // pull: only the suffixed tag exists, so pulling anything else would fail
    const docker = new Docker();
    await docker.getImage(image).remove({ force: true }).catch(() => {});
    const pull = await runCli(['-C', dir, 'pull'], { env: env() });
    assert.is(pull.exitCode, 0, pull.stderr);
    await docker.getImage(image).inspect();

    // run: in the pulled image (the unsuffixed reference exists nowhere)
    const run = await runCli(['-C', dir, 'run', 'suffixed'], { env: env() });
    assert.is(run.exitCode, 0, run.stderr);
    assert.match(run.stdout, `suffixed-${process.pid}`);

    // the daemon's scheduler and build, and status: the image is up to date under the same name
    watcher = new WatchProcess(dir);
    const started = await watcher.event('buildStart', 60_000);
    assert.is(started.image, image, 'the scheduler identified the suffixed image');
    const settled = await watcher.waitFor((e) => e.event === 'upToDate' || e.event === 'imageReady' || e.event === 'buildFailed', 120_000);
    assert.is(settled.event, 'upToDate', String(settled.msg));
    assert.is(settled.image, image);
    const status = JSON.parse((await runCli(['-C', dir, 'status', '--json'])).stdout);
    assert.is(status.status.current, image);
    assert.is(status.status.lastImage.image, image);
    await docker.getImage(image).remove({ force: true }).catch(() => {});
  });
}

test.run();
