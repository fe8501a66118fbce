/**
 * multi-platform: `nixdocker build` of a two-platform project (linux/amd64
 * native, linux/arm64 under qemu, each in its own builder, side by side)
 * against the two single-platform builds of the same kind of change run one
 * after the other (the second merging its platform into the first's index).
 * Every sample adds a new small package, so Nix really builds on each
 * platform. Also reported: the native amd64 build next to the emulated arm64
 * one (the single-platform builds).
 */
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { registryEnv, withRegistry } from '../lib/registry.js';
import { build, BUILDER_IMAGE, nixdocker, progress, REPO_ROOT, VOLUME, WORK } from '../lib/proc.js';
import { localNixWith } from '../lib/fixtures.js';
import { skipped, summarize, type Result } from '../lib/result.js';

const RUNS = 3;
export const ARM64_BUILDER_IMAGE = process.env.NIXDOCKER_TEST_ARM64_BUILDER_IMAGE ?? 'localhost/nixdocker-test-builder-arm64:latest';
export const MULTI_PLATFORM_NAMES = ['multi-platform', 'build-amd64-native', 'build-arm64-emulated'] as const;

const AMD64 = { platform: 'linux/amd64', image: BUILDER_IMAGE, volume: `${VOLUME}-amd64` };
const ARM64 = { platform: 'linux/arm64', image: ARM64_BUILDER_IMAGE, volume: `${VOLUME}-arm64` };

/** A copy of examples/offline building for `platforms`, under bench/work/. */
async function project(name: string, platforms: object[]): Promise<string> {
  const dir = path.join(WORK, `platforms-${name}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await cp(path.join(REPO_ROOT, 'examples', 'offline'), dir, { recursive: true });
  const rc = JSON.parse(await readFile(path.join(dir, '.nixdockerrc.json'), 'utf8'));
  await writeFile(path.join(dir, '.nixdockerrc.json'), JSON.stringify({ ...rc, builder: { image: BUILDER_IMAGE, volume: VOLUME }, platforms }, null, 2));
  return dir;
}

async function seconds(dir: string, nonce: string, env: Record<string, string>, platforms: string[]): Promise<number> {
  await writeFile(path.join(dir, 'workdir', 'local.nix'), localNixWith(nonce));
  const { run, out } = await build(dir, [], env);
  const builds = (out as { builds?: { platform: string }[] }).builds?.map((b) => b.platform).sort();
  if (out.status !== 'built' || JSON.stringify(builds) !== JSON.stringify(platforms)) {
    throw new Error(`expected a build of ${platforms.join(', ')}, got ${run.stdout.slice(0, 400)}`);
  }
  return run.seconds;
}

export async function platformBenchmarks(): Promise<Result[]> {
  const check = await nixdocker(['--version'], { allowFail: true });
  if (check.exitCode !== 0) return MULTI_PLATFORM_NAMES.map((n) => skipped(n, 's', 'nixdocker does not run'));
  const both = await project('both', [AMD64, ARM64]);
  const amd = await project('amd64', [AMD64]);
  const arm = await project('arm64', [ARM64]);
  progress('multi-platform: builder create for linux/amd64 and linux/arm64');
  await nixdocker(['-C', both, 'builder', 'create'], { timeoutMs: 600_000 });
  const multi: number[] = [];
  const sequential: number[] = [];
  const native: number[] = [];
  const emulated: number[] = [];
  await withRegistry(async (reg) => {
    const env = registryEnv(reg);
    // One warm-up of each builder's store (the base packages), not measured.
    await seconds(both, `warm-${Date.now()}`, env, ['linux/amd64', 'linux/arm64']);
    for (let i = 0; i < RUNS; i++) {
      const n = `${Date.now()}-${i}`;
      progress(`multi-platform run ${i + 1}/${RUNS}: two platforms at once`);
      multi.push(await seconds(both, `m${n}`, env, ['linux/amd64', 'linux/arm64']));
      progress(`multi-platform run ${i + 1}/${RUNS}: amd64 then arm64`);
      const a = await seconds(amd, `s${n}`, env, ['linux/amd64']);
      const b = await seconds(arm, `s${n}`, env, ['linux/arm64']);
      native.push(a);
      emulated.push(b);
      sequential.push(a + b);
    }
  });
  const note = 'a new small package per sample; linux/arm64 runs under qemu-user-static';
  return [
    summarize({ name: 'multi-platform', unit: 's', samples: multi, competitor: { name: 'amd64 then arm64 builds', samples: sequential }, target: { metric: 'ratio', op: '<', value: 1 }, note }),
    summarize({ name: 'build-amd64-native', unit: 's', samples: native, note: 'the single-platform amd64 build of multi-platform' }),
    summarize({ name: 'build-arm64-emulated', unit: 's', samples: emulated, competitor: { name: 'native amd64 build', samples: native }, note: 'the single-platform arm64 build of multi-platform, emulated' }),
  ];
}
