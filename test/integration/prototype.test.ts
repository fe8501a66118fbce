import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cp, readFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanupProjects, REPO_ROOT, runCli, tmpProject, userConfigFile } from '../helpers/project.js';
import { BUILDER_IMAGE, REGISTRY, removeVolume, requireParts } from '../helpers/services.js';

const test = suite('a prototype project end to end (config.json only, the builder from the user config)');
const VOLUME = `nixdocker-test-prototype-${process.pid}`;

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  test.after(async () => {
    await removeVolume(VOLUME);
    await cleanupProjects();
  });

  test('builds and pushes from config.json; `nixdocker init` converts it and the pushed image stays current', async () => {
    // A package of its own, so no earlier run's image in the registry makes the build a no-op.
    const nonce = `${process.pid}${Date.now()}`;
    const dir = await tmpProject({
      'config.json': JSON.stringify({ userConfig: ['workdir/local.nix'], DOCKER_REGISTRY_HOST: REGISTRY, DOCKER_REGISTRY_CONTAINER: 'registry:5000' }, null, 2),
      'run-builder.sh': '#!/bin/sh\n# the prototype\'s builder script\n',
      'run-image.sh': '#!/bin/sh\n# the prototype\'s image script\n',
      'workdir/local.nix': `{ pkgs, ... }: [ pkgs.greet (pkgs.writeScriptBin "proto-${nonce}" "echo prototype ${nonce}") ]\n`,
    });
    await cp(path.join(REPO_ROOT, 'examples', 'offline', 'env'), path.join(dir, 'env'), { recursive: true });
    // The default builder image cannot be pulled offline: the person's own config names the test builder.
    const env = { DOCKER_HOST: process.env.DOCKER_HOST, NIXDOCKER_USER_CONFIG: await userConfigFile({ builder: { image: BUILDER_IMAGE, volume: VOLUME } }) };

    const create = await runCli(['-C', dir, 'builder', 'create'], { env, timeoutMs: 240_000 });
    assert.is(create.exitCode, 0, create.stderr);
    const r = await runCli(['-C', dir, 'build', '--json'], { env, timeoutMs: 240_000 });
    assert.is(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { status: string; reference: string; image: { destinations: string[] }; result: { user: { name: string }[] } };
    assert.is(out.status, 'built');
    assert.ok(out.reference.startsWith(`${REGISTRY}/nixdocker/`), `DOCKER_REGISTRY_HOST of config.json is the registry: ${out.reference}`);
    assert.equal(out.image.destinations, ['registry']);
    assert.ok(out.result.user.some((p) => p.name === `proto-${nonce}`), 'workdir/local.nix was built');
    assert.match(r.stderr, "Using the prototype's config.json (userConfig, DOCKER_REGISTRY_HOST); `nixdocker init` converts it to .nixdockerrc.json.");
    assert.match(r.stderr, 'DOCKER_REGISTRY_CONTAINER is not needed: nixdocker pushes from the host');
    // The registry has the tag.
    const [repo, tag] = out.reference.slice(REGISTRY.length + 1).split(':') as [string, string];
    const head = await fetch(`http://${REGISTRY}/v2/${repo}/manifests/${tag}`, {
      method: 'HEAD',
      headers: { Accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' },
    });
    assert.is(head.status, 200);

    const init = await runCli(['-C', dir, 'init'], { env });
    assert.is(init.exitCode, 0, init.stderr);
    assert.match(init.stdout, "converted config.json (the prototype's) into .nixdockerrc.json: userConfig → userConfig, DOCKER_REGISTRY_HOST → registry.host");
    // The builder stays in the user config: it is the person's, not the project's.
    assert.equal(JSON.parse(await readFile(path.join(dir, '.nixdockerrc.json'), 'utf8')), { userConfig: ['workdir/local.nix'], registry: { host: REGISTRY } });
    const after = await runCli(['-C', dir, 'build', '--json'], { env, timeoutMs: 240_000 });
    assert.is(after.exitCode, 0, after.stderr);
    const again = JSON.parse(after.stdout) as { status: string; reference: string; where: string[] };
    assert.is(again.reference, out.reference, 'the same image name and tag after the conversion');
    assert.is(again.status, 'up-to-date');
    assert.ok(again.where.includes('registry'), again.where.join(', '));
    assert.not.match(after.stderr, 'prototype', 'config.json is no longer read');
  });
}

test.run();
