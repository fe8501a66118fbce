import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Docker from 'dockerode';
import { pino } from 'pino';
import autorun from '../../plugins/autorun.js';
import { createBuilder } from '../../src/builder/builder.js';
import { loadConfig } from '../../src/config/load.js';
import type { CommandResult, ImageDescription } from '../../src/hooks.js';
import { buildImage } from '../../src/pipeline/build-image.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import type { LogRecord } from '../helpers/plugin.js';
import { cleanupProjects } from '../helpers/project.js';
import { freePort, waitUntil } from '../helpers/registry.js';
import { BUILDER_IMAGE, offlineProject, removeVolume, requireParts } from '../helpers/services.js';

const test = suite('autorun plugin (real nix, podman, registry)');
const VOLUME = `nixdocker-test-autorun-${process.pid}`;

/** A loaded image of the offline example, made once in `before`. */
let loaded: ImageDescription;

interface Driven {
  dir: string;
  pipeline: Pipeline;
  logs: LogRecord[];
  results: CommandResult[];
  /** The next result not yet taken, waited for at most `ms`. */
  next(ms?: number): Promise<CommandResult>;
  /** Times one imageReady as the core fires it. */
  fireReady(desc: ImageDescription): Promise<number>;
}

/** An offline project whose config has the given plugins, and its real Pipeline. */
async function drive(plugins: unknown[]): Promise<Driven> {
  const dir = await offlineProject({ volume: VOLUME, config: { plugins } });
  const logs: LogRecord[] = [];
  const log = pino({ level: 'debug', base: undefined }, { write: (line: string) => void logs.push(JSON.parse(line) as LogRecord) });
  const { config } = await loadConfig(dir);
  const pipeline = await Pipeline.create(config, log);
  const results: CommandResult[] = [];
  pipeline.hooks.commandFinished.tap('test', (r) => void results.push(r));
  let taken = 0;
  return {
    dir,
    pipeline,
    logs,
    results,
    async next(ms = 30_000) {
      await waitUntil(`commandFinished #${taken + 1}`, async () => results.length > taken, ms);
      return results[taken++]!;
    },
    async fireReady(desc) {
      const t0 = performance.now();
      await pipeline.hooks.imageReady.promise(desc);
      return performance.now() - t0;
    },
  };
}

const logged = (logs: LogRecord[], text: string) => logs.filter((l) => l.plugin === 'autorun' && l.msg === text).length;

/** Run containers of a project still in the engine. */
async function runContainers(projectDir: string): Promise<string[]> {
  const list = await new Docker().listContainers({ all: true, filters: { label: ['org.nixdocker.role=run', `org.nixdocker.project=${projectDir}`] } });
  return list.map((c) => c.Id);
}

