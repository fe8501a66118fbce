/**
 * The registry benchmarks, on the scaled-up offline project (≈200 MB image):
 *
 * - noop-build: `nixdocker build` when the registry already has the image.
 * - cold-push: the whole image into an empty registry; nixdocker's push phase
 *   against `skopeo copy` of the same image from an OCI layout.
 * - incremental-push / incremental-bytes-share: one small package added to
 *   workdir/local.nix, then `nixdocker build` into the registry that holds the
 *   image before the change; against skopeo copying the new image whole into
 *   an empty registry (what a user without layer reuse would do).
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { containersCreated } from '../lib/engine.js';
import { BASE_LOCAL_NIX, localNixWith, pushProject } from '../lib/fixtures.js';
import { registryEnv, withRegistry, type TestRegistry } from '../lib/registry.js';
import { build, nixdocker, progress, REPO_ROOT, timed, VOLUME, WORK, type BuildJson } from '../lib/proc.js';
import { median, round, summarize, type Result } from '../lib/result.js';

const NOOP_RUNS = 5;
const PUSH_RUNS = 3;

const OCI_BASE = path.join(WORK, 'oci', 'base');
const OCI_NEW = path.join(WORK, 'oci', 'incremental');

/** REGISTRY/NS/NAME:TAG → NS/NAME:TAG. */
function repoAndTag(reference: string): string {
  return reference.slice(reference.indexOf('/') + 1);
}

async function saveOci(reference: string, dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.dirname(dir), { recursive: true });
  await timed('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${reference}`, `oci:${dir}:image`]);
}

