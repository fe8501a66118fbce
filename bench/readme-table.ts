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
// Rows kept from earlier partial runs say when they were measured, run by run.
const runs = new Map<string, string[]>();
for (const r of latest.results) {
  const at = r.measuredAt ?? latest.date;
  if (at !== latest.date) runs.set(at, [...(runs.get(at) ?? []), r.name]);
}
const earlier = [...runs].map(([at, names]) => `\`${names.join('`, `')}\` come from a run at ${at}.`).join(' ');
process.stdout.write(
  `Measured ${latest.date.slice(0, 10)} (${latest.date}) on ${m.cpus} × ${m.cpuModel}, ${(m.memory / 2 ** 30).toFixed(1)} GiB, Node ${m.node}, ${m.os}:\n\n${markdownTable(latest.results)}\n${earlier ? `\nOn the same machine, ${earlier}\n` : ''}`,
);