test('options are checked when the plugin is created', () => {
  assert.throws(() => autorun({}), /"command"/);
  assert.throws(() => autorun({ command: [] }), /"command"/);
  assert.throws(() => autorun({ command: 'echo hi' }), /"command"/);
  assert.throws(() => autorun({ command: ['echo', 1] }), /"command"/);
  assert.throws(() => autorun({ command: ['true'], timeoutMs: 0 }), /"timeoutMs"/);
  assert.throws(() => autorun({ command: ['true'], timeoutMs: '1s' }), /"timeoutMs"/);
  assert.throws(() => autorun({ command: ['true'], env: 'A=1' }), /"env"/);
  assert.throws(() => autorun({ command: ['true'], env: ['=1'] }), /autorun option "env" "=1"/);
  assert.throws(() => autorun({ command: ['true'], publish: ['8888:notaport'] }), /autorun option "publish" "8888:notaport"/);
  assert.ok(autorun({ command: ['true'], env: ['A=1', 'HOME'], publish: ['8888:8888', '127.0.0.1::80/udp'] }));
});

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  test.before(async () => {
    await createBuilder(new Docker(), { image: BUILDER_IMAGE, volume: VOLUME }, { log: pino({ level: 'silent' }) });
    const dir = await offlineProject({ volume: VOLUME, config: { plugins: [] } });
    const { config } = await loadConfig(dir);
    const p = await Pipeline.create(config, pino({ level: 'silent' }));
    const out = await buildImage(p, { buildId: 1, load: true, force: true });
    assert.is(out.status, 'built');
    if (out.status === 'built') loaded = out.image;
  });
  test.after(async () => {
    await removeVolume(VOLUME);
    await cleanupProjects();
  });

  test('a pushed image: pulled, the command runs in workdir/user, its output is logged and reported', async () => {
    const d = await drive(['push', ['autorun', { command: ['sh', '-c', 'echo autorun-ok; greet tester; ls'] }]]);
    const out = await buildImage(d.pipeline, { buildId: 1, force: true });
    assert.is(out.status, 'built');
    assert.equal(out.status === 'built' && out.image.destinations, ['registry']);
    const r = await d.next(60_000);
    assert.is(r.exitCode, 0, r.output);
    assert.is(r.cancelled, false);
    assert.is(r.image, out.identity.image);
    assert.equal(r.command, ['sh', '-c', 'echo autorun-ok; greet tester; ls']);
    assert.match(r.output, 'autorun-ok');
    assert.match(r.output, 'greetings, tester');
    assert.match(r.output, 'hello_world.sh', 'workdir/user is the working directory');
    assert.is(logged(d.logs, 'autorun-ok'), 1, 'each output line is logged');
    assert.is(logged(d.logs, 'greetings, tester'), 1);
    await d.pipeline.shutdown();
    assert.equal(await runContainers(d.pipeline.config.projectDir), []);
  });

  test('env and publish: the variable reaches the command, the published port answers from the host', async () => {
    const port = await freePort();
    process.env.NIXDOCKER_AUTORUN_FROM_HOST = 'from-the-daemon';
    const d = await drive([
      ['autorun', { command: ['sh', '-c', 'echo "vars $AUTO_A $NIXDOCKER_AUTORUN_FROM_HOST"; exec busybox httpd -f -p 8080 -h .'], env: ['AUTO_A=set-by-option', 'NIXDOCKER_AUTORUN_FROM_HOST'], publish: [`127.0.0.1:${port}:8080`] }],
    ]);
    await d.fireReady(loaded);
    let body = '';
    await waitUntil(`http://127.0.0.1:${port}/ to answer`, async () => {
      body = await fetch(`http://127.0.0.1:${port}/hello_world.sh`).then((r) => (r.ok ? r.text() : ''), () => '');
      return body !== '';
    }, 30_000);
    delete process.env.NIXDOCKER_AUTORUN_FROM_HOST; // read when the run starts, as the daemon's own variable
    assert.match(body, 'hello_world.sh ran in', 'the file of workdir/user, served by the command');
    await d.pipeline.shutdown();
    const r = await d.next();
    assert.is(r.cancelled, true);
    assert.match(r.output, 'vars set-by-option from-the-daemon');
  });

  test('a failing command reports its exit code', async () => {
    const d = await drive([['autorun', { command: ['sh', '-c', 'echo bye; exit 7'] }]]);
    await d.fireReady(loaded);
    const r = await d.next();
    assert.is(r.exitCode, 7);
    assert.is(r.cancelled, false);
    assert.match(r.output, 'bye');
    assert.ok(d.logs.some((l) => l.level === 40 && /exited with 7/.test(l.msg)), 'a warning says so');
    await d.pipeline.shutdown();
  });

  test('a newer image cancels a running command without waiting for it; shutdown cancels the last one', async () => {
    const d = await drive([['autorun', { command: ['sh', '-c', 'echo started; exec sleep 60'] }]]);
    const first = await d.fireReady(loaded);
    assert.ok(first < 500, `imageReady took ${first} ms`);
    await waitUntil('the first command to start', async () => logged(d.logs, 'started') === 1, 30_000);

    const t0 = performance.now();
    const second = await d.fireReady(loaded);
    assert.ok(second < 500, `imageReady took ${second} ms while a command ran`);
    const r1 = await d.next(10_000);
    assert.ok(performance.now() - t0 < 10_000);
    assert.is(r1.cancelled, true);
    assert.is(r1.exitCode, null);
    assert.match(r1.output, 'started');

    await waitUntil('the second command to start', async () => logged(d.logs, 'started') === 2, 30_000);
    assert.is((await runContainers(d.pipeline.config.projectDir)).length, 1, 'only the newest command runs');
    const t1 = performance.now();
    await d.pipeline.shutdown();
    assert.ok(performance.now() - t1 < 10_000, 'shutdown waited for the whole sleep');
    assert.is(d.results.length, 2, 'shutdown awaited the report');
    const r2 = await d.next(0);
    assert.is(r2.cancelled, true);
    assert.equal(await runContainers(d.pipeline.config.projectDir), [], 'no container left');
  });

  test('WORKDIR/user swapped for a symlink to /etc: autorun refuses to mount it, the command does not run', async () => {
    const d = await drive([['autorun', { command: ['sh', '-c', 'head -1 shadow; head -1 passwd'] }]]);
    const { rm, symlink } = await import('node:fs/promises');
    const userDir = `${d.dir}/workdir/user`;
    await rm(userDir, { recursive: true });
    await symlink('/etc', userDir);
    await d.fireReady(loaded);
    const r = await d.next();
    assert.is(r.exitCode, null, r.output);
    assert.match(r.output, /workdir\/user named by "workdir".*symlink to \/etc, outside the project directory/);
    assert.not.match(r.output, 'root:');
    assert.ok(d.logs.some((l) => l.level === 50 && /outside the project directory/.test(l.msg)), 'an error says so');
    await d.pipeline.shutdown();
    assert.equal(await runContainers(d.pipeline.config.projectDir), [], 'no container was even created');
  });

  test('timeoutMs kills a command that runs too long; that is not a cancel', async () => {
    const d = await drive([['autorun', { command: ['sleep', '60'], timeoutMs: 1500 }]]);
    await d.fireReady(loaded);
    const r = await d.next(15_000);
    assert.is(r.cancelled, false);
    assert.is(r.exitCode, null);
    assert.ok(d.logs.some((l) => l.level === 40 && /timeout/.test(l.msg)), 'a warning names the timeout');
    assert.equal(await runContainers(d.pipeline.config.projectDir), []);
    await d.pipeline.shutdown();
  });

  test('an image that is not there is reported with the reason, and the next one still runs', async () => {
    const d = await drive([['autorun', { command: ['sh', '-c', 'echo fine'] }]]);
    await d.fireReady({ ...loaded, tag: '0'.repeat(32), image: loaded.image.replace(/:[0-9a-f]{32}$/, `:${'0'.repeat(32)}`) });
    const bad = await d.next();
    assert.is(bad.exitCode, null);
    assert.is(bad.cancelled, false);
    assert.match(bad.output, 'not in the engine');
    await d.fireReady(loaded);
    const good = await d.next();
    assert.is(good.exitCode, 0);
    assert.match(good.output, 'fine');
    await d.pipeline.shutdown();
  });
}

test.run();
