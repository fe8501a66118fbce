import type { Result, Unit } from './result.js';

function fmt(v: number | null | undefined, unit: Unit): string {
  if (v === null || v === undefined) return '-';
  if (unit === 's') return v < 1 ? `${(v * 1000).toFixed(0)} ms` : `${v.toFixed(2)} s`;
  if (unit === 'percent') return `${v !== 0 && Math.abs(v) < 0.1 ? v.toPrecision(2) : v.toFixed(2)}%`;
  return `${(v / 1e6).toFixed(1)} MB`;
}

/** The results as an aligned text table, notes under it. */
export function printTable(out: NodeJS.WritableStream, results: Result[]): void {
  const head = ['benchmark', 'unit', 'median', 'min', 'max', 'runs', 'competitor', 'their median', 'ratio', 'target', 'met'];
  const rows = results.map((r) => [
    r.name,
    r.unit,
    fmt(r.median, r.unit),
    fmt(r.min, r.unit),
    fmt(r.max, r.unit),
    String(r.runs),
    r.competitor?.name ?? '-',
    fmt(r.competitor?.median, r.unit),
    r.ratio === null ? '-' : r.ratio.toFixed(2),
    r.target?.text ?? '-',
    r.met === null ? (r.median === null ? 'skipped' : '-') : r.met ? 'met' : 'MISSED',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  out.write(`${line(head)}\n${line(widths.map((w) => '-'.repeat(w)))}\n`);
  for (const row of rows) out.write(`${line(row)}\n`);
  const notes = results.filter((r) => r.note);
  if (notes.length) {
    out.write('\n');
    for (const r of notes) out.write(`${r.name}: ${r.note}\n`);
  }
}

/** The same figures as a Markdown table, for the README. */
export function markdownTable(results: Result[]): string {
  const rows = results.map(
    (r) =>
      `| ${r.name} | ${fmt(r.median, r.unit)} (${fmt(r.min, r.unit)}–${fmt(r.max, r.unit)}, ${r.runs} runs) | ${r.competitor ? `${r.competitor.name}: ${fmt(r.competitor.median, r.unit)}` : '–'} | ${r.ratio === null ? '–' : r.ratio.toFixed(2)} | ${r.target?.text ?? '–'} | ${r.met === null ? '–' : r.met ? 'met' : '**missed**'} |`,
  );
  return ['| benchmark | median (min–max) | competitor, same run | ratio | target | |', '|---|---|---|---|---|---|', ...rows].join('\n');
}
