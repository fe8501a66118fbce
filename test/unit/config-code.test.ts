import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';
import { cleanupProjects, REPO_ROOT, tmpProject } from '../helpers/project.js';

const test = suite('config as code, and the built-in plugins\' imports');
test.after(cleanupProjects);

const base = { 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]' };

test('nixdocker.config.mjs is found and validated like the JSON files', async () => {
  const dir = await tmpProject({ ...base, 'nixdocker.config.mjs': 'export default { registry: { namespace: "team" }, plugins: [] };\n' });
  const { config } = await loadConfig(dir, { env: {} });
  assert.is(config.registry.namespace, 'team');
  assert.is(path.basename(config.configFile ?? ''), 'nixdocker.config.mjs');
});

test('a config that imports a package the project lacks says which one and how to install it', async () => {
  const dir = await tmpProject({ ...base, 'nixdocker.config.mjs': "import { defineConfig } from 'nixdocker-no-such-helper';\nexport default defineConfig({});\n" });
  const err = await loadConfig(dir, { env: {} }).catch((e: unknown) => e);
  assert.instance(err, UserError);
  assert.match((err as UserError).message, 'nixdocker.config.mjs');
  assert.match((err as UserError).message, 'needs the package nixdocker-no-such-helper');
  assert.match((err as UserError).format(), 'npm install --save-dev nixdocker-no-such-helper');
});

test('the built-in plugins import nothing of nixdocker but its public entry', async () => {
  const dir = path.join(REPO_ROOT, 'plugins');
  for (const file of (await readdir(dir)).filter((f) => f.endsWith('.ts'))) {
    const text = await readFile(path.join(dir, file), 'utf8');
    for (const m of text.matchAll(/from '(\.[^']*)'/g)) assert.is(m[1], '../src/index.js', `${file} imports ${m[1]}`);
  }
});

test.run();
