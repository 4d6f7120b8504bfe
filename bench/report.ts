import { cpus, totalmem, release } from 'node:os';
import { spread, type Spread } from './stats.js';

export type Unit = 'µs' | 'ms' | 'calls/s' | 'MiB';

/** One measured quantity over the repetitions of a run (each repetition contributes one number). */
export interface Measure extends Spread {
  label: string;
  unit: Unit;
  /** Every repetition's number, in run order. */
  reps: number[];
}

export interface Target {
  /** What the target constrains: the ratio to the baseline, or the value itself. */
  on: 'ratio' | 'value';
  op: '<=' | '>=';
  limit: number;
  text: string;
}

export interface Row {
  name: string;
  value: Measure;
  baseline?: Measure;
  /** value / baseline per repetition (A and B of a repetition ran back to back), summarised. */
  ratio?: Spread & { reps: number[] };
  target?: Target;
  pass?: boolean;
  /**
   * What the figure's own measurements in this run say about the row's result (the floor under it, the spread that
   * drowns it): printed under the table when the row misses its target, kept in the JSON either way.
   */
  why?: string;
}

export interface FigureReport {
  id: string;
  title: string;
  /** Absent when the figure was measured; the reason otherwise. */
  notMeasured?: string;
  /** How the figure was measured (which path, which baseline, sizes). */
  method: string;
  rows: Row[];
  /** Everything else the figure recorded: per-repetition samples, per-method figures, settings. */
  raw: Record<string, unknown>;
  durationMs: number;
}

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryMiB: number;
  node: string;
  v8: string;
  platform: string;
  kernel: string;
}

export interface BenchReport {
  tool: 'hvplug-bench';
  version: 1;
  quick: boolean;
  startedAt: string;
  durationMs: number;
  machine: Machine;
  config: Record<string, unknown>;
  figures: FigureReport[];
}

export function machine(): Machine {
  const list = cpus();
  return {
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    memoryMiB: Math.round(totalmem() / 2 ** 20),
    node: process.version,
    v8: process.versions.v8,
    platform: `${process.platform}-${process.arch}`,
    kernel: release(),
  };
}

export function measure(label: string, unit: Unit, reps: number[]): Measure {
  return { label, unit, reps, ...spread(reps) };
}

/** A row comparing value with baseline repetition by repetition; pass is judged on the median. */
export function compare(
  name: string,
  value: Measure,
  baseline: Measure | undefined,
  target?: Target,
  opts: { ratio?: boolean; why?: (row: Row) => string } = {},
): Row {
  const row: Row = { name, value };
  if (baseline) row.baseline = baseline;
  // A ratio of two small, noisy differences (heap growth) means nothing: such rows show the baseline only.
  if (baseline && opts.ratio !== false) {
    const n = Math.min(value.reps.length, baseline.reps.length);
    const reps = Array.from({ length: n }, (_, i) => (value.reps[i] as number) / (baseline.reps[i] as number));
    row.ratio = { reps, ...spread(reps) };
  }
  if (target) {
    row.target = target;
    const x = target.on === 'ratio' ? row.ratio?.median : value.median;
    if (x !== undefined && Number.isFinite(x)) row.pass = target.op === '<=' ? x <= target.limit : x >= target.limit;
  }
  if (opts.why) row.why = opts.why(row);
  return row;
}

/** A row's median ratio as a why line quotes it: `1.23×`. */
export const ratioText = (row: Row): string => `${row.ratio?.median.toFixed(2) ?? '?'}×`;

function num(x: number, unit: Unit): string {
  if (!Number.isFinite(x)) return String(x);
  if (unit === 'calls/s') return Math.round(x).toLocaleString('en-US');
  const abs = Math.abs(x);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return x.toFixed(digits);
}

function fmt(m: Measure): string {
  return `${num(m.median, m.unit)} ${m.unit} [${num(m.min, m.unit)}–${num(m.max, m.unit)}]`;
}

function cells(f: FigureReport): string[][] {
  return f.rows.map((r) => [
    `${f.title}: ${r.name}`,
    `${r.value.label} ${fmt(r.value)}`,
    r.baseline ? `${r.baseline.label} ${fmt(r.baseline)}` : '',
    r.ratio ? `${r.ratio.median.toFixed(2)}× [${r.ratio.min.toFixed(2)}–${r.ratio.max.toFixed(2)}]` : '',
    r.target?.text ?? '',
    r.pass === undefined ? (r.target ? 'n/a' : 'info') : r.pass ? 'pass' : 'MISS',
  ]);
}

/** A plain-text table: figure, value, baseline, ratio, target, pass/miss. Values are median [min–max] over repetitions. */
export function formatTable(report: BenchReport): string {
  const header = ['figure', 'value', 'baseline', 'ratio', 'target', 'result'];
  const measured = report.figures.flatMap(cells);
  // A figure that was not measured spans the row with its reason, and does not widen the columns.
  const widths = header.map((_, i) => Math.max(...[header, ...measured].map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i] as number)).join(' | ').trimEnd();
  const body = report.figures.flatMap((f) =>
    f.notMeasured !== undefined ? [`${f.title.padEnd(widths[0] as number)} | not measured: ${f.notMeasured}`] : cells(f).map(line),
  );
  const m = report.machine;
  const out = [
    `hvplug bench${report.quick ? ' (--quick: tiny configuration, figures are not meaningful)' : ''}`,
    `machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryMiB} MiB, node ${m.node} (v8 ${m.v8}), ${m.platform} ${m.kernel}`,
    `values are median [min–max] over repetitions; A and B alternate within each repetition; ratio = A/B per repetition`,
    '',
    line(header),
    widths.map((w) => '-'.repeat(w)).join('-|-'),
    ...body,
    '',
    ...report.figures.flatMap((f) => f.rows.filter((r) => r.pass === false && r.why).map((r) => `why ${f.title}: ${r.name} missed: ${r.why}`)),
    ...report.figures.filter((f) => f.method).map((f) => `${f.id}: ${f.method}`),
    `total ${(report.durationMs / 1000).toFixed(1)} s`,
  ];
  return out.join('\n');
}
