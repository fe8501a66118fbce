/**
 * The daemon benchmarks, against `nixdocker watch --json-logs`: its log lines
 * on stderr carry an `event` field (`watching`, `imageReady` with `image`,
 * `upToDate`, `buildFailed`).
 *
 * - change-to-ready: from writing workdir/local.nix (one small package added)
 *   to the `imageReady` line of the new image, debounce included, warm store.
 * - idle-cpu / idle-rss: CPU and resident memory of the daemon over 60 s with
 *   nothing changing, on a project with 1,000 files in env/.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BASE_LOCAL_NIX, envTreeProject, localNixWith, pushProject } from '../lib/fixtures.js';
import { registryEnv, withRegistry } from '../lib/registry.js';
import { containersCreated } from '../lib/engine.js';
import { build, nixdocker, progress, REPO_ROOT, timed, VOLUME } from '../lib/proc.js';
import { rssBytes, withWatch, type LogEvent } from '../lib/watch.js';
import { median, round, skipped, summarize, type Result } from '../lib/result.js';

const CHANGE_RUNS = 5;
const IDLE_SECONDS = 60;
const CPU_WINDOW_SECONDS = 10;

const TARGETS = {
  changeToReady: { metric: 'median', op: '<', value: 1.8 },
  idleCpu: { metric: 'mean', op: '<', value: 1 },
  idleRss: { metric: 'max', op: '<', value: 100_000_000 },
} as const;

export async function watchAvailable(): Promise<boolean> {
  const r = await nixdocker(['watch', '--help'], { allowFail: true, timeoutMs: 30_000 });
  return r.exitCode === 0;
}

export function watchSkipped(note: string): Result[] {
  return [
    skipped('change-to-ready', 's', note, TARGETS.changeToReady),
    skipped('idle-cpu', 'percent', note, TARGETS.idleCpu),
    skipped('idle-rss', 'bytes', note, TARGETS.idleRss),
  ];
}

export async function watchBenchmarks(): Promise<Result[]> {
  return [await changeToReady(), ...(await idle())];
}

async function changeToReady(): Promise<Result> {
  const dir = await pushProject();
  const localNix = path.join(dir, 'workdir', 'local.nix');
  try {
    return await withRegistry(async (reg) => {
      const env = registryEnv(reg);
      progress(`change-to-ready: nixdocker watch on the push fixture; ${CHANGE_RUNS} edits of workdir/local.nix`);
      const samples: number[] = [];
      const breakdown: Record<string, number>[] = [];
      let fromMs = 0;
      let toMs = 0;
      await withWatch(dir, env, async (w) => {
        fromMs = Date.now();
        for (let i = 0; i < CHANGE_RUNS; i++) {
          const from = w.events.length;
          const content = localNixWith(`${process.pid}w${Date.now()}w${i}`);
          const wroteAt = Date.now();
          const t0 = performance.now();
          await writeFile(localNix, content);
          const { event } = await w.waitFor('imageReady after the edit', (e) => e.event === 'imageReady', 120_000, from);
          samples.push((performance.now() - t0) / 1000);
          // After the clock stops: the image announced must be the one of the new files.
          const expected = (await nixdocker(['-C', dir, 'hash'], { env })).stdout.trim();
          if (event.image !== expected) throw new Error(`watch announced ${String(event.image)} after the edit, expected ${expected}`);
          // Where the time went, from the log lines' own clocks: write → buildStart (detection and
          // debounce), buildStart → imageReady, and the build's phases as imageReady reports them.
          const start = w.events.slice(from).find((e) => e.event === 'buildStart' && e.buildId === event.buildId);
          const at = (e: LogEvent | undefined) => (typeof e?.time === 'number' ? e.time : NaN);
          breakdown.push({
            writeToBuildStart: at(start) - wroteAt,
            buildStartToReady: at(event) - at(start),
            ...((event.durations as Record<string, number> | undefined) ?? {}),
          });
          progress(`change-to-ready ${i + 1}/${CHANGE_RUNS}: ${samples.at(-1)!.toFixed(3)} s`);
          // Let the daemon settle before the next edit, so no two builds overlap.
          await sleep(500);
        }
        toMs = Date.now();
      });
      const containers = await containersCreated(fromMs, toMs, { 'org.nixdocker.volume': VOLUME, 'org.nixdocker.project': dir });
      const keys = [...new Set(breakdown.flatMap((b) => Object.keys(b)))];
      const phasesMs: Record<string, number> = {};
      for (const k of keys) {
        const vs = breakdown.map((b) => b[k]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
        if (vs.length) phasesMs[k] = Math.round(median(vs));
      }
      return summarize({
        name: 'change-to-ready',
        unit: 's',
        samples,
        target: TARGETS.changeToReady,
        note: 'file write → imageReady line, debounce included',
        extra: { phasesMs, debounceMs: await debounceMs(dir), containersPerBuild: containers.length / CHANGE_RUNS },
      });
    });
  } finally {
    await writeFile(localNix, BASE_LOCAL_NIX);
  }
}

/** watch.debounceMs as the project's config sets it, else the default. */
async function debounceMs(dir: string): Promise<number> {
  const rc = JSON.parse(await readFile(path.join(dir, '.nixdockerrc.json'), 'utf8')) as { watch?: { debounceMs?: number } };
  return rc.watch?.debounceMs ?? 300;
}

