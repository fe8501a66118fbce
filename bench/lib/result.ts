/** One benchmark's figures, as written to bench/results/latest.json. */
export type Unit = 's' | 'bytes' | 'percent';

/** What "met" is judged on: a field of the result compared with a bound. */
export interface Target {
  /** The result field the bound applies to (median, ratio, or an extra field such as mean). */
  metric: string;
  op: '<' | '<=';
  value: number;
  /** As the table prints it, e.g. "< 0.3 s". */
  text: string;
}

export interface Result {
  name: string;
  unit: Unit;
  median: number | null;
  min: number | null;
  max: number | null;
  runs: number;
  competitor: { name: string; median: number } | null;
  ratio: number | null;
  target: Target | null;
  met: boolean | null;
  /** Why a figure is missing or how to read it. */
  note?: string;
  /** When it was measured: a partial run keeps earlier rows with their own date. */
  measuredAt?: string;
  measuredOn?: { cpus: number; cpuModel: string; memory: number };
  [extra: string]: unknown;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of nothing');
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

const DIGITS: Record<Unit, number> = { s: 4, percent: 4, bytes: 0 };

/**
 * A result from raw samples: median, min and max, the competitor's median and
 * the ratio (ours / theirs), and whether the target is met. `extra` fields are
 * copied in; `metOverride` lets a benchmark add a condition (no container started).
 */
export function summarize(opts: {
  name: string;
  unit: Unit;
  samples: readonly number[];
  competitor?: { name: string; samples: readonly number[] } | null;
  target?: Omit<Target, 'text'> | null;
  extra?: Record<string, unknown>;
  note?: string;
  extraCondition?: boolean;
}): Result {
  const d = DIGITS[opts.unit];
  const med = round(median(opts.samples), d);
  const competitor = opts.competitor && opts.competitor.samples.length > 0 ? { name: opts.competitor.name, median: round(median(opts.competitor.samples), d) } : null;
  const ratio = competitor && competitor.median > 0 ? round(median(opts.samples) / median(opts.competitor!.samples), 3) : null;
  const target = opts.target ? { ...opts.target, text: targetText(opts.target, opts.unit) } : null;
  const r: Result = {
    name: opts.name,
    unit: opts.unit,
    median: med,
    min: round(Math.min(...opts.samples), d),
    max: round(Math.max(...opts.samples), d),
    runs: opts.samples.length,
    competitor,
    ratio,
    target,
    met: null,
    ...(opts.note ? { note: opts.note } : {}),
    ...opts.extra,
  };
  if (target) {
    const v = r[target.metric];
    const ok = typeof v === 'number' && (target.op === '<' ? v < target.value : v <= target.value);
    r.met = ok && (opts.extraCondition ?? true);
  }
  return r;
}

/** A benchmark that could not run: no figures, met null, and why. */
export function skipped(name: string, unit: Unit, note: string, target?: Omit<Target, 'text'>): Result {
  return {
    name,
    unit,
    median: null,
    min: null,
    max: null,
    runs: 0,
    competitor: null,
    ratio: null,
    target: target ? { ...target, text: targetText(target, unit) } : null,
    met: null,
    note,
  };
}

function targetText(t: Omit<Target, 'text'>, unit: Unit): string {
  if (t.metric === 'ratio') return `ratio ${t.op} ${t.value}`;
  const v = unit === 'bytes' ? `${t.value / 1e6} MB` : unit === 'percent' ? `${t.value}%` : `${t.value} s`;
  return `${t.metric === 'median' ? '' : `${t.metric} `}${t.op} ${v}`;
}
