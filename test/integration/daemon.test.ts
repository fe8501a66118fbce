import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanupProjects, REPO_ROOT, runCli } from '../helpers/project.js';
import { leftoverContainers, offlineProject, removeVolume, requireParts } from '../helpers/services.js';
import { cleanupDirs, startRegistry, stopRegistries, type TestRegistry } from '../helpers/registry.js';
import { WatchProcess } from '../helpers/watch.js';

const test = suite('daemon: nixdocker watch (real chokidar, nix, podman, registry)');
const VOLUME = `nixdocker-test-daemon-${process.pid}`;
const env = () => ({ DOCKER_HOST: process.env.DOCKER_HOST });
const watchers: WatchProcess[] = [];
let reg: TestRegistry;

const local = (pkg: string) => `{ pkgs, ... }: [ pkgs.greet (pkgs.writeScriptBin "${pkg}" "echo ${pkg}") ]\n`;
/** A user package whose build takes `seconds`, named uniquely so the store never has it. */
const slow = (seconds: number) =>
  `{ pkgs, ... }: [ (derivation { name = "slow-${process.pid}-${Date.now()}"; system = builtins.currentSystem; builder = "/bin/busybox"; args = [ "sh" "-c" "sleep ${seconds}; echo > $out" ]; }) ]\n`;

async function project(config: Record<string, unknown> = {}, files: Record<string, string> = {}) {
  return offlineProject({ volume: VOLUME, config: { registry: { host: reg.host }, ...config }, files });
}

async function hashOf(dir: string): Promise<string> {
  return (await runCli(['-C', dir, 'hash'])).stdout.trim();
}

async function tags(image: string): Promise<string[]> {
  const repo = image.slice(reg.host.length + 1).split(':')[0];
  const r = await fetch(`http://${reg.host}/v2/${repo}/tags/list`);
  // Image tags only: each has a platform tag (TAG-linux-amd64) beside it.
  return r.ok ? (((await r.json()) as { tags: string[] | null }).tags ?? []).filter((t) => !/^[0-9a-f]{32}-/.test(t)).sort() : [];
}

function watch(dir: string): WatchProcess {
  const w = new WatchProcess(dir);
  watchers.push(w);
  return w;
}

