import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { BIN, cleanupProjects, runCli } from '../helpers/project.js';
import { freePort, waitUntil } from '../helpers/registry.js';
import { DOCKERD_HOST, dockerAt, offlineProject, requireParts } from '../helpers/services.js';

// Engine compatibility: the main end-to-end path against Debian's dockerd, as
// the other suites run it against podman. Docker's image store, its platform
// names (/info says x86_64) and its load and pull differ from podman's.
const test = suite('engine compatibility: dockerd (build, --load, pull run, interactive run)');
const VOLUME = `nixdocker-test-dockerd-${process.pid}`;
const env = () => ({ DOCKER_HOST: DOCKERD_HOST });
const LOCAL = (what: string) => ({ 'workdir/local.nix': `# dockerd ${what} ${process.pid} ${Date.now()}\n{ pkgs, ... }: [ pkgs.greet ]\n` });

if (await requireParts(test, ['registry', 'dockerd'])) {
  const docker = dockerAt(DOCKERD_HOST);
  test.after(async () => {
    const left = await docker.listContainers({ all: true, filters: { label: [`org.nixdocker.volume=${VOLUME}`] } });
    for (const c of left) await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
    await docker.getVolume(VOLUME).remove().catch(() => {});
    await cleanupProjects();
  });

  test('builder create, build and push, pull run, --load and an interactive run, all through dockerd', async () => {
    const dir = await offlineProject({ volume: VOLUME, files: LOCAL('e2e') });
    const create = await runCli(['-C', dir, 'builder', 'create'], { env: env() });
    assert.is(create.exitCode, 0, create.stderr);
    assert.ok((await docker.getVolume(VOLUME).inspect()).Name === VOLUME, 'the store volume is dockerd\'s');

    const built = await runCli(['-C', dir, 'build', '--json'], { env: env(), timeoutMs: 300_000 });
    assert.is(built.exitCode, 0, built.stderr);
    const out = JSON.parse(built.stdout) as { status: string; reference: string; image: { platforms: { platform: string }[] } };
    assert.is(out.status, 'built');
    assert.equal(out.image.platforms.map((p) => p.platform), ['linux/amd64']);

    const run = await runCli(['-C', dir, 'pull', 'run', 'greet', 'dockerd'], { env: env() });
    assert.is(run.exitCode, 0, run.stderr);
    assert.match(run.stdout, 'greetings, dockerd');
    assert.is((await docker.getImage(out.reference).inspect()).Architecture, 'amd64');
    // A no-op asks the registry once; the engine's own platform (x86_64 in /info) is amd64.
    const again = await runCli(['-C', dir, 'build', '--json'], { env: env() });
    assert.is(JSON.parse(again.stdout).status, 'up-to-date', again.stderr);

    // --load: no registry involved, Docker's image store gets the archive.
    const loadDir = await offlineProject({ volume: VOLUME, files: LOCAL('load'), config: { registry: { host: '127.0.0.1:1' } } });
    const loaded = await runCli(['-C', loadDir, 'build', '--load', '--json'], { env: env(), timeoutMs: 300_000 });
    assert.is(loaded.exitCode, 0, loaded.stderr);
    const loadedRef = (JSON.parse(loaded.stdout) as { reference: string }).reference;
    assert.ok(await docker.getImage(loadedRef).inspect(), 'dockerd holds the loaded image');
    const hello = await runCli(['-C', loadDir, 'run', '--pull', 'never', 'hello'], { env: env() });
    assert.is(hello.exitCode, 0, hello.stderr);
    assert.match(hello.stdout, 'Hello from a nixdocker image');

    // On a terminal (a pty from script(1)): stdin and a TTY attached through dockerd.
    const tty = await execa('script', ['-qec', `${process.execPath} ${BIN} -C ${dir} run`, '/dev/null'], {
      input: 'echo typed-$((6*7)); exit 4\n',
      reject: false,
      env: env(),
      timeout: 60_000,
    });
    assert.is(tty.exitCode, 4, tty.stdout);
    assert.match(tty.stdout, 'typed-42');

    // run's docker-run options through dockerd: a missing image is pulled from the insecure
    // registry, -e reaches the command, -p publishes on the host's loopback.
    await docker.getImage(out.reference).remove({ force: true });
    const withEnv = await runCli(['-C', dir, 'run', '-e', 'WHO=dockerd env', 'sh', '-c', 'greet "$WHO"'], { env: env() });
    assert.is(withEnv.exitCode, 0, withEnv.stderr);
    assert.match(withEnv.stdout, 'greetings, dockerd env');
    assert.match(withEnv.stderr, `pulled ${out.reference}`);
    const port = await freePort();
    const name = `nixdocker-test-dockerd-run-${process.pid}`;
    const server = execa(process.execPath, [BIN, '-C', dir, 'run', '--name', name, '-p', `127.0.0.1:${port}:8080`, 'sh', '-c', 'busybox httpd -f -p 8080 -h .'], { env: env(), reject: false });
    try {
      let body = '';
      await waitUntil(`http://127.0.0.1:${port}/ to answer through dockerd`, async () => {
        body = await fetch(`http://127.0.0.1:${port}/hello_world.sh`).then((r) => (r.ok ? r.text() : ''), () => '');
        return body !== '' || server.exitCode !== null;
      }, 30_000);
      assert.match(body, 'hello_world.sh ran in', 'served from the container through the published port');
    } finally {
      await docker.getContainer(name).remove({ force: true }).catch(() => {});
      server.kill('SIGKILL');
      await server;
    }
  });
}

test.run();
