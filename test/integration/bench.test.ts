import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QUICK } from '../../bench/config.js';
import { formatTable, type BenchReport, type Measure } from '../../bench/report.js';
import { FIGURES, runBench, writeJson } from '../../bench/run.js';
import { removeTempDirs, tempDir } from '../helpers.js';

/**
 * The bench's code, kept working: the --quick configuration runs every figure end to end. Nothing here
 * asserts a time; only that the report is complete, sane and written.
 */
afterAll(removeTempDirs);

function expectSane(m: Measure, what: string): void {
  expect(m.reps.length, what).toBeGreaterThan(0);
  for (const x of [...m.reps, m.median, m.min, m.max, m.q1, m.q3]) {
    expect(Number.isFinite(x), `${what}: ${x}`).toBe(true);
  }
  expect(m.min, what).toBeLessThanOrEqual(m.median);
  expect(m.median, what).toBeLessThanOrEqual(m.max);
}

describe('npm run bench -- --quick', () => {
  let report: BenchReport;

  it('runs every figure and reports each as measured or not measured with a reason', async () => {
    report = await runBench({ quick: true });
    expect(report.quick).toBe(true);
    expect(report.figures.map((f) => f.id)).toEqual(FIGURES.map((f) => f.id));
    expect(report.machine.cores).toBeGreaterThan(0);
    expect(report.machine.cpuModel).not.toBe('');
    expect(report.machine.node).toBe(process.version);
    for (const f of report.figures) {
      if (f.notMeasured !== undefined) {
        // A figure may be unmeasurable here (no QEMU, plugin not built), never broken.
        expect(f.notMeasured, f.id).toMatch(/\S/);
        expect(f.notMeasured, f.id).not.toMatch(/^error:/);
        continue;
      }
      expect(f.method, f.id).toMatch(/\S/);
      expect(f.rows.length, f.id).toBeGreaterThan(0);
      for (const row of f.rows) {
        const what = `${f.id}: ${row.name}`;
        expectSane(row.value, what);
        // Latencies, rates and durations are positive; only heap growth may come out at or below zero.
        if (row.value.unit !== 'MiB') expect(row.value.min, what).toBeGreaterThan(0);
        if (row.baseline) {
          expectSane(row.baseline, what);
          if (row.baseline.unit !== 'MiB') expect(row.baseline.min, what).toBeGreaterThan(0);
        }
        if (row.ratio) {
          expect(row.ratio.reps.every((x) => Number.isFinite(x) && x > 0), what).toBe(true);
        }
        if (row.target) expect(typeof row.pass, what).toBe('boolean');
      }
    }
    // Call overhead needs nothing but hvplug itself: it is always measured.
    for (const id of ['roundtrip', 'throughput']) {
      expect(report.figures.find((f) => f.id === id)?.notMeasured, id).toBeUndefined();
    }
  }, 60_000);

  it('prints a table with a row per figure and writes the JSON with every raw number', async () => {
    const table = formatTable(report);
    for (const f of report.figures) expect(table).toContain(f.title);
    expect(table).toMatch(/figure\s*\|\s*value\s*\|\s*baseline\s*\|\s*ratio\s*\|\s*target\s*\|\s*result/);
    expect(table).toContain(report.machine.cpuModel);

    const file = join(await tempDir('hvplug-bench-test-'), 'out', 'bench.json');
    await writeJson(report, file);
    const back = JSON.parse(await readFile(file, 'utf8')) as BenchReport;
    expect(back.figures.map((f) => f.id)).toEqual(report.figures.map((f) => f.id));
    const roundtrip = back.figures.find((f) => f.id === 'roundtrip');
    expect(roundtrip?.rows[0]?.value.reps.length).toBe(QUICK.roundtrip.reps);
    expect(roundtrip?.raw.perRep).toBeDefined();
  });
});
