import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Docker from 'dockerode';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { ContainerRunner } from '../../src/builder/container-runner.js';
import { runCaptured } from '../../src/engine/run.js';
import { BIN, cleanupProjects, runCli } from '../helpers/project.js';
import { BUILDER_IMAGE, inVolume, offlineProject, removeVolume, requireParts } from '../helpers/services.js';
import { cleanupDirs, tmpDir, waitUntil } from '../helpers/registry.js';
import { WatchProcess, type LogEvent } from '../helpers/watch.js';

const test = suite('lifecycle: nothing left behind, cancels that land, a vanished builder (real podman + nix)');
const VOLUME = `nixdocker-test-lifecycle-${process.pid}`;
const IDLE_SECONDS = 4;
const env = () => ({ DOCKER_HOST: process.env.DOCKER_HOST });
const docker = new Docker();
const watchers: WatchProcess[] = [];

const local = (pkg: string) => `{ pkgs, ... }: [ pkgs.greet (pkgs.writeScriptBin "${pkg}" "echo ${pkg}") ]\n`;
/** A user package whose build takes `seconds`, named uniquely so the store never has it. */
const slow = (seconds: number) =>
  `{ pkgs, ... }: [ (derivation { name = "slow-${process.pid}-${Date.now()}"; system = builtins.currentSystem; builder = "/bin/busybox"; args = [ "sh" "-c" "sleep ${seconds}; echo > $out" ]; }) ]\n`;
const nixBuilding = (e: LogEvent) => typeof e.msg === 'string' && e.msg.startsWith("building '");

async function project(files: Record<string, string> = {}): Promise<string> {
  return offlineProject({ volume: VOLUME, config: { builder: { idleSeconds: IDLE_SECONDS } }, files });
}

/** Builder containers of a project, running or not. */
async function projectContainers(dir: string, running = false): Promise<Docker.ContainerInfo[]> {
  const list = await docker.listContainers({ all: !running, filters: { label: [`org.nixdocker.role=build`, `org.nixdocker.project=${dir}`] } });
  return running ? list.filter((c) => c.State === 'running') : list;
}

