import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FULL, QUICK, type BenchConfig } from './config.js';
import { hasGc } from './drivers.js';
import type { Figure, FigureOutcome } from './figure.js';
import { coldstart } from './figures/coldstart.js';
import { daemon } from './figures/daemon.js';
import { eventFlood } from './figures/event-flood.js';
import { footprint } from './figures/footprint.js';
import { framing } from './figures/framing.js';
import { qemuBoot } from './figures/qemu.js';
import { qemuMigrate } from './figures/qemu-migrate.js';
import { qemuPause } from './figures/qemu-pause.js';
import { recovery } from './figures/recovery.js';
import { roundtrip } from './figures/roundtrip.js';
import { scale } from './figures/scale.js';
import { throughput } from './figures/throughput.js';
import { machine, type BenchReport, type FigureReport } from './report.js';
import { workspace } from './setup.js';

export const FIGURES: readonly Figure[] = [roundtrip, throughput, coldstart, scale, qemuBoot, qemuPause, qemuMigrate, recovery, framing, eventFlood, footprint, daemon];

export interface BenchOptions {
  quick?: boolean;
  /** Figure ids to run; the others are reported as not measured. Default: all. */
  only?: readonly string[];
  /** Overrides of the chosen configuration. */
  config?: Partial<BenchConfig>;
  log?: (msg: string) => void;
}

/** Runs every figure and returns the report; a figure that throws is reported as not measured, with the error. */
export async function runBench(opts: BenchOptions = {}): Promise<BenchReport> {
  const quick = opts.quick ?? false;
  const cfg: BenchConfig = { ...(quick ? QUICK : FULL), ...opts.config };
  const log = opts.log ?? (() => undefined);
  const started = performance.now();
  const startedAt = new Date().toISOString();
  if (!hasGc()) log('warning: gc() is not exposed (run node with --expose-gc); heap figures will include garbage');
  const ws = await workspace();
  const figures: FigureReport[] = [];
  try {
    for (const f of FIGURES) {
      const t0 = performance.now();
      let outcome: FigureOutcome;
      if (opts.only && !opts.only.includes(f.id)) {
        outcome = { notMeasured: 'not selected (--only)', method: '', rows: [], raw: {} };
      } else {
        log(`— ${f.title}`);
        try {
          outcome = await f.run({ ws, cfg, quick, log });
        } catch (err) {
          log(`${f.id} failed: ${(err as Error).stack ?? String(err)}`);
          outcome = { notMeasured: `error: ${(err as Error).message}`, method: '', rows: [], raw: {} };
        }
      }
      figures.push({ id: f.id, title: f.title, ...outcome, durationMs: performance.now() - t0 });
    }
  } finally {
    await ws.dispose();
  }
  return {
    tool: 'hvplug-bench',
    version: 1,
    quick,
    startedAt,
    durationMs: performance.now() - started,
    machine: machine(),
    config: { ...cfg, gcExposed: hasGc() },
    figures,
  };
}

export async function writeJson(report: BenchReport, file: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
}
