/**
 * daemon-rss-1500 (issue 15): resident memory of `nixdocker watch` on the
 * 1,500-path closure (bench/lib/fixtures.ts SCALE_FIXTURES.s1500), idle after
 * 20 builds, against the same daemon idle after its first build.
 *
 * The daemon starts with `.nixdocker` removed (its first build assembles all
 * 1,500 paths) against an empty registry. Then 20 changes, each waited for
 * until its `imageReady`: 16 one-package user changes (workdir/local.nix) and
 * 4 one-path base changes (env/default.nix, a different package each time).
 * The nonces are fixed, so a later run finds their Nix outputs in the store.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { localNixWith, scaleDefaultNix, scaleProject, SCALE_FIXTURES } from '../lib/fixtures.js';
import { registryEnv, withRegistry } from '../lib/registry.js';
import { nixdocker, progress } from '../lib/proc.js';
import { median, round, summarize, type Result } from '../lib/result.js';
import { rssBytes, withWatch } from '../lib/watch.js';

const BUILDS = 20;
/** Every this many changes, a base change instead of a user change. */
const BASE_EVERY = 5;
/** After a build the daemon collects garbage once idle for 2 s (src/daemon/memory.ts): sample after that. */
const SETTLE_MS = 4000;
const IDLE_SECONDS = 20;
const FIRST_IDLE_SECONDS = 5;

export const DAEMON_RSS_TARGET = { metric: 'max', op: '<', value: 100_000_000 } as const;

/** VmRSS and its parts, and the peak so far (VmHWM), from /proc/PID/status, in bytes. */
async function memoryOf(pid: number): Promise<Record<string, number>> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const out: Record<string, number> = {};
  for (const key of ['VmRSS', 'VmHWM', 'RssAnon', 'RssFile', 'RssShmem']) {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
    if (m) out[key] = Number(m[1]) * 1024;
  }
  return out;
}

async function sampleRss(pid: number, seconds: number): Promise<number[]> {
  const out: number[] = [];
  const t0 = performance.now();
  for (let s = 1; s <= seconds; s++) {
    await sleep(Math.max(0, t0 + s * 1000 - performance.now()));
    out.push(await rssBytes(pid));
  }
  return out;
}

export async function daemonRssBenchmarks(): Promise<Result[]> {
  const f = SCALE_FIXTURES.s1500;
  const dir = await scaleProject(f);
  await nixdocker(['-C', dir, 'builder', 'create'], { timeoutMs: 600_000 });
  await rm(path.join(dir, '.nixdocker'), { recursive: true, force: true });
  try {
    return await withRegistry(async (reg) => {
      const env = registryEnv(reg);
      progress(`daemon-rss-1500: nixdocker watch on ${f.paths} paths, .nixdocker removed, empty registry (a first run builds the closure with Nix)`);
      return await withWatch(
        dir,
        env,
        async (w) => {
          await sleep(SETTLE_MS);
          const first = await sampleRss(w.pid, FIRST_IDLE_SECONDS);
          const firstParts = await memoryOf(w.pid);
          progress(`daemon-rss-1500: idle after the first build: ${(Math.max(...first) / 1e6).toFixed(1)} MB; ${BUILDS} changes follow`);
          const afterEach: number[] = [];
          const seconds: number[] = [];
          let base = 0;
          for (let k = 1; k <= BUILDS; k++) {
            const from = w.events.length;
            const t0 = performance.now();
            if (k % BASE_EVERY === 0) {
              base++;
              await writeFile(path.join(dir, 'env', 'default.nix'), scaleDefaultNix(f, `rss-${k}`, { pkg: k }));
            } else {
              await writeFile(path.join(dir, 'workdir', 'local.nix'), localNixWith(`rss-${k}`));
            }
            await w.waitFor(`imageReady after change ${k}`, (e) => e.event === 'imageReady', 600_000, from);
            seconds.push((performance.now() - t0) / 1000);
            afterEach.push(await rssBytes(w.pid));
            progress(`daemon-rss-1500 ${k}/${BUILDS} (${k % BASE_EVERY === 0 ? 'base' : 'user'} change): ready in ${seconds.at(-1)!.toFixed(1)} s, RSS ${(afterEach.at(-1)! / 1e6).toFixed(1)} MB`);
            // Let the daemon settle, so no two builds overlap.
            await sleep(500);
          }
          await sleep(SETTLE_MS);
          const idle = await sampleRss(w.pid, IDLE_SECONDS);
          const parts = await memoryOf(w.pid);
          const builds = w.events.filter((e) => e.event === 'buildStart').length;
          progress(`daemon-rss-1500: idle after ${BUILDS} more builds: max ${(Math.max(...idle) / 1e6).toFixed(1)} MB`);
          return [
            summarize({
              name: 'daemon-rss-1500',
              unit: 'bytes',
              samples: idle,
              competitor: { name: 'idle after the first build', samples: first },
              target: DAEMON_RSS_TARGET,
              note: `VmRSS of nixdocker watch each second for ${IDLE_SECONDS} s, idle after 1 + ${BUILDS} builds of the ${f.paths}-path closure (${BUILDS - base} user changes, ${base} base changes); target on the max; after the first build: max ${(Math.max(...first) / 1e6).toFixed(1)} MB`,
              extra: {
                firstBuildIdleMax: Math.max(...first),
                afterEachBuild: afterEach,
                changeToReadySeconds: round(median(seconds), 2),
                buildsStarted: builds,
                userChanges: BUILDS - base,
                baseChanges: base,
                statusAfterFirst: firstParts,
                statusAfterAll: parts,
              },
            }),
          ];
        },
        { firstReadyMs: 1_800_000 },
      );
    });
  } finally {
    await scaleProject(f); // back to the unchanged closure for the next run
  }
}