/** Seconds for skopeo to copy the OCI layout `dir` into a registry of its own, empty. */
function skopeoCopy(dir: string, reference: string): Promise<number> {
  return withRegistry(async (reg) => {
    const r = await timed('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${dir}:image`, `docker://${reg.host}/${repoAndTag(reference)}`]);
    return r.seconds;
  });
}

function medians(rows: Record<string, number>[]): Record<string, number> {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return Object.fromEntries(keys.map((k) => [k, median(rows.map((r) => r[k] ?? 0))]));
}

function expectBuilt(out: BuildJson, what: string): asserts out is BuildJson & { image: NonNullable<BuildJson['image']>; push: NonNullable<BuildJson['push']> } {
  if (out.status !== 'built' || !out.image || !out.push) throw new Error(`${what}: expected a built and pushed image, got ${JSON.stringify(out).slice(0, 500)}`);
}

export async function pushBenchmarks(): Promise<Result[]> {
  const dir = await pushProject();
  const localNix = path.join(dir, 'workdir', 'local.nix');
  const results: Result[] = [];
  progress(`push fixture ${path.relative(process.cwd(), dir)}: builder create (volume ${VOLUME})`);
  await nixdocker(['-C', dir, 'builder', 'create'], { timeoutMs: 600_000 });

  try {
    await withRegistry(async (reg) => {
      progress('warming the Nix store, result and layer caches (a first run ever builds ≈210 MB with Nix and gzips it, ≈30 s)');
      const warm = await build(dir, ['--force'], registryEnv(reg));
      expectBuilt(warm.out, 'warm-up build');
      progress(`image ${warm.out.image.layers.length} layers, ${(warm.out.image.size / 1e6).toFixed(1)} MB; saving it as an OCI layout for skopeo (untimed)`);
      await saveOci(warm.out.reference, OCI_BASE);
      results.push(await noopBuild(dir, reg, warm.out.reference));
    });

    const cold = { push: [] as number[], wall: [] as number[], skopeo: [] as number[], phases: [] as Record<string, number>[], size: 0, layers: 0 };
    const inc = { wall: [] as number[], push: [] as number[], skopeo: [] as number[], share: [] as number[], bytes: [] as number[], phases: [] as Record<string, number>[], changed: [] as number[], size: 0 };
    for (let i = 0; i < PUSH_RUNS; i++) {
      await writeFile(localNix, BASE_LOCAL_NIX);
      // A registry never pushed to: no remembered blob homes for its host:port.
      await rm(path.join(dir, '.nixdocker', 'registries'), { recursive: true, force: true });
      await withRegistry(async (reg) => {
        progress(`cold-push ${i + 1}/${PUSH_RUNS}: nixdocker build --force into an empty registry, and skopeo copy into another`);
        const ours = async () => {
          const b = await build(dir, ['--force'], registryEnv(reg));
          expectBuilt(b.out, 'cold push');
          if (b.out.push.uploaded !== b.out.image.layers.length + 1) throw new Error(`cold push uploaded ${b.out.push.uploaded} blobs, expected every layer and the config`);
          cold.push.push(b.out.image.durations.push! / 1000);
          cold.wall.push(b.run.seconds);
          cold.phases.push(b.out.image.durations);
          cold.size = b.out.image.size;
          cold.layers = b.out.image.layers.length;
          return b.out;
        };
        let base: BuildJson;
        if (i % 2 === 0) {
          base = await ours();
          cold.skopeo.push(await skopeoCopy(OCI_BASE, base.reference));
        } else {
          const reference = (await nixdocker(['-C', dir, 'hash'], { env: registryEnv(reg) })).stdout.trim();
          cold.skopeo.push(await skopeoCopy(OCI_BASE, reference));
          base = await ours();
        }

        progress(`incremental ${i + 1}/${PUSH_RUNS}: one package added to workdir/local.nix, nixdocker build into the registry holding the image before`);
        await writeFile(localNix, localNixWith(`${process.pid}n${Date.now()}n${i}`));
        const b = await build(dir, [], registryEnv(reg));
        expectBuilt(b.out, 'incremental build');
        const before = new Set(base.image!.layers.map((l) => l.digest));
        inc.wall.push(b.run.seconds);
        inc.push.push(b.out.image.durations.push! / 1000);
        inc.bytes.push(b.out.push.bytesUploaded);
        inc.share.push((100 * b.out.push.bytesUploaded) / b.out.image.size);
        inc.changed.push(b.out.image.layers.filter((l) => !before.has(l.digest)).length);
        inc.phases.push(b.out.image.durations);
        inc.size = b.out.image.size;
        await saveOci(b.out.reference, OCI_NEW);
        inc.skopeo.push(await skopeoCopy(OCI_NEW, b.out.reference));
      });
    }

    const sec = (xs: number[]) => round(median(xs), 4);
    results.push(
      summarize({
        name: 'cold-push',
        unit: 's',
        samples: cold.push,
        competitor: { name: 'skopeo copy', samples: cold.skopeo },
        target: { metric: 'ratio', op: '<=', value: 1 },
        note: 'median/min/max: push phase (image.durations.push); wall: whole `build --force`',
        extra: {
          wall: { median: sec(cold.wall), min: round(Math.min(...cold.wall), 4), max: round(Math.max(...cold.wall), 4) },
          wallRatio: round(median(cold.wall) / median(cold.skopeo), 3),
          phasesMs: medians(cold.phases),
          imageBytes: cold.size,
          layers: cold.layers,
        },
      }),
      summarize({
        name: 'incremental-push',
        unit: 's',
        samples: inc.wall,
        competitor: { name: 'skopeo copy (whole new image, empty registry)', samples: inc.skopeo },
        note: 'wall of `build` after the edit (Nix + assemble + push); no target in issue 6',
        extra: { pushPhase: sec(inc.push), phasesMs: medians(inc.phases), changedLayers: median(inc.changed) },
      }),
      summarize({
        name: 'incremental-bytes-share',
        unit: 'percent',
        samples: inc.share,
        target: { metric: 'median', op: '<', value: 5 },
        extra: { bytesUploaded: median(inc.bytes), imageBytes: inc.size },
      }),
    );
    return results;
  } finally {
    await writeFile(localNix, BASE_LOCAL_NIX);
  }
}

/** `nixdocker build` with the image complete in `reg`: time, and containers started (none expected). */
async function noopBuild(dir: string, reg: TestRegistry, reference: string): Promise<Result> {
  progress(`noop-build: nixdocker build ${NOOP_RUNS}× with the image in the registry; skopeo inspect --raw as the floor`);
  const env = registryEnv(reg);
  const first = await build(dir, [], env);
  if (first.out.status !== 'up-to-date') throw new Error(`noop build: expected up-to-date, got ${first.out.status}`);
  const ours: number[] = [];
  const floor: number[] = [];
  const inProcess: Record<string, number>[] = [];
  const fromMs = Date.now();
  for (let i = 0; i < NOOP_RUNS; i++) {
    const b = await build(dir, [], env);
    if (b.out.status !== 'up-to-date') throw new Error(`noop build ${i}: expected up-to-date, got ${b.out.status}`);
    ours.push(b.run.seconds);
    inProcess.push(b.out.durations ?? {});
    floor.push((await timed('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reference}`])).seconds);
  }
  const toMs = Date.now();
  const started = await containersCreated(fromMs, toMs, { 'org.nixdocker.volume': VOLUME, 'org.nixdocker.project': dir });
  // Where the time goes: the CLI's fixed start-up cost, and node's own.
  const cli: number[] = [];
  const bare: number[] = [];
  for (let i = 0; i < NOOP_RUNS; i++) {
    cli.push((await nixdocker(['--version'])).seconds);
    bare.push((await timed(process.execPath, ['-e', '0'])).seconds);
  }
  return summarize({
    name: 'noop-build',
    unit: 's',
    samples: ours,
    competitor: { name: 'skopeo inspect --raw', samples: floor },
    target: { metric: 'median', op: '<', value: 0.3 },
    extraCondition: started.length === 0,
    note: started.length ? `${started.length} container(s) started` : 'no container started',
    extra: {
      containersStarted: started.length,
      inProcessMs: medians(inProcess),
      cliVersionSeconds: round(median(cli), 4),
      nodeStartSeconds: round(median(bare), 4),
      importMs: await importCosts(),
    },
  });
}

/**
 * What loading the CLI costs before it does anything: the first import of
 * each runtime dependency and of the CLI's entry module, each in a fresh
 * node process (median of 3), in ms.
 */
async function importCosts(): Promise<Record<string, number>> {
  const pkg = JSON.parse(await readFile(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  // @types/* packages hold declarations for the public API's types: nothing to import.
  const specifiers = [...Object.keys(pkg.dependencies ?? {}).filter((d) => !d.startsWith('@types/')), './dist/src/cli/main.js'];
  const out: Record<string, number> = {};
  for (const spec of specifiers) {
    const samples: number[] = [];
    for (let i = 0; i < 3; i++) {
      const code = `const t = performance.now(); await import(${JSON.stringify(spec)}); process.stdout.write(String(performance.now() - t));`;
      const r = await timed(process.execPath, ['--input-type=module', '-e', code], { cwd: REPO_ROOT });
      samples.push(Number(r.stdout));
    }
    out[spec === './dist/src/cli/main.js' ? 'cli (all of it)' : spec] = Math.round(median(samples));
  }
  return out;
}