/** Starts watch and waits for its first build to settle. */
async function started(dir: string): Promise<WatchProcess> {
  const w = watch(dir);
  await w.event('watching');
  await w.waitFor((e) => e.event === 'imageReady' || e.event === 'upToDate' || e.event === 'buildFailed', 120_000);
  return w;
}

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  test.before(async () => {
    reg = await startRegistry();
    const r = await runCli(['-C', await project(), 'builder', 'create'], { env: env() });
    assert.is(r.exitCode, 0, r.stderr);
  });
  test.after.each(async () => {
    // Graceful, so each daemon removes its warm builder container before the next test counts them.
    await Promise.all(watchers.splice(0).map((w) => w.stop('SIGTERM')));
  });
  test.after(async () => {
    await stopRegistries();
    await removeVolume(VOLUME);
    await cleanupProjects();
    await cleanupDirs();
  });

  test('five writes within 100 ms give exactly one build and one new tag: the final content\'s', async () => {
    const dir = await project();
    const w = await started(dir);
    const before = await tags(await hashOf(dir));
    const mark = w.events.length;
    for (let i = 0; i < 5; i++) {
      await writeFile(path.join(dir, 'workdir/local.nix'), local(`burst${i}x${process.pid}`));
      await new Promise((r) => setTimeout(r, 20));
    }
    const ready = await w.event('imageReady', 120_000, mark);
    const final = await hashOf(dir);
    assert.is(ready.image, final);
    // Let a stray second build show itself, if there were one.
    await new Promise((r) => setTimeout(r, 1500));
    assert.is(w.count('buildStart', mark), 1);
    const after = await tags(final);
    assert.equal(after.filter((t) => !before.includes(t)), [final.split(':').pop()]);
  });

  test('an editor that deletes and re-creates the file (atomic save) still triggers the build', async () => {
    const dir = await project();
    const w = await started(dir);
    const mark = w.events.length;
    const file = path.join(dir, 'workdir/local.nix');
    const { rename, unlink } = await import('node:fs/promises');
    await writeFile(`${file}.tmp`, local(`atomic${process.pid}`));
    await rename(`${file}.tmp`, file);
    const ready = await w.event('imageReady', 120_000, mark);
    assert.is(ready.image, await hashOf(dir));
    const mark2 = w.events.length;
    await unlink(file);
    await new Promise((r) => setTimeout(r, 50));
    await writeFile(file, local(`recreated${process.pid}`));
    const again = await w.event('imageReady', 120_000, mark2);
    assert.is(again.image, await hashOf(dir));
  });

  test('touching a file or saving the same bytes builds nothing', async () => {
    const dir = await project();
    const w = await started(dir);
    const mark = w.events.length;
    const file = path.join(dir, 'workdir/local.nix');
    await writeFile(file, await readFile(file));
    await w.waitFor((e) => e.event === 'change', 10_000, mark);
    await new Promise((r) => setTimeout(r, 1500));
    assert.is(w.count('buildStart', mark), 0);
  });

  test('a write during a build cancels it and builds the newest inputs once', async () => {
    const dir = await project({}, { 'workdir/local.nix': local(`base${process.pid}`) });
    const w = await started(dir);
    const mark = w.events.length;
    await writeFile(path.join(dir, 'workdir/local.nix'), slow(30));
    await w.waitFor((e) => e.event === undefined && typeof e.msg === 'string' && e.msg.startsWith("building '"), 60_000, mark);
    const building = await leftoverContainers(VOLUME);
    assert.is(building.length, 1, 'one builder container runs the slow build');
    await writeFile(path.join(dir, 'workdir/local.nix'), local(`newest${process.pid}`));
    const ready = await w.event('imageReady', 120_000, mark);
    assert.is(ready.image, await hashOf(dir));
    assert.is(w.count('buildCancelled', mark), 1);
    assert.is(w.count('buildStart', mark), 2);
    assert.is(w.count('imageReady', mark), 1, 'the cancelled build never announced itself');
    // Cancelling killed the container Nix ran in; the daemon keeps at most one warm builder.
    const after = await leftoverContainers(VOLUME);
    assert.not.ok(after.includes(building[0]!), 'the cancelled build\'s container is gone');
    assert.ok(after.length <= 1);
  });

  test('without cancelSuperseded, the running build ends and exactly one follow-up builds the newest', async () => {
    const dir = await project({ watch: { cancelSuperseded: false } }, { 'workdir/local.nix': local(`base2${process.pid}`) });
    const w = await started(dir);
    const mark = w.events.length;
    await writeFile(path.join(dir, 'workdir/local.nix'), slow(3));
    await w.waitFor((e) => typeof e.msg === 'string' && e.msg.startsWith("building '"), 60_000, mark);
    await writeFile(path.join(dir, 'workdir/local.nix'), local(`later${process.pid}`));
    await new Promise((r) => setTimeout(r, 100));
    await writeFile(path.join(dir, 'workdir/local.nix'), local(`latest${process.pid}`));
    const final = await hashOf(dir);
    await w.waitFor((e) => e.event === 'imageReady' && e.image === final, 120_000, mark);
    assert.is(w.count('buildCancelled', mark), 0);
    assert.is(w.count('buildStart', mark), 2);
    assert.is(w.count('imageReady', mark), 2);
  });

  test('a syntax error, then a fix: the daemon survives, reports through the hook and status, then builds', async () => {
    const dir = await project({ plugins: ['push', ['./changelog.mjs', { file: 'images.log' }]] });
    await copyFile(path.join(REPO_ROOT, 'examples/plugins/nixdocker-plugin-changelog/index.js'), path.join(dir, 'changelog.mjs'));
    const w = await started(dir);
    const mark = w.events.length;
    await writeFile(path.join(dir, 'workdir/local.nix'), '{ pkgs, ... }: [ pkgs.greet\n');
    await w.event('buildFailed', 60_000, mark);
    const status = await runCli(['-C', dir, 'status', '--json']);
    assert.is(status.exitCode, 0);
    const s = JSON.parse(status.stdout);
    assert.ok(s.running);
    assert.match(s.status.lastError.message, 'workdir/local.nix');
    assert.match(await readFile(path.join(dir, 'images.log'), 'utf8'), /FAILED build \d+: Nix could not evaluate/);

    await writeFile(path.join(dir, 'workdir/local.nix'), local(`fixed${process.pid}`));
    const ready = await w.event('imageReady', 120_000, mark);
    assert.is(ready.image, await hashOf(dir));
    const after = JSON.parse((await runCli(['-C', dir, 'status', '--json'])).stdout);
    assert.is(after.status.lastError, null);
    assert.is(after.status.lastImage.image, ready.image);
    const log = await readFile(path.join(dir, 'images.log'), 'utf8');
    assert.match(log, `${ready.image} sha256:`);
    assert.match(log, 'workdir/local.nix');
    const human = await runCli(['-C', dir, 'status']);
    assert.match(human.stdout, 'daemon   running');
  });

  test('the example plugin can veto builds (docs/plugins.md shows this very file)', async () => {
    const doc = await readFile(path.join(REPO_ROOT, 'docs/plugins.md'), 'utf8');
    const example = await readFile(path.join(REPO_ROOT, 'examples/plugins/nixdocker-plugin-changelog/index.js'), 'utf8');
    assert.ok(doc.includes(example.trim()), 'docs/plugins.md embeds examples/plugins/nixdocker-plugin-changelog/index.js verbatim');
    const dir = await project({ plugins: ['push', './changelog.mjs'] }, { 'workdir/local.nix': local(`paused${process.pid}`) });
    await copyFile(path.join(REPO_ROOT, 'examples/plugins/nixdocker-plugin-changelog/index.js'), path.join(dir, 'changelog.mjs'));
    await writeFile(path.join(dir, 'PAUSE'), '');
    const w = watch(dir);
    const skipped = await w.event('buildSkipped', 60_000);
    assert.match(String(skipped.reason), 'PAUSE exists');
  });

  test('a plugin that throws in every hook: builds go on, the error names the plugin', async () => {
    const dir = await project({ plugins: ['push', './bad.mjs'] });
    await writeFile(
      path.join(dir, 'bad.mjs'),
      `export default { name: 'bad-plugin', apply(hooks) {
        for (const [name, hook] of Object.entries(hooks)) {
          const boom = () => { throw new Error('boom in ' + name); };
          if (name === 'buildPhase' || name === 'buildLog') hook.tap('bad-plugin', boom);
          else hook.tapPromise('bad-plugin', async () => boom());
        }
      } };\n`,
    );
    const w = await started(dir);
    const mark = w.events.length;
    await writeFile(path.join(dir, 'workdir/local.nix'), local(`plugin${process.pid}`));
    const ready = await w.event('imageReady', 120_000, mark);
    assert.is(ready.image, await hashOf(dir));
    for (const hook of ['configLoaded', 'identity', 'beforeBuild', 'built', 'beforePush', 'pushed', 'imageReady', 'inputsChanged']) {
      assert.ok(
        w.events.some((e) => e.plugin === 'bad-plugin' && e.hook === hook && String(e.msg).includes(`boom in ${hook}`)),
        `error of bad-plugin in ${hook} logged`,
      );
    }
  });

  test('a second watch on the same project says one runs and exits non-zero', async () => {
    const dir = await project();
    await started(dir);
    const second = await runCli(['-C', dir, 'watch'], { env: env(), timeoutMs: 30_000 });
    assert.is.not(second.exitCode, 0);
    assert.match(second.stderr, 'already running');
  });

  test('SIGTERM during a build: exits within seconds, no builder container, no partial tag', async () => {
    const dir = await project();
    const w = await started(dir);
    const mark = w.events.length;
    await writeFile(path.join(dir, 'workdir/local.nix'), slow(60));
    await w.waitFor((e) => typeof e.msg === 'string' && e.msg.startsWith("building '"), 60_000, mark);
    const target = await hashOf(dir);
    const { exitCode, ms } = await w.stop('SIGTERM');
    assert.is(exitCode, 0);
    assert.ok(ms < 10_000, `stopped in ${ms} ms`);
    assert.equal(await leftoverContainers(VOLUME), []);
    assert.not.ok((await tags(target)).includes(target.split(':').pop()!), 'no tag for the interrupted build');
    const status = await runCli(['-C', dir, 'status', '--json']);
    assert.is(status.exitCode, 3, 'status says no daemon runs');
  });
}

test.run();
