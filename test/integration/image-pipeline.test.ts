import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cp, mkdir, writeFile, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { BIN, cleanupProjects, runCli } from '../helpers/project.js';
import { LAYOUT_DATE } from '../../src/version.js';
import { offlineProject, REGISTRY, removeVolume, requireParts } from '../helpers/services.js';
import { startRegistry, stopRegistries, storedBlobs, cleanupDirs, freePort, waitUntil } from '../helpers/registry.js';

const test = suite('image pipeline (real nix, podman, registry)');
const VOLUME = `nixdocker-test-image-${process.pid}`;
const env = () => ({ DOCKER_HOST: process.env.DOCKER_HOST });

interface BuildOut {
  status: string;
  reference: string;
  image?: { digest: string; layers: { digest: string; kind: string }[]; destinations: string[] };
  push?: { uploaded: number; skipped: number; mounted: number; bytesUploaded: number } | null;
}

async function build(dir: string, args: string[] = [], extraEnv: Record<string, string> = {}): Promise<BuildOut> {
  const r = await runCli(['-C', dir, 'build', '--json', ...args], { env: { ...env(), ...extraEnv } });
  assert.is(r.exitCode, 0, r.stderr);
  return JSON.parse(r.stdout) as BuildOut;
}

const ADD_SHOUT = (nonce: string) => `{ pkgs, ... }: [ pkgs.greet (pkgs.writeScriptBin "shout" "echo ${nonce}") ]\n`;

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  test.before(async () => {
    const dir = await offlineProject({ volume: VOLUME });
    const r = await runCli(['-C', dir, 'builder', 'create'], { env: env() });
    assert.is(r.exitCode, 0, r.stderr);
  });
  test.after(async () => {
    await stopRegistries();
    await removeVolume(VOLUME);
    await cleanupProjects();
    await cleanupDirs();
  });

  test('build pushes; skopeo reads it; pull and run execute a program of the environment', async () => {
    const dir = await offlineProject({ volume: VOLUME });
    const out = await build(dir, ['--force']);
    assert.is(out.status, 'built');
    const [repoWithHost, tag] = out.reference.split(/:(?=[0-9a-f]{32}$)/);
    const repo = repoWithHost!.slice(REGISTRY.length + 1);
    const tags = (await (await fetch(`http://${REGISTRY}/v2/${repo}/tags/list`)).json()) as { tags: string[] };
    assert.ok(tags.tags.includes(tag!), 'tag listed');
    const inspect = await execa('skopeo', ['inspect', '--tls-verify=false', `docker://${out.reference}`]);
    const info = JSON.parse(inspect.stdout);
    assert.is(info.Digest, out.image!.digest);
    assert.is(info.Labels['org.nixdocker.tag'], tag);
    assert.is(info.Layers.length, out.image!.layers.length);
    assert.is(info.Created, LAYOUT_DATE, 'created is the layout\'s fixed date, not 1970');

    const pull = await runCli(['-C', dir, 'pull'], { env: env() });
    assert.is(pull.exitCode, 0, pull.stderr);
    const run = await runCli(['-C', dir, 'run', 'hello'], { env: env() });
    assert.is(run.exitCode, 0, run.stderr);
    assert.match(run.stdout, 'Hello from a nixdocker image');
    // workdir/user is the working directory; user packages are on PATH.
    const script = await runCli(['-C', dir, 'run', 'sh', 'hello_world.sh'], { env: env() });
    assert.match(script.stdout, 'hello_world.sh ran in /work');
    assert.match(script.stdout, 'greetings, world');
    const failing = await runCli(['-C', dir, 'run', 'sh', '-c', 'echo bye; exit 7'], { env: env() });
    assert.is(failing.exitCode, 7);
    assert.match(failing.stdout, 'bye');
    // On a terminal (a pty from script(1)): stdin and a TTY are attached, the exit code comes back.
    const tty = await execa('script', ['-qec', `${process.execPath} ${BIN} -C ${dir} run`, '/dev/null'], {
      input: 'echo typed-$((6*7)); tty; exit 5\n',
      reject: false,
      env: env(),
      timeout: 60_000,
    });
    assert.is(tty.exitCode, 5, tty.stdout);
    assert.match(tty.stdout, 'typed-42');
    assert.match(tty.stdout, /\/dev\/pts\/\d+/);
    assert.not.match(tty.stdout, '"stream":true', 'the attach request never reaches stdin');
    const both = await runCli(['-C', dir, 'pull', 'run', 'greet', 'you'], { env: env() });
    assert.is(both.exitCode, 0, both.stderr);
    assert.match(both.stdout, 'greetings, you');
  });

  test('a second build of the same inputs is up to date without running anything', async () => {
    const dir = await offlineProject({ volume: VOLUME });
    await build(dir);
    const again = await build(dir);
    assert.is(again.status, 'up-to-date');
  });

  test('pushing twice uploads nothing; adding a package uploads only the changed layers and the config', async () => {
    const reg = await startRegistry();
    const dir = await offlineProject({ volume: VOLUME, config: { registry: { host: reg.host } } });
    const first = await build(dir, ['--force']);
    assert.is(first.push!.uploaded, first.image!.layers.length + 1, 'every layer and the config');
    const blobsAfterFirst = (await storedBlobs(reg.dataDir)).length;

    const second = await build(dir, ['--force']);
    assert.is(second.push!.uploaded, 0);
    assert.is(second.push!.bytesUploaded, 0);
    assert.is((await storedBlobs(reg.dataDir)).length, blobsAfterFirst);

    await writeFile(path.join(dir, 'workdir/local.nix'), ADD_SHOUT(`${process.pid}-${Date.now()}`));
    const third = await build(dir);
    const before = new Set(first.image!.layers.map((l) => l.digest));
    const changed = third.image!.layers.filter((l) => !before.has(l.digest));
    assert.ok(changed.length >= 2 && changed.length <= 4, `changed layers: ${changed.map((l) => l.kind).join(', ')}`);
    assert.ok(changed.some((l) => l.kind === 'custom'), 'the customisation layer changes (new /bin link)');
    assert.ok(!changed.some((l) => l.kind === 'base'), 'no base layer moves');
    assert.is(third.push!.uploaded, changed.length + 1, 'changed layers + config');
    // The registry keeps manifests as blobs too: one more for the new manifest, one for the new index.
    assert.is((await storedBlobs(reg.dataDir)).length, blobsAfterFirst + third.push!.uploaded + 2);
  });

  test('a second environment mounts the layers it shares from the first repository instead of uploading them', async () => {
    const reg = await startRegistry();
    const a = await offlineProject({ volume: VOLUME, config: { registry: { host: reg.host } } });
    const first = await build(a, ['--force']);
    // Another env (another repository name) with the same packages: same store layers. Its
    // cache starts as a copy of the first's (a cacheDir stays inside its project), so it knows
    // which repository already holds each layer.
    const b = await offlineProject({ volume: VOLUME, config: { registry: { host: reg.host } } });
    await writeFile(path.join(b, 'env/notes.txt'), 'a second environment\n');
    await cp(path.join(a, '.nixdocker'), path.join(b, '.nixdocker'), { recursive: true });
    const second = await build(b);
    assert.is.not(second.reference.split(':')[1], first.reference.split(':')[1]);
    assert.ok(second.push!.mounted >= 3, `mounted ${second.push!.mounted}`);
    assert.is(second.push!.uploaded, second.image!.layers.length + 1 - second.push!.mounted - second.push!.skipped);
  });

  test('two machines agree: the same inputs give the same manifest digest with empty caches', async () => {
    const reg = await startRegistry();
    const a = await build(await offlineProject({ volume: VOLUME, config: { registry: { host: reg.host } } }), ['--force']);
    const b = await build(await offlineProject({ volume: VOLUME, config: { registry: { host: reg.host }, cacheDir: '.other-cache' } }), ['--force']);
    assert.is(a.reference, b.reference);
    assert.is(a.image!.digest, b.image!.digest);
  });

  test('--load makes the image runnable with no registry at all', async () => {
    const port = await freePort();
    const dir = await offlineProject({ volume: VOLUME, config: { registry: { host: `127.0.0.1:${port}` } } });
    const out = await build(dir, ['--load', '--force']);
    assert.equal(out.image!.destinations, ['engine']);
    const run = await runCli(['-C', dir, 'run', 'hello'], { env: env() });
    assert.is(run.exitCode, 0, run.stderr);
    assert.match(run.stdout, 'Hello from a nixdocker image');
    const again = await build(dir, ['--load']);
    assert.is(again.status, 'up-to-date');
  });

  test('registry down: a clear error naming the registry and registry.host', async () => {
    const port = await freePort();
    const dir = await offlineProject({ volume: VOLUME, config: { registry: { host: `127.0.0.1:${port}` } } });
    const r = await runCli(['-C', dir, 'build'], { env: env() });
    assert.is(r.exitCode, 1);
    assert.match(r.stderr, `127.0.0.1:${port}`);
    assert.match(r.stderr, 'registry.host');
    assert.not.match(r.stderr, /\n\s+at /);
  });

  test('the registry killed in the middle of an upload: nothing tagged; the next build completes and runs', async () => {
    const reg = await startRegistry({}, { port: 5002 });
    const nonce = `${process.pid}${Date.now()}`;
    const dir = await offlineProject({
      volume: VOLUME,
      config: { registry: { host: reg.host } },
      files: { 'workdir/local.nix': `{ pkgs, ... }: [ pkgs.greet (pkgs.noisePackage "noise-${nonce}" 40000000) ]\n` },
    });
    const child = execa(process.execPath, [BIN, '-C', dir, 'build', '--json'], { reject: false, env: env() });
    const uploads = path.join(reg.dataDir, 'docker/registry/v2/repositories');
    await waitUntil('an upload to start', async () => {
      const found = await execa('find', [uploads, '-path', '*_uploads/*', '-name', 'data'], { reject: false });
      return String(found.stdout).trim() !== '';
    }, 120_000);
    await reg.kill();
    const first = await child;
    const ref = (await runCli(['-C', dir, 'hash'])).stdout.trim();
    if (first.exitCode !== 0) {
      assert.match(first.stderr, reg.host);
      await reg.start();
      const [repo, tag] = ref.slice(reg.host.length + 1).split(':');
      const tags = await fetch(`http://${reg.host}/v2/${repo}/tags/list`);
      const listed = tags.ok ? ((await tags.json()) as { tags: string[] | null }).tags ?? [] : [];
      assert.not.ok(listed.includes(tag!), 'no tag after a failed push');
    } else {
      await reg.start(); // the client's retries outlasted the outage
    }
    const second = await build(dir);
    assert.ok(second.status === 'built' || second.status === 'up-to-date');
    const run = await runCli(['-C', dir, 'pull', 'run', 'greet', 'again'], { env: env() });
    assert.is(run.exitCode, 0, run.stderr);
    assert.match(run.stdout, 'greetings, again');
  });

  test('bounded cache: only the current image keeps its blobs; a blob pruned before the push is made again from the store', async () => {
    const reg = await startRegistry();
    const dir = await offlineProject({ volume: VOLUME, config: { registry: { host: reg.host }, cache: { maxBytes: 1, keepResults: 1 }, plugins: ['push', './prune.mjs'] } });
    // Another process pruning between assembly and push, as a second build of the project may.
    await writeFile(
      path.join(dir, 'prune.mjs'),
      `import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
export default { name: 'prune', apply(hooks, ctx) {
  hooks.built.tapPromise('prune', async () => {
    const dir = path.join(ctx.cacheDir, 'blobs', 'sha256');
    for (const f of await readdir(dir)) await rm(path.join(dir, f));
  });
} };
`,
    );
    const first = await build(dir, ['--force']);
    assert.is(first.status, 'built');
    assert.is(first.push!.uploaded, first.image!.layers.length + 1, 'every layer and the config uploaded');
    const [, repo] = /^[^/]+\/(.*):[0-9a-f]{32}$/.exec(first.reference)!;
    for (const l of first.image!.layers) {
      const head = await fetch(`http://${reg.host}/v2/${repo}/blobs/${l.digest}`, { method: 'HEAD' });
      assert.is(head.status, 200, `${l.digest} in the registry`);
    }
    const blobs = () => readdir(path.join(dir, '.nixdocker', 'blobs', 'sha256'));
    assert.equal((await blobs()).sort(), first.image!.layers.map((l) => l.digest.slice(7)).sort(), 'made again, and kept as the current image');

    await writeFile(path.join(dir, '.nixdockerrc.json'), JSON.stringify({ ...JSON.parse(await readFile(path.join(dir, '.nixdockerrc.json'), 'utf8')), plugins: ['push'] }));
    await writeFile(path.join(dir, 'workdir', 'local.nix'), ADD_SHOUT(`bounded${process.pid}`));
    const second = await build(dir);
    assert.is(second.status, 'built');
    assert.equal((await blobs()).sort(), [...new Set(second.image!.layers.map((l) => l.digest.slice(7)))].sort(), 'the older image\'s blobs are pruned');
    const results = await readdir(path.join(dir, '.nixdocker', 'results'), { recursive: true });
    assert.ok(results.filter((f) => f.endsWith('.json')).length <= 2, results.join(' '));
    const status = await runCli(['-C', dir, 'cache', 'status', '--json']);
    assert.is(status.exitCode, 0, status.stderr);
    assert.is(JSON.parse(status.stdout).blobs.count, (await blobs()).length);
  });

  test('basic auth: credentials from a docker config file work; without them a clear error; the password is never printed', async () => {
    const password = `s3cret-${process.pid}-pw`;
    const reg = await startRegistry({ htpasswd: { user: 'alice', password } }, { port: 5001 });
    const dir = await offlineProject({ volume: VOLUME, config: { registry: { host: reg.host } } });
    const without = await runCli(['-C', dir, '--log-level', 'debug', 'build'], { env: { ...env(), DOCKER_CONFIG: path.join(dir, 'no-docker-config') } });
    assert.is(without.exitCode, 1);
    assert.match(without.stderr, reg.host);
    assert.match(without.stderr, /docker login|NIXDOCKER_REGISTRY_USER/);

    const dockerConfig = path.join(dir, '.docker-test');
    await mkdir(dockerConfig, { recursive: true });
    const auth = Buffer.from(`alice:${password}`).toString('base64');
    await writeFile(path.join(dockerConfig, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth } } }));
    const withCreds = await runCli(['-C', dir, '--log-level', 'debug', 'build', '--json'], { env: { ...env(), DOCKER_CONFIG: dockerConfig } });
    assert.is(withCreds.exitCode, 0, withCreds.stderr);
    assert.is(JSON.parse(withCreds.stdout).status, 'built');
    for (const out of [without.stdout, without.stderr, withCreds.stdout, withCreds.stderr]) {
      assert.not.match(out, password);
      assert.not.match(out, auth);
    }
    const listed = await readdir(path.join(reg.dataDir, 'docker/registry/v2/repositories'));
    assert.ok(listed.length > 0);
  });
}

test.run();
