import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Docker from 'dockerode';
import { readdir, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { BIN, cleanupProjects, runCli, userConfigFile } from '../helpers/project.js';
import { BUILDER_IMAGE, inVolume, leftoverContainers, offlineProject, removeVolume, requireParts } from '../helpers/services.js';

const test = suite('builder (real podman + nix)');
const VOLUME = `nixdocker-test-builder-${process.pid}`;

interface BuildJson {
  reference: string;
  nixCached: boolean;
  image: { durations: Record<string, number> };
  result: {
    base: { name: string; outPath: string }[];
    user: { name: string; outPath: string }[];
    closure: Record<string, { references: string[]; narSize: number }>;
    built: string[];
    phases: Record<string, number>;
  };
}

async function buildJson(dir: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<BuildJson> {
  const r = await runCli(['-C', dir, 'build', '--json', ...extra], { env: { DOCKER_HOST: process.env.DOCKER_HOST, ...env } });
  assert.is(r.exitCode, 0, r.stderr);
  return JSON.parse(r.stdout) as BuildJson;
}

const byName = (r: BuildJson['result'], name: string) => [...r.base, ...r.user].find((p) => p.name === name)!;

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  test.after(async () => {
    await removeVolume(VOLUME);
    await cleanupProjects();
  });

  test('builder create prepares image and volume once; the second call changes nothing', async () => {
    const dir = await offlineProject({ volume: VOLUME });
    const env = { DOCKER_HOST: process.env.DOCKER_HOST };
    const first = await runCli(['-C', dir, 'builder', 'create'], { env });
    assert.is(first.exitCode, 0, first.stderr);
    assert.match(first.stdout, `volume  ${VOLUME}: created`);
    assert.match(first.stdout, /nix +nix-build \(Nix\) \d/);
    const second = await runCli(['-C', dir, 'builder', 'create'], { env });
    assert.is(second.exitCode, 0, second.stderr);
    assert.match(second.stdout, 'image   localhost/nixdocker-test-builder:latest: present, left as is');
    assert.match(second.stdout, `volume  ${VOLUME}: present, left as is`);
    const status = await runCli(['-C', dir, 'builder', 'status', '--json'], { env });
    const s = JSON.parse(status.stdout);
    assert.ok(s.image.present && s.volume.present);
    assert.equal(s.running, []);
  });

  test('build: out paths land in the volume, closure and graph are right', async () => {
    const dir = await offlineProject({ volume: VOLUME });
    const out = await buildJson(dir, ['--force']);
    const r = out.result;
    assert.equal(r.base.map((p) => p.name), ['busybox', 'hello', 'data']);
    assert.equal(r.user.map((p) => p.name), ['greet']);
    const busybox = byName(r, 'busybox').outPath;
    const hello = byName(r, 'hello').outPath;
    const data = byName(r, 'data').outPath;
    const greet = byName(r, 'greet').outPath;
    assert.equal(Object.keys(r.closure).sort(), [busybox, hello, data, greet].sort());
    // hello and greet are scripts whose #! line names busybox: Nix found that reference.
    assert.ok(r.closure[hello]!.references.includes(busybox), 'hello → busybox');
    assert.ok(r.closure[greet]!.references.includes(busybox), 'greet → busybox');
    assert.equal(r.closure[data]!.references.filter((p) => p !== data), []);
    assert.ok(r.closure[data]!.narSize > 4_000_000, 'data is the large path');
    for (const phase of ['evaluate', 'build', 'closure']) assert.type(r.phases[phase], 'number', phase);
    // --force skips the registry check, so it has no duration.
    for (const phase of ['hash', 'evaluate', 'build', 'closure', 'assemble', 'push']) assert.type(out.image.durations[phase], 'number', phase);
    const ls = await inVolume(VOLUME, ['sh', '-c', `ls -d ${busybox} ${hello} ${data} ${greet} && ${hello}/bin/hello`]);
    assert.is(ls.exitCode, 0, ls.output);
    assert.match(ls.output, 'Hello from a nixdocker image');
    assert.equal(await leftoverContainers(VOLUME), []);
  });

  test('adding a package builds only that derivation; earlier paths stay in the store', async () => {
    const dir = await offlineProject({ volume: VOLUME });
    const first = await buildJson(dir, ['--force']);
    const nonce = `${process.pid}${Date.now()}`;
    await writeFile(
      path.join(dir, 'workdir/local.nix'),
      `{ pkgs, ... }: [ pkgs.greet (pkgs.writeScriptBin "shout" "echo ${nonce} | tr a-z A-Z") ]\n`,
    );
    const second = await buildJson(dir);
    assert.is.not(second.reference, first.reference);
    assert.is(second.result.built.length, 1, `built: ${second.result.built.join(', ')}`);
    assert.match(second.result.built[0]!, /-shout\.drv$/);
    const greet = byName(first.result, 'greet').outPath;
    const check = await inVolume(VOLUME, ['ls', '-d', greet, byName(second.result, 'shout').outPath]);
    assert.is(check.exitCode, 0, check.output);
  });

  test('a remembered result skips Nix (a push, then --load); --force runs it again', async () => {
    const unique = `{ pkgs, ... }: [ (pkgs.writeScriptBin "remember" "echo ${process.pid}${Date.now()}") ]\n`;
    const dir = await offlineProject({ volume: VOLUME, files: { 'workdir/local.nix': unique } });
    await buildJson(dir, ['--force']);
    const again = await runCli(['-C', dir, 'build', '--load'], { env: { DOCKER_HOST: process.env.DOCKER_HOST } });
    assert.is(again.exitCode, 0, again.stderr);
    assert.match(again.stdout, 'Nix result remembered');
    const forced = await buildJson(dir, ['--force', '--load']);
    assert.is(forced.nixCached, false);
  });

  test('a syntax error names workdir/local.nix and the line, exit 1, no stack trace', async () => {
    const dir = await offlineProject({ volume: VOLUME, files: { 'workdir/local.nix': '{ pkgs, ... }:\n[\n  pkgs.greet\n  (pkgs.hello\n]\n' } });
    const r = await runCli(['-C', dir, 'build'], { env: { DOCKER_HOST: process.env.DOCKER_HOST } });
    assert.is(r.exitCode, 1);
    assert.match(r.stderr, 'workdir/local.nix line 5');
    assert.match(r.stderr, 'syntax error');
    assert.not.match(r.stderr, '/nixdocker/project');
    assert.not.match(r.stderr, /\n\s+at [A-Za-z.]+ \(/);
    assert.equal(await leftoverContainers(VOLUME), []);
  });

  test('a failing derivation quotes the build log', async () => {
    const nonce = `${process.pid}${Date.now()}`;
    const bad = `{ pkgs, ... }: [ (derivation { name = "broken"; system = builtins.currentSystem; builder = "/bin/busybox"; args = [ "sh" "-c" "echo compiling ${nonce}; echo oh no >&2; exit 3" ]; }) ]\n`;
    const dir = await offlineProject({ volume: VOLUME, files: { 'workdir/local.nix': bad } });
    const r = await runCli(['-C', dir, 'build'], { env: { DOCKER_HOST: process.env.DOCKER_HOST } });
    assert.is(r.exitCode, 1);
    assert.match(r.stderr, 'Nix could not build the environment');
    assert.match(r.stderr, 'broken');
    assert.match(r.stderr, 'oh no');
  });

  test('a download that fails gets a fix about the builder\'s network; host proxy variables reach the builder', async () => {
    const nonce = `${process.pid}${Date.now()}`;
    // Port 9 on the builder's loopback: nothing listens there.
    const fetching = (url: string) => `{ pkgs, ... }: [ (import (builtins.fetchurl "${url}")) ]\n`;
    const dir = await offlineProject({ volume: VOLUME, files: { 'workdir/local.nix': fetching(`http://127.0.0.1:9/nixdocker-${nonce}.nix`) } });
    const env = { DOCKER_HOST: process.env.DOCKER_HOST, http_proxy: '', HTTP_PROXY: '', no_proxy: '', NO_PROXY: '' };
    const r = await runCli(['-C', dir, 'build'], { env });
    assert.is(r.exitCode, 1, r.stderr);
    assert.match(r.stderr, `the builder could not download http://127.0.0.1:9/nixdocker-${nonce}.nix`);
    assert.match(r.stderr, /fix: the Nix files are fine; the builder container cannot reach 127\.0\.0\.1:9 \(Couldn't connect to server\)/);
    assert.match(r.stderr, 'HTTP_PROXY/HTTPS_PROXY/NO_PROXY');
    assert.not.match(r.stderr, 'fix the Nix file');

    // A host that does not resolve, through a proxy that nothing serves: the error is the proxy's, so it got in.
    await writeFile(path.join(dir, 'workdir/local.nix'), fetching(`http://nixdocker-${nonce}.invalid/x.nix`));
    const direct = await runCli(['-C', dir, 'build'], { env });
    assert.match(direct.stderr, /Could(?:n't| not) resolve host/);
    const proxied = await runCli(['-C', dir, 'build'], { env: { ...env, http_proxy: 'http://127.0.0.1:9' } });
    assert.is(proxied.exitCode, 1);
    assert.not.match(proxied.stderr, /resolve host/, proxied.stderr);
    assert.match(proxied.stderr, /Couldn't connect to server|Failed to connect|Could(?:n't| not) connect to proxy/);
    assert.match(proxied.stderr, 'fix: the Nix files are fine');
    assert.equal(await leftoverContainers(VOLUME), []);
  });

  test('Ctrl-C during a build stops Nix and removes the builder container', async () => {
    const nonce = `${process.pid}${Date.now()}`;
    const slow = `{ pkgs, ... }: [ (derivation { name = "slow-${nonce}"; system = builtins.currentSystem; builder = "/bin/busybox"; args = [ "sh" "-c" "sleep 120; echo > $out" ]; }) ]\n`;
    const dir = await offlineProject({ volume: VOLUME, files: { 'workdir/local.nix': slow } });
    const child = execa(process.execPath, [BIN, '-C', dir, '--log-level', 'debug', 'build'], { reject: false, env: { DOCKER_HOST: process.env.DOCKER_HOST } });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the build never started')), 60_000);
      child.stderr!.on('data', (c: Buffer) => {
        if (c.toString().includes(`building '`)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const t0 = Date.now();
    child.kill('SIGINT');
    const r = await child;
    assert.ok(Date.now() - t0 < 15_000, 'stopped within 15 s');
    assert.is.not(r.exitCode, 0);
    assert.equal(await leftoverContainers(VOLUME), []);
    // The output was never registered: only the .drv (and Nix's stale lock file) are there.
    const ps = await inVolume(VOLUME, ['sh', '-c', `ls /nix/store | grep slow-${nonce} | grep -v -e '\\.drv$' -e '\\.lock$' | wc -l`]);
    assert.is(ps.output.trim(), '0', ps.output);
  });

  test('local mode gives the same out paths as container mode', async () => {
    const container = await buildJson(await offlineProject({ volume: VOLUME }), ['--force']);
    // Local mode runs the project's Nix on the host: only a user config may ask for it.
    const localDir = await offlineProject({ volume: VOLUME });
    const local = await buildJson(localDir, ['--force'], { NIXDOCKER_USER_CONFIG: await userConfigFile({ builder: { mode: 'local' } }) });
    const outs = (j: BuildJson) => [...j.result.base, ...j.result.user].map((p) => p.outPath);
    assert.equal(outs(local), outs(container));
    assert.equal(Object.keys(local.result.closure).sort(), Object.keys(container.result.closure).sort());
    // The host's Nix keeps the image's outputs: each root link is registered at its final place
    // (gcroots/auto points at it), not at the temporary folder it was made in.
    const roots = path.join(localDir, '.nixdocker', 'gcroots', 'current');
    const links = (await readdir(roots)).map((n) => path.join(roots, n));
    assert.ok(links.length > 0, 'the local build made roots');
    const auto = '/nix/var/nix/gcroots/auto';
    const registered = new Set(await Promise.all((await readdir(auto)).map((n) => readlink(path.join(auto, n)).catch(() => ''))));
    for (const l of links) assert.ok(registered.has(l), `${l} is a registered root`);
  });

  test('builder rm, then build: the message names `nixdocker builder create`', async () => {
    // A tag of our own, so removing it leaves the shared test image alone.
    const docker = new Docker();
    await docker.getImage(BUILDER_IMAGE).tag({ repo: 'localhost/nixdocker-test-builder', tag: `rm-${process.pid}` });
    const image = `localhost/nixdocker-test-builder:rm-${process.pid}`;
    const vol = `${VOLUME}-rm`;
    const dir = await offlineProject({ volume: vol, image });
    const env = { DOCKER_HOST: process.env.DOCKER_HOST };
    assert.is((await runCli(['-C', dir, 'builder', 'create'], { env })).exitCode, 0);
    const rm = await runCli(['-C', dir, 'builder', 'rm', '--volume'], { env });
    assert.is(rm.exitCode, 0, rm.stderr);
    assert.match(rm.stdout, `volume  ${vol}: removed`);
    const r = await runCli(['-C', dir, 'build', '--force'], { env });
    assert.is(r.exitCode, 1);
    assert.match(r.stderr, 'nixdocker builder create');
    assert.match(r.stderr, image);
    await docker.getImage(BUILDER_IMAGE).inspect(); // the shared image is still there
  });

  test('builder create --from-tarball loads a saved builder image', async () => {
    const docker = new Docker();
    const tag = `tarball-${process.pid}`;
    const image = `localhost/nixdocker-test-builder:${tag}`;
    await docker.getImage(BUILDER_IMAGE).tag({ repo: 'localhost/nixdocker-test-builder', tag });
    const dir = await offlineProject({ volume: VOLUME, image });
    const tarball = path.join(dir, 'builder.tar');
    const { createWriteStream } = await import('node:fs');
    const { pipeline } = await import('node:stream/promises');
    await pipeline((await docker.getImage(image).get()) as unknown as NodeJS.ReadableStream, createWriteStream(tarball));
    await docker.getImage(image).remove();
    const env = { DOCKER_HOST: process.env.DOCKER_HOST };
    const r = await runCli(['-C', dir, 'builder', 'create', '--from-tarball', tarball], { env });
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, `image   ${image}: loaded from the tarball`);
    await docker.getImage(image).inspect();
    await docker.getImage(image).remove();
    const missing = await runCli(['-C', dir, 'builder', 'create', '--from-tarball', path.join(dir, 'nope.tar')], { env });
    assert.is(missing.exitCode, 1);
    assert.match(missing.stderr, 'nope.tar');
  });

  test('an unreachable engine is a clear error', async () => {
    const dir = await offlineProject({ volume: VOLUME });
    const r = await runCli(['-C', dir, 'build', '--force'], { env: { DOCKER_HOST: 'unix:///nonexistent/podman.sock' } });
    assert.is(r.exitCode, 1);
    assert.match(r.stderr, 'Cannot reach the container engine at unix:///nonexistent/podman.sock');
    assert.match(r.stderr, 'DOCKER_HOST');
  });
}

test.run();
