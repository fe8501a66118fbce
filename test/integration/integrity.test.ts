import Docker from 'dockerode';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createGunzip } from 'node:zlib';
import { execa } from 'execa';
import { BIN, cleanupProjects, runCli } from '../helpers/project.js';
import { leftoverContainers, offlineProject, removeVolume, requireParts } from '../helpers/services.js';
import { cleanupDirs, startRegistry, stopRegistries, tmpDir, type TestRegistry } from '../helpers/registry.js';
import { WatchProcess } from '../helpers/watch.js';

/**
 * Issue 11, items 1, 2 and 8 against the real parts: a tag always names
 * exactly its inputs (checked by skopeo, an independent client), nothing
 * outside the project is read or mounted, and the small defects.
 */
const test = suite('integrity: one read, containment, interrupts (real nix, podman, registry, skopeo)');
const VOLUME = `nixdocker-test-integrity-${process.pid}`;
const env = () => ({ DOCKER_HOST: process.env.DOCKER_HOST });
const watchers: WatchProcess[] = [];
let reg: TestRegistry;

/** Valid user files that differ only by the program they add: its name is the marker. */
const variant = (k: number) => `{ pkgs, ... }: [ (pkgs.writeScriptBin "mark${k}x${process.pid}" "echo mark${k}") ]\n`;
const markerOf = (k: number) => `mark${k}x${process.pid}`;
const slow = (seconds: number) =>
  `{ pkgs, ... }: [ (derivation { name = "slow-${process.pid}-${Date.now()}"; system = builtins.currentSystem; builder = "/bin/busybox"; args = [ "sh" "-c" "sleep ${seconds}; echo > $out" ]; }) ]\n`;
const SECRET = `TOP-SECRET-${process.pid}`;

async function project(config: Record<string, unknown> = {}, files: Record<string, string> = {}, parent?: string) {
  const dir = await offlineProject({ volume: VOLUME, config: { registry: { host: reg.host }, ...config }, files });
  if (!parent) return dir;
  const moved = path.join(parent, path.basename(dir));
  await rename(dir, moved);
  return moved;
}

/** The tag each variant's content gives (hash of the file as the loop writes it). */
async function tagsOfVariants(dir: string, ks: number[]): Promise<Map<string, number>> {
  const file = path.join(dir, 'workdir/local.nix');
  const saved = await readFile(file);
  const tags = new Map<string, number>();
  for (const k of ks) {
    await writeFile(file, variant(k));
    const r = await runCli(['-C', dir, 'hash']);
    assert.is(r.exitCode, 0, r.stderr);
    tags.set(r.stdout.trim().split(':').pop()!, k);
  }
  await writeFile(file, saved);
  return tags;
}

