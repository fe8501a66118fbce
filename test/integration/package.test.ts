import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { cleanupProjects, REPO_ROOT, tmpProject } from '../helpers/project.js';
import { BUILDER_IMAGE, REGISTRY, removeVolume, requireParts } from '../helpers/services.js';

/**
 * nixdocker as a user installs it: `npm pack`, then the tarball installed in
 * a fresh project with a plugin package beside it. The plugin files come out
 * of docs/plugins.md itself, so the guide and this test cannot drift.
 */
const test = suite('package: the packed tarball installs, types and runs plugins (real npm, tsc, nix, podman, registry)');
const VOLUME = `nixdocker-test-package-${process.pid}`;
const PLUGIN_PACKAGE = 'nixdocker-plugin-changelog';
let project = '';

/** Every `<!-- file: NAME -->` block of the guide, by file name. */
function docFiles(markdown: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const m of markdown.matchAll(/<!-- file: ([\w./-]+) -->\n```\w+\n([\s\S]*?)\n```/g)) files.set(m[1]!, `${m[2]}\n`);
  return files;
}

async function versionOf(dep: string): Promise<string> {
  return JSON.parse(await readFile(path.join(REPO_ROOT, 'node_modules', dep, 'package.json'), 'utf8')).version;
}

/** The installed bin, run as a user runs it from the project. */
function nixdocker(args: string[], env: Record<string, string> = {}) {
  return execa(path.join(project, 'node_modules/.bin/nixdocker'), ['-C', project, '--json-logs', ...args], {
    reject: false,
    cwd: project,
    env: { DOCKER_HOST: process.env.DOCKER_HOST, ...env },
    timeout: 180_000,
  });
}

const docs = docFiles(await readFile(path.join(REPO_ROOT, 'docs/plugins.md'), 'utf8'));
const hookExamples = [...docs.keys()].filter((f) => f.startsWith('hooks/'));