/** Every file (not folder) under the project's .nixdocker/tmp. */
async function tmpFiles(dir: string): Promise<string[]> {
  const entries = await readdir(path.join(dir, '.nixdocker', 'tmp'), { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => !e.isDirectory()).map((e) => path.join((e as { parentPath?: string }).parentPath ?? e.path, e.name));
}

/** A nixdocker command as a child process with JSON debug logs, to be killed. */
class Cli {
  readonly events: LogEvent[] = [];
  readonly child: ResultPromise;
  private waiters: { pred: (e: LogEvent) => boolean; resolve: () => void }[] = [];
  constructor(dir: string, args: string[]) {
    this.child = execa(process.execPath, [BIN, '-C', dir, '--json-logs', '--log-level', 'debug', ...args], { reject: false, env: env(), stdin: 'ignore' });
    let rest = '';
    this.child.stderr!.on('data', (c: Buffer) => {
      const lines = (rest + c.toString()).split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) {
        try {
          const e = JSON.parse(l) as LogEvent;
          this.events.push(e);
          this.waiters = this.waiters.filter((w) => (w.pred(e) ? (w.resolve(), false) : true));
        } catch {
          // not a log line
        }
      }
    });
  }
  waitFor(pred: (e: LogEvent) => boolean, ms = 90_000): Promise<void> {
    if (this.events.some(pred)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no matching log line within ${ms} ms: ${this.events.map((e) => e.msg).join(' | ').slice(-2000)}`)), ms);
      this.waiters.push({ pred, resolve: () => (clearTimeout(t), resolve()) });
    });
  }
  async kill9(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.child;
  }
}

async function started(dir: string, prefix: string[] = []): Promise<WatchProcess> {
  const w = new WatchProcess(dir, {}, prefix);
  watchers.push(w);
  await w.event('watching');
  await w.waitFor((e) => e.event === 'imageReady' || e.event === 'upToDate' || e.event === 'buildFailed', 120_000);
  return w;
}

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  test.before(async () => {
    const r = await runCli(['-C', await project(), 'builder', 'create'], { env: env() });
    assert.is(r.exitCode, 0, r.stderr);
  });
  test.after.each(async () => {
    await Promise.all(watchers.splice(0).map((w) => w.stop('SIGTERM')));
  });
  test.after(async () => {
    await removeVolume(VOLUME);
    await cleanupProjects();
    await cleanupDirs();
  });

  test('a cancel that lands while the exec is being created still kills the step and removes the container', async () => {
    const dir = await project();
    const runner = await ContainerRunner.open(docker, { image: BUILDER_IMAGE, volume: VOLUME }, [], { projectDir: dir, idleSeconds: 60 });
    const id = runner.container.id;
    const ctl = new AbortController();
    const run = runner.run(['sleep', '300'], { signal: ctl.signal });
    ctl.abort(new Error('cancelled by the test')); // before run() has created its exec
    try {
      await run;
      assert.unreachable('run resolved');
    } catch (err) {
      assert.is((err as Error).message, 'cancelled by the test');
    }
    // The abort handler removes the container (force), which ends `sleep 300` at once.
    await waitUntil('the container to be removed', async () => (await projectContainers(dir)).every((c) => c.Id !== id), 20_000);
  });

  test('a failing remove inside the abort handler is no unhandled rejection', async () => {
    const dir = await project();
    // The engine through a proxy socket that the test can take away.
    const sockDir = await tmpDir('nixdocker-proxy-');
    const sock = path.join(sockDir, 'engine.sock');
    const target = (process.env.DOCKER_HOST ?? '').replace(/^unix:\/\//, '');
    const proxy = net.createServer((c) => {
      const up = net.connect(target);
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    await new Promise<void>((r) => proxy.listen(sock, r));
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    const runner = await ContainerRunner.open(new Docker({ socketPath: sock }), { image: BUILDER_IMAGE, volume: VOLUME }, [], { projectDir: dir, idleSeconds: 60 });
    const id = runner.container.id;
    try {
      const ctl = new AbortController();
      let running!: () => void;
      const runs = new Promise<void>((r) => (running = r));
      const run = runner.run(['sh', '-c', 'echo started >&2; exec sleep 300'], { signal: ctl.signal, onStderrLine: (l) => l === 'started' && running() });
      run.catch(() => {}); // awaited below; a failure before then must not crash the suite
      await runs;
      // New connections now fail: the remove in the abort handler cannot reach the engine.
      proxy.close(); // stops accepting now; the exec's open stream stays
      ctl.abort(new Error('cancelled by the test'));
      await run.then(
        () => assert.unreachable('run resolved'),
        (err: Error) => assert.is(err.message, 'cancelled by the test', err.stack),
      );
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setTimeout(r, 200)); // the remove's rejection, had it been unhandled, is reported by now
      assert.equal(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await docker.getContainer(id).remove({ force: true }).catch(() => {});
    }
  });

  test('kill -9 of build mid-build: the next command removes the orphan, and tmp does not grow', async () => {
    const dir = await project({ 'workdir/local.nix': slow(120) });
    const build = new Cli(dir, ['build']);
    await build.waitFor(nixBuilding);
    await build.kill9();
    assert.is((await projectContainers(dir, true)).length, 1, 'the killed build left its builder container running');
    // Leftovers of an earlier killed process: a partial blob in its own folder, one from an older version.
    const child = execa('true');
    await child;
    const dead = child.pid!;
    await mkdir(path.join(dir, '.nixdocker/tmp', `${dead}-1`), { recursive: true });
    await writeFile(path.join(dir, '.nixdocker/tmp', `${dead}-1`, 'blob-partial'), Buffer.alloc(1 << 20));
    await writeFile(path.join(dir, '.nixdocker/tmp', `blob-${dead}-abc`), Buffer.alloc(1 << 20));

    const status = await runCli(['-C', dir, 'builder', 'status'], { env: env() });
    assert.is(status.exitCode, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`orphan +[0-9a-f]{12} \\(running\\): its nixdocker process ${build.child.pid} is gone; removed`));
    assert.equal(await projectContainers(dir), []);
    await writeFile(path.join(dir, 'workdir/local.nix'), local(`after${process.pid}`));
    const next = await runCli(['-C', dir, 'build'], { env: env() });
    assert.is(next.exitCode, 0, next.stderr);
    assert.equal(await tmpFiles(dir), [], 'no temporary file of a dead process is left');
    assert.equal(await projectContainers(dir), []);
  });

  test('kill -9 of watch mid-build: the next build removes its container', async () => {
    const dir = await project();
    const w = await started(dir);
    const mark = w.events.length;
    await writeFile(path.join(dir, 'workdir/local.nix'), slow(120));
    await w.waitFor(nixBuilding, 60_000, mark);
    await w.stop('SIGKILL');
    assert.is((await projectContainers(dir, true)).length, 1);
    await writeFile(path.join(dir, 'workdir/local.nix'), local(`again${process.pid}`));
    const build = new Cli(dir, ['build']);
    await build.waitFor((e) => e.event === 'orphansRemoved');
    assert.equal((await build.child).exitCode, 0);
    assert.equal(await projectContainers(dir), []);
    assert.equal(await tmpFiles(dir), []);
  });

  test('kill -9 of an idle watch: its warm builder container stops on its own after builder.idleSeconds', async () => {
    const dir = await project({ 'workdir/local.nix': local(`idle${process.pid}`) });
    const w = await started(dir);
    assert.is((await projectContainers(dir, true)).length, 1, 'the daemon keeps one warm builder container');
    await w.stop('SIGKILL');
    // No command at all: the keep-alive hears no heartbeat and ends; AutoRemove removes it.
    await waitUntil('the orphaned builder container to stop', async () => (await projectContainers(dir)).length === 0, (IDLE_SECONDS + 20) * 1000);
  });

  test('a live daemon keeps its warm builder container past the idle bound', async () => {
    const dir = await project({ 'workdir/local.nix': local(`warm${process.pid}`) });
    await started(dir);
    const [warm] = await projectContainers(dir, true);
    assert.ok(warm);
    // Heartbeats keep it; waiting twice the bound is the point of this test.
    await new Promise((r) => setTimeout(r, IDLE_SECONDS * 2000 + 1000));
    assert.equal((await projectContainers(dir, true)).map((c) => c.Id), [warm.Id]);
    const status = await runCli(['-C', dir, 'builder', 'status'], { env: env() });
    assert.not.match(status.stdout, 'orphan');
    assert.equal((await projectContainers(dir, true)).map((c) => c.Id), [warm.Id], 'builder status leaves a live owner\'s container');
  });

  test('a builder container removed mid-build: build says so in one paragraph, exit 1', async () => {
    const dir = await project({ 'workdir/local.nix': slow(120) });
    const build = new Cli(dir, ['build']);
    await build.waitFor(nixBuilding);
    const [c] = await projectContainers(dir, true);
    await docker.getContainer(c!.Id).remove({ force: true });
    const r = await build.child;
    const stderr = String(r.stderr);
    assert.is(r.exitCode, 1, stderr);
    assert.not.match(stderr, 'internal error');
    assert.match(stderr, `The builder container ${c!.Id.slice(0, 12)} disappeared during the build`);
  });

  test('watch: a warm container removed while idle, then one removed mid-build: each next change builds', async () => {
    const dir = await project({ 'workdir/local.nix': local(`v1${process.pid}`) });
    const w = await started(dir);
    for (const c of await projectContainers(dir, true)) await docker.getContainer(c.Id).remove({ force: true });
    let mark = w.events.length;
    await writeFile(path.join(dir, 'workdir/local.nix'), local(`v2${process.pid}`));
    await w.event('imageReady', 120_000, mark);

    mark = w.events.length;
    await writeFile(path.join(dir, 'workdir/local.nix'), slow(120));
    await w.waitFor(nixBuilding, 60_000, mark);
    for (const c of await projectContainers(dir, true)) await docker.getContainer(c.Id).remove({ force: true });
    const failed = await w.event('buildFailed', 60_000, mark);
    assert.match(String(failed.msg), 'disappeared during the build', String(failed.msg));
    mark = w.events.length;
    await writeFile(path.join(dir, 'workdir/local.nix'), local(`v3${process.pid}`));
    await w.event('imageReady', 120_000, mark);
    assert.is((await projectContainers(dir, true)).length, 1);
  });
  test('out of inotify watches (ENOSPC): the daemon names fs.inotify.max_user_watches, polls, and still sees changes', async () => {
    const dir = await project({ 'workdir/local.nix': local(`poll${process.pid}`) });
    // A user namespace of its own, with a limit of 2 watches: the host's limit is left alone.
    const limited = ['unshare', '--user', '--map-root-user', 'sh', '-c', 'echo 2 > /proc/sys/user/max_inotify_watches && exec "$@"', 'sh'];
    const w = await started(dir, limited);
    const warning = w.events.find((e) => e.event === 'watchError');
    assert.ok(warning, 'the watch limit is reported');
    assert.match(String(warning!.msg), 'fs.inotify.max_user_watches');
    assert.match(String(warning!.msg), 'polling');
    assert.is(w.count('imageReady') + w.count('upToDate'), 1, 'the first build ran');
    const mark = w.events.length;
    await writeFile(path.join(dir, 'workdir/local.nix'), local(`polled${process.pid}`));
    const change = await w.waitFor((e) => e.event === 'change', 20_000, mark);
    assert.is(change.path, 'workdir/local.nix');
  });

  test('builds root their image\'s closure, one root set per project: nix-collect-garbage keeps both, and Nix gives no --add-root warning', async () => {
    const a = await project({ 'workdir/local.nix': local(`rootA${process.pid}`) });
    const b = await project({ 'workdir/local.nix': local(`rootB${process.pid}`) });
    const outs: string[] = [];
    for (const dir of [a, b]) {
      const r = await runCli(['-C', dir, '--json-logs', '--log-level', 'debug', 'build', '--json', '--force'], { env: env() });
      assert.is(r.exitCode, 0, r.stderr);
      assert.not.match(r.stderr, '--add-root', 'Nix warned about a missing GC root');
      const res = JSON.parse(r.stdout).result as { base: { outPath: string }[]; user: { outPath: string }[] };
      outs.push(...[...res.base, ...res.user].map((p) => p.outPath));
    }
    const gc = await inVolume(VOLUME, ['nix-collect-garbage']);
    assert.is(gc.exitCode, 0, gc.output);
    const ls = await inVolume(VOLUME, ['ls', '-d', ...outs]);
    assert.is(ls.exitCode, 0, `the garbage collector removed a path an image needs:\n${ls.output}`);
  });
  test('builder.image changes on a volume: the new image\'s Nix store paths are brought in and the volume records the image', async () => {
    // A second test builder image: the first plus a store path registered in its own /nix.
    const maker = await docker.createContainer({ Image: BUILDER_IMAGE, Cmd: ['sh', '-c', `echo nixdocker-seed-${process.pid} > /tmp/m && nix-store --add /tmp/m`] });
    await maker.start();
    assert.is(((await maker.wait()) as { StatusCode: number }).StatusCode, 0);
    const imageB = `localhost/nixdocker-test-builder-b:${process.pid}`;
    await maker.commit({ repo: 'localhost/nixdocker-test-builder-b', tag: String(process.pid) });
    await maker.remove({ force: true });
    try {
      const idOf = async (image: string) => (await docker.getImage(image).inspect()).Id;
      const listed = await runCaptured(docker, { image: imageB, cmd: ['sh', '-c', 'ls -d /nix/store/*-m'] });
      const marker = listed.output.trim();
      assert.match(marker, /^\/nix\/store\/[a-z0-9]{32}-m$/);

      const dir = await offlineProject({ volume: VOLUME, config: { builder: { image: imageB, idleSeconds: IDLE_SECONDS } }, files: { 'workdir/local.nix': local(`seedB${process.pid}`) } });
      const r = await runCli(['-C', dir, 'build'], { env: env() });
      assert.is(r.exitCode, 0, r.stderr);
      const inB = await inVolume(VOLUME, ['sh', '-c', `head -1 /nix/var/nixdocker/seeded-by; nix-store --check-validity ${marker} && cat ${marker}`]);
      assert.is(inB.exitCode, 0, `the new image's store path is not valid in the volume:\n${inB.output}`);
      assert.equal(inB.output.trim().split('\n'), [await idOf(imageB), `nixdocker-seed-${process.pid}`]);

      // And back: the volume says which image it holds now.
      const back = await offlineProject({ volume: VOLUME, config: { builder: { idleSeconds: IDLE_SECONDS } }, files: { 'workdir/local.nix': local(`seedA${process.pid}`) } });
      const again = await runCli(['-C', back, 'build'], { env: env() });
      assert.is(again.exitCode, 0, again.stderr);
      const inA = await inVolume(VOLUME, ['head', '-1', '/nix/var/nixdocker/seeded-by']);
      assert.is(inA.output.trim(), await idOf(BUILDER_IMAGE));
    } finally {
      for (const c of await docker.listContainers({ all: true, filters: { ancestor: [imageB] } })) await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
      await docker.getImage(imageB).remove({ force: true }).catch(() => {});
    }
  });
}

test.run();
