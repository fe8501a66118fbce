import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanupProjects, REPO_ROOT, runCli, tmpProject } from '../helpers/project.js';

const test = suite('cli');
test.after(cleanupProjects);

test('--help lists every command with one line each; --version prints the package version', async () => {
  const help = await runCli(['--help']);
  assert.is(help.exitCode, 0);
  const { loadCommands } = await import('../../src/cli/commands.js');
  for (const c of await loadCommands()) assert.match(help.stdout, new RegExp(`^  ${c.name} +\\S`, 'm'));
  const version = await runCli(['--version']);
  const pkg = JSON.parse(await readFile(path.join(REPO_ROOT, 'package.json'), 'utf8'));
  assert.is(version.stdout.trim(), pkg.version);
});

test('unknown command exits 2 with the usage', async () => {
  const r = await runCli(['frobnicate']);
  assert.is(r.exitCode, 2);
  assert.match(r.stderr, 'unknown command "frobnicate"');
});

test('init scaffolds a project whose hash works, and never overwrites', async () => {
  const dir = await tmpProject({ 'workdir/local.nix': '# mine\n[ ]\n' });
  const r = await runCli(['-C', dir, 'init']);
  assert.is(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, 'created  env/default.nix');
  assert.match(r.stdout, 'created  env/pkgs.nix');
  assert.match(r.stdout, 'created  workdir/user/hello_world.py');
  assert.match(r.stdout, 'created  .nixdockerrc.json');
  assert.match(r.stdout, 'kept     workdir/local.nix');
  assert.is(await readFile(path.join(dir, 'workdir/local.nix'), 'utf8'), '# mine\n[ ]\n');
  const pkgs = await readFile(path.join(dir, 'env/pkgs.nix'), 'utf8');
  assert.match(pkgs, /fetchTarball/);
  assert.match(pkgs, /sha256 = "[0-9a-z]{52}"/);

  await writeFile(path.join(dir, 'env/default.nix'), 'changed');
  const again = await runCli(['--cwd', dir, 'init']);
  assert.is(again.exitCode, 0);
  assert.not.match(again.stdout, 'created');
  assert.is(await readFile(path.join(dir, 'env/default.nix'), 'utf8'), 'changed');

  const hash = await runCli(['-C', dir, 'hash']);
  assert.is(hash.exitCode, 0, hash.stderr);
  assert.match(hash.stdout.trim(), /^localhost:5000\/nixdocker\/[0-9a-f]{32}:[0-9a-f]{32}$/);
});

/** A project laid out like the prototype's: config.json, its scripts, env/ and workdir/, no nixdocker config. */
const PROTOTYPE = {
  'config.json': JSON.stringify({ userConfig: ['workdir/local.nix', 'workdir/extra.nix'], DOCKER_REGISTRY_HOST: 'registry.lab:5000', DOCKER_REGISTRY_CONTAINER: 'registry:5000' }, null, 2),
  'run-builder.sh': '#!/bin/sh\n# the prototype\'s builder script\n',
  'run-image.sh': '#!/bin/sh\n# the prototype\'s image script\n',
  'env/default.nix': '[ ]\n',
  'workdir/local.nix': '[ ]\n',
  'workdir/extra.nix': '[ ]\n',
};

