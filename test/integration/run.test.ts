import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Docker from 'dockerode';
import { execa } from 'execa';
import { BIN, cleanupProjects, runCli } from '../helpers/project.js';
import { freePort, waitUntil } from '../helpers/registry.js';
import { offlineProject, removeVolume, requireParts } from '../helpers/services.js';

// `nixdocker run` as `docker run`: --pull, -p, -e, --name, and `pull run` with run's options.
const test = suite('run like docker run (real nix, podman, registry)');
const VOLUME = `nixdocker-test-run-${process.pid}`;
const env = (extra: Record<string, string> = {}) => ({ DOCKER_HOST: process.env.DOCKER_HOST, ...extra });

const sde = () => ({ SOURCE_DATE_EPOCH: String(1_700_000_000 + (process.pid % 100_000)) });
let dir = '';
let image = '';

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  test.before(async () => {
    // A tag of its own (SOURCE_DATE_EPOCH enters it), so removing it from the engine disturbs no other suite.
    // sh as PID 1 traps SIGINT below: a PID 1 without a handler ignores it, as under docker run.
    dir = await offlineProject({ volume: VOLUME });
    const create = await runCli(['-C', dir, 'builder', 'create'], { env: env() });
    assert.is(create.exitCode, 0, create.stderr);
    const build = await runCli(['-C', dir, 'build', '--json'], { env: env(sde()) });
    assert.is(build.exitCode, 0, build.stderr);
    image = (JSON.parse(build.stdout) as { reference: string }).reference;
  });
  test.after(async () => {
    await new Docker().getImage(image).remove({ force: true }).catch(() => {});
    await removeVolume(VOLUME);
    await cleanupProjects();
  });

  test('a missing image: --pull never says so, the default pulls it and runs', async () => {
    await new Docker().getImage(image).remove({ force: true }).catch(() => {});
    const never = await runCli(['-C', dir, 'run', '--pull', 'never', 'hello'], { env: env(sde()) });
    assert.is(never.exitCode, 1);
    assert.match(never.stderr, `The image ${image} is not in the engine`);
    assert.not.match(never.stderr, /\n\s+at /, 'no stack trace');
    const run = await runCli(['-C', dir, 'run', 'hello'], { env: env(sde()) });
    assert.is(run.exitCode, 0, run.stderr);
    assert.match(run.stdout, 'Hello from a nixdocker image');
    assert.match(run.stderr, `pulled ${image}`);
    const again = await runCli(['-C', dir, 'run', 'hello'], { env: env(sde()) });
    assert.not.match(again.stderr, 'pulled', 'present: not pulled again');
    const bad = await runCli(['-C', dir, 'run', '--pull', 'sometimes', 'hello'], { env: env(sde()) });
    assert.is(bad.exitCode, 1);
    assert.match(bad.stderr, '--pull sometimes is not a pull policy');
  });

  test('-e: KEY=VALUE and a bare KEY from this shell reach the command; an unset bare KEY stays unset', async () => {
    const r = await runCli(
      ['-C', dir, 'run', '-e', 'ONE=1', '--env', 'TWO=a=b c', '-e', 'FROM_SHELL', '-e', 'NOT_SET_ANYWHERE', 'sh', '-c', 'echo "[$ONE] [$TWO] [$FROM_SHELL] [${NOT_SET_ANYWHERE-unset}] [$GREETING]"'],
      { env: env({ ...sde(), FROM_SHELL: 'shell value' }) },
    );
    assert.is(r.exitCode, 0, r.stderr);
    assert.is(r.stdout.trim(), '[1] [a=b c] [shell value] [unset] [hello]', 'the image\'s own variables stay');
    const bad = await runCli(['-C', dir, 'run', '-p', '99999:80', 'true'], { env: env(sde()) });
    assert.is(bad.exitCode, 1);
    assert.match(bad.stderr, '-p/--publish "99999:80" is not a port to publish');
  });

  test('-p and --name: the published port answers from the host; Ctrl-C stops and removes the container', async () => {
    const port = await freePort();
    const name = `nixdocker-test-run-${process.pid}`;
    const child = execa(process.execPath, [BIN, '-C', dir, 'run', '--name', name, '-p', `127.0.0.1:${port}:8080`, 'sh', '-c', 'trap "exit 0" INT TERM; busybox httpd -f -p 8080 -h . & wait'], {
      env: env(sde()),
      reject: false,
    });
    try {
      let body = '';
      await waitUntil(`http://127.0.0.1:${port}/ to answer`, async () => {
        body = await fetch(`http://127.0.0.1:${port}/hello_world.sh`).then((r) => (r.ok ? r.text() : ''), () => '');
        return body !== '' || child.exitCode !== null;
      }, 30_000);
      assert.match(body, 'hello_world.sh ran in', 'workdir/user, served from the container');
      const info = await new Docker().getContainer(name).inspect();
      assert.is(info.Config.Image.replace(/^localhost\//, ''), image);
      child.kill('SIGINT');
      const done = await child;
      // nixdocker handles the SIGINT itself: it exits on its own with the container's status, never
      // killed by the signal. The status is 0 when the forwarded SIGINT reaches the trap first, 137
      // when the cancel's kill (SIGKILL) does: both requests leave at once, so either may win.
      assert.is(done.signal, undefined, `nixdocker was killed by ${done.signal}, not stopped by its handler: ${done.stderr}`);
      assert.ok(done.exitCode === 0 || done.exitCode === 137, `exit code ${done.exitCode}, expected 0 or 137 (the container's status): ${done.stderr}`);
      assert.is(await new Docker().getContainer(name).inspect().then(() => 'present', () => 'gone'), 'gone');
    } finally {
      child.kill('SIGKILL');
      await new Docker().getContainer(name).remove({ force: true }).catch(() => {});
    }
  });

  test('pull run takes run\'s options in run\'s places: -C, -e after `pull run`', async () => {
    const r = await runCli(['pull', 'run', '-C', dir, '-e', 'WHO=you', 'sh', '-c', 'greet "$WHO"'], { env: env(sde()) });
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, 'greetings, you');
    assert.match(r.stderr, `pulled ${image}`, 'pull run always pulls');
    const before = await runCli(['-C', dir, 'pull', 'run', 'greet', '-C', 'x'], { env: env(sde()) });
    assert.is(before.exitCode, 0, before.stderr);
    assert.match(before.stdout, 'greetings, -C', 'after CMD, everything is the command\'s');
  });
}

test.run();
