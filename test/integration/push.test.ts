import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import Docker from 'dockerode';
import { cleanupProjects, runCli } from '../helpers/project.js';
import { offlineProject, removeVolume, requireParts } from '../helpers/services.js';
import { cleanupDirs, freePort, startRegistry, stopRegistries, waitUntil, type TestRegistry } from '../helpers/registry.js';
import { WatchProcess } from '../helpers/watch.js';

const test = suite('push step: the push phase in status, beforePush vetoes (real nix, podman, registry)');
const VOLUME = `nixdocker-test-push-${process.pid}`;
const env = () => ({ DOCKER_HOST: process.env.DOCKER_HOST });
let reg: TestRegistry;
const watchers: WatchProcess[] = [];

/**
 * A pass-through proxy in front of a real registry that holds every blob
 * upload until released, so a test can look at the daemon while its push is
 * under way. Requests go on unchanged; only their start waits.
 */
async function holdingProxy(target: TestRegistry) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let sawUpload!: () => void;
  const uploadStarted = new Promise<void>((resolve) => (sawUpload = resolve));
  const server = http.createServer((req, res) => {
    const forward = () => {
      const up = http.request({ host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      });
      up.on('error', (err) => res.destroy(err));
      req.pipe(up);
    };
    if (req.method === 'POST' && /\/blobs\/uploads\/?(\?|$)/.test(req.url ?? '')) {
      sawUpload();
      void released.then(forward);
    } else forward();
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${port}`,
    uploadStarted,
    release,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A plugin that records the destinations imageReady announces, and can veto pushes and ask for the engine too. */
const RECORDER = `import { appendFile } from 'node:fs/promises';
export default function recorder(options = {}) {
  return {
    name: 'recorder',
    apply(hooks, context) {
      const file = context.config.projectDir + '/ready.jsonl';
      if (options.alsoEngine) hooks.destinations.tap('recorder', (d) => [...d, 'engine']);
      if (options.veto) hooks.beforePush.tapPromise('recorder', async () => false);
      hooks.imageReady.tapPromise('recorder', (image) => appendFile(file, JSON.stringify({ image: image.image, destinations: image.destinations }) + '\\n'));
    },
  };
}
`;

/** User files no other test pushes: each test gets a tag of its own. */
const unique = (what: string) => ({ 'workdir/local.nix': `{ pkgs, ... }: [ pkgs.greet (pkgs.writeScriptBin "${what}" "echo ${what}-${process.pid}") ]\n` });

async function readyRecords(dir: string): Promise<{ image: string; destinations: string[] }[]> {
  const text = await readFile(path.join(dir, 'ready.jsonl'), 'utf8');
  return text.trim().split('\n').map((l) => JSON.parse(l));
}

async function tagsOf(host: string, image: string): Promise<string[]> {
  const repo = image.slice(host.length + 1).split(':')[0];
  const r = await fetch(`http://${host}/v2/${repo}/tags/list`);
  return r.ok ? (((await r.json()) as { tags: string[] | null }).tags ?? []) : [];
}

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  test.before(async () => {
    reg = await startRegistry();
    const r = await runCli(['-C', await offlineProject({ volume: VOLUME }), 'builder', 'create'], { env: env() });
    assert.is(r.exitCode, 0, r.stderr);
  });
  test.after.each(async () => {
    await Promise.all(watchers.splice(0).map((w) => w.stop('SIGTERM')));
  });
  test.after(async () => {
    await stopRegistries();
    await removeVolume(VOLUME);
    await cleanupProjects();
    await cleanupDirs();
  });

  test('status --json shows the push phase while the daemon pushes, and the push duration after', async () => {
    const proxy = await holdingProxy(reg);
    try {
      const dir = await offlineProject({ volume: VOLUME, config: { registry: { host: proxy.host } }, files: unique('held') });
      const w = new WatchProcess(dir);
      watchers.push(w);
      await w.event('watching');
      let uploading = false;
      void proxy.uploadStarted.then(() => (uploading = true));
      await waitUntil('the first blob upload to reach the registry', async () => {
        if (w.count('buildFailed') > 0) throw new Error(`the build failed:\n${w.stderr.slice(-2000)}`);
        return uploading;
      }, 120_000);
      let seen: { state: string; building: { phase: string | null } | null } | undefined;
      await waitUntil('status to show the push phase', async () => {
        const s = await runCli(['-C', dir, 'status', '--json']);
        seen = JSON.parse(s.stdout).status;
        return seen?.building?.phase === 'push';
      });
      assert.is(seen!.state, 'building');
      assert.is(w.count('imageReady'), 0, 'the image is not announced while its blobs wait');
      proxy.release();
      const ready = await w.event('imageReady', 60_000);
      const after = JSON.parse((await runCli(['-C', dir, 'status', '--json'])).stdout).status;
      assert.is(after.building, null);
      assert.is(after.lastImage.image, ready.image);
      assert.type(after.lastDurations.push, 'number');
      assert.ok((await tagsOf(proxy.host, String(ready.image))).includes(String(ready.image).split(':').pop()!), 'the tag is in the registry');
    } finally {
      proxy.release();
      await proxy.close();
    }
  });

  test('a beforePush veto: nothing pushed, no push phase, imageReady announces only the engine it reached', async () => {
    const dir = await offlineProject({
      volume: VOLUME,
      config: { registry: { host: reg.host }, plugins: ['push', ['./recorder.mjs', { veto: true, alsoEngine: true }]] },
      files: { 'recorder.mjs': RECORDER, ...unique('vetoboth') },
    });
    const r = await runCli(['-C', dir, 'build', '--json', '--force'], { env: env() });
    assert.is(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.is(out.status, 'built');
    assert.equal(out.image.destinations, ['engine']);
    assert.is(out.push, null);
    assert.is(out.image.durations.push, undefined, 'the push phase never ran');
    assert.type(out.image.durations.load, 'number');
    assert.equal(await readyRecords(dir), [{ image: out.reference, destinations: ['engine'] }]);
    assert.not.ok((await tagsOf(reg.host, out.reference)).includes(out.reference.split(':').pop()), 'the registry has no such tag');
    await new Docker().getImage(out.reference).inspect(); // it is in the engine, as announced
    await new Docker().getImage(out.reference).remove({ force: true }).catch(() => {});
  });

  test('a veto of the only destination: the image is announced nowhere, and the human output says so', async () => {
    const dir = await offlineProject({
      volume: VOLUME,
      config: { registry: { host: reg.host }, plugins: ['push', ['./recorder.mjs', { veto: true }]] },
      files: { 'recorder.mjs': RECORDER, ...unique('vetoonly') },
    });
    const r = await runCli(['-C', dir, 'build', '--force'], { env: env() });
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, 'neither pushed nor loaded (a plugin vetoed the push)');
    const [record] = await readyRecords(dir);
    assert.equal(record!.destinations, []);
    assert.not.ok((await tagsOf(reg.host, record!.image)).includes(record!.image.split(':').pop()!), 'the registry has no such tag');
  });
}

test.run();
