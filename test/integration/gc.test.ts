import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Docker from 'dockerode';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import gc from '../../plugins/gc.js';
import { createBuilder } from '../../src/builder/builder.js';
import { loadConfig } from '../../src/config/load.js';
import { hasImage } from '../../src/engine/engine.js';
import { pullImage, runContainer } from '../../src/engine/run.js';
import type { ImageDescription } from '../../src/hooks.js';
import { buildImage } from '../../src/pipeline/build-image.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { RegistryClient } from '../../src/registry/index.js';
import type { LogRecord } from '../helpers/plugin.js';
import { cleanupProjects } from '../helpers/project.js';
import { cleanupDirs, freePort, startRegistry, stopRegistries } from '../helpers/registry.js';
import { BUILDER_IMAGE, inVolume, offlineProject, removeVolume, requireParts } from '../helpers/services.js';

const test = suite('gc plugin (real nix, podman, registry)');
const VOLUME = `nixdocker-test-gc-${process.pid}`;
const NAMESPACE = `nixdocker-test-gc-${process.pid}`;
/** A registry of this suite's own (deletes enabled), on a port the engine pulls from over http. */
const REGISTRY_PORT = 5003;
let registry: RegistryClient;
const docker = new Docker();
/** Images made here, removed from the engine in `after`. */
const images = new Set<string>();

const SHOUT = (nonce: string) => `{ pkgs, ... }: [ pkgs.greet (pkgs.writeScriptBin "shout-${nonce}" "echo ${nonce}") ]\n`;

interface Project {
  dir: string;
  pipeline: Pipeline;
  logs: LogRecord[];
  /** Writes a new workdir/local.nix and builds it; returns the new image. */
  build(nonce: string, opts?: { load?: boolean }): Promise<ImageDescription>;
}

async function project(namespace: string, plugins: unknown[], host = registry.host): Promise<Project> {
  const dir = await offlineProject({ volume: VOLUME, config: { plugins, registry: { host, namespace } } });
  const logs: LogRecord[] = [];
  const log = pino({ level: 'debug', base: undefined }, { write: (line: string) => void logs.push(JSON.parse(line) as LogRecord) });
  const { config } = await loadConfig(dir);
  const pipeline = await Pipeline.create(config, log);
  let buildId = 0;
  return {
    dir,
    pipeline,
    logs,
    async build(nonce, opts = {}) {
      await writeFile(path.join(dir, 'workdir/local.nix'), SHOUT(nonce));
      const out = await buildImage(pipeline, { buildId: ++buildId, load: opts.load });
      assert.is(out.status, 'built');
      if (out.status !== 'built') throw new Error('not built');
      images.add(out.image.image);
      return out.image;
    },
  };
}

const repoOf = (img: ImageDescription) => img.image.slice(img.image.indexOf('/') + 1, -(img.tag.length + 1));
const refOf = (img: ImageDescription) => img.image.slice(0, -(img.tag.length + 1));
const sorted = (xs: string[]) => [...xs].sort();
/** The image tags of a listing, without the platform tags (TAG-linux-amd64) that go with them. */
const imageTags = (xs: string[]) => sorted(xs.filter((t) => !/^[0-9a-f]{32}-/.test(t)));
const nonce = (i: number) => `${process.pid}-${Date.now()}-${i}`;

async function run(image: string, cmd: string[]): Promise<{ code: number; output: string }> {
  let output = '';
  const out = new PassThrough().on('data', (c: Buffer) => (output += c.toString()));
  const code = await runContainer(docker, { image, cmd, interactive: false, stdout: out, stderr: out });
  return { code, output };
}