test('a prototype project with only config.json works: userConfig and DOCKER_REGISTRY_HOST honoured, DOCKER_REGISTRY_CONTAINER explained', async () => {
  const dir = await tmpProject(PROTOTYPE);
  const r = await runCli(['-C', dir, 'hash', '--json']);
  assert.is(r.exitCode, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.match(out.image, /^registry\.lab:5000\/nixdocker\/[0-9a-f]{32}:[0-9a-f]{32}$/);
  assert.equal(out.inputs.map((i: { path: string }) => i.path), ['env/default.nix', 'workdir/local.nix', 'workdir/extra.nix']);
  const warnings = r.stderr.trim().split('\n').map((l) => JSON.parse(l).msg as string);
  assert.ok(warnings.some((w) => /^Using the prototype's config\.json \(userConfig, DOCKER_REGISTRY_HOST\); `nixdocker init` converts it/.test(w)), warnings.join('\n'));
  assert.ok(warnings.some((w) => /^DOCKER_REGISTRY_CONTAINER is not needed: nixdocker pushes from the host/.test(w)), warnings.join('\n'));
  // A bad value names the prototype's file.
  await writeFile(path.join(dir, 'config.json'), JSON.stringify({ userConfig: 7 }));
  const bad = await runCli(['-C', dir, 'hash']);
  assert.is(bad.exitCode, 1);
  assert.match(bad.stderr, '"userConfig" in config.json (the prototype\'s config) must be a file path or a list of them');
});

test('init in a prototype project writes .nixdockerrc.json from config.json and says what it converted; the image stays the same', async () => {
  const dir = await tmpProject(PROTOTYPE);
  const before = await runCli(['-C', dir, 'hash']);
  const r = await runCli(['-C', dir, 'init']);
  assert.is(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, "converted config.json (the prototype's) into .nixdockerrc.json: userConfig → userConfig, DOCKER_REGISTRY_HOST → registry.host");
  assert.match(r.stdout, 'DOCKER_REGISTRY_CONTAINER is not needed');
  assert.not.match(r.stdout, 'env/', 'the project\'s environment is its own: nothing added');
  const rc = JSON.parse(await readFile(path.join(dir, '.nixdockerrc.json'), 'utf8'));
  assert.equal(rc, { userConfig: ['workdir/local.nix', 'workdir/extra.nix'], registry: { host: 'registry.lab:5000' } });
  const after = await runCli(['-C', dir, 'hash']);
  assert.is(after.exitCode, 0, after.stderr);
  assert.is(after.stdout, before.stdout, 'the same reference before and after');
  assert.not.match(after.stderr, 'prototype', 'the nixdocker config is read now, config.json no longer');
});

test('a config.json that is not the prototype\'s is ignored', async () => {
  const dir = await tmpProject({ 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]', 'config.json': '{"name":"something else"}' });
  const r = await runCli(['-C', dir, 'hash']);
  assert.is(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /^localhost:5000\//);
  assert.is(r.stderr, '');
});

test('hash --json shows name, tag, image and each input digest', async () => {
  const dir = await tmpProject({ 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]' });
  const r = await runCli(['hash', '--json', '-C', dir]);
  assert.is(r.exitCode, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(Object.keys(out), ['name', 'tag', 'image', 'platforms', 'inputs']);
  assert.is(out.platforms, null);
  assert.is(out.image, `localhost:5000/nixdocker/${out.name}:${out.tag}`);
  assert.equal(out.inputs.map((i: { path: string }) => i.path), ['env/default.nix', 'workdir/local.nix']);
  const plain = await runCli(['-C', dir, 'hash'], { env: { DOCKER_REGISTRY_HOST: 'reg.example:443' } });
  assert.is(plain.stdout.trim(), `reg.example:443/nixdocker/${out.name}:${out.tag}`);
  // The platforms are not part of the tag: the same inputs with two platforms give the same reference.
  await writeFile(path.join(dir, '.nixdockerrc.json'), JSON.stringify({ platforms: ['linux/arm64', 'linux/amd64'] }));
  const multi = JSON.parse((await runCli(['hash', '--json', '-C', dir])).stdout);
  assert.is(multi.image, out.image);
  assert.equal(multi.platforms, ['linux/arm64', 'linux/amd64']);
});

test('a bad config exits 1 with a one-paragraph message and no stack trace', async () => {
  const dir = await tmpProject({ 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]', '.nixdockerrc.json': '{"regsitry":{}}' });
  const r = await runCli(['-C', dir, 'hash']);
  assert.is(r.exitCode, 1);
  assert.match(r.stderr, '"regsitry" is not a known setting (did you mean');
  assert.not.match(r.stderr, /\n\s+at /);
});

test('DOCKER_REGISTRY_CONTAINER is reported once as not needed', async () => {
  const dir = await tmpProject({ 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]' });
  const r = await runCli(['-C', dir, 'hash'], { env: { DOCKER_REGISTRY_CONTAINER: 'registry:5000' } });
  assert.is(r.exitCode, 0);
  assert.is(r.stderr.split('DOCKER_REGISTRY_CONTAINER').length - 1, 1);
});

test('logs are JSON lines off a terminal; --log-level filters them', async () => {
  const dir = await tmpProject({ 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]' });
  const env = { DOCKER_REGISTRY_CONTAINER: 'registry:5000' };
  const r = await runCli(['-C', dir, 'hash'], { env });
  const line = JSON.parse(r.stderr.trim().split('\n')[0]!);
  assert.is(line.level, 40);
  assert.match(line.msg, 'DOCKER_REGISTRY_CONTAINER');
  const quiet = await runCli(['-C', dir, '--log-level', 'error', 'hash'], { env });
  assert.is(quiet.stderr, '');
  const bad = await runCli(['-C', dir, '--log-level', 'loud', 'hash']);
  assert.is(bad.exitCode, 2);
});

test('a reader that goes away (status | head) ends the command quietly, with its own exit code', async () => {
  const dir = await tmpProject({ 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]' });
  const { execa } = await import('execa');
  const { BIN } = await import('../helpers/project.js');
  for (const args of [['status'], ['hash', '--json']]) {
    const child = execa(process.execPath, [BIN, '-C', dir, ...args], { reject: false, stdin: 'ignore' });
    child.stdout!.destroy(); // the pipe's read end closes before anything is written
    const r = await child;
    assert.not.match(String(r.stderr), 'EPIPE', String(r.stderr));
    assert.not.match(String(r.stderr), /\bat .*\.js:\d+/);
    assert.is(r.exitCode, args[0] === 'status' ? 3 : 0, `${args[0]} exit code`);
  }
});

test.run();
