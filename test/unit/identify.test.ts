import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';
import { createHooks, tapOnly } from '../../src/hooks.js';
import { computeIdentity } from '../../src/identity.js';
import { identify } from '../../src/pipeline/identify.js';
import { cleanupProjects, runCli, tmpProject } from '../helpers/project.js';

const test = suite('identify: the identity hook, applied in one place');
test.after(cleanupProjects);

const SUFFIX = 'export default { name: "suffix", apply(hooks) { hooks.identity.tap("suffix", (id) => ({ ...id, tag: id.tag + "-dev" })); } };';

async function project(files: Record<string, string> = {}, plugins: unknown[] = ['push', './suffix.mjs']) {
  return tmpProject({ 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]', '.nixdockerrc.json': JSON.stringify({ plugins }), 'suffix.mjs': SUFFIX, ...files });
}

test('a tapped tag is applied once, and repository and image follow name and tag', async () => {
  const { config } = await loadConfig(await project(), { env: {} });
  const hooks = createHooks();
  // A plugin that changes the tag but forgets the image: the reference still matches the tag.
  tapOnly(hooks).identity.tap('careless', (id) => ({ ...id, tag: `${id.tag}-x`, image: 'elsewhere/other:latest' }));
  const raw = await computeIdentity(config);
  const id = await identify(config, hooks);
  assert.is(id.tag, `${raw.tag}-x`);
  assert.is(id.name, raw.name);
  assert.is(id.repository, raw.repository);
  assert.is(id.image, `${raw.repository}:${raw.tag}-x`);
  assert.equal(id.inputs, raw.inputs);
});

test('a tag no registry accepts is a UserError naming the hook and the value', async () => {
  const { config } = await loadConfig(await project(), { env: {} });
  const hooks = createHooks();
  tapOnly(hooks).identity.tap('bad', (id) => ({ ...id, tag: 'my tag!' }));
  const err = await identify(config, hooks).catch((e: unknown) => e);
  assert.instance(err, UserError);
  assert.match((err as UserError).message, 'identity hook');
  assert.match((err as UserError).message, '"my tag!"');
});

test('nixdocker hash, plain and --json, names the image the plugin chose', async () => {
  const dir = await project();
  const plain = await runCli(['-C', dir, 'hash']);
  assert.is(plain.exitCode, 0, plain.stderr);
  assert.match(plain.stdout.trim(), /:[0-9a-f]{32}-dev$/);
  const json = JSON.parse((await runCli(['-C', dir, 'hash', '--json'])).stdout);
  assert.is(json.image, plain.stdout.trim());
  assert.match(json.tag, /-dev$/);
  const without = await runCli(['-C', await project({}, ['push']), 'hash']);
  assert.is(without.stdout.trim(), plain.stdout.trim().slice(0, -'-dev'.length), 'the same inputs without the plugin: the plain hash');
});

test.run();