test('options are checked when the plugin is created', () => {
  assert.throws(() => gc({ keep: 0 }), /"keep"/);
  assert.throws(() => gc({ keep: 2.5 }), /"keep"/);
  assert.throws(() => gc({ keep: '3' }), /"keep"/);
  assert.throws(() => gc({ registry: 'yes' }), /"registry"/);
  assert.throws(() => gc({ engine: 1 }), /"engine"/);
  assert.throws(() => gc({ nix: null }), /"nix"/);
  assert.is(gc().name, 'gc');
});

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  test.before(async () => {
    await createBuilder(docker, { image: BUILDER_IMAGE, volume: VOLUME }, { log: pino({ level: 'silent' }) });
    const reg = await startRegistry({}, { port: REGISTRY_PORT });
    registry = new RegistryClient({ host: reg.host });
  });
  test.after(async () => {
    for (const image of images) await docker.getImage(image).remove().catch(() => {});
    registry?.close();
    await stopRegistries();
    await cleanupDirs();
    await removeVolume(VOLUME);
    await cleanupProjects();
  });

  test('keep 2 of 3: the registry lists the 2 newest; the oldest leaves the engine; the newest pulls and runs', async () => {
    const p = await project(`${NAMESPACE}-a`, ['push', ['gc', { keep: 2 }]]);
    const a = await p.build(nonce(1));
    await pullImage(docker, a.image);
    const b = await p.build(nonce(2));
    await pullImage(docker, b.image);
    assert.equal(imageTags(await registry.listTags(repoOf(a))), sorted([a.tag, b.tag]), 'nothing to collect yet');
    const c = await p.build(nonce(3));

    // The oldest tag goes with its index, its platform manifest and its platform tag.
    assert.equal(sorted(await registry.listTags(repoOf(a))), sorted([b.tag, `${b.tag}-linux-amd64`, c.tag, `${c.tag}-linux-amd64`]));
    assert.is(await registry.getManifestDigest(repoOf(a), a.tag), null);
    assert.is(a.platforms.length, 1);
    assert.is(await registry.getManifest(repoOf(a), a.platforms[0]!.digest), null, 'the platform manifest of the old index is gone');
    assert.ok(await registry.getManifest(repoOf(b), b.platforms[0]!.digest), 'a kept index keeps its platform manifest');
    assert.not.ok(await hasImage(docker, a.image), 'the oldest image left the engine');
    assert.ok(await hasImage(docker, b.image), 'a kept image stays in the engine');
    const history = JSON.parse(await readFile(path.join(p.pipeline.config.cacheDir, 'gc', `${c.name}.json`), 'utf8'));
    assert.equal(history.tags, [b.tag, c.tag]);

    await pullImage(docker, c.image);
    const r = await run(c.image, ['greet', 'gc']);
    assert.is(r.code, 0, r.output);
    assert.match(r.output, 'greetings, gc');
    await p.pipeline.shutdown();
  });

  test('a manifest that a kept tag shares is never deleted; it goes once no staying tag points at it', async () => {
    const p = await project(`${NAMESPACE}-b`, ['push', ['gc', { keep: 2 }]]);
    const a = await p.build(nonce(1));
    const b = await p.build(nonce(2));
    const repo = repoOf(a);
    // Point the tag of a at b's manifest: the two now share one digest.
    const manifest = (await registry.getManifest(repo, b.tag))!;
    await registry.putManifest(repo, a.tag, manifest.body, manifest.mediaType);
    assert.is(await registry.getManifestDigest(repo, a.tag), b.digest);

    const c = await p.build(nonce(3));
    assert.equal(imageTags(await registry.listTags(repo)), sorted([a.tag, b.tag, c.tag]), 'a stays: deleting it would delete b');
    assert.is(await registry.getManifestDigest(repo, b.tag), b.digest);
    assert.ok(p.logs.some((l) => l.level === 20 && /points at the same manifest/.test(l.msg)));

    const d = await p.build(nonce(4));
    assert.equal(sorted(await registry.listTags(repo)), sorted([c.tag, `${c.tag}-linux-amd64`, d.tag, `${d.tag}-linux-amd64`]), 'a and b go together, with their platform tags');
    await p.pipeline.shutdown();
  });

  test('a tag gc does not know (pushed from elsewhere) protects its manifest', async () => {
    const p = await project(`${NAMESPACE}-c`, ['push', ['gc', { keep: 1 }]]);
    const a = await p.build(nonce(1));
    const repo = repoOf(a);
    const manifest = (await registry.getManifest(repo, a.tag))!;
    await registry.putManifest(repo, 'pinned', manifest.body, manifest.mediaType);
    const b = await p.build(nonce(2));
    assert.equal(imageTags(await registry.listTags(repo)), sorted([a.tag, b.tag, 'pinned']));
    await p.pipeline.shutdown();
  });

  test('nix: the store keeps what the kept images hold, loses the rest, and later builds still work', async () => {
    const p = await project(`${NAMESPACE}-d`, [['gc', { keep: 2, nix: true }]]);
    const n = [nonce(1), nonce(2), nonce(3), nonce(4)];
    const a = await p.build(n[0]!, { load: true });
    await p.build(n[1]!, { load: true });
    const c = await p.build(n[2]!, { load: true });
    const store = async () => (await inVolume(VOLUME, ['ls', '/nix/store'])).output;
    const after3 = await store();
    assert.not.match(after3, `shout-${n[0]}`, 'the collected image\'s package is gone');
    assert.match(after3, `shout-${n[1]}`);
    assert.match(after3, `shout-${n[2]}`);
    assert.match(after3, /-greet\n/, 'packages of the kept images stay');
    assert.ok(p.logs.some((l) => l.level === 30 && /collected the builder store/.test(l.msg)), 'the collection is logged');
    assert.not.ok(await hasImage(docker, a.image), 'engine gc removes the loaded oldest image');

    const d = await p.build(n[3]!, { load: true });
    const r = await run(d.image, [`shout-${n[3]}`]);
    assert.is(r.code, 0, r.output);
    assert.match(r.output, n[3]!);
    assert.not.match(await store(), `shout-${n[1]}`);
    assert.ok(await hasImage(docker, c.image));
    await p.pipeline.shutdown();
  });

  test('errors never fail a build: an unreachable registry is logged once, and the tags are tried again later', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const p = await project(`${NAMESPACE}-e`, [['gc', { keep: 1 }]], dead);
    const a = await p.build(nonce(1), { load: true });
    const other = (tag: string): ImageDescription => ({ ...a, tag, image: `${refOf(a)}:${tag}`, destinations: ['registry'] });
    await p.pipeline.hooks.imageReady.promise(other('e'.repeat(32)));
    await p.pipeline.hooks.imageReady.promise(other('f'.repeat(32)));
    const warnings = p.logs.filter((l) => l.level === 40 && /gc could not delete old tags/.test(l.msg));
    assert.is(warnings.length, 1, 'one warning, then debug');
    assert.match(warnings[0]!.msg, dead);
    assert.ok(p.logs.some((l) => l.level === 20 && /gc could not delete old tags/.test(l.msg)));
    const history = JSON.parse(await readFile(path.join(p.pipeline.config.cacheDir, 'gc', `${a.name}.json`), 'utf8'));
    assert.equal(history.tags, [a.tag, 'e'.repeat(32), 'f'.repeat(32)], 'what could not be deleted stays in the history');
    assert.not.ok(await hasImage(docker, a.image), 'the engine part still ran');
    await p.pipeline.shutdown();
  });
}

test.run();