/** Rewrites the user file between the variants (atomic renames, so every read sees a whole, valid file). */
function rewriteLoop(dir: string, ks: number[], pauseMs: number): { stop: () => Promise<number> } {
  const file = path.join(dir, 'workdir/local.nix');
  let running = true;
  let writes = 0;
  const done = (async () => {
    for (let i = 0; running; i++) {
      await writeFile(`${file}.tmp`, variant(ks[i % ks.length]!));
      await rename(`${file}.tmp`, file);
      writes++;
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return writes;
    },
  };
}

/**
 * The markers an image holds, read by an independent client: skopeo copies
 * the manifest (by digest) into an OCI layout, and every layer is unpacked
 * and listed here. A marker is a program `bin/markN…` of the user file.
 */
async function markersInImage(reference: string, digest: string): Promise<string[]> {
  const dir = await tmpDir('nixdocker-oci-');
  const repo = reference.slice(0, reference.lastIndexOf(':'));
  await execa('skopeo', ['copy', '--src-tls-verify=false', `docker://${repo}@${digest}`, `oci:${dir}:img`]);
  const blob = (d: string) => path.join(dir, 'blobs', ...d.split(':'));
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const manifest = JSON.parse(await readFile(blob(index.manifests[0]!.digest), 'utf8')) as { layers: { digest: string }[] };
  const { default: tarStream } = await import('tar-stream');
  const found = new Set<string>();
  for (const layer of manifest.layers) {
    const extract = tarStream.extract();
    extract.on('entry', (header, stream, next) => {
      const m = /(?:^|\/)bin\/(mark\d+x\d+)$/.exec(header.name);
      if (m) found.add(m[1]!);
      stream.on('end', next);
      stream.resume();
    });
    await new Promise<void>((resolve, reject) => {
      extract.on('finish', resolve);
      extract.on('error', reject);
      createReadStream(blob(layer.digest)).pipe(createGunzip()).on('error', reject).pipe(extract);
    });
  }
  return [...found].sort();
}

/** Every pushed (reference, digest) must hold exactly the marker of the content its tag names. */
async function mismatches(pushed: { reference: string; digest: string }[], tags: Map<string, number>): Promise<string[]> {
  const bad: string[] = [];
  for (const p of pushed) {
    const k = tags.get(p.reference.split(':').pop()!);
    if (k === undefined) {
      bad.push(`${p.reference}: a tag no content of the loop names`);
      continue;
    }
    const markers = await markersInImage(p.reference, p.digest);
    if (markers.join(',') !== markerOf(k)) bad.push(`${p.reference} names variant ${k} but holds ${markers.join(', ') || 'no marker'}`);
  }
  return bad;
}

function watch(dir: string): WatchProcess {
  const w = new WatchProcess(dir);
  watchers.push(w);
  return w;
}

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix'])) {
  test.before(async () => {
    reg = await startRegistry();
    const r = await runCli(['-C', await project(), 'builder', 'create'], { env: env() });
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

  test('one-shot builds under a rewrite loop: every pushed tag holds exactly the content it names (skopeo)', async () => {
    const dir = await project();
    const ks = [1, 2, 3];
    const tags = await tagsOfVariants(dir, ks);
    const loop = rewriteLoop(dir, ks, 2);
    const pushed: { reference: string; digest: string }[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        // --force: Nix runs and the image is pushed every time, whatever the registry has.
        const r = await runCli(['-C', dir, 'build', '--force', '--json'], { env: env() });
        assert.is(r.exitCode, 0, r.stderr);
        const out = JSON.parse(r.stdout) as { status: string; reference: string; image: { digest: string } };
        assert.is(out.status, 'built');
        pushed.push({ reference: out.reference, digest: out.image.digest });
      }
    } finally {
      const writes = await loop.stop();
      assert.ok(writes > 20, `the loop rewrote the file ${writes} times during the builds`);
    }
    assert.equal(await mismatches(pushed, tags), []);
    // The remembered Nix result and the registry skip trust the tag: a plain build agrees.
    const again = await runCli(['-C', dir, 'build', '--json'], { env: env() });
    const tag = JSON.parse(again.stdout).reference.split(':').pop();
    assert.ok(tags.has(tag), 'the file holds one of the variants');
  });

  test('the daemon under a rewrite loop: every image it announced holds exactly the content its tag names', async () => {
    const dir = await project({ watch: { debounceMs: 20, cancelSuperseded: false } });
    const ks = [4, 5];
    const tags = await tagsOfVariants(dir, ks);
    const w = watch(dir);
    await w.event('watching');
    await w.waitFor((e) => e.event === 'imageReady' || e.event === 'upToDate', 120_000);
    const mark = w.events.length;
    const loop = rewriteLoop(dir, ks, 15);
    // Bounded: a few builds while the file keeps changing.
    await w.waitFor((e) => e.event === 'imageReady', 120_000, mark);
    const second = w.events.length;
    await w.waitFor((e) => e.event === 'imageReady', 120_000, second);
    await loop.stop();
    const ready = w.events.slice(mark).filter((e) => e.event === 'imageReady');
    assert.ok(ready.length >= 2, `${ready.length} images announced during the loop`);
    const pushed = ready.map((e) => ({ reference: String(e.image), digest: String(e.digest) }));
    assert.equal(await mismatches(pushed, tags), []);
  });

  test('under a running daemon: a symlink (file or directory) to outside and a FIFO are refused unread; the next valid change builds', async () => {
    const dir = await project({ watch: { debounceMs: 50 } }, { 'workdir/local.nix': variant(6) });
    const outside = await tmpDir('nixdocker-outside-');
    await writeFile(path.join(outside, 'secret.nix'), `[ "${SECRET}" ]\n`);
    await mkdir(path.join(outside, 'env'));
    await writeFile(path.join(outside, 'env/default.nix'), `[ "${SECRET}" ]\n`);
    const w = watch(dir);
    await w.event('watching');
    await w.waitFor((e) => e.event === 'imageReady' || e.event === 'upToDate', 120_000);

    // 1. workdir/local.nix swapped for a symlink outside (ln -s … x && mv -T x workdir/local.nix).
    let mark = w.events.length;
    await symlink(path.join(outside, 'secret.nix'), path.join(dir, 'x'));
    await rename(path.join(dir, 'x'), path.join(dir, 'workdir/local.nix'));
    const fileRefused = await w.event('buildFailed', 60_000, mark);
    assert.match(String(fileRefused.msg), /workdir\/local\.nix named by "userConfig\[0\]".*outside the project directory/);
    assert.match(String(fileRefused.msg), 'still watching');
    assert.is(w.count('buildStart', mark), 0, 'nothing was built (or staged) from it');

    // 2. env/ swapped for a symlink to a directory outside.
    mark = w.events.length;
    await rename(path.join(dir, 'env'), path.join(dir, 'env.real'));
    await symlink(path.join(outside, 'env'), path.join(dir, 'env'));
    await rm(path.join(dir, 'workdir/local.nix'));
    await writeFile(path.join(dir, 'workdir/local.nix'), variant(7)); // a change the watcher sees
    const dirRefused = await w.waitFor((e) => e.event === 'buildFailed' && /"envDir"/.test(String(e.msg)), 60_000, mark);
    assert.match(String(dirRefused.msg), 'outside the project directory');
    await rm(path.join(dir, 'env'));
    await rename(path.join(dir, 'env.real'), path.join(dir, 'env'));

    // 3. A FIFO in env/: refused by type, the daemon does not hang on it.
    mark = w.events.length;
    await execa('mkfifo', [path.join(dir, 'env/pipe')]);
    const fifo = await w.waitFor((e) => e.event === 'buildFailed' && /FIFO/.test(String(e.msg)), 60_000, mark);
    assert.match(String(fifo.msg), 'env/pipe is a FIFO (named pipe)');
    await rm(path.join(dir, 'env/pipe'));

    // The daemon still serves: the next valid change builds, and its image is the current hash.
    mark = w.events.length;
    await writeFile(path.join(dir, 'workdir/local.nix'), variant(8));
    const expected = (await runCli(['-C', dir, 'hash'])).stdout.trim();
    await w.waitFor((e) => e.event === 'imageReady' && e.image === expected, 120_000, mark);

    // Nothing from outside reached the log or the status file.
    assert.not.match(w.stderr, SECRET);
    const status = await readFile(path.join(dir, '.nixdocker/state/daemon.json'), 'utf8');
    assert.not.match(status, SECRET);

    // Ctrl-C during a build: said as the daemon stopping, not as newer inputs.
    mark = w.events.length;
    await writeFile(path.join(dir, 'workdir/local.nix'), slow(60));
    await w.waitFor((e) => typeof e.msg === 'string' && e.msg.startsWith("building '"), 60_000, mark);
    const { exitCode } = await w.stop('SIGINT');
    assert.is(exitCode, 0);
    const cancelled = w.events.slice(mark).find((e) => e.event === 'buildCancelled');
    assert.ok(cancelled, 'the build was cancelled');
    assert.match(String(cancelled!.msg), 'the daemon is stopping');
    assert.not.match(String(cancelled!.msg), 'newer inputs');
    assert.equal(await leftoverContainers(VOLUME), []);
  });

  test("a ':' in the project path: build --load and run work; workdir/user symlinked to /etc is never mounted", async () => {
    const parent = await tmpDir('nixdocker-colon:a-');
    const dir = await project({}, { 'workdir/local.nix': variant(9), 'workdir/user/hello.txt': 'hello from workdir/user\n' }, parent);
    const built = await runCli(['-C', dir, 'build', '--load'], { env: env() });
    assert.is(built.exitCode, 0, built.stderr);
    const ok = await runCli(['-C', dir, 'run', 'cat', 'hello.txt'], { env: env() });
    assert.is(ok.exitCode, 0, ok.stderr);
    assert.match(ok.stdout, 'hello from workdir/user');

    // A ',' too: podman 4 cannot mount it (its API splits on commas): a clear error, never an
    // internal one. Which outcome is right is decided by the engine's version, not by the result.
    const engine = await new Docker().version();
    const podman4 = engine.Components?.some((c) => c.Name === 'Podman Engine' && /^4\./.test(c.Version)) ?? false;
    const comma = `${parent},x`;
    await rename(parent, comma);
    const withComma = await runCli(['-C', path.join(comma, path.basename(dir)), 'run', 'cat', 'hello.txt'], { env: env() });
    assert.not.match(withComma.stderr, 'internal error');
    if (podman4) {
      assert.is(withComma.exitCode, 1, withComma.stderr);
      assert.match(withComma.stderr, "its path holds a ','");
    } else {
      assert.is(withComma.exitCode, 0, withComma.stderr);
      assert.match(withComma.stdout, 'hello from workdir/user');
    }
    await rename(comma, parent);

    await rm(path.join(dir, 'workdir/user'), { recursive: true });
    await symlink('/etc', path.join(dir, 'workdir/user'));
    const refused = await runCli(['-C', dir, 'run', 'sh', '-c', 'head -1 shadow; head -1 passwd'], { env: env() });
    assert.is(refused.exitCode, 1);
    assert.match(refused.stderr, /workdir\/user named by "workdir".*symlink to \/etc, outside the project directory/);
    assert.not.match(refused.stdout, 'root:');
  });

  test('SIGINT or SIGTERM of a one-shot build: one "interrupted" line, exit 130 or 143, no stack, no container', async () => {
    for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      const dir = await project({}, { 'workdir/local.nix': slow(60) });
      const child = execa(process.execPath, [BIN, '-C', dir, '--log-level', 'debug', 'build'], { reject: false, env: env(), stdin: 'ignore' });
      let err = '';
      const building = new Promise<void>((resolve) => child.stderr!.on('data', (c: Buffer) => ((err += c.toString()), /building '/.test(err) && resolve())));
      await Promise.race([building, new Promise((_, reject) => setTimeout(() => reject(new Error(`no build started: ${err}`)), 90_000))]);
      child.kill(sig);
      const r = await child;
      assert.is(r.exitCode, code, String(r.stderr));
      assert.match(String(r.stderr), `nixdocker: interrupted (${sig})`);
      assert.not.match(String(r.stderr), 'internal error');
      assert.not.match(String(r.stderr), /\n\s+at /);
      assert.equal(await leftoverContainers(VOLUME), []);
    }
  });
}

test.run();
