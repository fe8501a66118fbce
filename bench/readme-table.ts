// Prints bench/results/latest.json as the README's Markdown table:
//   node --import tsx bench/readme-table.ts
import { readFile } from 'node:fs/promises';
import { markdownTable } from './lib/table.js';
import type { Result } from './lib/result.js';

const latest = JSON.parse(await readFile(new URL('./results/latest.json', import.meta.url), 'utf8')) as {
  date: string;
  machine: { cpus: number; cpuModel: string; memory: number; node: string; os: string };
  results: Result[];
};
const m = latest.machine;
// Rows kept from earlier partial runs say when, and on what, they were measured, run by run.
const machineText = (x: { cpus: number; cpuModel: string; memory: number }) => `${x.cpus} × ${x.cpuModel}, ${(x.memory / 2 ** 30).toFixed(1)} GiB`;
const runs = new Map<string, string[]>();
for (const r of latest.results) {
  if (!r.measuredAt || r.measuredAt === latest.date) continue;
  const key = `${r.measuredAt} on ${machineText(r.measuredOn ?? m)}`;
  runs.set(key, [...(runs.get(key) ?? []), r.name]);
}
const earlier = [...runs].map(([at, names]) => `\`${names.join('`, `')}\` come from a run at ${at}.`).join(' ');
process.stdout.write(
  `Measured ${latest.date.slice(0, 10)} (${latest.date}) on ${machineText(m)}, Node ${m.node}, ${m.os}:\n\n${markdownTable(latest.results)}\n${earlier ? `\n${earlier}\n` : ''}`,
);