/** utime+stime (and reaped children's) of a process and its live descendants, in clock ticks. */
async function cpuTicks(pid: number): Promise<number> {
  const stat = async (p: number) => {
    const s = await readFile(`/proc/${p}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
  };
  const all = new Map<number, { ppid: number; ticks: number }>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = await stat(Number(name)).catch(() => null);
    if (s) all.set(Number(name), s);
  }
  let total = 0;
  const queue = [pid];
  while (queue.length) {
    const p = queue.pop()!;
    total += all.get(p)?.ticks ?? 0;
    for (const [child, s] of all) if (s.ppid === p) queue.push(child);
  }
  return total;
}

/**
 * What a node process holds before the daemon does anything: bare node, and
 * node with the CLI's modules loaded (VmRSS after import), in bytes.
 */
async function baselineRss(): Promise<{ nodeRss: number; cliLoadedRss: number }> {
  const rssAfter = async (code: string) => {
    const script = `import { readFileSync } from 'node:fs'; ${code}; const m = /^VmRSS:\\s+(\\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8')); process.stdout.write(String(Number(m[1]) * 1024));`;
    return Number((await timed(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO_ROOT })).stdout);
  };
  return { nodeRss: await rssAfter('0'), cliLoadedRss: await rssAfter("await import('./dist/src/cli/main.js')") };
}

async function idle(): Promise<Result[]> {
  const { dir } = await envTreeProject(1000);
  const hz = Number((await timed('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
  return withRegistry(async (reg) => {
    const env = registryEnv(reg);
    progress('idle: building the 1,000-file project first, so the daemon starts with nothing to do');
    await nixdocker(['-C', dir, 'builder', 'create'], { timeoutMs: 600_000 });
    await build(dir, [], env);
    return withWatch(dir, env, async (w) => {
      progress(`idle: sampling nixdocker watch (pid ${w.pid}) for ${IDLE_SECONDS} s`);
      const windows: number[] = [];
      const rss: number[] = [];
      const t0 = performance.now();
      const ticks0 = await cpuTicks(w.pid);
      const eventsBefore = w.events.length;
      let windowStart = { t: t0, ticks: ticks0 };
      for (let s = 1; s <= IDLE_SECONDS; s++) {
        await sleep(Math.max(0, t0 + s * 1000 - performance.now()));
        rss.push(await rssBytes(w.pid));
        if (s % CPU_WINDOW_SECONDS === 0) {
          const now = { t: performance.now(), ticks: await cpuTicks(w.pid) };
          windows.push((100 * (now.ticks - windowStart.ticks)) / hz / ((now.t - windowStart.t) / 1000));
          windowStart = now;
        }
      }
      const ticks1 = await cpuTicks(w.pid);
      const elapsed = (performance.now() - t0) / 1000;
      const mean = round((100 * (ticks1 - ticks0)) / hz / elapsed, 3);
      const changes = w.events.slice(eventsBefore).filter((e) => e.event === 'buildStart' || e.event === 'imageReady').length;
      return [
        summarize({
          name: 'idle-cpu',
          unit: 'percent',
          samples: windows,
          target: TARGETS.idleCpu,
          note: `% of one core; median/min/max over ${CPU_WINDOW_SECONDS}-s windows, target on the ${IDLE_SECONDS}-s mean`,
          extra: { mean, cpuSeconds: round((ticks1 - ticks0) / hz, 3), seconds: round(elapsed, 1), watchedFiles: 1000, eventsDuringIdle: changes },
        }),
        summarize({
          name: 'idle-rss',
          unit: 'bytes',
          samples: rss,
          target: TARGETS.idleRss,
          note: 'VmRSS sampled each second; target on the max',
          extra: { medianMB: round(median(rss) / 1e6, 1), firstRss: rss[0], lastRss: rss.at(-1), ...(await baselineRss()) },
        }),
      ];
    });
  });
}
