/**
 * `npm run bench`: runs every benchmark with the real CLI against the
 * services of scripts/services.sh, prints a table on stdout and writes
 * bench/results/latest.json. Progress goes to stderr.
 *
 *   node --import tsx bench/run.ts [--quick] [NAME-PREFIX...]
 *     NAME-PREFIX: only the benchmarks whose name starts so
 *     --quick: skip the large fixtures (scale-*, daemon-rss-1500, cache-cap-200: minutes and GBs)
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stopRegistries, cleanupDirs } from '../test/helpers/registry.js';
import { identityBenchmarks } from './benchmarks/identity.js';
import { pushBenchmarks } from './benchmarks/push.js';
import { MULTI_PLATFORM_NAMES, platformBenchmarks } from './benchmarks/platforms.js';
import { assemblyBenchmarks, scaleBenchmarks, SCALE_NAMES } from './benchmarks/scale.js';
import { watchAvailable, watchBenchmarks, watchSkipped } from './benchmarks/watch.js';
import { sharedCacheBenchmarks } from './benchmarks/shared-cache.js';
import { daemonRssBenchmarks } from './benchmarks/daemon-rss.js';
import { cacheCapBenchmarks } from './benchmarks/cache-cap.js';
import { progress, REPO_ROOT } from './lib/proc.js';
import { printTable } from './lib/table.js';
import type { Result, Unit } from './lib/result.js';

interface Group {
  names: { name: string; unit: Unit }[];
  run: () => Promise<Result[]>;
  /** Left out by --quick. */
  large?: boolean;
}

const GROUPS: Group[] = [
  {
    names: [10, 100, 1000, 10_000].map((n) => ({ name: `identity-${n}`, unit: 's' as const })),
    run: identityBenchmarks,
  },
  {
    names: [
      { name: 'noop-build', unit: 's' },
      { name: 'cold-push', unit: 's' },
      { name: 'incremental-push', unit: 's' },
      { name: 'incremental-bytes-share', unit: 'percent' },
    ],
    run: pushBenchmarks,
  },
  {
    names: [
      { name: 'change-to-ready', unit: 's' },
      { name: 'idle-cpu', unit: 'percent' },
      { name: 'idle-rss', unit: 'bytes' },
    ],
    run: async () => ((await watchAvailable()) ? watchBenchmarks() : watchSkipped('nixdocker watch not available')),
  },
  {
    names: MULTI_PLATFORM_NAMES.map((name) => ({ name, unit: 's' as const })),
    run: platformBenchmarks,
  },
  {
    names: [{ name: 'shared-cache', unit: 's' }],
    run: sharedCacheBenchmarks,
  },
  {
    names: [
      { name: 'assembly-600-vs-6', unit: 's' },
      { name: 'base-change-600-share', unit: 'percent' },
    ],
    run: assemblyBenchmarks,
  },
  { names: SCALE_NAMES, run: scaleBenchmarks, large: true },
  { names: [{ name: 'daemon-rss-1500', unit: 'bytes' }], run: daemonRssBenchmarks, large: true },
  { names: [{ name: 'cache-cap-200', unit: 'bytes' }], run: cacheCapBenchmarks, large: true },
];

type Machine = Awaited<ReturnType<typeof machine>>;

async function machine() {
  const cpus = os.cpus();
  const release = await readFile('/etc/os-release', 'utf8').catch(() => '');
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(release)?.[1];
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memory: os.totalmem(),
    node: process.version,
    os: `${pretty ?? os.type()} (${os.type()} ${os.release()} ${os.arch()})`,
  };
}

/**
 * A partial run (names or --quick) keeps the rows of latest.json it did not
 * run, each with the date and machine it was measured on (`measuredAt`,
 * `measuredOn`), in the order of
 * GROUPS; rows of benchmarks that no longer exist are dropped.
 */
async function withEarlierRows(file: string, results: Result[]): Promise<Result[]> {
  const earlier = await readFile(file, 'utf8').then(
    (text) => JSON.parse(text) as { date: string; machine: Machine; results: Result[] },
    () => null,
  );
  const order = GROUPS.flatMap((g) => g.names.map((n) => n.name));
  const ran = new Set(results.map((r) => r.name));
  const kept = (earlier?.results ?? [])
    .filter((r) => !ran.has(r.name) && order.includes(r.name))
    .map((r) => ({ ...r, measuredAt: r.measuredAt ?? earlier!.date, measuredOn: r.measuredOn ?? earlier!.machine }));
  return [...results, ...kept].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
}

async function main(): Promise<number> {
  const quick = process.argv.includes('--quick');
  const only = process.argv.slice(2).filter((a) => a !== '--quick');
  const wanted = (name: string) => only.length === 0 || only.some((p) => name.startsWith(p));
  const t0 = performance.now();
  const results: Result[] = [];
  let failed = 0;
  for (const group of GROUPS) {
    if (!group.names.some((n) => wanted(n.name)) || (quick && group.large)) continue;
    try {
      results.push(...(await group.run()).filter((r) => wanted(r.name)));
    } catch (err) {
      failed++;
      const message = (err as Error).stack ?? String(err);
      progress(`FAILED: ${message}`);
      for (const n of group.names.filter((x) => wanted(x.name))) {
        results.push({ name: n.name, unit: n.unit, median: null, min: null, max: null, runs: 0, competitor: null, ratio: null, target: null, met: false, note: `failed: ${(err as Error).message.split('\n')[0]}` });
      }
    } finally {
      await stopRegistries();
      await cleanupDirs();
    }
  }
  const date = new Date().toISOString();
  for (const r of results) r.measuredAt = date;
  const file = path.join(REPO_ROOT, 'bench', 'results', 'latest.json');
  const report = { date, machine: await machine(), results: await withEarlierRows(file, results) };
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  printTable(process.stdout, results);
  process.stdout.write(`\n${report.date} · ${report.machine.cpus} × ${report.machine.cpuModel} · ${(report.machine.memory / 2 ** 30).toFixed(1)} GiB · node ${report.machine.node} · ${report.machine.os}\n`);
  process.stdout.write(`wrote ${path.relative(process.cwd(), file)} in ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  return failed ? 1 : 0;
}

process.exitCode = await main();
