import { describe, expect, it } from 'vitest';
import { compare, formatTable, machine, measure, type BenchReport, type Row } from '../../bench/report.js';

/** A report of one figure with the given rows, as runBench builds it. */
function reportOf(rows: Row[]): BenchReport {
  return {
    tool: 'hvplug-bench',
    version: 1,
    quick: false,
    startedAt: new Date(0).toISOString(),
    durationMs: 1,
    machine: machine(),
    config: {},
    figures: [{ id: 'fig', title: '9 figure', method: 'how', rows, raw: {}, durationMs: 1 }],
  };
}

const target = { on: 'ratio', op: '<=', limit: 2, text: '≤ 2×' } as const;
// The reason is built from the row it explains: its ratio's spread is what it quotes.
const why = (row: Row): string => `spread ${row.ratio?.min.toFixed(1)}–${row.ratio?.max.toFixed(1)}×`;

describe('a row that explains its result', () => {
  it('prints why under the table when the row misses its target, with the numbers of this run', () => {
    const missed = compare('slow path', measure('a', 'ms', [3, 5, 4]), measure('b', 'ms', [1, 1, 1]), target, { why });
    expect(missed.pass).toBe(false);
    expect(missed.why).toBe('spread 3.0–5.0×');
    const table = formatTable(reportOf([missed]));
    expect(table).toContain('why 9 figure: slow path missed: spread 3.0–5.0×');
  });

  it('keeps it in the report but does not print it when the row passes', () => {
    const passed = compare('fast path', measure('a', 'ms', [1.5, 1.2, 1.9]), measure('b', 'ms', [1, 1, 1]), target, { why });
    expect(passed.pass).toBe(true);
    expect(passed.why).toBe('spread 1.2–1.9×');
    expect(JSON.parse(JSON.stringify(reportOf([passed]))).figures[0].rows[0].why).toBe('spread 1.2–1.9×');
    expect(formatTable(reportOf([passed]))).not.toContain('why ');
  });
});