test('the guide has the first plugin, its config and an example for every hook', async () => {
  assert.ok(docs.has('hello-plugin.ts'));
  assert.ok(docs.has('nixdocker.config.ts'));
  const { createHooks } = await import('../../src/hooks.js');
  for (const hook of Object.keys(createHooks())) {
    const tapped = [...docs.values()].some((text) => text.includes(`hooks.${hook}.tap`));
    assert.ok(tapped, `docs/plugins.md has an example tapping ${hook}`);
  }
});

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  test.before(async () => {
    const packs = await tmpProject({}, 'nixdocker-pack-');
    // test.sh has just compiled dist/: pack it as it is (prepare would compile again).
    await execa('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', packs], { cwd: REPO_ROOT });
    await execa('npm', ['pack', '--silent', '--pack-destination', packs], { cwd: path.join(REPO_ROOT, 'examples/plugins', PLUGIN_PACKAGE) });
    const tarballs = (await readdir(packs)).map((f) => path.join(packs, f));
    assert.is(tarballs.length, 2, tarballs.join(', '));

    project = await tmpProject({ 'package.json': JSON.stringify({ name: 'consumer', private: true, type: 'module' }) }, 'nixdocker-consumer-');
    // From the local cache when it has them (CI installed the same versions a moment ago).
    const install = await execa(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', ...tarballs, `typescript@${await versionOf('typescript')}`, `@types/node@${await versionOf('@types/node')}`],
      { cwd: project, reject: false, timeout: 300_000 },
    );
    assert.is(install.exitCode, 0, install.stderr);
    for (const [name, text] of docs) {
      // The guide's config is only type-checked: compiled next to the project's own, it would be the one found.
      const file = path.join(project, name === 'nixdocker.config.ts' ? 'checks/nixdocker.config.ts' : name);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, text);
    }
  });
  test.after(async () => {
    await removeVolume(VOLUME);
    await cleanupProjects();
  });

  test('the documented plugins type-check against the installed package; import("nixdocker") works', async () => {
    const compilerOptions = { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: true, types: ['node'] };
    // The plugins compile to .js beside their source, as the guide says; the checks only type-check.
    await writeFile(path.join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions, include: ['hello-plugin.ts', 'hooks/*.ts'] }));
    await writeFile(
      path.join(project, 'tsconfig.checks.json'),
      JSON.stringify({ compilerOptions: { ...compilerOptions, noEmit: true, allowJs: true, checkJs: true }, include: ['checks/*'] }),
    );
    await mkdir(path.join(project, 'checks'), { recursive: true });
    // The plugin package's own source, checked with its JSDoc types.
    await cp(path.join(project, 'node_modules', PLUGIN_PACKAGE, 'index.js'), path.join(project, 'checks/changelog.js'));
    // What the issue names, and proof the public types are real types (skipLibCheck would make a missing one `any`).
    await writeFile(
      path.join(project, 'checks/public-types.ts'),
      `import type { Plugin, PluginContext, ImageDescription, Config } from 'nixdocker';
type IsAny<T> = 0 extends 1 & T ? true : false;
const engineTyped: IsAny<ReturnType<PluginContext['engine']>> = false;
const imageTyped: IsAny<ImageDescription['destinations']> = false;
const configTyped: IsAny<Config['registry']> = false;
const pluginTyped: IsAny<Plugin['apply']> = false;
// @ts-expect-error a plugin gets a tap-only view: it cannot call a hook
const cannotCall = (p: Parameters<Plugin['apply']>[0]) => p.imageReady.promise;
export { engineTyped, imageTyped, configTyped, pluginTyped, cannotCall };
`,
    );
    for (const config of ['tsconfig.json', 'tsconfig.checks.json']) {
      const tsc = await execa(path.join(project, 'node_modules/.bin/tsc'), ['-p', path.join(project, config)], { cwd: project, reject: false });
      assert.is(tsc.exitCode, 0, `${config}: ${tsc.stdout}\n${tsc.stderr}`);
    }
    assert.ok(hookExamples.length >= 12, `${hookExamples.length} hook examples`);
    const entry = await execa(process.execPath, ['--input-type=module', '-e', "const m = await import('nixdocker'); console.log([typeof m.definePlugin, typeof m.defineConfig, m.defineConfig({ plugins: [] }).plugins.length].join(' '))"], {
      cwd: project,
      reject: false,
    });
    assert.is(entry.exitCode, 0, entry.stderr);
    assert.is(entry.stdout.trim(), 'function function 0');
  });

  test('the installed bin builds with the guide\'s plugins and the plugin package, configured by nixdocker.config.ts', async () => {
    for (const dir of ['env', 'workdir']) await cp(path.join(REPO_ROOT, 'examples/offline', dir), path.join(project, dir), { recursive: true });
    // The guide's config, with this machine's registry and builder, and every hook example.
    const plugins = [
      'push',
      ['./hello-plugin.js', { file: 'hello.log' }],
      [PLUGIN_PACKAGE, { file: 'images.log' }],
      ...hookExamples.map((f) => `./${f.replace(/\.ts$/, '.js')}`),
    ];
    await writeFile(
      path.join(project, 'nixdocker.config.ts'),
      `import { defineConfig } from 'nixdocker';
export default defineConfig({
  registry: { host: ${JSON.stringify(REGISTRY)} },
  builder: { image: ${JSON.stringify(BUILDER_IMAGE)}, volume: ${JSON.stringify(VOLUME)} },
  plugins: ${JSON.stringify(plugins)},
});
`,
    );
    const create = await nixdocker(['builder', 'create']);
    assert.is(create.exitCode, 0, create.stderr);
    // The branch-tag example suffixes the tag from this variable.
    const env = { NIXDOCKER_BRANCH: `pkg${process.pid}` };
    const build = await nixdocker(['build', '--json'], env);
    assert.is(build.exitCode, 0, build.stderr);
    const out = JSON.parse(build.stdout);
    assert.is(out.status, 'built');
    assert.match(out.reference, new RegExp(`:[0-9a-f]{32}-pkg${process.pid}$`), 'the identity example tagged the image');
    assert.equal(out.image.destinations, ['registry']);

    assert.is(await readFile(path.join(project, 'hello.log'), 'utf8'), `hello ${out.reference} (registry)\n`);
    assert.match(await readFile(path.join(project, 'images.log'), 'utf8'), `${out.reference} ${out.image.digest} `);
    const logs = String(build.stderr)
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { plugin?: string; msg?: string; level?: number });
    const said = (plugin: string) => logs.filter((l) => l.plugin === plugin).map((l) => l.msg ?? '');
    assert.ok(said('hello').some((m) => m.includes('is ready')), 'hello plugin ran');
    assert.ok(said('changelog').some((m) => m.startsWith('changelog: recorded')), 'the plugin package ran');
    assert.ok(said('show-registry').includes(`pushing to ${REGISTRY}`));
    assert.ok(said('phase-timer').some((m) => m.includes(': push (')), 'buildPhase example saw the push phase');
    assert.ok(said('size-report').some((m) => / layers, [\d.]+ MB$/.test(m)));
    assert.ok(said('push-report').some((m) => m.includes(' uploaded, ')));
    assert.ok(said('count-builds').some((m) => /^Nix built \d+ derivation/.test(m)));
    assert.not.ok(logs.some((l) => (l.level ?? 0) >= 50), `no plugin failed: ${logs.filter((l) => (l.level ?? 0) >= 50).map((l) => l.msg).join('; ')}`);

    // The same config as nixdocker.config.mjs (no compiler involved) names the same image.
    await rm(path.join(project, 'nixdocker.config.ts'));
    await writeFile(
      path.join(project, 'nixdocker.config.mjs'),
      `import { defineConfig } from 'nixdocker';\nexport default defineConfig(${JSON.stringify({ registry: { host: REGISTRY }, builder: { image: BUILDER_IMAGE, volume: VOLUME }, plugins })});\n`,
    );
    const hash = await nixdocker(['hash'], env);
    assert.is(hash.exitCode, 0, hash.stderr);
    assert.is(hash.stdout.trim(), out.reference);
  });
}

test.run();
