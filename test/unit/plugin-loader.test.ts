import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';
import { createHooks, isolatePlugins, tapOnly } from '../../src/hooks.js';
import { loadPlugins } from '../../src/plugin-loader.js';
import { pino } from 'pino';
import { cleanupProjects, runCli, tmpProject } from '../helpers/project.js';
import { readStatus } from '../../src/daemon/status.js';

const test = suite('plugin loader and hook isolation');
test.after(cleanupProjects);

async function configWith(plugins: unknown, files: Record<string, string> = {}) {
  const dir = await tmpProject({ 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]', '.nixdockerrc.json': JSON.stringify({ plugins }), ...files });
  return (await loadConfig(dir, { env: {} })).config;
}

test('built-ins, a relative class with options, and an object plugin load', async () => {
  const config = await configWith(['push', 'notify', ['./mine.mjs', { greeting: 'hi' }], './obj.mjs'], {
    'mine.mjs': 'export default class { name = "mine"; constructor(o) { this.o = o; } apply() {} }',
    'obj.mjs': 'export default { name: "obj", apply() {} }',
  });
  const loaded = await loadPlugins(config);
  assert.equal(loaded.map((l) => l.plugin.name), ['push', 'notify', 'mine', 'obj']);
  assert.equal((loaded[2]!.plugin as unknown as { o: unknown }).o, { greeting: 'hi' });
});

test('an unknown plugin names the entry and how to install it', async () => {
  const err = await loadPlugins(await configWith(['no-such-nixdocker-plugin'])).catch((e: unknown) => e);
  assert.instance(err, UserError);
  assert.match((err as UserError).message, '"plugins[0]" (no-such-nixdocker-plugin)');
  assert.match((err as UserError).format(), 'npm install no-such-nixdocker-plugin');
});

test('bad options of a built-in are a UserError naming the option', async () => {
  const err = await loadPlugins(await configWith([['autorun', { command: 'pytest' }]])).catch((e: unknown) => e);
  assert.instance(err, UserError);
  assert.match((err as UserError).message, 'autorun');
  assert.match((err as UserError).message, '"command"');
});

test('something that is not a plugin is refused', async () => {
  const err = await loadPlugins(await configWith(['./nope.mjs'], { 'nope.mjs': 'export default { hello: 1 }' })).catch((e: unknown) => e);
  assert.instance(err, UserError);
  assert.match((err as UserError).message, 'is not a plugin');
});

test('a throwing tap is logged with its name; waterfalls pass their input on; others still run', async () => {
  const lines: { plugin?: string; hook?: string; msg: string }[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const hooks = createHooks();
  isolatePlugins(hooks, log);
  const view = tapOnly(hooks);
  assert.is((view.imageReady as unknown as { call?: unknown }).call, undefined, 'plugins cannot call hooks');
  view.identity.tapPromise('bad', async () => {
    throw new Error('nope');
  });
  view.identity.tapPromise('suffix', async (id) => ({ ...id, tag: `${id.tag}-x` }));
  let ran = false;
  view.shutdown.tap('bad', () => {
    throw new Error('sync boom');
  });
  view.shutdown.tapPromise('good', async () => {
    ran = true;
  });
  const id = { name: 'n', tag: 't', image: 'r/n:t', repository: 'r/n', inputs: [] };
  const out = await hooks.identity.promise(id);
  assert.is(out.tag, 't-x');
  await hooks.shutdown.promise();
  assert.ok(ran);
  assert.ok(lines.some((l) => l.plugin === 'bad' && l.hook === 'identity' && l.msg.includes('nope')));
  assert.ok(lines.some((l) => l.plugin === 'bad' && l.hook === 'shutdown' && l.msg.includes('sync boom')));
});

test('a plugin whose apply throws stops build and the daemon\'s start, naming the plugin; the others are shut down', async () => {
  const dir = await tmpProject({
    'env/default.nix': '[ ]',
    'workdir/local.nix': '[ ]',
    '.nixdockerrc.json': JSON.stringify({ plugins: ['push', './first.mjs', ['./broken.mjs', { level: 3 }]] }),
    // Applied before the broken one: its shutdown tap must still run.
    'first.mjs': `import { appendFileSync } from 'node:fs';
      export default { name: 'first', apply(hooks, ctx) { hooks.shutdown.tap('first', () => appendFileSync(ctx.config.projectDir + '/shutdown.log', 'first\\n')); } };`,
    'broken.mjs': 'export default { name: "half-done", apply() { throw new Error("no API key in NIXDOCKER_HALF_KEY"); } };',
  });
  for (const command of ['build', 'watch']) {
    const r = await runCli(['-C', dir, command], { timeoutMs: 30_000 });
    assert.is(r.exitCode, 1, `${command}: ${r.stderr}`);
    assert.match(r.stderr, 'The plugin "half-done" ("plugins[2]" (./broken.mjs) in .nixdockerrc.json) failed to start');
    assert.match(r.stderr, 'no API key in NIXDOCKER_HALF_KEY');
    assert.match(r.stderr, 'fix: ');
    assert.not.match(r.stderr, '    at ', 'a UserError, no stack trace');
  }
  const { readFile } = await import('node:fs/promises');
  assert.is(await readFile(`${dir}/shutdown.log`, 'utf8'), 'first\nfirst\n');
  // The daemon that refused to start holds no lock: status says none runs.
  const status = await readStatus(`${dir}/.nixdocker`);
  assert.ok(status === null || !status.running);
});

test.run();
